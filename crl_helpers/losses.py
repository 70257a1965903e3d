r"""Contrastive losses: SimCLR's NT-Xent (Chen et al. 2020) and InfoNCE (van den Oord et al. 2018).

For the 2N views ``z = [z1; z2]`` of N images (row ``i`` of ``z1`` and of ``z2`` come from image ``i``),
with cosine similarity :math:`s(a, b)` and a temperature :math:`\tau`, anchor ``a`` with partner view
``p(a)`` contributes

.. math:: \ell_a = -\log \frac{\exp(s(a, p(a)) / \tau)}{\sum_{b \ne a} \exp(s(a, b) / \tau)}

and NT-Xent is the mean of :math:`\ell_a` over the 2N anchors: a softmax cross-entropy in which each
view must pick its partner out of the 2N - 1 other views. In code, the lines of :func:`view_logits`
and :func:`nt_xent`:

    >>> z1, z2, temperature = torch.randn(4, 8), torch.randn(4, 8), 0.5
    >>> n = len(z1)
    >>> z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, d) unit rows
    >>> logits = z @ z.T / temperature  # (2N, 2N) cosine / temperature
    >>> logits = logits.fill_diagonal_(float("-inf"))  # a view is not its own candidate
    >>> targets = torch.cat([torch.arange(n) + n, torch.arange(n)])  # (2N,) each view's partner
    >>> torch.testing.assert_close(F.cross_entropy(logits, targets), nt_xent(z1, z2, temperature))

:func:`info_nce` is the same cross-entropy for a ``query`` against its ``positive_key`` and
``negative_keys`` (given, or the other queries' positive keys); on precomputed scores it is
:func:`crl_helpers.scores.info_nce_form`. :func:`debiased_nt_xent` corrects NT-Xent for false negatives.

Numerics: embeddings are L2-normalised inside (:func:`normalize_rows`, whatever a row's scale), and the
logits are computed in float32 (float64 for float64 inputs, :func:`compute_dtype`) with autocast
switched off: at ``temperature=0.01`` a bf16 similarity error of 1e-2 becomes an error of 1 in the
logits. Float16 embeddings need ``temperature >= 2 / 65504`` (their gradient, up to ``2 / temperature``,
comes back in float16; docs/numerics.md derives the bound). A data-parallel run contrasts each
process's views with the views of the whole batch: :func:`crl_helpers.distributed.nt_xent_distributed`
gathers them and calls :func:`view_logits` with them as ``keys``, the same lines.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from crl_helpers.scores import info_nce_form, pair_scores
from crl_helpers.validate import check_embedding_pair, check_embeddings, check_fraction, check_temperature

__all__ = ["compute_dtype", "debiased_nt_xent", "info_nce", "normalize_rows", "nt_xent", "nt_xent_logits",
           "view_logits"]


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5, *, validate: bool = True) -> Tensor:
    r"""SimCLR's normalized temperature-scaled cross-entropy, NT-Xent (Chen et al. 2020, eq. 1).

    The mean of :math:`\ell_a` (see the module) over all 2N anchors: ``F.cross_entropy`` of
    :func:`nt_xent_logits`. The 2N-2 negatives of an anchor include the views on its own side, so
    this is NOT the mean of ``info_nce(z1, z2)`` and ``info_nce(z2, z1)`` (those only see the other side).

    Args:
        z1, z2: (N, d) embeddings of the two views, row ``i`` of each from the same image, N >= 2;
            normalised here, any floating dtype (bf16/fp16 are upcast to float32).
        temperature: > 0; SimCLR uses 0.5 with small batches, 0.1 with large ones.
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
    logits, targets = nt_xent_logits(z1, z2, temperature, validate=validate)  # (2N, 2N), (2N,)
    return F.cross_entropy(logits, targets)


def nt_xent_logits(z1: Tensor, z2: Tensor, temperature: float, *, validate: bool = True) -> tuple[Tensor, Tensor]:
    """The (2N, 2N) logits and the (2N,) targets of SimCLR's NT-Xent (Chen et al. 2020), checked.

    ``logits[a, b] = cos(view_a, view_b) / temperature`` over the views ``[z1; z2]``, with each view's
    similarity to itself set to ``-inf`` so that it never counts as a candidate; the target of view
    ``i`` is its partner, ``i + N`` for ``i < N``, ``i - N`` otherwise. ``F.cross_entropy(logits,
    targets)`` is :func:`nt_xent`. The arguments are checked here, then :func:`view_logits` computes.

    Args:
        z1, z2: (N, d) embeddings of the two views, row ``i`` of each from the same image, N >= 2;
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
            ``validate=False``), a temperature that is not finite and >= 1e-8, or below 3.05e-5
            with a float16 input.

    Example:
        >>> logits, targets = nt_xent_logits(torch.eye(2), torch.eye(2), temperature=0.5)
        >>> logits
        tensor([[-inf, 0., 2., 0.],
                [0., -inf, 0., 2.],
                [2., 0., -inf, 0.],
                [0., 2., 0., -inf]])
        >>> targets
        tensor([2, 3, 0, 1])
    """
    z1, z2 = check_embedding_pair("z1", z1, "z2", z2, finite=validate)
    temperature = check_temperature(temperature, z1, z2)
    if z1.shape[0] < 2:
        raise ValueError(f"z1 and z2 have N={z1.shape[0]} rows; NT-Xent needs N >= 2 so that each view has negatives")
    return view_logits(z1, z2, temperature)


def view_logits(z1: Tensor, z2: Tensor, temperature: float, keys: Tensor | None = None,
                offset: int = 0) -> tuple[Tensor, Tensor]:
    """NT-Xent's logits and targets, unchecked: the lines every NT-Xent of the package runs.

    The 2N views ``[z1; z2]`` against K ``keys``: ``logits[a, b] = cos(view_a, key_b) / temperature``,
    the view itself (key ``offset + a``) masked with ``-inf``, the target of view ``i`` its partner's key
    ``offset + (i + N) mod 2N``. Without ``keys`` the keys are the views (K = 2N, offset 0);
    :func:`crl_helpers.distributed.nt_xent_distributed` passes the views of the whole data-parallel batch,
    all-gathered in rank order, and this process's block at ``offset = rank * 2N`` (as lightly's
    NTXentLoss does with ``labels = arange(B) + rank * B``). Callers check the arguments (as
    :func:`nt_xent_logits` does); no check here means no host sync, and ``torch.compile`` traces it.

    Args:
        z1, z2: (N, d) floating embeddings of the two views; normalised here.
        temperature: a number > 0 (checked by the caller).
        keys: (K, d) holding ``[z1; z2]`` at rows ``offset .. offset + 2N - 1``; normalised here. None: ``[z1; z2]``.
        offset: where ``[z1; z2]`` sits among ``keys``.

    Returns:
        ``(logits, targets)``: (2N, K) in :func:`compute_dtype` of the inputs, computed with autocast off;
        (2N,) int64.

    Example:
        >>> z1, z2 = torch.eye(2), torch.eye(2)
        >>> logits, targets = view_logits(z1, z2, 0.5, keys=torch.eye(2).repeat(4, 1), offset=4)
        >>> logits.shape, targets  # this process's 4 views against 8 keys, its own at rows 4..7
        (torch.Size([4, 8]), tensor([6, 7, 4, 5]))
    """
    n = z1.shape[0]
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

    All embeddings are L2-normalised here; bf16/fp16 inputs are upcast to float32. The cross-entropy
    over the cosine scores is :func:`crl_helpers.scores.info_nce_form`, InfoNCE's loss form.

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
            # The other queries' positive keys are the negatives: the off-diagonal of the (N, N) scores.
            positive, negatives = pair_scores(q @ k.T)  # (N,), (N, N - 1)
        else:
            keys = normalize_rows(negative_keys, dtype)  # (M, d) or (N, M, d)
            positive = (q * k).sum(dim=1)  # (N,)
            negatives = q @ keys.T if keys.ndim == 2 else torch.einsum("nd,nmd->nm", q, keys)  # (N, M)
        return info_nce_form(positive, negatives, temperature)


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


# ------------------------------------------------------------------------------------------------- numerics
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

    ``F.normalize`` of :func:`scale_by_largest_entry`'s rows: plain normalisation in float32 turns entries
    above ~1e19 into an infinite norm and a zero vector, and loses precision below ~1e-19. Rows of 1e-24
    and below fall back to F.normalize's treatment, with finite values and gradients; an all-zero row
    stays zero.

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
    return F.normalize(scale_by_largest_entry(x), dim=-1, eps=_NORMALIZE_EPS)


def scale_by_largest_entry(x: Tensor) -> Tensor:
    """Each row (last dimension) divided by its largest absolute entry, so its sum of squares lies in [1, d].

    Squaring such a row can neither overflow nor underflow. A unit row does not depend on the factor,
    so the factor is detached: the gradient of :func:`normalize_rows` is plain normalisation's. The
    factor is at least F.normalize's eps (1e-12).

    Example:
        >>> scale_by_largest_entry(torch.tensor([[3e30, -4e30]]))
        tensor([[ 0.7500, -1.0000]])
    """
    scale = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(_NORMALIZE_EPS)  # (..., 1)
    return x / scale
