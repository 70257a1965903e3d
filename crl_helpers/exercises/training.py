"""Exercises of notebook 05 (training): the learning-rate schedule, one SimCLR step, and the uniformity
collapse check. Each checker compares with a reference of its own: a closed form or a float64 loop.

Example:
    >>> import math, numpy as np
    >>> def schedule(base, epochs, steps_per_epoch, warmup_epochs):
    ...     total, warm = epochs * steps_per_epoch, round(warmup_epochs * steps_per_epoch)
    ...     return [base * (s + 1) / warm if s < warm else
    ...             0.5 * base * (1 + math.cos(math.pi * (s - warm) / (total - warm))) for s in range(total)]
    >>> ok = check_cosine_schedule(schedule)
    [PASSED] cosine schedule: matches the closed form (warm-up and decay) on 3 fresh cases
"""
from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crl_helpers.exercises._check import as_number, draw, exercise_check, expect, fresh_generator

__all__ = ["check_cosine_schedule", "check_simclr_step", "check_uniformity"]


def _as_array(out, what: str) -> np.ndarray:
    expect(out is not None, f"{what} returned None; return one value per step (a list, array or tensor)")
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().numpy()
    try:
        return np.asarray(out, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise AssertionError(f"{what} returned a {type(out).__name__} that is not a list of numbers; return one "
                             f"value per step (a list, array or tensor)") from None


# ----------------------------------------------------------------------------------------- the schedule
def _schedule_reference(base: float, epochs: int, steps_per_epoch: int, warmup_epochs: float,
                        periods: float = 0.5, warm_round=round, decay_offset: int = 0,
                        warm_start: int = 1) -> np.ndarray:
    """The closed form, one step at a time: linear warm-up over W steps, then ``periods`` of a cosine
    from ``base``. The keyword arguments switch on one slip each: a full period (1.0), W rounded another way
    (``int``, ``math.ceil``), a decay over T - W - 1 steps (``decay_offset=1``), a warm-up from 0 (``warm_start=0``)."""
    total, warm = epochs * steps_per_epoch, int(warm_round(warmup_epochs * steps_per_epoch))
    span = total - warm - decay_offset
    return np.array([base * (s + warm_start) / warm if s < warm else
                     0.5 * base * (1 + math.cos(2 * math.pi * periods * (s - warm) / span))
                     for s in range(total)], dtype=np.float64)


_SCHEDULE_SLIPS = [
    (dict(warm_start=0), "the warm-up starts at 0: step s < W gets base * (s + 1) / W, so that the first step "
                         "already moves the weights"),
    (dict(periods=1.0), "after the warm-up the rate goes down to 0 and back up to base: that is a full cosine "
                        "period; use half a period, cos(pi * (s - W) / (T - W))"),
    (dict(decay_offset=1), "the cosine runs over T - W - 1 steps and reaches 0 at the last step; over T - W steps "
                           "(cos(pi * (s - W) / (T - W))) the last step sits just above 0"),
    (dict(warm_round=int), "W is rounded down (int); W = round(warmup_epochs * steps_per_epoch)"),
    (dict(warm_round=math.ceil), "W is rounded up (ceil); W = round(warmup_epochs * steps_per_epoch)"),
]


def _close_schedule(got: np.ndarray, want: np.ndarray, base: float) -> bool:
    # float32 arithmetic is fine: a relative 1e-5 and an absolute 1e-6 of the peak rate
    return got.shape == want.shape and bool(np.allclose(got, want, rtol=1e-5, atol=1e-6 * base))


@exercise_check("cosine schedule")
def check_cosine_schedule(fn):
    """Check ``fn(base, epochs, steps_per_epoch, warmup_epochs)`` -> per-step learning rates.

    The reference is the closed form, written here step by step: with ``W = round(warmup_epochs *
    steps_per_epoch)`` warm-up steps and ``T = epochs * steps_per_epoch`` steps in all, step
    ``s < W`` gets ``base * (s + 1) / W``; step ``s >= W`` gets ``0.5 * base * (1 + cos(pi * (s - W) / (T - W)))``.
    Cases are drawn anew, with ``warmup_epochs * steps_per_epoch`` just above and just below a whole number
    (so that round, int and ceil differ) and no warm-up; float32 answers pass (relative 1e-5).
    """
    g = fresh_generator()
    cases = []
    for low, high in ((0.15, 0.4), (0.6, 0.85)):
        steps = draw(g, 4, 9)
        fraction = low + (high - low) * float(torch.rand(1, generator=g))
        warmup = (draw(g, 1, 2) * steps + fraction) / steps
        cases.append((round(float(torch.empty(1).uniform_(0.01, 3.0, generator=g)), 4), draw(g, 4, 8), steps, warmup))
    cases.append((round(float(torch.empty(1).uniform_(1e-3, 1.0, generator=g)), 5), draw(g, 2, 5), draw(g, 3, 7), 0.0))
    for base, epochs, steps, warmup in cases:
        want = _schedule_reference(base, epochs, steps, warmup)
        got = _as_array(fn(base, epochs, steps, warmup), "your function")
        expect(got.shape == want.shape, f"got {got.size} values for epochs={epochs}, steps_per_epoch={steps}; "
                                        f"return one per step: {want.size}")
        if _close_schedule(got, want, base):
            continue
        where = f"for base={base}, epochs={epochs}, steps_per_epoch={steps}, warmup_epochs={warmup:.4f}: "
        for kwargs, hint in _SCHEDULE_SLIPS:
            if _close_schedule(got, _schedule_reference(base, epochs, steps, warmup, **kwargs), base):
                raise AssertionError(where + hint)
        w = int(round(warmup * steps))
        if w and _close_schedule(got[w:], want[w:], base):
            raise AssertionError(where + f"the decay is right but the warm-up is not: step s < W = {w} should be "
                                         f"base * (s + 1) / W, got {np.round(got[:w], 4).tolist()} for "
                                         f"{np.round(want[:w], 4).tolist()}")
        if w and _close_schedule(got[:w], want[:w], base):
            raise AssertionError(where + f"the warm-up is right, the decay is not: from step W = {w} on, "
                                         f"0.5 * base * (1 + cos(pi * (s - W) / (T - W))); got "
                                         f"{np.round(got[w:w + 4], 4).tolist()}..., expected "
                                         f"{np.round(want[w:w + 4], 4).tolist()}...")
        raise AssertionError(where + f"got {np.round(got[:6], 4).tolist()}..., expected "
                                     f"{np.round(want[:6], 4).tolist()}...")
    return "matches the closed form (warm-up and decay) on 3 fresh cases"


# ------------------------------------------------------------------------------------- one SimCLR step
class _TinySimCLR(nn.Module):
    """A model with SimCLRModel's interface, ``model(x) -> (v, z)`` with unit-norm ``z``, and a BatchNorm in
    the encoder as SimCLR's ResNet has: a step in eval mode, or one that leaves the model in eval mode, shows."""

    def __init__(self, in_features: int, feature_dim: int = 12, out_dim: int = 6) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(in_features, feature_dim), nn.BatchNorm1d(feature_dim),
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
        scores = z @ z[a] / temperature  # (2N,) anchor a against every view
        candidates = torch.arange(n2) != a if self_mask else torch.ones(n2, dtype=torch.bool)
        terms.append(-scores[(a + n2 // 2) % n2] + torch.log(torch.exp(scores[candidates]).sum()))
    total = torch.stack(terms).sum()
    return total / n2 if reduce == "mean" else total


#: The reference's slips, each (keyword arguments of _reference_steps, the hint shown).
_STEP_SLIPS = [
    (dict(zero_grad=False), "the gradients accumulate from one step to the next: call optimizer.zero_grad() before "
                            "loss.backward() in every step"),
    (dict(temperature=0.5), "the temperature is ignored (this is the default 0.5): pass temperature to the loss"),
    (dict(temperature=1.0), "the temperature is missing: divide the cosine similarities by temperature"),
    (dict(self_mask=False), "each view is counted among its own candidates: leave the similarity of a view with "
                            "itself out of the denominator (mask the diagonal, as nt_xent does)"),
    (dict(reduce="sum"), "the loss is the SUM over the 2N views: NT-Xent averages over them (mean), so that the step "
                         "size does not grow with the batch"),
    (dict(train=False), "the step ran with the model in eval mode (BatchNorm used its running statistics instead of "
                        "the batch's); a training step runs in train mode: no model.eval() in it"),
]


def _reference_steps(model: nn.Module, batches: list, lr: float, temperature: float, zero_grad: bool = True,
                     self_mask: bool = True, reduce: str = "mean", one_pass: bool = False,
                     train: bool = True) -> tuple[list, list]:
    """Plain SGD steps written out, ``p <- p - lr * grad``, with the views through the model in two passes or
    one (``one_pass``: ``model(cat([x1, x2]))``, BatchNorm then sees both views at once); returns the
    parameters after each step and the loss of each step (before its update)."""
    model = copy.deepcopy(model).train(train)
    params, trajectory, losses = list(model.parameters()), [], []
    for x1, x2 in batches:
        if zero_grad:
            for p in params:
                p.grad = None
        if one_pass:
            z1, z2 = model(torch.cat([x1, x2]))[1].chunk(2)  # (B, d) each
        else:
            (_, z1), (_, z2) = model(x1), model(x2)  # (B, d) each
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
    runs three steps of ``fn`` with plain SGD on a small float64 model with BatchNorm, handed over in
    train mode, with sizes, data, learning rate and temperature drawn anew; it compares the parameters
    after every step with its own: NT-Xent written as a float64 loop over the 2N anchors, gradients
    cleared, backward, ``p <- p - lr * grad``, the views through the model in two passes or in one pass
    over ``[x1; x2]`` (both are right; BatchNorm makes them differ). The model must still be in train mode
    afterwards, and the returned value must be the step's loss as a tensor (``loss.detach()`` or ``loss``).
    It recognises: no ``zero_grad``, no ``optimizer.step()``, the temperature left out, a view
    counted among its own candidates, a sum instead of a mean, and a step in eval mode.
    """
    g = fresh_generator()
    batch_size, shape = draw(g, 4, 7), (3, draw(g, 3, 5), draw(g, 3, 5))
    temperature = round(float(torch.empty(1).uniform_(0.1, 0.4, generator=g)), 3)
    lr = round(float(torch.empty(1).uniform_(0.2, 0.8, generator=g)), 3)
    x = torch.rand(3, batch_size, *shape, generator=g, dtype=torch.float64)  # 3 batches of images
    batches = [(xi + 0.1 * torch.randn(xi.shape, generator=g, dtype=torch.float64),
                xi + 0.1 * torch.randn(xi.shape, generator=g, dtype=torch.float64)) for xi in x]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(draw(g, 0, 2 ** 30))
        start = _TinySimCLR(math.prod(shape)).double().train()

    model = copy.deepcopy(start)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    initial = [p.detach().clone() for p in model.parameters()]
    got, got_losses = [], []
    for x1, x2 in batches:
        loss = fn(model, x1.clone(), x2.clone(), optimizer, temperature)
        expect(loss is not None, "your step returned None; return the loss (a tensor)")
        got.append([p.detach().clone() for p in model.parameters()])
        got_losses.append(loss)
    expect(not _same(got[0], initial), "the parameters did not change: call optimizer.step() after loss.backward() "
                                       "(and optimizer.zero_grad() before loss.backward(), not between it and step)")
    expect(model.training, "after your step the model is in eval mode; a training step leaves it in train mode "
                           "(no model.eval() in it, or model.train() before returning)")
    forms = {one_pass: _reference_steps(start, batches, lr, temperature, one_pass=one_pass) for one_pass in (False, True)}
    matched = next((one_pass for one_pass, (want, _) in forms.items()
                    if all(_same(a, b) for a, b in zip(got, want))), None)  # two passes and one pass are both right
    if matched is None:
        for kwargs, hint in _STEP_SLIPS:
            for one_pass in (False, True):
                slip, _ = _reference_steps(start, batches, lr, **{"temperature": temperature, "one_pass": one_pass,
                                                                   **kwargs})
                if all(_same(a, b) for a, b in zip(got, slip)):
                    raise AssertionError(hint)
        want = forms[False][0]
        step = next(i for i, (a, b) in enumerate(zip(got, want)) if not _same(a, b))
        gap = max(float((p.double() - q).abs().max()) for p, q in zip(got[step], want[step]))
        hint = (" (step 1 was right: does something carry over between steps?)" if step else
                ": forward both views through the model, z1 and z2 into NT-Xent, backward, step")
        raise AssertionError(f"after step {step + 1} the parameters differ from the reference by up to {gap:.3g}{hint}")
    want_losses = forms[matched][1]
    for step, (loss, want_loss) in enumerate(zip(got_losses, want_losses)):
        expect(isinstance(loss, torch.Tensor), (f"your step returned a {type(loss).__name__}; return the loss as a "
                                                "tensor (loss.detach(), or loss), not loss.item()"))
        expect(loss.numel() == 1, f"your step returned a tensor of shape {tuple(loss.shape)}; return the scalar loss")
        expect(math.isclose(float(loss.detach()), want_loss, rel_tol=1e-5, abs_tol=1e-7), (
            f"the parameters are right but step {step + 1} returned {float(loss.detach()):.5f}, not its loss "
            f"{want_loss:.5f}: return the loss computed in this step, before the update"))
    return ("matches the reference step (NT-Xent as a float64 loop, zero_grad, backward, SGD update; "
            f"{'one pass over [x1; x2]' if matched else 'two passes'}), model left in train mode")


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

    The reference is a float64 double loop over the pairs i < j, written here; batches drawn anew,
    and a collapsed one (every row the same direction: 0).
    """
    g = fresh_generator()
    cases = [torch.randn(draw(g, 4, 8), draw(g, 2, 4), generator=g),
             torch.randn(draw(g, 12, 24), draw(g, 5, 10), generator=g) * 3,
             torch.ones(draw(g, 3, 6), 5) * torch.rand(1, generator=g)]
    for z in cases:
        want = _uniformity_loop(z)
        got = as_number(fn(z.clone()), "your function")
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
    return "matches the float64 loop over pairs i < j on fresh batches (including a collapsed one: 0)"
