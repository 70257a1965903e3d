"""Contrastive losses: InfoNCE (van den Oord et al. 2018) and SimCLR's NT-Xent (Chen et al. 2020).

Both losses are a softmax cross-entropy over cosine similarities divided by a
``temperature``: each anchor must pick its one positive out of a set of candidates.
They differ in where the candidates come from:

* :func:`info_nce` -- a ``query`` against its ``positive_key`` and a set of
  ``negative_keys`` (given, or the other queries' positive keys);
* :func:`nt_xent` -- SimCLR's symmetric form over the 2N views of a batch: every
  view is an anchor, its partner view is the positive, the other 2N-2 views are
  the negatives. :func:`nt_xent_logits` is the piece it is built from, exported so
  that a distributed version can reuse it.

Embeddings are L2-normalised inside, and the logits are always computed in
float32 (float64 for float64 inputs) with autocast switched off: at
``temperature=0.01`` a bf16 similarity error of 1e-2 becomes an error of 1 in the
logits.
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["info_nce", "nt_xent", "nt_xent_logits"]


# F.normalize's default eps; also the smallest factor _normalize divides a row by (see there).
_NORMALIZE_EPS = 1e-12
# Below this, cos / temperature can reach 1e38 and the loss (a sum over anchors) overflows to inf in float32.
_MIN_TEMPERATURE = 1e-8


def _check_temperature(temperature: float) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(
            f"temperature={temperature!r} is a {type(temperature).__name__}; pass a positive float such as 0.1"
        )
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(
            f"temperature={temperature!r} must be a finite number > 0; typical values are 0.05 to 0.5"
        )
    if temperature < _MIN_TEMPERATURE:
        raise ValueError(
            f"temperature={temperature!r} is below {_MIN_TEMPERATURE:g}: the logits would overflow; "
            "typical values are 0.05 to 0.5"
        )
    return float(temperature)


def _check_tensor(name: str, x: object, ndim: int | tuple[int, ...] = 2, finite: bool = True) -> Tensor:
    """Type, dtype, ndim and (unless ``finite=False``) finiteness checks for every tensor argument."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} is a {type(x).__name__}; pass a torch.Tensor")
    if not x.is_floating_point():
        raise TypeError(f"{name} has dtype {x.dtype}; pass floating-point embeddings, e.g. {name}.float()")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if x.ndim not in allowed:
        wanted = " or ".join(f"{n}-D" for n in allowed)
        raise ValueError(f"{name} has shape {tuple(x.shape)} ({x.ndim}-D); it must be {wanted}")
    if x.shape[-1] < 1:
        raise ValueError(f"{name} has shape {tuple(x.shape)} with an empty feature dimension; d must be >= 1")
    # The only data-dependent check: on a GPU it waits for the kernels (a host sync).
    if finite and not torch.isfinite(x).all():
        raise ValueError(
            f"{name} contains NaN or inf; check the model's outputs (a diverged run or an fp16 overflow)"
        )
    return x


def _check_pair(name_a: str, a: object, name_b: str, b: object, finite: bool) -> tuple[Tensor, Tensor]:
    a, b = _check_tensor(name_a, a, finite=finite), _check_tensor(name_b, b, finite=finite)
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}; "
            "they must match, one row per sample"
        )
    return a, b


def _compute_dtype(*xs: Tensor) -> torch.dtype:
    # float64 stays float64 (gradcheck needs it); everything else is computed in float32.
    return torch.float64 if any(x.dtype == torch.float64 for x in xs) else torch.float32


def _normalize(x: Tensor, dtype: torch.dtype) -> Tensor:
    """Rows scaled to unit L2 norm in ``dtype``, whatever the scale of the row.

    A row is first divided by its largest absolute entry, so that its sum of squares lies in
    [1, d]: it can no longer overflow (in float32, entries above ~1e19 gave an infinite norm and a
    zero vector) or underflow (entries below ~1e-19 lost precision, below ~1e-23 everything). The
    result does not depend on that factor, so it is detached: the gradient is plain normalisation's.
    The factor is at least F.normalize's eps (1e-12): rows that tiny (1e-24 and below) fall back to
    F.normalize's treatment, with finite values and gradients; an all-zero row stays zero.
    """
    x = x.to(dtype)
    scale = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(_NORMALIZE_EPS)  # (..., 1)
    return F.normalize(x / scale, dim=-1, eps=_NORMALIZE_EPS)


def nt_xent_logits(
    z1: Tensor, z2: Tensor, temperature: float, *, validate: bool = True
) -> tuple[Tensor, Tensor]:
    """The (2N, 2N) logits and the (2N,) targets of SimCLR's NT-Xent (Chen et al. 2020).

    The 2N views are stacked as ``[z1; z2]``; ``logits[a, b] = cos(z_a, z_b) / temperature``
    with the self-similarity ``logits[a, a]`` set to ``-inf`` so that it never counts as a
    candidate. The target of view ``i`` is its partner: ``i + N`` for ``i < N``, ``i - N``
    otherwise. ``F.cross_entropy(logits, targets)`` is then :func:`nt_xent`.

    Args:
        z1, z2: (N, d) embeddings of the two views, row ``i`` of each from the same image;
            normalised here.
        temperature: > 0; divides the cosine similarities.
        validate: False skips the NaN/inf scan of the inputs, the one check that syncs a GPU
            every step; a training loop that checks its loss for non-finite values can skip it.

    Returns:
        ``(logits, targets)``: logits (2N, 2N) in float32 (float64 for float64 inputs),
        targets (2N,) int64.

    Raises:
        TypeError: a non-tensor, a non-floating dtype, or a non-numeric temperature.
        ValueError: a non-2-D input, mismatched shapes, N < 2, NaN/inf in an input (unless
            ``validate=False``), or a temperature that is not finite and >= 1e-8.

    Example:
        >>> z1, z2 = torch.eye(2), torch.eye(2)
        >>> logits, targets = nt_xent_logits(z1, z2, temperature=0.5)
        >>> logits
        tensor([[-inf, 0., 2., 0.],
                [0., -inf, 0., 2.],
                [2., 0., -inf, 0.],
                [0., 2., 0., -inf]])
        >>> targets
        tensor([2, 3, 0, 1])
    """
    z1, z2 = _check_pair("z1", z1, "z2", z2, finite=validate)
    temperature = _check_temperature(temperature)
    n = z1.shape[0]
    if n < 2:
        raise ValueError(f"z1 and z2 have N={n} rows; NT-Xent needs N >= 2 so that each view has negatives")
    dtype = _compute_dtype(z1, z2)
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z = _normalize(torch.cat([z1, z2], dim=0), dtype)  # (2N, d)
        logits = z @ z.T / temperature  # (2N, 2N)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)  # (2N, 2N)
    logits = logits.masked_fill(self_mask, float("-inf"))
    arange = torch.arange(n, device=z.device)
    targets = torch.cat([arange + n, arange])  # (2N,)
    return logits, targets


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5, *, validate: bool = True) -> Tensor:
    r"""SimCLR's normalized temperature-scaled cross-entropy, NT-Xent (Chen et al. 2020, eq. 1).

    For the 2N views ``z = [z1; z2]`` with cosine similarity ``s(a, b)``, anchor ``a``
    with partner ``p(a)`` contributes

    .. math:: \ell_a = -\log \frac{\exp(s(a, p(a)) / \tau)}{\sum_{b \ne a} \exp(s(a, b) / \tau)}

    and the loss is the mean of :math:`\ell_a` over all 2N anchors. The 2N-2 negatives of
    an anchor include the views on its own side, so this is NOT the mean of
    ``info_nce(z1, z2)`` and ``info_nce(z2, z1)`` (those only see the other side).

    Args:
        z1, z2: (N, d) embeddings of the two views, row ``i`` of each from the same image;
            normalised here, any floating dtype (bf16/fp16 are upcast to float32).
        temperature: > 0; SimCLR uses 0.5 with small batches, 0.1 with large ones.
        validate: False skips the NaN/inf scan of the inputs (a GPU sync per step); the
            shape, dtype and temperature checks always run, they cost nothing.

    Returns:
        A scalar tensor, float32 (float64 for float64 inputs).

    Raises:
        TypeError: a non-tensor, a non-floating dtype, or a non-numeric temperature.
        ValueError: a non-2-D input, mismatched shapes, N < 2, NaN/inf in an input (unless
            ``validate=False``), or a temperature that is not finite and >= 1e-8.

    Example:
        Identical embeddings leave the positive no better than the 2N-2 negatives, so
        the loss is ``-log(1 / (2N - 1))``:

        >>> z = torch.ones(4, 8)  # N = 4
        >>> loss = nt_xent(z, z, temperature=0.5)
        >>> abs(loss.item() - math.log(2 * 4 - 1)) < 1e-6
        True
    """
    logits, targets = nt_xent_logits(z1, z2, temperature, validate=validate)
    return F.cross_entropy(logits, targets)


def info_nce(
    query: Tensor,
    positive_key: Tensor,
    negative_keys: Tensor | None = None,
    temperature: float = 0.1,
    *,
    validate: bool = True,
) -> Tensor:
    r"""InfoNCE (van den Oord et al. 2018, eq. 4): pick the positive key out of the negatives.

    With cosine similarities, query ``q_i``, its positive key ``k_i^+`` and negative keys
    ``k_{ij}^-``:

    .. math:: \ell_i = -\log \frac{\exp(q_i \cdot k_i^+ / \tau)}
              {\exp(q_i \cdot k_i^+ / \tau) + \sum_j \exp(q_i \cdot k_{ij}^- / \tau)}

    and the loss is the mean of :math:`\ell_i` over the N queries.

    Args:
        query: (N, d).
        positive_key: (N, d); row ``i`` is the positive of ``query[i]``.
        negative_keys: (M, d) negatives shared by all queries (e.g. MoCo's queue), or
            (N, M, d) negatives per query, or None to use the OTHER queries' positive keys
            as negatives: then it is a cross-entropy over the (N, N) matrix
            ``query @ positive_key.T`` with the diagonal as target (as in CLIP, one side).
        temperature: > 0; MoCo uses 0.07, SimCLR 0.1 to 0.5.
        validate: False skips the NaN/inf scan of the inputs (a GPU sync per step); the
            shape, dtype and temperature checks always run, they cost nothing.

    All embeddings are L2-normalised here; bf16/fp16 inputs are upcast to float32.

    Returns:
        A scalar tensor, float32 (float64 when any input is float64).

    Raises:
        TypeError: a non-tensor, a non-floating dtype, or a non-numeric temperature.
        ValueError: a query or positive_key that is not 2-D or whose shapes differ; a
            negative_keys that is not 2-D or 3-D, whose d differs from the query's, whose
            N differs (3-D) or that has no rows (M = 0); N = 0; N < 2 with ``negative_keys=None``;
            NaN/inf in an input (unless ``validate=False``); a temperature that is not finite
            and >= 1e-8.

    Example:
        Identical rows make every key as good as the positive: the loss is ``log(N)``.

        >>> z = torch.ones(4, 8)  # N = 4
        >>> loss = info_nce(z, z, temperature=0.1)
        >>> abs(loss.item() - math.log(4)) < 1e-6
        True
    """
    query, positive_key = _check_pair("query", query, "positive_key", positive_key, finite=validate)
    temperature = _check_temperature(temperature)
    n, d = query.shape
    if n < 1:
        raise ValueError(f"query has shape {tuple(query.shape)} with N=0 rows; pass at least one query")
    if negative_keys is None:
        if n < 2:
            raise ValueError(
                f"query has N={n} rows and negative_keys=None; the other queries' keys are the negatives, "
                "so pass N >= 2 or give negative_keys"
            )
        dtype = _compute_dtype(query, positive_key)
    else:
        negative_keys = _check_tensor("negative_keys", negative_keys, ndim=(2, 3), finite=validate)
        if negative_keys.shape[-1] != d:
            raise ValueError(
                f"negative_keys has shape {tuple(negative_keys.shape)} with d={negative_keys.shape[-1]}, "
                f"but query has d={d}; the keys must live in the query's embedding space"
            )
        if negative_keys.ndim == 3 and negative_keys.shape[0] != n:
            raise ValueError(
                f"negative_keys has shape {tuple(negative_keys.shape)} (per-query, N={negative_keys.shape[0]}), "
                f"but query has N={n}; pass (N, M, d) per query or (M, d) shared"
            )
        if negative_keys.shape[-2] < 1:
            raise ValueError(
                f"negative_keys has shape {tuple(negative_keys.shape)} with M=0 negatives; "
                "pass at least one, or negative_keys=None to use the other queries' keys"
            )
        dtype = _compute_dtype(query, positive_key, negative_keys)

    with torch.autocast(device_type=query.device.type, enabled=False):
        q = _normalize(query, dtype)  # (N, d)
        k = _normalize(positive_key, dtype)  # (N, d)
        if negative_keys is None:
            logits = q @ k.T / temperature  # (N, N)
            targets = torch.arange(n, device=q.device)  # (N,)
        else:
            negatives = _normalize(negative_keys, dtype)  # (M, d) or (N, M, d)
            positive_logits = (q * k).sum(dim=1, keepdim=True)  # (N, 1)
            if negatives.ndim == 2:
                negative_logits = q @ negatives.T  # (N, M)
            else:
                negative_logits = torch.einsum("nd,nmd->nm", q, negatives)  # (N, M)
            # The positive sits in column 0, so every target is 0.
            logits = torch.cat([positive_logits, negative_logits], dim=1) / temperature  # (N, 1 + M)
            targets = torch.zeros(n, dtype=torch.long, device=q.device)  # (N,)
        return F.cross_entropy(logits, targets)
