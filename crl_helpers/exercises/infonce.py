"""Exercises of notebook 04 (InfoNCE and temperature): write the loss three ways, stabilise it, measure alignment,
and build a score matrix from a distance.

Each checker runs your function on fresh random inputs (sizes, values and temperatures drawn anew on every call) and compares it with a reference written
here as a float64 loop straight from the formula (never with the package function the exercise
teaches); when it disagrees, it computes the usual slips with the same loop (no temperature, a sum
instead of a mean, the self-similarity left in ...) and names the one that matches.

Example:
    >>> import torch.nn.functional as F
    >>> def nt(z1, z2, temperature):
    ...     z = F.normalize(torch.cat([z1, z2]), dim=1)
    ...     n = len(z1)
    ...     logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    ...     return F.cross_entropy(logits, torch.cat([torch.arange(n) + n, torch.arange(n)]))
    >>> ok = check_nt_xent(nt)
    [PASSED] NT-Xent: matches a float64 loop over the 2N anchors on 3 fresh batches
"""
from __future__ import annotations

import math

import torch

from crl_helpers.exercises._check import as_number, close64, draw, exercise_check, expect, fresh_generator

__all__ = ["check_info_nce", "check_nt_xent", "check_logsumexp", "check_alignment", "check_neg_euclidean_score"]


def _loss_tensor(out) -> float:
    """A loss the cells below can compare with the package's by ``assert_close``: a 0-d floating tensor
    (float32, or float64 from a computation in float64)."""
    expect(out is not None, "your function returned None; return the loss as a 0-d tensor")
    expect(isinstance(out, torch.Tensor), f"your function returned a {type(out).__name__}; return the loss as a "
                                          f"tensor (the cell below compares it with the package's by assert_close)")
    expect(out.numel() == 1, f"your function returned a tensor of shape {tuple(out.shape)}; return the MEAN over "
                             f"anchors, a scalar")
    expect(out.dim() == 0, f"your loss has shape {tuple(out.shape)}; return a 0-d tensor (.mean(), or .squeeze())")
    expect(out.is_floating_point(), f"your loss is {out.dtype}; return a floating-point tensor")
    return float(out.detach())


def _temperature(g: torch.Generator) -> float:
    # away from 1, where a missing or a multiplied temperature would change little
    return round(float(torch.empty(1).uniform_(0.05, 0.7, generator=g)), 3)


def _close(a: float, b: float, tol: float = 1e-4) -> bool:
    return math.isfinite(a) and abs(a - b) <= tol * max(1.0, abs(b))


def _diagnose(got: float, slips: dict[str, float]) -> str:
    for hint, value in slips.items():
        if _close(got, value):
            return hint
    return ""


# ------------------------------------------------------------------- float64 loops: the checkers' references
def _rows(x: torch.Tensor, normalise: bool = True) -> list[list[float]]:
    rows = x.detach().double().tolist()
    if not normalise:
        return rows
    return [[v / math.sqrt(sum(u * u for u in row)) for v in row] for row in rows]


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def _neg_log_softmax(positive: float, others: list[float]) -> float:
    # -log(e^pos / (e^pos + sum e^others)), shifted by the max so that logits of 1/0.07 stay finite
    top = max([positive] + others)
    return -(positive - top) + math.log(math.exp(positive - top) + sum(math.exp(o - top) for o in others))


def _info_nce_loop(q, k, negatives, temperature, *, normalise=True, positive_in_denominator=True, mean=True):
    q, k, negatives = _rows(q, normalise), _rows(k, normalise), _rows(negatives, normalise)
    total = 0.0
    for qi, ki in zip(q, k):
        positive = _dot(qi, ki) / temperature
        others = [_dot(qi, n) / temperature for n in negatives]
        if positive_in_denominator:
            total += _neg_log_softmax(positive, others)
        else:
            total += -positive + math.log(sum(math.exp(o) for o in others))
    return total / len(q) if mean else total


def _nt_xent_loop(z1, z2, temperature, *, normalise=True, mask_self=True, own_side=True, anchors=None,
                  self_logit=None, shift=None):
    views = _rows(torch.cat([z1, z2]), normalise)  # 2N rows: view 1 of every image, then view 2
    n = len(z1)
    total, count = 0.0, 0
    for a in range(2 * n if anchors is None else anchors):
        partner = (a + (shift or n)) % (2 * n)
        same_side = range(0, n) if a < n else range(n, 2 * n)
        candidates = [b for b in range(2 * n) if b != partner and (mask_self is False or b != a)
                      and (own_side or b not in same_side)]
        logits = [_dot(views[a], views[b]) / temperature for b in candidates]
        if self_logit is not None:  # the diagonal set to a number (0) instead of -inf
            logits = [self_logit if b == a else x for b, x in zip(candidates, logits)]
        if partner == a:  # a wrong target pointing at the view itself: its logit is masked to -inf
            total += math.inf
            count += 1
            continue
        total += _neg_log_softmax(_dot(views[a], views[partner]) / temperature, logits)
        count += 1
    return total / count


# -------------------------------------------------------------------- InfoNCE
@exercise_check("InfoNCE")
def check_info_nce(fn):
    """Check ``fn(query, positive_key, negative_keys, temperature)`` against a float64 loop over the queries.

    ``query`` and ``positive_key`` are ``(N, d)``, ``negative_keys`` ``(K, d)`` shared by every
    query; cosine similarities, mean over the N queries. Works for a loop or a vectorised version.
    Inputs are float32 (as in the notebook) with sizes and temperatures drawn anew; the loss comes back
    as a 0-d floating tensor (float32, or float64 computed inside).
    """
    g = fresh_generator()
    for _ in range(3):
        n, k, d, temperature = draw(g, 2, 8), draw(g, 3, 12), draw(g, 3, 16), _temperature(g)
        q, pos, negatives = (torch.randn(rows, d, generator=g) for rows in (n, n, k))
        want = _info_nce_loop(q, pos, negatives, temperature)
        got = _loss_tensor(fn(q.clone(), pos.clone(), negatives.clone(), temperature))
        if not _close(got, want):
            hint = _diagnose(got, {
                "the temperature is missing: divide the similarities by it":
                    _info_nce_loop(q, pos, negatives, 1.0),
                "you multiplied by the temperature; divide the similarities by it instead":
                    _info_nce_loop(q, pos, negatives, 1 / temperature),
                "the embeddings are not L2-normalised: InfoNCE here uses cosine similarities":
                    _info_nce_loop(q, pos, negatives, temperature, normalise=False),
                "the positive is missing from the denominator: it sums over the positive AND the negatives":
                    _info_nce_loop(q, pos, negatives, temperature, positive_in_denominator=False),
                "that is the SUM over queries; return the mean":
                    _info_nce_loop(q, pos, negatives, temperature, mean=False),
            })
            raise AssertionError(hint or f"got {got:.5f}, expected {want:.5f} (N={n}, K={k}, temperature="
                                         f"{temperature}); check the softmax: positive logit first, target 0")
    return "matches a float64 loop over the queries on 3 fresh batches"


# -------------------------------------------------------------------- NT-Xent
@exercise_check("NT-Xent")
def check_nt_xent(fn):
    """Check ``fn(z1, z2, temperature)`` (views ``(N, d)`` each) against a float64 loop over the 2N anchors.

    Float32 views with sizes and temperatures drawn anew; the loss comes back as a 0-d floating tensor.
    """
    g = fresh_generator()
    for _ in range(3):
        n, d, temperature = draw(g, 3, 9), draw(g, 3, 16), _temperature(g)
        z1, z2 = (torch.randn(n, d, generator=g) for _ in range(2))
        want = _nt_xent_loop(z1, z2, temperature)
        got = _loss_tensor(fn(z1.clone(), z2.clone(), temperature))
        if not _close(got, want):
            hint = _diagnose(got, {
                "the self-similarity is still in the denominator: mask the diagonal with -inf":
                    _nt_xent_loop(z1, z2, temperature, mask_self=False),
                "only the other view's embeddings are candidates: NT-Xent uses all 2N-1 other views (own side too)":
                    _nt_xent_loop(z1, z2, temperature, own_side=False),
                "the temperature is missing: divide the cosine similarities by it":
                    _nt_xent_loop(z1, z2, 1.0),
                "the embeddings are not L2-normalised: NT-Xent uses cosine similarities (F.normalize first)":
                    _nt_xent_loop(z1, z2, temperature, normalise=False),
                "only the first N anchors count: average over all 2N views":
                    _nt_xent_loop(z1, z2, temperature, anchors=n),
                "the diagonal was set to 0, which leaves exp(0) = 1 in every denominator; set it to -inf "
                "(masked_fill(torch.eye(2N, dtype=torch.bool), float('-inf')))":
                    _nt_xent_loop(z1, z2, temperature, mask_self=False, self_logit=0.0),
                "the targets point at the neighbouring view (i + 1); the partner of view i is i + N (and of i + N, i)":
                    _nt_xent_loop(z1, z2, temperature, shift=1),
            })
            raise AssertionError(hint or f"got {got:.5f}, expected {want:.5f} (N={n}, temperature={temperature}); "
                                         "follow steps 1-4: normalise, (2N, 2N) similarities / temperature, diagonal "
                                         "-inf, cross-entropy with targets i + N and i - N")
    return "matches a float64 loop over the 2N anchors on 3 fresh batches"


# ---------------------------------------------------------------- log-sum-exp
@exercise_check("stable log-sum-exp")
def check_logsumexp(fn):
    """Check ``fn(logits)`` = ``log(sum(exp(logits), dim=-1))`` for ``(N, C)`` logits, stable for huge values.

    Fresh float32 inputs include rows of +-1000 (cosine / temperature at temperature 0.001), where
    the naive formula overflows to inf or underflows to -inf. Any floating dtype may come back (a
    float64 computation inside is fine); it is compared in float64.
    """
    g = fresh_generator()
    n, c = draw(g, 2, 6), draw(g, 3, 9)
    cases = [
        torch.randn(n, c, generator=g),
        # rows near +1000 and near -1000: exp overflows in the first, underflows in the second, and one max for the
        # whole tensor (not per row) sends the second to -inf
        1000 * (1 - 2 * (torch.arange(n) % 2)[:, None]) + torch.randn(n, c, generator=g),
        torch.randn(draw(g, 2, 6), draw(g, 2, 9), generator=g) * 50,
    ]
    for logits in cases:
        out = fn(logits.clone())
        expect(out is not None, "your function returned None; return a tensor with one value per row")
        expect(isinstance(out, torch.Tensor), f"return a tensor, not a {type(out).__name__}")
        expect(out.is_floating_point(), f"return floating-point values, got {out.dtype}")
        # float64 loop per row: m + log(sum(exp(x - m))), m = the row's max
        want = torch.tensor([max(row) + math.log(sum(math.exp(v - max(row)) for v in row))
                             for row in logits.double().tolist()], dtype=torch.float64)
        expect(out.shape == want.shape, f"got shape {tuple(out.shape)} for logits {tuple(logits.shape)}; "
                                        f"reduce over the last dimension only, giving {tuple(want.shape)}")
        if not torch.isfinite(out).all():
            raise AssertionError(f"got {out.tolist()} for logits with max |value| {logits.abs().max():.0f}: "
                                 "subtract each row's max before exp, then add it back")
        if not close64(out, want, rtol=1e-5, atol=1e-4):
            global_max = [logits.max().item() + math.log(sum(math.exp(v - logits.max().item()) for v in row))
                          if math.isfinite(sum(math.exp(v - logits.max().item()) for v in row)) else 0.0
                          for row in logits.double().tolist()]
            hint = ("you subtracted the max of the whole tensor; subtract each ROW's max (dim=-1, keepdim=True)"
                    if close64(out, torch.tensor(global_max), rtol=1e-5, atol=1e-4) else
                    "log(sum(exp(x - m))) + m, with m the max of each row")
            raise AssertionError(f"got {[round(v, 4) for v in out.tolist()[:3]]}..., expected "
                                 f"{[round(v, 4) for v in want.tolist()[:3]]}...; {hint}")
    return "matches a float64 loop on fresh logits, even at |logits| = 1000"


# ------------------------------------------------------------------ alignment
@exercise_check("alignment")
def check_alignment(fn):
    """Check ``fn(z1, z2)`` = ``E_i ||z1_i - z2_i||^2`` on normalised rows (Wang & Isola 2020, alpha=2), by a float64 loop."""
    g = fresh_generator()
    for n, d in ((draw(g, 3, 7), draw(g, 2, 5)), (draw(g, 8, 16), draw(g, 6, 16))):
        z1 = torch.randn(n, d, generator=g) * torch.exp(torch.randn(n, 1, generator=g))
        z2 = torch.randn(n, d, generator=g) * torch.exp(torch.randn(n, 1, generator=g))

        def mean_distance(normalise: bool, power: int, over: int = n) -> float:
            pairs = zip(_rows(z1, normalise), _rows(z2, normalise))
            return sum(math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b))) ** power for a, b in pairs) / over

        want = mean_distance(True, 2)
        got = as_number(fn(z1.clone(), z2.clone()), "your function")
        if not _close(got, want):
            hint = _diagnose(got, {
                "normalise z1 and z2 to unit length first (alignment lives on the sphere)": mean_distance(False, 2),
                "square the distances (alpha = 2)": mean_distance(True, 1),
                "that is the SUM over pairs; return the mean": mean_distance(True, 2, over=1),
                "that is the mean over every coordinate (N * d numbers); sum the squares over d, then average over N":
                    mean_distance(True, 2, over=n * d),
            })
            raise AssertionError(hint or f"got {got:.5f}, expected {want:.5f}; mean over pairs of the squared "
                                         "distance between the unit vectors")
    return "matches a float64 loop over the pairs of 2 fresh batches"


# ------------------------------------------------------- a scoring function: negative squared Euclidean distance
@exercise_check("negative squared Euclidean score")
def check_neg_euclidean_score(fn):
    """Check ``fn(query, keys)`` = the ``(N, M)`` matrix ``-||q_i - k_j||^2`` (no normalisation), by a float64 loop.

    Fresh float32 inputs; the scores come back as a floating tensor (float32, or float64 computed inside).
    """
    g = fresh_generator()
    for _ in range(2):
        n, m, d = draw(g, 2, 7), draw(g, 2, 7), draw(g, 2, 6)
        if m == n:
            m += 1
        q, k = torch.randn(n, d, generator=g), 2 * torch.randn(m, d, generator=g)
        squared = [[sum((x - y) ** 2 for x, y in zip(a, b)) for b in k.double().tolist()] for a in q.double().tolist()]
        want = torch.tensor([[-v for v in row] for row in squared], dtype=torch.float64)
        out = fn(q.clone(), k.clone())
        expect(out is not None, "your function returned None; return the (N, M) tensor of scores")
        expect(isinstance(out, torch.Tensor), f"return a tensor, not a {type(out).__name__}")
        if out.shape == (m, n):
            raise AssertionError(f"got shape {tuple(out.shape)}: rows are queries, columns keys, so (N, M) = {(n, m)}")
        expect(out.shape == (n, m), f"got shape {tuple(out.shape)}, expected (N, M) = {(n, m)}")
        expect(out.is_floating_point(), f"return floating-point scores, got {out.dtype}")
        if close64(out, want, rtol=1e-4, atol=1e-4):
            continue
        out = out.detach().double()
        unit = [[sum((x - y) ** 2 for x, y in zip(a, b)) for b in _rows(k)] for a in _rows(q)]
        distance2 = -want  # (N, M) squared distances
        for slip, hint in ((distance2, "that is the distance itself: negate it, so that a higher score means MORE similar"),
                           (-distance2.sqrt(), "square the distance: the score is -||q - k||^2, not -||q - k||"),
                           (distance2.sqrt(), "negate and square: the score is -||q - k||^2"),
                           (-torch.tensor(unit, dtype=torch.float64),
                            "do not normalise the rows: this score uses the raw vectors")):
            if close64(out, slip, rtol=1e-4, atol=1e-4):
                raise AssertionError(hint)
        raise AssertionError(f"got {[round(v, 4) for v in out[0].tolist()]} in row 0, expected "
                             f"{[round(v, 4) for v in want[0].tolist()]}; entry (i, j) is "
                             f"-sum_c (query[i, c] - keys[j, c])**2")
    return "matches a float64 loop over every (query, key) pair of 2 fresh batches"
