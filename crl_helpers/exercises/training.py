"""Exercises of notebook 05 (training): the learning-rate schedule and the uniformity collapse check.

Example:
    >>> from crl_helpers.train import cosine_schedule
    >>> ok = check_cosine_schedule(cosine_schedule)
    [PASSED] cosine schedule: matches crl_helpers.train.cosine_schedule (warm-up and decay)
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from crl_helpers.exercises._check import exercise_check
from crl_helpers.metrics import uniformity
from crl_helpers.train import cosine_schedule

__all__ = ["check_cosine_schedule", "check_uniformity"]


def _as_array(out, what: str) -> np.ndarray:
    assert out is not None, f"{what} returned None; return one value per step (a list, array or tensor)"
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().numpy()
    return np.asarray(out, dtype=np.float64).reshape(-1)


@exercise_check("cosine schedule")
def check_cosine_schedule(fn):
    """Check ``fn(base, epochs, steps_per_epoch, warmup_epochs)`` -> per-step learning rates.

    The reference (:func:`crl_helpers.train.cosine_schedule`, final value 0): with
    ``W = round(warmup_epochs * steps_per_epoch)`` warm-up steps and ``T = epochs * steps_per_epoch``
    steps in all, step ``s < W`` gets ``base * (s + 1) / W``; step ``s >= W`` gets
    ``0.5 * base * (1 + cos(pi * (s - W) / (T - W)))``.
    """
    for base, epochs, steps, warmup in ((1.0, 4, 5, 1.0), (0.3, 10, 3, 2.0), (2e-3, 3, 7, 0.0)):
        want = cosine_schedule(base, epochs, steps, warmup)
        got = _as_array(fn(base, epochs, steps, warmup), "your function")
        assert got.shape == want.shape, (f"got {got.size} values for epochs={epochs}, steps_per_epoch={steps}; "
                                         f"return one per step: {want.size}")
        if np.allclose(got, want, rtol=1e-6, atol=1e-9 * base):
            continue
        w = int(round(warmup * steps))
        if w and np.allclose(got[w:], want[w:], rtol=1e-6) and not np.allclose(got[:w], want[:w], rtol=1e-6):
            raise AssertionError(f"the decay is right but the warm-up is not: step s < {w} should be "
                                 f"base * (s + 1) / W, got {np.round(got[:w], 4).tolist()} for "
                                 f"{np.round(want[:w], 4).tolist()}")
        if w and np.allclose(got[:w], want[:w], rtol=1e-6):
            raise AssertionError("the warm-up is right; the cosine part should start at base right after it "
                                 f"and reach 0 at the end: got {got[w]:.4g} ... {got[-1]:.4g}")
        if got[-1] > 0.5 * base:
            raise AssertionError(f"the schedule ends at {got[-1]:.4g}; after the warm-up it should decay "
                                 f"from base={base} to 0 (half a cosine period, not a full one)")
        raise AssertionError(f"for base={base}, epochs={epochs}, steps_per_epoch={steps}, warmup_epochs={warmup}: "
                             f"got {np.round(got[:6], 4).tolist()}..., expected {np.round(want[:6], 4).tolist()}...")
    return "matches crl_helpers.train.cosine_schedule (warm-up and decay)"


@exercise_check("uniformity")
def check_uniformity(fn):
    """Check ``fn(z)`` = ``log E_{i<j} exp(-2 ||z_i - z_j||^2)`` on normalised rows (Wang & Isola 2020, t=2)."""
    g = torch.Generator().manual_seed(5)
    cases = [torch.randn(6, 3, generator=g), torch.randn(20, 8, generator=g) * 3, torch.ones(4, 5)]
    for z in cases:
        want = uniformity(z)
        out = fn(z.clone())
        assert out is not None, "your function returned None; return the uniformity as a float"
        got = float(out.detach()) if isinstance(out, torch.Tensor) else float(out)
        if math.isfinite(got) and abs(got - want) <= 1e-4 * max(1.0, abs(want)):
            continue
        zn = F.normalize(z, dim=1)
        sq_all = torch.cdist(zn, zn).pow(2)  # (N, N), diagonal included
        i, j = torch.triu_indices(len(z), len(z), offset=1)
        raw = torch.pdist(z).pow(2)
        slips = {
            "take the log of the mean (uniformity is a log-mean-exp)": torch.exp(-2 * sq_all[i, j]).mean().item(),
            "leave out the pairs i = j (a point with itself): average over i < j only":
                torch.exp(-2 * sq_all).mean().log().item(),
            "normalise the rows of z to unit length first": torch.exp(-2 * raw).mean().log().item(),
            "square the distances: exp(-2 ||z_i - z_j||^2)": torch.exp(-2 * sq_all[i, j].sqrt()).mean().log().item(),
        }
        for hint, value in slips.items():
            if math.isfinite(value) and abs(got - value) <= 1e-4 * max(1.0, abs(value)):
                raise AssertionError(hint)
        raise AssertionError(f"got {got:.5f}, expected {want:.5f} for z of shape {tuple(z.shape)}")
    return "matches crl_helpers.metrics.uniformity (including a collapsed batch: 0)"
