"""Exercises of notebook 03 (the projection head): L2-normalisation and the MLP head ``z = h(v) / ||h(v)||``.

SimCLR (Chen et al. 2020, section 4.2) puts a small MLP ``h`` between the encoder's features
``v`` and the loss, and compares the embeddings ``z`` by cosine similarity, i.e. after
projecting them onto the unit hypersphere.

Example:
    >>> ok = check_normalize(lambda z: torch.nn.functional.normalize(z, dim=1))
    [PASSED] normalize: unit rows, same directions, zero rows stay finite, input untouched
"""
from __future__ import annotations

import math

import torch
from torch import nn

from crl_helpers.exercises._check import exercise_check

__all__ = ["check_normalize", "check_projection_head"]


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
    return "shapes, unit norm, a non-linear 2-layer MLP, gradients flow"
