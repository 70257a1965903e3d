"""Exercises of notebook 03 (transform heads): L2-normalisation, the MLP head ``z = h(v) / ||h(v)||``
and a contextualization head (a GRU run over a sequence of representations).

SimCLR (Chen et al. 2020, section 4.2) puts a small MLP ``h`` between the encoder's features
``v`` and the loss, and compares the embeddings ``z`` by cosine similarity, i.e. after
projecting them onto the unit hypersphere. CPC (van den Oord et al. 2018) aggregates a
sequence ``v_1 .. v_T`` into one context ``c`` with a GRU: the contextualization head of
Le-Khac et al. (2020). Each checker compares with a float64 reference written inside it.

Example:
    >>> ok = check_normalize(lambda z: torch.nn.functional.normalize(z, dim=1))
    [PASSED] normalize: unit rows, same directions, zero rows stay finite, input untouched
"""
from __future__ import annotations

import math

import torch
from torch import nn

from crl_helpers.exercises._check import draw, exercise_check, expect, fresh_generator

__all__ = ["check_contextualize", "check_normalize", "check_projection_head"]
_expect = expect


@exercise_check("normalize")
def check_normalize(fn) -> str:
    """Check ``fn(z) -> z / ||z||`` row by row for ``z (N, d)``, finite on an all-zero row, ``z`` not modified.

    The oracle divides each row by its norm in plain float64 Python; sizes and row lengths are drawn
    anew. Any floating dtype may come back (float32 inputs; a float64 computation inside is fine).

    Example:
        >>> bad = check_normalize(lambda z: z / z.norm(dim=0, keepdim=True))  # doctest: +ELLIPSIS
        [NOT YET] normalize: row 0 of your output has norm ... each ROW (one embedding) must have norm 1: normalise along dim=1
    """
    g = fresh_generator()
    n, d = draw(g, 4, 9), draw(g, 3, 8)
    z = torch.randn(n, d, generator=g) * torch.exp(2 * torch.randn(n, 1, generator=g))  # (N, d), norms 1e-2 .. 1e2
    original = z.clone()
    out = fn(z)
    _expect(out is not None, "your function returned None; return the normalised tensor")
    _expect(isinstance(out, torch.Tensor) and out.shape == z.shape,
            f"the output must be a tensor of the input's shape {tuple(z.shape)}, got "
            f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    _expect(torch.equal(z, original), "your function changed its input in place; return a new tensor (no /= or div_)")
    _expect(out.is_floating_point(), f"return floating-point values, got {out.dtype}")
    for i, row in enumerate(original.double().tolist()):
        norm = math.sqrt(sum(v * v for v in row))
        got = out[i].double()
        got_norm = float(got.norm())
        _expect(abs(float(got.abs().sum()) - 1) > 1e-4 or abs(got_norm - 1) < 1e-4,
                f"row {i} of your output has absolute values summing to 1 (the L1 norm); divide by the "
                f"Euclidean (L2) norm sqrt(sum of squares), z.norm(dim=1, keepdim=True)")
        _expect(abs(got_norm * norm - 1) > 1e-4 or abs(got_norm - 1) < 1e-4,
                f"row {i} of your output has norm {got_norm:.4f} = 1 / ||z||: you divided by the squared norm; "
                f"divide by the norm itself")
        _expect(abs(got_norm - 1) < 1e-4, f"row {i} of your output has norm {got_norm:.4f}; each ROW (one "
                                          f"embedding) must have norm 1: normalise along dim=1")
        expected = torch.tensor([v / norm for v in row], dtype=torch.float64)
        _expect(torch.allclose(got, expected, atol=1e-5), f"row {i} points in another direction than the input; "
                                                          f"divide the row by its own (L2) norm")
    zero = fn(torch.zeros(2, d))
    _expect(zero is not None and torch.isfinite(torch.as_tensor(zero)).all(),
            "an all-zero row became NaN (0 / 0); divide by max(norm, eps) as F.normalize does")
    return "unit rows, same directions, zero rows stay finite, input untouched"


_NAMES = {"first.weight", "first.bias", "second.weight", "second.bias"}


@exercise_check("projection head", solution="MLPHead")
def check_projection_head(fn) -> str:
    """Check ``fn(in_dim, hidden_dim, out_dim) -> nn.Module``: SimCLR's head, Linear -> ReLU -> Linear -> L2-normalise.

    The two layers are ``self.first = nn.Linear(in_dim, hidden_dim)`` and ``self.second =
    nn.Linear(hidden_dim, out_dim)``, with biases and nothing else in the state dict: the cell below
    loads the package head's weights under exactly those names. Checks, on sizes drawn anew:
    ``(N, in_dim) -> (N, out_dim)``; unit-norm rows; the names; a non-linearity (an affine head maps
    points on a line into one plane, so its outputs have rank <= 2; a ReLU head bends the line
    out of it); gradients reaching every parameter; and the output of the layers in that order,
    recomputed in float64 from the head's own weights.

    Example:
        >>> from crl_helpers.exercises.solutions import reference
        >>> ok = check_projection_head(reference("MLPHead"))
        [PASSED] projection head: first and second, shapes, unit norm, a non-linear 2-layer MLP, gradients flow
    """
    g = fresh_generator()
    in_dim, hidden_dim, out_dim = draw(g, 6, 16), draw(g, 17, 40), draw(g, 6, 12)
    head = fn(in_dim, hidden_dim, out_dim)
    _expect(isinstance(head, nn.Module), f"return an nn.Module (e.g. a subclass with a forward), got {type(head).__name__}")
    names = set(head.state_dict())
    _expect(names == _NAMES, (
        f"the head's state dict holds {sorted(names)}; the cell below loads {sorted(_NAMES)}: define exactly "
        f"self.first = nn.Linear(in_dim, hidden_dim) and self.second = nn.Linear(hidden_dim, out_dim), with biases, "
        f"and no other layer with weights (no BatchNorm, no nn.Sequential)"))
    for layer, shape in (("first", (in_dim, hidden_dim)), ("second", (hidden_dim, out_dim))):
        module = getattr(head, layer, None)
        _expect(isinstance(module, nn.Linear) and (module.in_features, module.out_features) == shape,
                f"self.{layer} must be nn.Linear{shape}, got {module!r:.60}")
    v = torch.randn(16, in_dim, generator=g)  # (N, in_dim)
    head.train()
    z = head(v)
    _expect(isinstance(z, torch.Tensor) and z.shape == (16, out_dim),
            f"head(v) for v of shape (16, {in_dim}) must be (16, {out_dim}), got "
            f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}")
    _expect(z.dtype == v.dtype, f"head(v) is {z.dtype} for a {v.dtype} input; keep the input's dtype")
    norms = z.detach().norm(dim=1)
    off = (norms - 1).abs() > 1e-4  # (16,) rows not on the unit sphere
    if off.any():
        _expect(not bool((z.detach() >= 0).all()), (
            "every entry of z is >= 0 and some rows are all 0: there is a ReLU after the last linear layer; the "
            "last layer has no activation"))
        raise AssertionError(f"rows of z have norms {[round(x, 4) for x in norms[off][:3].tolist()]}...; end the "
                             f"forward with F.normalize(z, dim=1)")
    _expect(z.requires_grad, "z does not require grad, so no gradient can reach the head's weights; "
                             "do not detach or wrap the forward in torch.no_grad()")
    weights = torch.randn(16, out_dim, generator=g)
    (z * weights).sum().backward()
    silent = [name for name, p in head.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    _expect(not silent, f"no gradient reached {silent[:3]}; do not detach or wrap the forward in torch.no_grad()")
    head.eval()
    t = torch.linspace(-3, 3, 60)[:, None]  # (60, 1)
    line = v[0] + t * v[1]  # (60, in_dim): points on a straight line
    with torch.no_grad():
        bent = head(line).double()  # (60, out_dim)
    singular = torch.linalg.svdvals(bent)
    _expect(singular[2] > 1e-3 * singular[0],
            "the head looks affine (points on a line stay in one plane): put a ReLU between the two linear layers")
    with torch.no_grad():
        z_eval = head(v).double()  # (16, out_dim)
    _expect(bool((z_eval < 0).any()), "every entry of z is >= 0: there is a ReLU after the last linear layer, which "
                                      "confines z to one orthant of the sphere; the last layer has no activation")
    expected = _reference_head(head, v)
    _expect(torch.allclose(z_eval, expected, atol=1e-5), (
        "your head's output differs from first -> ReLU -> second -> L2-normalise computed with its own weights; "
        "apply the layers in that order, the ReLU only between the two linear layers"))
    return "first and second, shapes, unit norm, a non-linear 2-layer MLP, gradients flow"


def _reference_head(head: nn.Module, v: torch.Tensor) -> torch.Tensor:
    """The head's forward recomputed in float64 from its own layers' weights: first, ReLU, second, normalise."""

    def affine(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        return x @ layer.weight.detach().double().T + layer.bias.detach().double()

    with torch.no_grad():
        h = affine(head.second, affine(head.first, v.double()).clamp_min(0))  # (N, out_dim)
        return h / h.norm(dim=1, keepdim=True)


def _gru_step(cell: nn.GRUCell, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """One GRU step (Cho et al. 2014, gates in PyTorch's order r, z, n) in float64, from the cell's weights."""
    hidden = cell.hidden_size
    gi = x @ cell.weight_ih.detach().double().T + cell.bias_ih.detach().double()  # (N, 3H)
    gh = h @ cell.weight_hh.detach().double().T + cell.bias_hh.detach().double()  # (N, 3H)
    r = 1 / (1 + torch.exp(-(gi[:, :hidden] + gh[:, :hidden])))  # reset gate
    z = 1 / (1 + torch.exp(-(gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])))  # update gate
    n = torch.tanh(gi[:, 2 * hidden:] + r * gh[:, 2 * hidden:])  # candidate state
    return (1 - z) * n + z * h  # (N, H)


def _gru_states(cell: nn.GRUCell, v_seq: torch.Tensor, order: list[int], carry: bool = True) -> list[torch.Tensor]:
    h0 = torch.zeros(v_seq.shape[0], cell.hidden_size, dtype=torch.float64)
    states, h = [], h0
    for t in order:
        h = _gru_step(cell, v_seq[:, t].double(), h if carry else h0)
        states.append(h)
    return states


@exercise_check("contextualize")
def check_contextualize(fn) -> str:
    """Check ``fn(v_seq, cell) -> c``: run an ``nn.GRUCell`` over ``v_seq (N, T, d)`` from ``h_0 = 0``, return ``h_T (N, H)``.

    The reference writes the GRU's equations out in float64 from the cell's own weights. Reading
    the sequence backwards, not passing the hidden state on, averaging the states, returning the
    first state or every state, and looping over the batch instead of time get their own hints.

    Example:
        >>> def run(v_seq, cell):
        ...     h = None
        ...     for t in range(v_seq.shape[1]):
        ...         h = cell(v_seq[:, t], h)
        ...     return h
        >>> ok = check_contextualize(run)
        [PASSED] contextualize: h_T matches the GRU equations on 2 fresh sequences
        >>> bad = check_contextualize(lambda v_seq, cell: cell(v_seq[:, -1]))  # doctest: +ELLIPSIS
        [NOT YET] contextualize: ... each step started from h = 0: pass the previous state on, ...
    """
    g = fresh_generator()
    n = draw(g, 4, 7)
    for n, steps in ((n, n + draw(g, 1, 3)), (3, 2)):  # T != N: the batch axis taken for time shows
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(draw(g, 0, 2 ** 30))
            cell = nn.GRUCell(4, 3)
        v_seq = torch.randn(n, steps, 4, generator=g)  # (N, T, d)
        forward = _gru_states(cell, v_seq, list(range(steps)))
        out = fn(v_seq.clone(), cell)
        _expect(out is not None, "your function returned None; return the last hidden state h_T, shape (N, H)")
        _expect(isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}")
        _expect(tuple(out.shape) != (n, steps, 3), f"you returned every state {tuple(out.shape)}; the context is "
                                                   f"the LAST state only, shape ({n}, 3)")
        _expect(tuple(out.shape) == (n, 3), (
            f"for v_seq of shape ({n}, {steps}, 4) the context must be ({n}, 3), got {tuple(out.shape)}; time is "
            f"dim 1: step t reads v_seq[:, t], the whole batch at once"))
        _expect(out.is_floating_point(), f"return floating-point values, got {out.dtype}")
        out = out.detach().double()
        if torch.allclose(out, forward[-1], atol=1e-5):
            continue
        slips = [
            (_gru_states(cell, v_seq, list(range(steps))[::-1])[-1],
             "you read the sequence backwards; step t = 0, 1, ..., T-1 reads v_seq[:, t], so c summarises the "
             "sequence up to its end"),
            (_gru_states(cell, v_seq, list(range(steps)), carry=False)[-1],
             "each step started from h = 0: pass the previous state on, h = cell(v_seq[:, t], h)"),
            (torch.stack(forward).mean(0), "you averaged the hidden states; the context is the LAST state h_T"),
            (forward[0], "you returned the state after the FIRST step; keep stepping to the end, return h_T"),
        ]
        hint = next((hint for value, hint in slips if torch.allclose(out, value, atol=1e-5)),
                    "start from h = 0 (or None) and apply h = cell(v_seq[:, t], h) for t = 0 .. T-1, then return h")
        raise AssertionError(f"with N={n}, T={steps} your context differs from the GRU's h_T: {hint}")
    return "h_T matches the GRU equations on 2 fresh sequences"
