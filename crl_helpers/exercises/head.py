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

from crl_helpers.exercises._check import exercise_check

__all__ = ["check_contextualize", "check_normalize", "check_projection_head"]


def _expect(condition, message: str) -> None:
    # An explicit raise, not `assert`: the hint must survive `python -O` and pytest's assert rewriting.
    if not condition:
        raise AssertionError(message)


@exercise_check("normalize")
def check_normalize(fn) -> str:
    """Check ``fn(z) -> z / ||z||`` row by row for ``z (N, d)``, finite on an all-zero row, ``z`` not modified.

    The oracle divides each row by its norm in plain float64 Python.

    Example:
        >>> bad = check_normalize(lambda z: z / z.norm(dim=0, keepdim=True))  # doctest: +ELLIPSIS
        [NOT YET] normalize: row 0 of your output has norm ... each ROW (one embedding) must have norm 1: normalise along dim=1
    """
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 5, generator=g) * torch.tensor([0.01, 1.0, 3.0, 50.0, 0.5, 7.0])[:, None]  # (6, 5)
    original = z.clone()
    out = fn(z)
    _expect(out is not None, "your function returned None; return the normalised tensor")
    _expect(isinstance(out, torch.Tensor) and out.shape == z.shape,
            f"the output must be a tensor of the input's shape {tuple(z.shape)}, got "
            f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    _expect(torch.equal(z, original), "your function changed its input in place; return a new tensor (no /= or div_)")
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
    zero = fn(torch.zeros(2, 5))
    _expect(zero is not None and torch.isfinite(torch.as_tensor(zero)).all(),
            "an all-zero row became NaN (0 / 0); divide by max(norm, eps) as F.normalize does")
    return "unit rows, same directions, zero rows stay finite, input untouched"


def _allowed_counts(in_dim: int, hidden_dim: int, out_dim: int) -> set[int]:
    weights = in_dim * hidden_dim + hidden_dim * out_dim
    return {weights + b1 + b2 + bn for b1 in (0, hidden_dim) for b2 in (0, out_dim) for bn in (0, 2 * hidden_dim)}


@exercise_check("projection head", solution="MLPHead")
def check_projection_head(fn) -> str:
    """Check ``fn(in_dim, hidden_dim, out_dim) -> nn.Module``: SimCLR's head, Linear -> (BatchNorm) -> ReLU -> Linear -> L2-normalise.

    Checks: ``(N, in_dim) -> (N, out_dim)``; unit-norm rows; the parameter count of exactly
    two linear layers ``in_dim -> hidden_dim -> out_dim`` (biases and BatchNorm optional); a
    non-linearity (in eval mode, an affine head maps points on a line into one plane, so its
    outputs have rank <= 2; a ReLU head bends the line out of it); and gradients reaching
    every parameter.

    Example:
        >>> from crl_helpers.models import ProjectionHead
        >>> ok = check_projection_head(lambda i, h, o: ProjectionHead(i, h, o, depth=2))
        [PASSED] projection head: shapes, unit norm, a non-linear 2-layer MLP, gradients flow
    """
    in_dim, hidden_dim, out_dim = 12, 32, 6
    torch.manual_seed(0)
    head = fn(in_dim, hidden_dim, out_dim)
    _expect(isinstance(head, nn.Module), f"return an nn.Module (e.g. a subclass with a forward), got {type(head).__name__}")
    g = torch.Generator().manual_seed(0)
    v = torch.randn(16, in_dim, generator=g)  # (N, in_dim)
    head.train()
    z = head(v)
    _expect(isinstance(z, torch.Tensor) and z.shape == (16, out_dim),
            f"head(v) for v of shape (16, {in_dim}) must be (16, {out_dim}), got "
            f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}")
    norms = z.detach().norm(dim=1)
    _expect(torch.allclose(norms, torch.ones(16), atol=1e-4),
            f"rows of z have norms {norms[:3].tolist()}...; end the forward with F.normalize(z, dim=1)")
    count = sum(p.numel() for p in head.parameters() if p.requires_grad)
    _expect(count in _allowed_counts(in_dim, hidden_dim, out_dim),
            f"the head has {count} trainable parameters; two layers nn.Linear({in_dim}, {hidden_dim}) and "
            f"nn.Linear({hidden_dim}, {out_dim}) have {in_dim * hidden_dim + hidden_dim * out_dim} weights "
            f"(+ biases, + BatchNorm's 2 x {hidden_dim}): use exactly those two layers")
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
    expected = _reference_head(head, v, in_dim, hidden_dim, out_dim)
    _expect(torch.allclose(z_eval, expected, atol=1e-5), (
        "your head's output differs from Linear -> (BatchNorm) -> ReLU -> Linear -> L2-normalise computed with its "
        "own weights; apply the layers in that order, the ReLU only between the two linear layers"))
    return "shapes, unit norm, a non-linear 2-layer MLP, gradients flow"


def _reference_head(head: nn.Module, v: torch.Tensor, in_dim: int, hidden_dim: int, out_dim: int) -> torch.Tensor:
    """The head's forward in eval mode, recomputed in float64 from its own layers' weights."""
    linears = {(m.in_features, m.out_features): m for m in head.modules() if isinstance(m, nn.Linear)}
    first, second = linears.get((in_dim, hidden_dim)), linears.get((hidden_dim, out_dim))
    _expect(first is not None and second is not None,
            f"the head needs nn.Linear({in_dim}, {hidden_dim}) and nn.Linear({hidden_dim}, {out_dim})")
    norms = [m for m in head.modules() if isinstance(m, nn.BatchNorm1d)]

    def affine(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        x = x @ layer.weight.detach().double().T
        return x + layer.bias.detach().double() if layer.bias is not None else x

    with torch.no_grad():
        h = affine(first, v.double())  # (N, hidden_dim)
        if norms:  # eval mode: BatchNorm is an affine map with the running statistics
            bn = norms[0]
            h = (h - bn.running_mean.double()) / torch.sqrt(bn.running_var.double() + bn.eps)
            if bn.affine:
                h = h * bn.weight.double() + bn.bias.double()
        h = affine(second, h.clamp_min(0))  # (N, out_dim)
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
        [PASSED] contextualize: h_T matches the GRU equations on 2 sequence lengths
        >>> bad = check_contextualize(lambda v_seq, cell: cell(v_seq[:, -1]))  # doctest: +ELLIPSIS
        [NOT YET] contextualize: ... each step started from h = 0: pass the previous state on, ...
    """
    for n, steps in ((5, 7), (3, 2)):
        torch.manual_seed(n)
        cell = nn.GRUCell(4, 3)
        v_seq = torch.randn(n, steps, 4)  # (N, T, d)
        forward = _gru_states(cell, v_seq, list(range(steps)))
        out = fn(v_seq.clone(), cell)
        _expect(out is not None, "your function returned None; return the last hidden state h_T, shape (N, H)")
        _expect(isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}")
        _expect(tuple(out.shape) != (n, steps, 3), f"you returned every state {tuple(out.shape)}; the context is "
                                                   f"the LAST state only, shape ({n}, 3)")
        _expect(tuple(out.shape) == (n, 3), (
            f"for v_seq of shape ({n}, {steps}, 4) the context must be ({n}, 3), got {tuple(out.shape)}; time is "
            f"dim 1: step t reads v_seq[:, t], the whole batch at once"))
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
    return "h_T matches the GRU equations on 2 sequence lengths"
