"""Exercises of notebook 04 (InfoNCE and temperature): write the loss three ways, stabilise it, measure alignment.

Each checker runs your function on fresh random inputs and compares it with the package's
reference (:func:`crl_helpers.losses.info_nce`, :func:`crl_helpers.losses.nt_xent`,
:func:`torch.logsumexp`, :func:`crl_helpers.metrics.alignment`); when it disagrees, it tries
the usual slips (no temperature, a sum instead of a mean, the self-similarity left in...) and
names the one that matches.

Example:
    >>> from crl_helpers.losses import nt_xent
    >>> ok = check_nt_xent(lambda z1, z2, temperature: nt_xent(z1, z2, temperature))
    [PASSED] NT-Xent: matches crl_helpers.losses.nt_xent on 3 random batches
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from crl_helpers.exercises._check import exercise_check
from crl_helpers.losses import info_nce, nt_xent
from crl_helpers.metrics import alignment

__all__ = ["check_info_nce", "check_nt_xent", "check_logsumexp", "check_alignment"]


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


# -------------------------------------------------------------------- InfoNCE
def _info_nce_slips(q, k, negatives, temperature) -> dict[str, float]:
    qn, kn, nn_ = (F.normalize(t, dim=1) for t in (q, k, negatives))
    pos = (qn * kn).sum(1, keepdim=True)  # (N, 1)
    neg = qn @ nn_.T  # (N, M)
    logits = torch.cat([pos, neg], 1)
    target = torch.zeros(len(q), dtype=torch.long)
    raw = torch.cat([(q * k).sum(1, keepdim=True), q @ negatives.T], 1)
    return {
        "the temperature is missing: divide the similarities by it":
            F.cross_entropy(logits, target).item(),
        "you multiplied by the temperature; divide the similarities by it instead":
            F.cross_entropy(logits * temperature, target).item(),
        "the embeddings are not L2-normalised: InfoNCE here uses cosine similarities":
            F.cross_entropy(raw / temperature, target).item(),
        "the positive is missing from the denominator: it sums over the positive AND the negatives":
            (-(pos.squeeze(1) / temperature) + torch.logsumexp(neg / temperature, 1)).mean().item(),
        "that is the SUM over queries; return the mean":
            F.cross_entropy(logits / temperature, target, reduction="sum").item(),
    }


@exercise_check("InfoNCE")
def check_info_nce(fn):
    """Check ``fn(query, positive_key, negative_keys, temperature)`` against :func:`~crl_helpers.losses.info_nce`.

    ``query`` and ``positive_key`` are ``(N, d)``, ``negative_keys`` ``(M, d)`` shared by every
    query; cosine similarities, mean over the N queries. Works for a loop or a vectorised version.
    """
    g = torch.Generator().manual_seed(404)
    for n, m, d, temperature in ((4, 6, 8, 0.5), (3, 5, 4, 0.1), (6, 10, 16, 1.0)):
        q, k, negatives = (torch.randn(rows, d, generator=g, dtype=torch.float64) for rows in (n, n, m))
        want = info_nce(q, k, negatives, temperature).item()
        got = _scalar(fn(q.clone(), k.clone(), negatives.clone(), temperature), "your function")
        if not _close(got, want):
            hint = _diagnose(got, _info_nce_slips(q, k, negatives, temperature))
            raise AssertionError(hint or f"got {got:.5f}, expected {want:.5f} (N={n}, M={m}, temperature="
                                         f"{temperature}); check the softmax: positive logit first, target 0")
    return "matches crl_helpers.losses.info_nce on 3 random batches"


# -------------------------------------------------------------------- NT-Xent
def _nt_xent_slips(z1, z2, temperature) -> dict[str, float]:
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature  # (2N, 2N)
    targets = torch.cat([torch.arange(n) + n, torch.arange(n)])
    zn1, zn2 = z[:n], z[n:]
    return {
        "the self-similarity is still in the denominator: mask the diagonal with -inf":
            F.cross_entropy(logits, targets).item(),
        "only the other view's embeddings are candidates: NT-Xent uses all 2N-1 other views (own side too)":
            0.5 * (info_nce(zn1, zn2, temperature=temperature) + info_nce(zn2, zn1, temperature=temperature)).item(),
        "only the first N anchors count: average over all 2N views":
            F.cross_entropy(logits.fill_diagonal_(float("-inf"))[:n], targets[:n]).item(),
        "the temperature is missing: divide the cosine similarities by it":
            nt_xent(z1, z2, 1.0).item(),
    }


@exercise_check("NT-Xent")
def check_nt_xent(fn):
    """Check ``fn(z1, z2, temperature)`` (views ``(N, d)`` each) against :func:`~crl_helpers.losses.nt_xent`."""
    g = torch.Generator().manual_seed(2020)
    for n, d, temperature in ((4, 8, 0.5), (5, 3, 0.2), (8, 16, 0.07)):
        z1, z2 = (torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(2))
        want = nt_xent(z1, z2, temperature).item()
        got = _scalar(fn(z1.clone(), z2.clone(), temperature), "your function")
        if not _close(got, want):
            hint = _diagnose(got, _nt_xent_slips(z1, z2, temperature))
            raise AssertionError(hint or f"got {got:.5f}, expected {want:.5f} (N={n}, temperature={temperature}); "
                                         "the partner of view i is i+N (and of i+N is i)")
    return "matches crl_helpers.losses.nt_xent on 3 random batches"


# ---------------------------------------------------------------- log-sum-exp
@exercise_check("stable log-sum-exp")
def check_logsumexp(fn):
    """Check ``fn(logits)`` = ``log(sum(exp(logits), dim=-1))`` for ``(N, K)`` logits, stable for huge values.

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
        want = torch.logsumexp(logits, dim=-1)
        assert out.shape == want.shape, (f"got shape {tuple(out.shape)} for logits {tuple(logits.shape)}; "
                                         f"reduce over the last dimension only, giving {tuple(want.shape)}")
        if not torch.isfinite(out).all():
            raise AssertionError(f"got {out.tolist()} for logits with max |value| {logits.abs().max():.0f}: "
                                 "subtract each row's max before exp, then add it back")
        if not torch.allclose(out, want, rtol=1e-5, atol=1e-4):
            raise AssertionError(f"got {out.tolist()}, expected {want.tolist()}; log(sum(exp(x - m))) + m, "
                                 "with m the max of each row")
    return "matches torch.logsumexp, even at |logits| = 1000"


# ------------------------------------------------------------------ alignment
@exercise_check("alignment")
def check_alignment(fn):
    """Check ``fn(z1, z2)`` = ``E_i ||z1_i - z2_i||^2`` on normalised rows (Wang & Isola 2020, alpha=2)."""
    g = torch.Generator().manual_seed(2)
    for n, d in ((5, 3), (8, 16)):
        z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
        want = alignment(z1, z2)
        got = _scalar(fn(z1.clone(), z2.clone()), "your function")
        if not _close(got, want):
            unnorm = (z1 - z2).pow(2).sum(1).mean().item()
            no_square = (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).norm(dim=1).mean().item()
            hint = _diagnose(got, {
                "normalise z1 and z2 to unit length first (alignment lives on the sphere)": unnorm,
                "square the distances (alpha = 2)": no_square,
            })
            raise AssertionError(hint or f"got {got:.5f}, expected {want:.5f}; mean over pairs of the squared "
                                         "distance between the unit vectors")
    return "matches crl_helpers.metrics.alignment"
