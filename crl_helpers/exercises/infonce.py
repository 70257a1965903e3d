"""Exercises of notebook 04 (InfoNCE and temperature): write the loss three ways, stabilise it, measure alignment,
and build a score matrix from a distance.

Each checker runs your function on fresh random inputs and compares it with a reference written
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
    [PASSED] NT-Xent: matches a float64 loop over the 2N anchors on 3 random batches
"""
from __future__ import annotations

import math

import torch

from crl_helpers.exercises._check import exercise_check

__all__ = ["check_info_nce", "check_nt_xent", "check_logsumexp", "check_alignment", "check_neg_euclidean_score"]


def _scalar(out, what: str) -> float:
    assert out is not None, f"{what} returned None; return the loss as a tensor (or float)"
    if isinstance(out, torch.Tensor):
        assert out.numel() == 1, (f"{what} returned a tensor of shape {tuple(out.shape)}; "
                                  "return the MEAN over anchors, a scalar")
        return float(out.detach())
    assert isinstance(out, (int, float)), f"{what} returned a {type(out).__name__}; return a tensor or float"
    return float(out)


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


def _nt_xent_loop(z1, z2, temperature, *, normalise=True, mask_self=True, own_side=True, anchors=None):
    views = _rows(torch.cat([z1, z2]), normalise)  # 2N rows: view 1 of every image, then view 2
    n = len(z1)
    total, count = 0.0, 0
    for a in range(2 * n if anchors is None else anchors):
        partner = (a + n) % (2 * n)
        same_side = range(0, n) if a < n else range(n, 2 * n)
        candidates = [b for b in range(2 * n) if b != partner and (mask_self is False or b != a)
                      and (own_side or b not in same_side)]
        total += _neg_log_softmax(_dot(views[a], views[partner]) / temperature,
                                  [_dot(views[a], views[b]) / temperature for b in candidates])
        count += 1
    return total / count


# -------------------------------------------------------------------- InfoNCE
@exercise_check("InfoNCE")
def check_info_nce(fn):
    """Check ``fn(query, positive_key, negative_keys, temperature)`` against a float64 loop over the queries.

    ``query`` and ``positive_key`` are ``(N, d)``, ``negative_keys`` ``(K, d)`` shared by every
    query; cosine similarities, mean over the N queries. Works for a loop or a vectorised version.
    """
    g = torch.Generator().manual_seed(404)
    for n, k, d, temperature in ((4, 6, 8, 0.5), (3, 5, 4, 0.1), (6, 10, 16, 1.0)):
        q, pos, negatives = (torch.randn(rows, d, generator=g, dtype=torch.float64) for rows in (n, n, k))
        want = _info_nce_loop(q, pos, negatives, temperature)
        got = _scalar(fn(q.clone(), pos.clone(), negatives.clone(), temperature), "your function")
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
    return "matches a float64 loop over the queries on 3 random batches"


# -------------------------------------------------------------------- NT-Xent
@exercise_check("NT-Xent")
def check_nt_xent(fn):
    """Check ``fn(z1, z2, temperature)`` (views ``(N, d)`` each) against a float64 loop over the 2N anchors."""
    g = torch.Generator().manual_seed(2020)
    for n, d, temperature in ((4, 8, 0.5), (5, 3, 0.2), (8, 16, 0.07)):
        z1, z2 = (torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(2))
        want = _nt_xent_loop(z1, z2, temperature)
        got = _scalar(fn(z1.clone(), z2.clone(), temperature), "your function")
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
            })
            raise AssertionError(hint or f"got {got:.5f}, expected {want:.5f} (N={n}, temperature={temperature}); "
                                         "the partner of view i is i+N (and of i+N is i)")
    return "matches a float64 loop over the 2N anchors on 3 random batches"


# ---------------------------------------------------------------- log-sum-exp
@exercise_check("stable log-sum-exp")
def check_logsumexp(fn):
    """Check ``fn(logits)`` = ``log(sum(exp(logits), dim=-1))`` for ``(N, C)`` logits, stable for huge values.

    The inputs include logits of +-1000 (cosine / temperature at temperature 0.001), where
    the naive formula overflows to inf or underflows to -inf.
    """
    cases = [
        torch.tensor([[0.0, 1.0, 2.0], [-1.0, 0.5, 0.25]]),
        torch.tensor([[1000.0, 999.0, 0.0], [-1000.0, -1001.0, -1002.0]]),  # exp overflows / underflows
        torch.randn(4, 7, generator=torch.Generator().manual_seed(1)) * 50,
    ]
    for logits in cases:
        out = fn(logits.clone())
        assert out is not None, "your function returned None; return a tensor with one value per row"
        assert isinstance(out, torch.Tensor), f"return a tensor, not a {type(out).__name__}"
        # float64 loop per row: m + log(sum(exp(x - m))), m = the row's max
        want = torch.tensor([max(row) + math.log(sum(math.exp(v - max(row)) for v in row))
                             for row in logits.double().tolist()], dtype=logits.dtype)
        assert out.shape == want.shape, (f"got shape {tuple(out.shape)} for logits {tuple(logits.shape)}; "
                                         f"reduce over the last dimension only, giving {tuple(want.shape)}")
        if not torch.isfinite(out).all():
            raise AssertionError(f"got {out.tolist()} for logits with max |value| {logits.abs().max():.0f}: "
                                 "subtract each row's max before exp, then add it back")
        if not torch.allclose(out, want, rtol=1e-5, atol=1e-4):
            raise AssertionError(f"got {out.tolist()}, expected {want.tolist()}; log(sum(exp(x - m))) + m, "
                                 "with m the max of each row")
    return "matches a float64 loop, even at |logits| = 1000"


# ------------------------------------------------------------------ alignment
@exercise_check("alignment")
def check_alignment(fn):
    """Check ``fn(z1, z2)`` = ``E_i ||z1_i - z2_i||^2`` on normalised rows (Wang & Isola 2020, alpha=2), by a float64 loop."""
    g = torch.Generator().manual_seed(2)
    for n, d in ((5, 3), (8, 16)):
        z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)

        def mean_distance(normalise: bool, power: int) -> float:
            pairs = zip(_rows(z1, normalise), _rows(z2, normalise))
            return sum(math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b))) ** power for a, b in pairs) / n

        want = mean_distance(True, 2)
        got = _scalar(fn(z1.clone(), z2.clone()), "your function")
        if not _close(got, want):
            hint = _diagnose(got, {
                "normalise z1 and z2 to unit length first (alignment lives on the sphere)": mean_distance(False, 2),
                "square the distances (alpha = 2)": mean_distance(True, 1),
            })
            raise AssertionError(hint or f"got {got:.5f}, expected {want:.5f}; mean over pairs of the squared "
                                         "distance between the unit vectors")
    return "matches a float64 loop over the pairs"


# ------------------------------------------------------- a scoring function: negative squared Euclidean distance
@exercise_check("negative squared Euclidean score")
def check_neg_euclidean_score(fn):
    """Check ``fn(query, keys)`` = the ``(N, M)`` matrix ``-||q_i - k_j||^2`` (no normalisation), by a float64 loop."""
    g = torch.Generator().manual_seed(7)
    for n, m, d in ((3, 5, 4), (6, 2, 3)):
        q, k = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(m, d, generator=g, dtype=torch.float64)
        squared = [[sum((x - y) ** 2 for x, y in zip(a, b)) for b in k.tolist()] for a in q.tolist()]  # N x M
        want = torch.tensor([[-v for v in row] for row in squared], dtype=torch.float64)
        out = fn(q.clone(), k.clone())
        assert out is not None, "your function returned None; return the (N, M) tensor of scores"
        assert isinstance(out, torch.Tensor), f"return a tensor, not a {type(out).__name__}"
        out = out.detach().double()
        if out.shape == (m, n) and n != m:
            raise AssertionError(f"got shape {tuple(out.shape)}: rows are queries, columns keys, so (N, M) = {(n, m)}")
        assert out.shape == (n, m), f"got shape {tuple(out.shape)}, expected (N, M) = {(n, m)}"
        if torch.allclose(out, want, rtol=1e-5, atol=1e-6):
            continue
        unit = [[sum((x - y) ** 2 for x, y in zip(a, b)) for b in _rows(k)] for a in _rows(q)]
        distance2 = -want  # (N, M) squared distances
        for slip, hint in ((distance2, "that is the distance itself: negate it, so that a higher score means MORE similar"),
                           (-distance2.sqrt(), "square the distance: the score is -||q - k||^2, not -||q - k||"),
                           (distance2.sqrt(), "negate and square: the score is -||q - k||^2"),
                           (-torch.tensor(unit, dtype=torch.float64),
                            "do not normalise the rows: this score uses the raw vectors")):
            if torch.allclose(out, slip, rtol=1e-5, atol=1e-6):
                raise AssertionError(hint)
        raise AssertionError(f"got {out[0].tolist()} in row 0, expected {want[0].tolist()}; "
                             "entry (i, j) is -sum_c (query[i, c] - keys[j, c])**2")
    return "matches a float64 loop over every (query, key) pair"
