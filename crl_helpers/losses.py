"""Contrastive losses: InfoNCE (van den Oord et al. 2018) and SimCLR's NT-Xent (Chen et al. 2020).

Both losses are a softmax cross-entropy over cosine similarities divided by a
``temperature``: each anchor must pick its one positive out of a set of candidates.
They differ in where the candidates come from:

* :func:`info_nce` -- a ``query`` against its ``positive_key`` and a set of
  ``negative_keys`` (given, or the other queries' positive keys);
* :func:`nt_xent` -- SimCLR's symmetric form over the 2N views of a batch: every
  view is an anchor, its partner view is the positive, the other 2N-2 views are
  the negatives. :func:`nt_xent_logits` is the piece it is built from. Both take
  optional ``keys`` (the views of the GLOBAL batch) and the ``offset`` of this
  process's views among them: :func:`crl_helpers.distributed.nt_xent_distributed`
  all-gathers the keys and calls this same code path.

Embeddings are L2-normalised inside (:func:`normalize_rows`), and the logits are always
computed in float32 (float64 for float64 inputs, :func:`compute_dtype`) with autocast
switched off: at ``temperature=0.01`` a bf16 similarity error of 1e-2 becomes an error
of 1 in the logits.

Float16 inputs and small temperatures: the loss is computed in float32, but its gradient
goes back to a float16 input in float16, which overflows above 65504. With unit-norm rows
``u``, softmax probabilities ``p`` over an anchor's candidates and ``P = I - u u^T`` (the
projection onto the sphere at ``u``), a row's gradient is the sum of

* its term as an anchor, ``P (sum_c p_c u_c - u_pos) / temperature``, of norm at most
  ``2 (1 - p_pos) / temperature <= 2 / temperature``, and
* its term as a candidate of another anchor ``a``, ``(p - [positive]) P u_a / temperature``,
  at most ``1 / temperature`` per anchor that sees it,

divided by the number of anchors the loss averages over. NT-Xent (2N anchors; a view is
a candidate of the other 2N-1) stays within ``(2N + 1) / (2N temperature)``; InfoNCE's
query within ``2 / (N temperature)``, a key (seen by up to N queries) within
``1 / temperature``. The largest, ``2 / temperature``, is reached by one query (N = 1)
whose positive and M negatives are orthogonal to it and point opposite ways:
``2M / ((M + 1) temperature)``. So float16 embeddings need a temperature of at least
``2 / 65504 ~ 3.05e-5`` (:data:`crl_helpers.validate.FLOAT16_MIN_TEMPERATURE`) and are
refused below it. (A row of norm ``r`` has its gradient scaled by ``1 / r``: the bound is
that of a projection head's unit-norm ``z``.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from crl_helpers.validate import check_embedding_pair, check_embeddings, check_fraction, check_int, check_temperature

__all__ = ["compute_dtype", "debiased_nt_xent", "info_nce", "normalize_rows", "nt_xent", "nt_xent_logits"]


# F.normalize's default eps; also the smallest factor normalize_rows divides a row by (see there).
_NORMALIZE_EPS = 1e-12


def compute_dtype(*xs: Tensor) -> torch.dtype:
    """The dtype the losses and metrics compute in: float64 if any input is float64, else float32.

    float64 stays float64 (gradcheck needs it); bf16/fp16 are upcast, so that cosines near 1 are not
    blurred by a low-precision matmul.

    Example:
        >>> compute_dtype(torch.ones(2, dtype=torch.bfloat16)), compute_dtype(torch.ones(2).double())
        (torch.float32, torch.float64)
    """
    return torch.float64 if any(x.dtype == torch.float64 for x in xs) else torch.float32


def normalize_rows(x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Rows (last dimension) scaled to unit L2 norm in ``dtype``, whatever the scale of the row.

    A row is first divided by its largest absolute entry, so that its sum of squares lies in
    [1, d]: it cannot overflow or underflow (plain normalisation in float32 turns entries above ~1e19
    into an infinite norm and a zero vector, and loses precision below ~1e-19, everything below ~1e-23). The
    result does not depend on that factor, so it is detached: the gradient is plain normalisation's.
    The factor is at least F.normalize's eps (1e-12): rows that tiny (1e-24 and below) fall back to
    F.normalize's treatment, with finite values and gradients; an all-zero row stays zero.

    Args:
        x: (..., d) floating point.
        dtype: the result's dtype; None takes :func:`compute_dtype` of ``x``.

    Returns:
        (..., d) in ``dtype``, unit rows (zero rows stay zero). No host sync, traceable by torch.compile.

    Example:
        >>> normalize_rows(torch.tensor([[3e30, 4e30], [0.0, 0.0]]))
        tensor([[0.6000, 0.8000],
                [0.0000, 0.0000]])
    """
    x = x.to(compute_dtype(x) if dtype is None else dtype)
    scale = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(_NORMALIZE_EPS)  # (..., 1)
    return F.normalize(x / scale, dim=-1, eps=_NORMALIZE_EPS)


def nt_xent_logits(
    z1: Tensor, z2: Tensor, temperature: float, *, keys: Tensor | None = None, offset: int = 0,
    validate: bool = True,
) -> tuple[Tensor, Tensor]:
    """The (2N, K) logits and the (2N,) targets of SimCLR's NT-Xent (Chen et al. 2020).

    This process's 2N views are stacked as ``[z1; z2]`` and compared with the K ``keys``:
    ``logits[a, b] = cos(view_a, key_b) / temperature``, with each view's similarity to itself
    (``key offset + a``) set to ``-inf`` so that it never counts as a candidate. The target of
    view ``i`` is its partner's key: ``offset + i + N`` for ``i < N``, ``offset + i - N``
    otherwise. ``F.cross_entropy(logits, targets)`` is then :func:`nt_xent`.

    Without ``keys`` the keys are the 2N views themselves (K = 2N, offset 0). A data-parallel
    run passes the views of the GLOBAL batch, all-gathered in rank order, and the offset of this
    rank's block, ``rank * 2N`` (as lightly's NTXentLoss does with ``labels = arange(B) + rank * B``).

    Args:
        z1, z2: (N, d) embeddings of the two views, row ``i`` of each from the same image;
            normalised here.
        temperature: > 0; divides the cosine similarities.
        keys: (K, d) embeddings of every view of the global batch, holding ``[z1; z2]`` at rows
            ``offset .. offset + 2N - 1``; normalised here. None: ``[z1; z2]``.
        offset: where ``[z1; z2]`` sits among ``keys``; 0 without ``keys``.
        validate: False skips the NaN/inf scan of the inputs, the one check that syncs a GPU
            every step; a training loop that checks its loss for non-finite values can skip it.

    Returns:
        ``(logits, targets)``: logits (2N, K) in float32 (float64 for float64 inputs),
        targets (2N,) int64.

    Raises:
        TypeError: a non-tensor, a non-floating dtype, or a non-numeric temperature.
        ValueError: a non-2-D input, mismatched shapes, N < 2 (N < 1 with ``keys``), keys of
            another d, an offset that does not place ``[z1; z2]`` inside ``keys``, NaN/inf in an
            input (unless ``validate=False``), a temperature that is not finite and >= 1e-8, or
            below 3.05e-5 with a float16 input.

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
        >>> logits, targets = nt_xent_logits(z1, z2, 0.5, keys=torch.eye(2).repeat(4, 1), offset=4)
        >>> logits.shape, targets  # this process's 4 views against 8 keys, its own at rows 4..7
        (torch.Size([4, 8]), tensor([6, 7, 4, 5]))
    """
    z1, z2 = check_embedding_pair("z1", z1, "z2", z2, finite=validate)
    n = z1.shape[0]
    if keys is None:
        if offset != 0:
            raise ValueError(f"offset={offset!r} without keys; the offset places [z1; z2] among keys, pass both")
        temperature = check_temperature(temperature, z1, z2)
        if n < 2:
            raise ValueError(f"z1 and z2 have N={n} rows; NT-Xent needs N >= 2 so that each view has negatives")
    else:
        keys = check_embeddings("keys", keys, dim=z1.shape[1], finite=validate)
        offset = check_int("offset", offset, 0, hint="it is this process's rank * 2N")
        temperature = check_temperature(temperature, z1, z2, keys)
        if n < 1:
            raise ValueError("z1 and z2 have N=0 rows; every process needs at least one image")
        if offset + 2 * n > keys.shape[0]:
            raise ValueError(f"keys has K={keys.shape[0]} rows but offset={offset} + 2N={2 * n} exceeds it; "
                             "keys must hold [z1; z2] at rows offset .. offset + 2N - 1")
        if keys.shape[0] < 3:
            raise ValueError(f"keys has K={keys.shape[0]} rows; each view needs its partner and at least one "
                             "negative, so K >= 3")
    dtype = compute_dtype(z1, z2) if keys is None else compute_dtype(z1, z2, keys)
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z = normalize_rows(torch.cat([z1, z2], dim=0), dtype)  # (2N, d)
        keys = z if keys is None else normalize_rows(keys, dtype)  # (K, d)
        logits = z @ keys.T / temperature  # (2N, K)
    own = offset + torch.arange(2 * n, device=z.device)  # (2N,): each view's own row among the keys
    self_mask = own[:, None] == torch.arange(keys.shape[0], device=z.device)[None, :]  # (2N, K)
    logits = logits.masked_fill(self_mask, float("-inf"))
    arange = torch.arange(n, device=z.device)
    targets = offset + torch.cat([arange + n, arange])  # (2N,): each view's partner among the keys
    return logits, targets


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5, *, keys: Tensor | None = None, offset: int = 0,
            validate: bool = True) -> Tensor:
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
        keys, offset: the views of the global batch and where ``[z1; z2]`` sits among them
            (see :func:`nt_xent_logits`); then the result is the mean over this process's 2N
            anchors. None and 0: the batch is ``[z1; z2]``.
        validate: False skips the NaN/inf scan of the inputs (a GPU sync per step); the
            shape, dtype and temperature checks always run, they cost nothing.

    Returns:
        A scalar tensor, float32 (float64 for float64 inputs).

    Raises:
        TypeError: a non-tensor, a non-floating dtype, or a non-numeric temperature.
        ValueError: as :func:`nt_xent_logits`.

    Example:
        Identical embeddings leave the positive no better than the 2N-2 negatives, so
        the loss is ``-log(1 / (2N - 1))``:

        >>> import math
        >>> z = torch.ones(4, 8)  # N = 4
        >>> loss = nt_xent(z, z, temperature=0.5)
        >>> abs(loss.item() - math.log(2 * 4 - 1)) < 1e-6
        True
    """
    logits, targets = nt_xent_logits(z1, z2, temperature, keys=keys, offset=offset, validate=validate)
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
            and >= 1e-8, or below 3.05e-5 with a float16 input.

    Example:
        Identical rows make every key as good as the positive: the loss is ``log(N)``.

        >>> import math
        >>> z = torch.ones(4, 8)  # N = 4
        >>> loss = info_nce(z, z, temperature=0.1)
        >>> abs(loss.item() - math.log(4)) < 1e-6
        True
    """
    query, positive_key = check_embedding_pair("query", query, "positive_key", positive_key, finite=validate)
    n, d = query.shape
    if n < 1:
        raise ValueError(f"query has shape {tuple(query.shape)} with N=0 rows; pass at least one query")
    if negative_keys is None:
        if n < 2:
            raise ValueError(
                f"query has N={n} rows and negative_keys=None; the other queries' keys are the negatives, "
                "so pass N >= 2 or give negative_keys"
            )
    else:
        negative_keys = check_embeddings("negative_keys", negative_keys, ndim=(2, 3), finite=validate)
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
    embeddings = (query, positive_key) if negative_keys is None else (query, positive_key, negative_keys)
    temperature = check_temperature(temperature, *embeddings)
    dtype = compute_dtype(*embeddings)

    with torch.autocast(device_type=query.device.type, enabled=False):
        q = normalize_rows(query, dtype)  # (N, d)
        k = normalize_rows(positive_key, dtype)  # (N, d)
        if negative_keys is None:
            logits = q @ k.T / temperature  # (N, N)
            targets = torch.arange(n, device=q.device)  # (N,)
        else:
            negatives = normalize_rows(negative_keys, dtype)  # (M, d) or (N, M, d)
            positive_logits = (q * k).sum(dim=1, keepdim=True)  # (N, 1)
            if negatives.ndim == 2:
                negative_logits = q @ negatives.T  # (N, M)
            else:
                negative_logits = torch.einsum("nd,nmd->nm", q, negatives)  # (N, M)
            # The positive sits in column 0, so every target is 0.
            logits = torch.cat([positive_logits, negative_logits], dim=1) / temperature  # (N, 1 + M)
            targets = torch.zeros(n, dtype=torch.long, device=q.device)  # (N,)
        return F.cross_entropy(logits, targets)


def debiased_nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5, tau_plus: float = 0.1, *,
                     validate: bool = True) -> Tensor:
    r"""Debiased contrastive loss (Chuang, Robinson, Lin, Torralba, Jegelka 2020, eq. 6) on SimCLR's 2N views.

    SimCLR's negatives are the other images of the batch, but without labels some of them share
    the anchor's class: false negatives. If a random image has the anchor's class with
    probability :math:`\tau^+` (the class prior, ``1 / C`` for C balanced classes), the sum over
    the :math:`K = 2N - 2` negatives over-counts "same class" by about :math:`\tau^+ K` positives;
    the debiased estimate of the true negatives' term subtracts it,

    .. math:: N_g = \max\Big(\frac{\sum_{j=1}^{K} e^{s_j / \tau} - \tau^+ K\, e^{s^+ / \tau}}{1 - \tau^+},
              \; K e^{-1/\tau}\Big),
              \qquad \ell_a = -\log \frac{e^{s^+ / \tau}}{e^{s^+ / \tau} + N_g}

    where :math:`s^+` is the cosine of anchor ``a`` with its partner view, :math:`s_j` with
    its K negatives, and :math:`K e^{-1/\tau}` the smallest value the sum can take (every
    cosine is >= -1), as in the authors' code. The loss is the mean of :math:`\ell_a` over the
    2N anchors. With ``tau_plus=0`` it is exactly :func:`nt_xent`.

    Computed from :func:`nt_xent_logits`, shifted by each anchor's largest logit, so small
    temperatures do not overflow ``exp``.

    Args:
        z1, z2: (N, d) embeddings of the two views, row ``i`` of each from the same image; N >= 2.
        temperature: > 0; the paper uses 0.5.
        tau_plus: the class prior :math:`\tau^+` in [0, 1): 0.1 for CIFAR-10's 10 classes.
        validate: False skips the NaN/inf scan of the inputs.

    Returns:
        A scalar tensor, float32 (float64 for float64 inputs).

    Raises:
        TypeError: a non-tensor, a non-floating dtype, a non-numeric temperature or tau_plus.
        ValueError: as :func:`nt_xent_logits`, or tau_plus outside [0, 1).

    Example:
        >>> z1, z2 = torch.randn(4, 8), torch.randn(4, 8)
        >>> torch.allclose(debiased_nt_xent(z1, z2, 0.5, tau_plus=0.0), nt_xent(z1, z2, 0.5))
        True
        >>> import math
        >>> z = torch.ones(4, 8)  # all views identical: N_g = K e^{1/t}, the loss is log(1 + K), K = 6
        >>> abs(debiased_nt_xent(z, z, 0.5, tau_plus=0.1).item() - math.log(7)) < 1e-5
        True
    """
    tau_plus = check_fraction("tau_plus", tau_plus, "the class prior, 1 / number of classes")
    if tau_plus == 1.0:
        raise ValueError("tau_plus=1.0 would make every negative a false one; use 1 / number of classes, e.g. 0.1")
    logits, targets = nt_xent_logits(z1, z2, temperature, validate=validate)  # (2N, 2N), self at -inf
    temperature = float(temperature)
    k = logits.shape[0] - 2  # negatives per anchor
    with torch.autocast(device_type=logits.device.type, enabled=False):
        shift = logits.max(dim=1, keepdim=True).values.detach()  # (2N, 1), finite: the partner is there
        positive = logits.gather(1, targets[:, None]) - shift  # (2N, 1) s+ / t, shifted
        negatives = logits.scatter(1, targets[:, None], float("-inf")) - shift  # (2N, 2N) only the K negatives
        negative_sum = negatives.exp().sum(dim=1, keepdim=True)  # (2N, 1)
        n_g = (negative_sum - tau_plus * k * positive.exp()) / (1 - tau_plus)  # (2N, 1)
        n_g = torch.maximum(n_g, k * torch.exp(-1.0 / temperature - shift))  # the floor K e^{-1/t}
        return (torch.log(positive.exp() + n_g) - positive).mean()
