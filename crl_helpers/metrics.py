"""Diagnostics of an embedding space: is it aligned, uniform, discriminative, or collapsed?

Cheap numbers to log during contrastive training, next to the loss:

* :func:`contrastive_accuracy` -- how often a view's nearest neighbour is its partner;
* :func:`alignment` and :func:`uniformity` -- the two halves of the contrastive loss
  (Wang & Isola 2020);
* :func:`cosine_stats` -- where positive and negative similarities sit;
* :func:`embedding_std` -- the collapse check of SimSiam (Chen & He 2021).

Every function L2-normalises its inputs, runs without building a graph, and returns
Python floats (friendlier for logging than tensors). Inputs are not checked for
NaN/inf: a diverged run should log ``nan``, not crash the logger.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["alignment", "contrastive_accuracy", "cosine_stats", "embedding_std", "uniformity"]


def _check(name: str, z: object) -> Tensor:
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} is a {type(z).__name__}; pass a torch.Tensor")
    if z.ndim != 2:
        raise ValueError(f"{name} has shape {tuple(z.shape)}; it must be 2-D (N, d), one row per sample")
    if z.shape[0] < 2:
        raise ValueError(f"{name} has N={z.shape[0]} rows; these statistics need N >= 2")
    if z.shape[1] < 1:
        raise ValueError(f"{name} has shape {tuple(z.shape)} with an empty feature dimension; d must be >= 1")
    return z


def _check_pair(z1: object, z2: object) -> tuple[Tensor, Tensor]:
    z1, z2 = _check("z1", z1), _check("z2", z2)
    if z1.shape != z2.shape:
        raise ValueError(
            f"z1 has shape {tuple(z1.shape)} but z2 has shape {tuple(z2.shape)}; "
            "they must match, row i of each from the same image"
        )
    return z1, z2


@contextlib.contextmanager
def _measuring(z: Tensor) -> Iterator[None]:
    # No graph, and no autocast: a bf16 matmul would blur cosines near 1.
    with torch.no_grad(), torch.autocast(device_type=z.device.type, enabled=False):
        yield


def _normalize(z: Tensor) -> Tensor:
    # float64 stays float64; bf16/fp16/integers are measured in float32.
    dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
    return F.normalize(z.detach().to(dtype), dim=1)


def contrastive_accuracy(z1: Tensor, z2: Tensor) -> float:
    """Fraction of the 2N views whose nearest other view (cosine) is its partner.

    The top-1 accuracy of the NT-Xent classification task (Chen et al. 2020): anchor
    ``z1[i]`` should pick ``z2[i]`` out of the other 2N-1 views, and vice versa. Ties go to
    the lowest index, as in ``torch.argmax``. Chance level is ``1 / (2N - 1)``.

    Args:
        z1, z2: (N, d) embeddings of the two views; normalised here.

    Returns:
        A float in [0, 1].

    Raises:
        TypeError: a non-tensor input.
        ValueError: a non-2-D input, mismatched shapes, or N < 2.

    Example:
        >>> z1 = torch.eye(3)
        >>> contrastive_accuracy(z1, z1 + 0.1)
        1.0
    """
    z1, z2 = _check_pair(z1, z2)
    n = z1.shape[0]
    with _measuring(z1):
        z = _normalize(torch.cat([z1, z2], dim=0))  # (2N, d)
        similarity = z @ z.T  # (2N, 2N)
        similarity.fill_diagonal_(float("-inf"))
        arange = torch.arange(n, device=z.device)
        partner = torch.cat([arange + n, arange])  # (2N,)
        return (similarity.argmax(dim=1) == partner).double().mean().item()


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
        TypeError: a non-tensor input.
        ValueError: a non-2-D input, mismatched shapes, N < 2, or alpha not finite and > 0.

    Example:
        >>> z1 = torch.eye(2)
        >>> alignment(z1, -z1)  # antipodal pairs: ||2 e_i||^2
        4.0
    """
    z1, z2 = _check_pair(z1, z2)
    if not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha={alpha!r} must be a finite number > 0; the paper uses alpha=2")
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
        TypeError: a non-tensor input.
        ValueError: a non-2-D input, N < 2, or t not finite and > 0.

    Example:
        >>> uniformity(torch.eye(3), t=2)  # orthogonal rows: log exp(-2 * 2)
        -4.0
    """
    z = _check("z", z)
    if not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
        raise ValueError(f"t={t!r} must be a finite number > 0; the paper uses t=2")
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
        TypeError: a non-tensor input.
        ValueError: a non-2-D input, mismatched shapes, or N < 2.

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
        TypeError: a non-tensor input.
        ValueError: a non-2-D input or N < 2.

    Example:
        >>> embedding_std(torch.ones(5, 8))  # collapsed
        0.0
    """
    z = _check("z", z)
    with _measuring(z):
        return _normalize(z).std(dim=0).mean().item()
