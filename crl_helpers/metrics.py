"""Diagnostics of an embedding space: is it aligned, uniform, discriminative, or collapsed?

Cheap numbers to log during contrastive training, next to the loss:

* :func:`contrastive_accuracy` -- how often a view's nearest neighbour is its partner
  (:func:`contrastive_accuracy_tensor` is the same number as a tensor, for a compiled training step);
* :func:`alignment` and :func:`uniformity` -- the two halves of the contrastive loss
  (Wang & Isola 2020);
* :func:`cosine_stats` -- where positive and negative similarities sit;
* :func:`embedding_std` -- the collapse check of SimSiam (Chen & He 2021): a collapse to one point;
* :func:`effective_rank` -- how many directions the embeddings use (RankMe, Garrido et al. 2023):
  also a *dimensional* collapse, where the embeddings spread but over a few directions only.

Every function L2-normalises its inputs (:func:`crl_helpers.losses.normalize_rows`), runs
without building a graph, and returns Python floats (friendlier for logging than tensors).
Like the losses, the public functions refuse NaN/inf inputs with a ``ValueError`` naming the
argument (one host sync): a ``nan`` returned as a statistic is a silently wrong number.
:func:`contrastive_accuracy_tensor`, which the training step calls on every batch, checks
nothing; the training loop stops a diverged run itself (its loss or weights become non-finite).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import Tensor

from crl_helpers.losses import normalize_rows, view_logits
from crl_helpers.validate import check_embedding_pair, check_embeddings, check_positive

__all__ = ["alignment", "contrastive_accuracy", "contrastive_accuracy_tensor", "cosine_stats", "effective_rank",
           "embedding_std", "uniformity"]

# Every statistic here compares rows with each other (or spreads over them): one row says nothing.
_WHY_TWO_ROWS = "these statistics need N >= 2"


def _check(name: str, z: object) -> Tensor:
    return check_embeddings(name, z, min_rows=2, why=_WHY_TWO_ROWS, finite=True)


def _check_pair(z1: object, z2: object) -> tuple[Tensor, Tensor]:
    return check_embedding_pair("z1", z1, "z2", z2, min_rows=2, why=_WHY_TWO_ROWS, finite=True)


@contextlib.contextmanager
def _measuring(z: Tensor) -> Iterator[None]:
    # No graph, and no autocast: a bf16 matmul would blur cosines near 1.
    with torch.no_grad(), torch.autocast(device_type=z.device.type, enabled=False):
        yield


def _normalize(z: Tensor) -> Tensor:
    # float64 stays float64; bf16/fp16 are measured in float32.
    return normalize_rows(z.detach())


def contrastive_accuracy_tensor(z1: Tensor, z2: Tensor) -> Tensor:
    """:func:`contrastive_accuracy` as a 0-d tensor on the inputs' device, for a training step.

    The top-1 accuracy of NT-Xent's own classification task: the argmax of each row of
    :func:`crl_helpers.losses.view_logits` (the logits of :func:`crl_helpers.losses.nt_xent_logits`)
    against its target.

    No argument check, no host sync and no data-dependent branch, so ``torch.compile`` traces it
    into the step's graph and a GPU never waits for it; the caller guarantees two (N, d)
    floating-point tensors of the same shape with N >= 2.

    Args:
        z1, z2: (N, d) embeddings of the two views; normalised here.

    Returns:
        A 0-d float32 tensor in [0, 1], detached.

    Example:
        >>> contrastive_accuracy_tensor(torch.eye(3), torch.eye(3) + 0.1)
        tensor(1.)
    """
    with _measuring(z1):
        # NT-Xent's own logits and targets (self masked, partner as target); temperature 1 keeps the cosines.
        logits, partner = view_logits(z1.detach(), z2.detach(), 1.0)  # (2N, 2N), (2N,)
        return (logits.argmax(dim=1) == partner).float().mean()


def contrastive_accuracy(z1: Tensor, z2: Tensor) -> float:
    """Fraction of the 2N views whose nearest other view (cosine) is its partner.

    The top-1 accuracy of the NT-Xent classification task (Chen et al. 2020): anchor
    ``z1[i]`` should pick ``z2[i]`` out of the other 2N-1 views, and vice versa. Ties go to
    the lowest index, as in ``torch.argmax``. Chance level is ``1 / (2N - 1)``. The number
    is :func:`contrastive_accuracy_tensor`'s, checked and as a float.

    Args:
        z1, z2: (N, d) embeddings of the two views; normalised here.

    Returns:
        A float in [0, 1].

    Raises:
        TypeError: a non-tensor or non-floating input.
        ValueError: a non-2-D input, mismatched shapes, N < 2, or NaN/inf.

    Example:
        >>> z1 = torch.eye(3)
        >>> contrastive_accuracy(z1, z1 + 0.1)
        1.0
    """
    z1, z2 = _check_pair(z1, z2)
    return contrastive_accuracy_tensor(z1, z2).item()


def alignment(z1: Tensor, z2: Tensor, alpha: float = 2) -> float:
    """Alignment of positive pairs, ``E_i ||z1_i - z2_i||^alpha`` (Wang & Isola 2020, eq. 4).

    Lower is better: 0 when each pair maps to the same point, 4 (with ``alpha=2``) when
    every pair is antipodal.

    Args:
        z1, z2: (N, d) embeddings of the two views; normalised here.
        alpha: > 0; the paper uses 2.

    Returns:
        A float in [0, 2**alpha].

    Raises:
        TypeError: a non-tensor or non-floating input, or a non-numeric alpha.
        ValueError: a non-2-D input, mismatched shapes, N < 2, NaN/inf, or alpha not finite and > 0.

    Example:
        >>> z1 = torch.eye(2)
        >>> alignment(z1, -z1)  # antipodal pairs: ||2 e_i||^2
        4.0
    """
    z1, z2 = _check_pair(z1, z2)
    alpha = check_positive("alpha", alpha, "the paper uses alpha=2")
    with _measuring(z1):
        distance = (_normalize(z1) - _normalize(z2)).norm(dim=1)  # (N,)
        return distance.pow(alpha).mean().item()


def uniformity(z: Tensor, t: float = 2) -> float:
    """Uniformity on the sphere, ``log E_{i<j} exp(-t ||z_i - z_j||^2)`` (Wang & Isola 2020, eq. 5).

    Lower is better: the embeddings spread out over the hypersphere. 0 when all rows
    collapse to one point; ``-2 t`` when every pair is orthogonal (squared distance 2);
    ``-4 t`` is the floor (only two antipodal points reach it).

    Args:
        z: (N, d) embeddings; normalised here.
        t: > 0; the paper's Gaussian-kernel scale (its name in the paper, kept so the
            formula reads the same; it is NOT a softmax temperature). The paper uses 2.

    Returns:
        A float <= 0.

    Raises:
        TypeError: a non-tensor or non-floating input, or a non-numeric t.
        ValueError: a non-2-D input, N < 2, NaN/inf, or t not finite and > 0.

    Example:
        >>> uniformity(torch.eye(3), t=2)  # orthogonal rows: log exp(-2 * 2)
        -4.0
    """
    z = _check("z", z)
    t = check_positive("t", t, "the paper uses t=2")
    with _measuring(z):
        z = _normalize(z)  # (N, d)
        i, j = torch.triu_indices(len(z), len(z), offset=1, device=z.device)  # each pair i < j once
        cosine = (z @ z.T)[i, j].double()  # (N (N - 1) / 2,); float64 as log-mean-exp subtracts log(count)
        # On the unit sphere ||z_i - z_j||^2 = 2 - 2 cos, exact for orthogonal rows unlike pdist's sqrt.
        squared_distance = (2 - 2 * cosine).clamp_min(0)  # (N (N - 1) / 2,)
        log_mean = torch.logsumexp(-t * squared_distance, dim=0) - math.log(squared_distance.numel())
        return log_mean.item()


def cosine_stats(z1: Tensor, z2: Tensor) -> dict[str, float]:
    """Mean and std of the cosine similarity of positive and of negative pairs.

    Positive pairs are ``(z1[i], z2[i])``. Negative pairs are the NT-Xent negatives
    (Chen et al. 2020): every unordered pair of the 2N views that come from different
    images, on the same side or across, ``2N(N-1)`` pairs in all. Stds are population
    stds (``correction=0``), so a single-valued set has std 0.

    A healthy run pushes ``pos_mean`` towards 1 and ``neg_mean`` towards 0 or below;
    ``neg_mean`` near 1 is a collapse.

    Args:
        z1, z2: (N, d) embeddings of the two views; normalised here.

    Returns:
        ``{"pos_mean", "pos_std", "neg_mean", "neg_std"}``, all floats.

    Raises:
        TypeError: a non-tensor or non-floating input.
        ValueError: a non-2-D input, mismatched shapes, N < 2, or NaN/inf.

    Example:
        >>> stats = cosine_stats(torch.eye(3), torch.eye(3))
        >>> stats == {"pos_mean": 1.0, "pos_std": 0.0, "neg_mean": 0.0, "neg_std": 0.0}
        True
    """
    z1, z2 = _check_pair(z1, z2)
    n = z1.shape[0]
    with _measuring(z1):
        z = _normalize(torch.cat([z1, z2], dim=0))  # (2N, d)
        similarity = z @ z.T  # (2N, 2N)
        image = torch.arange(2 * n, device=z.device) % n  # (2N,) image index of each view
        upper = torch.ones_like(similarity, dtype=torch.bool).triu(diagonal=1)  # (2N, 2N), each pair once
        positive = similarity[upper & (image[:, None] == image[None, :])]  # (N,)
        negative = similarity[upper & (image[:, None] != image[None, :])]  # (2N (N - 1),)
        return {
            "pos_mean": positive.mean().item(),
            "pos_std": positive.std(correction=0).item(),
            "neg_mean": negative.mean().item(),
            "neg_std": negative.std(correction=0).item(),
        }


def embedding_std(z: Tensor) -> float:
    """Mean over dimensions of the per-dimension std of the L2-normalised embeddings.

    The collapse check of SimSiam (Chen & He 2021, Fig. 2): about ``1/sqrt(d)`` when the
    embeddings spread over the sphere, 0 when they collapse to one point. Uses the sample
    std (``correction=1``), as ``torch.std`` does by default.

    Args:
        z: (N, d) embeddings; normalised here.

    Returns:
        A float >= 0.

    Raises:
        TypeError: a non-tensor or non-floating input.
        ValueError: a non-2-D input, N < 2, or NaN/inf.

    Example:
        >>> embedding_std(torch.ones(5, 8))  # collapsed
        0.0
    """
    z = _check("z", z)
    with _measuring(z):
        return _normalize(z).std(dim=0).mean().item()


def effective_rank(z: Tensor) -> float:
    """How many directions the L2-normalised embeddings use: ``exp`` of the entropy of their singular values.

    RankMe (Garrido et al. 2023, eq. 1), the effective rank of Roy & Vetterli (2007) applied to the
    embedding matrix: with ``sigma`` the singular values of the (N, d) matrix of unit rows (not centred)
    and ``p_k = sigma_k / sum(sigma)``, ``exp(-sum_k p_k log p_k)``. It lies in ``[1, min(N, d)]``: 1 when
    every row points the same way (a collapse to one point), ``k`` when the rows spread evenly over ``k``
    orthogonal directions. Unlike :func:`embedding_std`, it also sees a *dimensional* collapse (Jing et al.
    2022), where the rows spread but only within a few directions. Computed in float64.

    Args:
        z: (N, d) embeddings; normalised here.

    Returns:
        A float in ``[1, min(N, d)]``.

    Raises:
        TypeError: a non-tensor or non-floating input.
        ValueError: a non-2-D input, N < 2, or NaN/inf.

    Example:
        >>> round(effective_rank(torch.eye(4)), 6)  # four orthogonal directions
        4.0
        >>> round(effective_rank(torch.ones(5, 8)), 6)  # one direction
        1.0
    """
    z = _check("z", z)
    with _measuring(z):
        sigma = torch.linalg.svdvals(_normalize(z).double())  # (min(N, d),)
        p = sigma / sigma.sum()
        p = p[p > 0]  # 0 log 0 = 0
        return math.exp(-(p * p.log()).sum().item())
