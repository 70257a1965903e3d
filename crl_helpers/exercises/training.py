"""Exercises of notebook 05 (training): the learning-rate schedule, one SimCLR step, and the uniformity
collapse check. Each checker compares with a reference of its own: a closed form or a float64 loop.

Example:
    >>> import math, numpy as np
    >>> def schedule(base, epochs, steps_per_epoch, warmup_epochs):
    ...     total, warm = epochs * steps_per_epoch, round(warmup_epochs * steps_per_epoch)
    ...     return [base * (s + 1) / warm if s < warm else
    ...             0.5 * base * (1 + math.cos(math.pi * (s - warm) / (total - warm))) for s in range(total)]
    >>> ok = check_cosine_schedule(schedule)
    [PASSED] cosine schedule: matches the closed form (warm-up and decay)
"""
from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crl_helpers.exercises._check import exercise_check

__all__ = ["check_cosine_schedule", "check_simclr_step", "check_uniformity"]


def _as_array(out, what: str) -> np.ndarray:
    assert out is not None, f"{what} returned None; return one value per step (a list, array or tensor)"
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().numpy()
    return np.asarray(out, dtype=np.float64).reshape(-1)


# ----------------------------------------------------------------------------------------- the schedule
def _schedule_reference(base: float, epochs: int, steps_per_epoch: int, warmup_epochs: float,
                        periods: float = 0.5) -> np.ndarray:
    """The closed form, one step at a time: linear warm-up over W steps, then ``periods`` of a cosine
    from ``base`` (0.5 = half a period, down to 0; 1.0 = the slip of a full period, back up to base)."""
    total, warm = epochs * steps_per_epoch, int(round(warmup_epochs * steps_per_epoch))
    return np.array([base * (s + 1) / warm if s < warm else
                     0.5 * base * (1 + math.cos(2 * math.pi * periods * (s - warm) / (total - warm)))
                     for s in range(total)], dtype=np.float64)


@exercise_check("cosine schedule")
def check_cosine_schedule(fn):
    """Check ``fn(base, epochs, steps_per_epoch, warmup_epochs)`` -> per-step learning rates.

    The reference is the closed form, written here step by step: with ``W = round(warmup_epochs *
    steps_per_epoch)`` warm-up steps and ``T = epochs * steps_per_epoch`` steps in all, step
    ``s < W`` gets ``base * (s + 1) / W``; step ``s >= W`` gets ``0.5 * base * (1 + cos(pi * (s - W) / (T - W)))``.
    """
    for base, epochs, steps, warmup in ((1.0, 4, 5, 1.0), (0.3, 10, 3, 2.0), (2e-3, 3, 7, 0.0)):
        want = _schedule_reference(base, epochs, steps, warmup)
        got = _as_array(fn(base, epochs, steps, warmup), "your function")
        assert got.shape == want.shape, (f"got {got.size} values for epochs={epochs}, steps_per_epoch={steps}; "
                                         f"return one per step: {want.size}")
        if np.allclose(got, want, rtol=1e-6, atol=1e-9 * base):
            continue
        w = int(round(warmup * steps))
        if w and np.allclose(got[w:], want[w:], rtol=1e-6) and not np.allclose(got[:w], want[:w], rtol=1e-6):
            if np.allclose(got[:w], base * np.arange(w) / w, rtol=1e-6, atol=1e-12):
                raise AssertionError(f"the warm-up starts at 0: step s < {w} gets base * (s + 1) / W, so that the "
                                     "first step already moves the weights")
            raise AssertionError(f"the decay is right but the warm-up is not: step s < {w} should be "
                                 f"base * (s + 1) / W, got {np.round(got[:w], 4).tolist()} for "
                                 f"{np.round(want[:w], 4).tolist()}")
        if np.allclose(got, _schedule_reference(base, epochs, steps, warmup, periods=1.0), rtol=1e-6):
            raise AssertionError(f"the schedule ends at {got[-1]:.4g}; after the warm-up it should decay "
                                 f"from base={base} to 0 (half a cosine period, not a full one)")
        if w and np.allclose(got[:w], want[:w], rtol=1e-6):
            raise AssertionError("the warm-up is right; the cosine part should start at base right after it "
                                 f"and reach 0 at the end: got {got[w]:.4g} ... {got[-1]:.4g}")
        raise AssertionError(f"for base={base}, epochs={epochs}, steps_per_epoch={steps}, warmup_epochs={warmup}: "
                             f"got {np.round(got[:6], 4).tolist()}..., expected {np.round(want[:6], 4).tolist()}...")
    return "matches the closed form (warm-up and decay)"


# ------------------------------------------------------------------------------------- one SimCLR step
class _TinySimCLR(nn.Module):
    """A model with SimCLRModel's interface, ``model(x) -> (v, z)`` with unit-norm ``z``, and no BatchNorm:
    its LayerNorm normalises each image alone, so one forward pass over ``[x1; x2]`` and two passes give
    the same numbers (BatchNorm would mix the views of a batch, and the two forms would differ)."""

    def __init__(self, in_features: int, feature_dim: int = 12, out_dim: int = 6) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(in_features, feature_dim), nn.LayerNorm(feature_dim),
                                     nn.ReLU())
        self.head = nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.ReLU(), nn.Linear(feature_dim, out_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.encoder(x)  # (B, feature_dim)
        z = F.normalize(self.head(v), dim=1)  # (B, out_dim) on the unit sphere
        return v, z


def _nt_xent_loop(z1: torch.Tensor, z2: torch.Tensor, temperature: float, self_mask: bool = True,
                  reduce: str = "mean") -> torch.Tensor:
    """NT-Xent (Chen et al. 2020, eq. 1) in float64, one anchor at a time: anchor a of the 2N views
    ``[z1; z2]`` has partner ``(a + N) mod 2N`` and is scored against every other view (``self_mask``;
    without it, against itself too: the slip)."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)  # (2N, d)
    n2 = len(z)
    terms = []
    for a in range(n2):
        candidates = [b for b in range(n2) if b != a or not self_mask]
        denominator = sum(torch.exp(z[a] @ z[b] / temperature) for b in candidates)
        terms.append(-z[a] @ z[(a + n2 // 2) % n2] / temperature + torch.log(denominator))
    total = torch.stack(terms).sum()
    return total / n2 if reduce == "mean" else total


#: The reference's slips, each a (description, keyword arguments of _reference_steps) pair, with the hint shown.
_STEP_SLIPS = {
    "no zero_grad": (dict(zero_grad=False),
                     "the gradients accumulate from one step to the next: call optimizer.zero_grad() before "
                     "loss.backward() in every step"),
    "temperature 0.5": (dict(temperature=0.5),
                        "the temperature is ignored (this is the default 0.5): pass temperature to the loss"),
    "temperature 1": (dict(temperature=1.0),
                      "the temperature is missing: divide the cosine similarities by temperature"),
    "no self-mask": (dict(self_mask=False),
                     "each view is counted among its own candidates: leave the similarity of a view with itself "
                     "out of the denominator (mask the diagonal, as nt_xent does)"),
    "sum": (dict(reduce="sum"),
            "the loss is the SUM over the 2N views: NT-Xent averages over them (mean), so that the step size "
            "does not grow with the batch"),
}


def _reference_steps(model: nn.Module, batches: list, lr: float, temperature: float, zero_grad: bool = True,
                     self_mask: bool = True, reduce: str = "mean") -> tuple[list, list]:
    """Plain SGD steps written out, ``p <- p - lr * grad``; returns the parameters after each step and the
    loss of each step (before its update)."""
    model = copy.deepcopy(model)
    params, trajectory, losses = list(model.parameters()), [], []
    for x1, x2 in batches:
        if zero_grad:
            for p in params:
                p.grad = None
        _, z1 = model(x1)  # (B, d)
        _, z2 = model(x2)  # (B, d)
        loss = _nt_xent_loop(z1, z2, temperature, self_mask, reduce)
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
        trajectory.append([p.detach().clone() for p in params])
        losses.append(float(loss.detach()))
    return trajectory, losses


def _same(a: list, b: list) -> bool:
    return all(torch.allclose(p.double(), q.double(), rtol=1e-5, atol=1e-7) for p, q in zip(a, b))


@exercise_check("SimCLR step")
def check_simclr_step(fn):
    """Check ``fn(model, x1, x2, optimizer, temperature) -> loss``: one training step of SimCLR.

    ``model(x)`` returns ``(v, z)`` as :class:`crl_helpers.models.SimCLRModel` does. The checker
    runs three steps of ``fn`` with plain SGD on a small float64 model (no BatchNorm, so one forward
    pass over ``[x1; x2]`` and two passes are equally right) and compares the parameters after
    every step with its own: NT-Xent written as a float64 loop over the 2N anchors, gradients
    cleared, backward, ``p <- p - lr * grad``. The returned loss must be the step's loss, as a tensor.
    It recognises: no ``zero_grad``, no ``optimizer.step()``, the temperature left out, a view
    counted among its own candidates, and a sum instead of a mean.
    """
    temperature, lr, batch_size, shape = 0.2, 0.5, 5, (3, 4, 4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, batch_size, *shape, generator=g, dtype=torch.float64)  # 3 batches of images
    batches = [(xi + 0.1 * torch.randn(xi.shape, generator=g, dtype=torch.float64),
                xi + 0.1 * torch.randn(xi.shape, generator=g, dtype=torch.float64)) for xi in x]
    torch.manual_seed(1)
    start = _TinySimCLR(math.prod(shape)).double()
    want, want_losses = _reference_steps(start, batches, lr, temperature)

    model = copy.deepcopy(start)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    initial = [p.detach().clone() for p in model.parameters()]
    got, got_losses = [], []
    for x1, x2 in batches:
        loss = fn(model, x1.clone(), x2.clone(), optimizer, temperature)
        assert loss is not None, "your step returned None; return the loss (a tensor)"
        got.append([p.detach().clone() for p in model.parameters()])
        got_losses.append(loss)
    assert not _same(got[0], initial), ("the parameters did not change: call optimizer.step() after loss.backward() "
                                        "(and optimizer.zero_grad() before loss.backward(), not between it and step)")
    if not all(_same(a, b) for a, b in zip(got, want)):
        for name, (kwargs, hint) in _STEP_SLIPS.items():
            slip, _ = _reference_steps(start, batches, lr, **{"temperature": temperature, **kwargs})
            if all(_same(a, b) for a, b in zip(got, slip)):
                raise AssertionError(hint)
        step = next(i for i, (a, b) in enumerate(zip(got, want)) if not _same(a, b))
        gap = max(float((p.double() - q).abs().max()) for p, q in zip(got[step], want[step]))
        hint = (" (step 1 was right: does something carry over between steps?)" if step else
                ": forward both views through the model, z1 and z2 into NT-Xent, backward, step")
        raise AssertionError(f"after step {step + 1} the parameters differ from the reference by up to {gap:.3g}{hint}")
    for step, (loss, want_loss) in enumerate(zip(got_losses, want_losses)):
        assert isinstance(loss, torch.Tensor), (f"your step returned a {type(loss).__name__}; return the loss as a "
                                                "tensor (loss, or loss.detach()), not loss.item()")
        assert loss.numel() == 1, f"your step returned a tensor of shape {tuple(loss.shape)}; return the scalar loss"
        assert math.isclose(float(loss.detach()), want_loss, rel_tol=1e-5, abs_tol=1e-7), (
            f"the parameters are right but step {step + 1} returned {float(loss.detach()):.5f}, not its loss "
            f"{want_loss:.5f}: return the loss computed in this step, before the update")
    return "matches the reference step (NT-Xent as a float64 loop, zero_grad, backward, SGD update)"


# ---------------------------------------------------------------------------------------- uniformity
def _uniformity_loop(z: torch.Tensor, normalise: bool = True, pairs: str = "i<j", power: int = 2,
                     log: bool = True) -> float:
    """``log mean_{i<j} exp(-2 ||z_i - z_j||^2)`` (Wang & Isola 2020, t = 2) as a float64 double loop;
    the keyword arguments switch on one slip each (no normalisation, all pairs i, j, distances not
    squared, no log)."""
    z = z.double()
    if normalise:
        z = z / z.norm(dim=1, keepdim=True)
    n = len(z)
    index = itertools.combinations(range(n), 2) if pairs == "i<j" else itertools.product(range(n), repeat=2)
    values = [math.exp(-2 * float((z[i] - z[j]).norm()) ** power) for i, j in index]
    mean = sum(values) / len(values)
    return math.log(mean) if log else mean


@exercise_check("uniformity")
def check_uniformity(fn):
    """Check ``fn(z)`` = ``log E_{i<j} exp(-2 ||z_i - z_j||^2)`` on normalised rows (Wang & Isola 2020, t=2).

    The reference is a float64 double loop over the pairs i < j, written here.
    """
    g = torch.Generator().manual_seed(5)
    cases = [torch.randn(6, 3, generator=g), torch.randn(20, 8, generator=g) * 3, torch.ones(4, 5)]
    for z in cases:
        want = _uniformity_loop(z)
        out = fn(z.clone())
        assert out is not None, "your function returned None; return the uniformity as a float"
        got = float(out.detach()) if isinstance(out, torch.Tensor) else float(out)
        if math.isfinite(got) and abs(got - want) <= 1e-4 * max(1.0, abs(want)):
            continue
        slips = {
            "take the log of the mean (uniformity is a log-mean-exp)": dict(log=False),
            "leave out the pairs i = j (a point with itself): average over i < j only": dict(pairs="all"),
            "normalise the rows of z to unit length first": dict(normalise=False),
            "square the distances: exp(-2 ||z_i - z_j||^2)": dict(power=1),
        }
        for hint, kwargs in slips.items():
            value = _uniformity_loop(z, **kwargs)
            if math.isfinite(value) and abs(got - value) <= 1e-4 * max(1.0, abs(value)):
                raise AssertionError(hint)
        raise AssertionError(f"got {got:.5f}, expected {want:.5f} for z of shape {tuple(z.shape)}")
    return "matches the float64 loop over pairs i < j (including a collapsed batch: 0)"
