r"""Beyond SimCLR: where the negatives come from, and losses that use labels or margins.

SimCLR (Chen et al. 2020) takes its negatives from the current batch, so more negatives
cost a bigger batch. Earlier and later methods change one piece of that recipe, and each
piece here is small enough to read on its own:

* :class:`MemoryBank` -- InstDisc (Wu, Xiong, Yu, Lin 2018, "Unsupervised Feature Learning
  via Non-Parametric Instance Discrimination"): one stored embedding per training image,
  refreshed by a moving average each time the image is seen; negatives are sampled from it.
* :class:`MoCoQueue` and :func:`momentum_update` -- MoCo (He, Fan, Wu, Xie, Girshick 2020,
  "Momentum Contrast for Unsupervised Visual Representation Learning"): keys from a slowly
  moving copy of the encoder, kept in a FIFO queue that outlives the batch.
* :func:`supcon_loss` -- SupCon (Khosla et al. 2020, "Supervised Contrastive Learning"),
  the :math:`\mathcal{L}^{sup}_{out}` form: every view with the same label is a positive.
* :func:`triplet_loss` and :func:`semi_hard_negatives` -- FaceNet (Schroff, Kalenichenko,
  Philbin 2015): one positive, one negative, a margin instead of a softmax.

The MoCo and memory-bank losses are :func:`crl_helpers.losses.info_nce` with
``negative_keys`` = the queue or the sampled bank entries. :func:`train_method` runs any of
the five methods ("simclr", "memory_bank", "moco", "supcon", "triplet") with ONE loop built
from :mod:`crl_helpers.train`'s pieces, so that a comparison differs only in the objective.

Example:
    >>> from dataclasses import replace
    >>> from crl_helpers.train import CPU
    >>> cfg = replace(CPU, epochs=1, n_train=64, n_test=32, batch_size=32, progress=False, out_dir=None)
    >>> result = train_method("moco", cfg, options=MethodConfig(queue_size=32))
    >>> result["method"], len(result["history"]), 0.0 <= result["knn_acc"] <= 1.0
    ('moco', 1, True)
"""
from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crl_helpers.losses import info_nce, nt_xent

__all__ = [
    "MemoryBank",
    "MoCoQueue",
    "momentum_update",
    "supcon_loss",
    "triplet_loss",
    "semi_hard_negatives",
    "MethodConfig",
    "METHODS",
    "train_method",
]

METHODS = ("simclr", "memory_bank", "moco", "supcon", "triplet")


# ------------------------------------------------------------------ validation
def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} must be an int")
    if value < minimum:
        raise ValueError(f"{name}={value} must be >= {minimum}")
    return int(value)


def _check_fraction(name: str, value: object, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} must be a number in [0, 1]; {hint}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value!r} must be in [0, 1]; {hint}")
    return float(value)


def _check_positive(name: str, value: object, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} must be a number; {hint}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a finite number > 0; {hint}")
    return float(value)


def _check_embeddings(name: str, z: object, dim: int | None = None) -> Tensor:
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} is a {type(z).__name__}; pass a torch.Tensor (N, d)")
    if not z.is_floating_point():
        raise TypeError(f"{name} has dtype {z.dtype}; pass floating-point embeddings, e.g. {name}.float()")
    if z.ndim != 2:
        raise ValueError(f"{name} has shape {tuple(z.shape)}; it must be 2-D (N, d), one row per sample")
    if dim is not None and z.shape[1] != dim:
        raise ValueError(f"{name} has d={z.shape[1]} but this store holds d={dim}; embed with the same head")
    return z


def _unit_rows(n: int, dim: int, generator: torch.Generator | None) -> Tensor:
    # Random directions: a fresh bank or queue holds no information, but is spread over the sphere.
    return F.normalize(torch.randn(n, dim, generator=generator), dim=1)  # (n, dim)


# ----------------------------------------------------------------- memory bank
class MemoryBank:
    r"""InstDisc's memory bank: one unit-norm embedding per training image (Wu et al. 2018).

    Entry :math:`\bar z_i` stands for image ``i`` between visits. When the image is seen again
    with embedding :math:`z_i`, the entry moves towards it and is renormalised,

    .. math:: \bar z_i \leftarrow \frac{m \bar z_i + (1 - m) z_i}{\lVert m \bar z_i + (1 - m) z_i \rVert},

    as in the paper's code (``m = 0.5``). The loss of a query ``z_i`` is InfoNCE with its own
    entry as the positive key and ``n`` entries drawn at random as the negatives, so the number
    of negatives no longer depends on the batch size. The price: entries were computed by
    older versions of the encoder (up to one epoch old).

    Args:
        size: number of entries, one per training image.
        dim: embedding size ``d``.
        momentum: ``m`` in ``[0, 1)``; 0.5 as in InstDisc's code. 0 replaces entries outright.
        generator: seeds the random initial entries.

    Attributes:
        bank: ``(size, dim)`` float32 tensor of unit rows (moved with :meth:`to`).

    Raises:
        TypeError, ValueError: a size or dim that is not an int >= 1, a momentum outside [0, 1).

    Example:
        >>> bank = MemoryBank(size=4, dim=2, momentum=0.5)
        >>> bank.update(torch.tensor([1]), torch.tensor([[0.0, 3.0]]))
        >>> torch.allclose(bank.bank.norm(dim=1), torch.ones(4))  # entries stay on the sphere
        True
        >>> bank.negatives(3, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3, 2])
    """

    def __init__(self, size: int, dim: int, momentum: float = 0.5, generator: torch.Generator | None = None) -> None:
        self.size = _check_int("size", size, 1)
        self.dim = _check_int("dim", dim, 1)
        self.momentum = _check_fraction("momentum", momentum, "InstDisc uses 0.5")
        if self.momentum == 1.0:
            raise ValueError("momentum=1.0 would never update the bank; use a value in [0, 1), e.g. 0.5")
        self.bank = _unit_rows(self.size, self.dim, generator)  # (size, dim)

    def to(self, device: torch.device | str) -> "MemoryBank":
        self.bank = self.bank.to(device)
        return self

    def _check_index(self, index: object) -> Tensor:
        if not isinstance(index, Tensor) or index.dtype not in (torch.int64, torch.int32) or index.ndim != 1:
            raise TypeError(f"index must be a 1-D int64 tensor of image indices, got {index!r}")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.size):
            raise ValueError(f"index holds values outside [0, {self.size}); the bank has {self.size} entries")
        return index.to(self.bank.device)

    def __getitem__(self, index: Tensor) -> Tensor:
        """The entries of images ``index`` ``(B,)`` -> ``(B, dim)`` (a copy, safe to use as a key)."""
        return self.bank[self._check_index(index)].clone()

    @torch.no_grad()
    def update(self, index: Tensor, z: Tensor) -> None:
        """Move the entries of images ``index`` ``(B,)`` towards embeddings ``z`` ``(B, dim)`` and renormalise.

        ``z`` is normalised first (only its direction counts) and detached. Indices must be
        distinct within one call (a batch never holds an image twice).

        Raises:
            TypeError, ValueError: bad index, mismatched shapes, repeated indices.
        """
        index = self._check_index(index)
        z = _check_embeddings("z", z, self.dim)
        if z.shape[0] != index.shape[0]:
            raise ValueError(f"z has {z.shape[0]} rows but index has {index.shape[0]}; one index per embedding")
        if index.unique().numel() != index.numel():
            raise ValueError("index repeats an image; a batch must hold each image once")
        z = F.normalize(z.detach().to(self.bank), dim=1)  # (B, dim)
        mixed = self.momentum * self.bank[index] + (1 - self.momentum) * z  # (B, dim)
        self.bank[index] = F.normalize(mixed, dim=1)

    def negatives(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` entries drawn uniformly with replacement, ``(n, dim)``: the negatives shared by a batch.

        A draw can hit a query's own image; with ``n`` much smaller than ``size`` this is rare
        and, as in InstDisc, ignored.
        """
        n = _check_int("n", n, 1)
        index = torch.randint(self.size, (n,), generator=generator)  # (n,)
        return self.bank[index.to(self.bank.device)].clone()  # (n, dim)

    def loss(self, query: Tensor, index: Tensor, n_negatives: int, temperature: float,
             generator: torch.Generator | None = None) -> Tensor:
        """InfoNCE of ``query`` ``(B, dim)`` against its own entries and ``n_negatives`` random entries.

        Equals ``info_nce(query, self[index], self.negatives(n_negatives), temperature)``.
        """
        return info_nce(query, self[index], self.negatives(n_negatives, generator), temperature)


# ------------------------------------------------------------------- MoCo
class MoCoQueue:
    """MoCo's dictionary: a FIFO queue of the most recent ``size`` keys (He et al. 2020).

    Each step enqueues the current batch's keys and drops the oldest ones, so the
    negatives come from the last ``size / batch_size`` batches, not just this one. Keys
    come from a momentum encoder (:func:`momentum_update`), which changes slowly enough
    that keys of different ages are still comparable.

    Args:
        size: number of keys held; MoCo uses 65,536 on ImageNet, 4,096 suits CIFAR-sized data.
        dim: embedding size ``d``.
        generator: seeds the random initial keys (as in MoCo's code, the queue starts full
            of random unit vectors).

    Attributes:
        keys: ``(size, dim)`` storage; row ``ptr`` is the next to be overwritten (the oldest).

    Raises:
        TypeError, ValueError: a size or dim that is not an int >= 1.

    Example:
        >>> queue = MoCoQueue(size=3, dim=2)
        >>> queue.enqueue(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        >>> queue.enqueue(torch.tensor([[-1.0, 0.0]]))
        >>> queue.ordered()[-3:].tolist()  # oldest first
        [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]
    """

    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None) -> None:
        self.size = _check_int("size", size, 1)
        self.dim = _check_int("dim", dim, 1)
        self.keys = _unit_rows(self.size, self.dim, generator)  # (size, dim)
        self.ptr = 0

    def to(self, device: torch.device | str) -> "MoCoQueue":
        self.keys = self.keys.to(device)
        return self

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Add ``keys`` ``(B, dim)`` (normalised, detached), overwriting the ``B`` oldest.

        Raises:
            TypeError, ValueError: not a 2-D float tensor of width ``dim``; ``B > size``
                (a batch would overwrite its own keys: make the queue larger than the batch).
        """
        keys = _check_embeddings("keys", keys, self.dim)
        b = keys.shape[0]
        if b > self.size:
            raise ValueError(f"keys has {b} rows but the queue holds {self.size}; use a queue of at least "
                             f"batch_size keys (MoCo: many batches)")
        slots = (self.ptr + torch.arange(b)) % self.size  # (B,) wraps around the ring
        self.keys[slots.to(self.keys.device)] = F.normalize(keys.detach().to(self.keys), dim=1)
        self.ptr = (self.ptr + b) % self.size

    def ordered(self) -> Tensor:
        """The keys oldest first, ``(size, dim)`` (a copy): ``keys`` rolled so the ring starts at ``ptr``."""
        return torch.roll(self.keys, shifts=-self.ptr, dims=0).clone()


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, m: float = 0.99) -> None:
    r"""MoCo's key-encoder update :math:`\theta_k \leftarrow m\,\theta_k + (1 - m)\,\theta_q` (He et al. 2020, eq. 2).

    In place on ``target``'s parameters; buffers (BatchNorm statistics) are left alone, as in
    MoCo's code, since the key encoder keeps its own. ``m = 0`` copies the online encoder,
    ``m = 1`` freezes the target. MoCo uses 0.999 for 800 ImageNet epochs; a few hundred steps
    need a faster follower such as 0.99.

    Args:
        online: the encoder trained by gradients (MoCo's query encoder).
        target: a module with the same parameter names and shapes (the key encoder).
        m: momentum in [0, 1].

    Raises:
        TypeError: a non-module, or a non-numeric ``m``.
        ValueError: ``m`` outside [0, 1], or the two modules' parameters differ in name or shape.

    Example:
        >>> online, target = nn.Linear(2, 1), nn.Linear(2, 1)
        >>> _ = online.weight.data.fill_(1.0), target.weight.data.fill_(0.0)
        >>> momentum_update(online, target, m=0.9)
        >>> [round(w, 6) for w in target.weight[0].tolist()]  # 0.9 * 0 + 0.1 * 1
        [0.1, 0.1]
    """
    for name, module in (("online", online), ("target", target)):
        if not isinstance(module, nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module, got {type(module).__name__}")
    m = _check_fraction("m", m, "MoCo uses 0.99 to 0.999")
    online_params = dict(online.named_parameters())
    target_params = dict(target.named_parameters())
    if online_params.keys() != target_params.keys() or any(
            online_params[k].shape != target_params[k].shape for k in online_params):
        raise ValueError("online and target have different parameters; build the target as copy.deepcopy(online)")
    for name, param in target_params.items():
        param.mul_(m).add_(online_params[name].detach().to(param), alpha=1 - m)


# --------------------------------------------------------------------- SupCon
def supcon_loss(z: Tensor, labels: Tensor, temperature: float = 0.1) -> Tensor:
    r"""Supervised contrastive loss :math:`\mathcal{L}^{sup}_{out}` (Khosla et al. 2020, eq. 2).

    For the views ``z`` (all views of all images, stacked) with labels ``y``, anchor ``i``'s
    positives are :math:`P(i) = \{p \ne i : y_p = y_i\}` and its candidates all
    :math:`A(i) = \{a \ne i\}`:

    .. math:: \ell_i = \frac{-1}{|P(i)|} \sum_{p \in P(i)}
              \log \frac{\exp(z_i \cdot z_p / \tau)}{\sum_{a \in A(i)} \exp(z_i \cdot z_a / \tau)}

    The loss is the mean of :math:`\ell_i` over the anchors that have a positive. With one
    label per image (each image's views share a label no other image has) ``P(i)`` is the
    partner view alone and this is exactly SimCLR's :func:`crl_helpers.losses.nt_xent`.

    Args:
        z: ``(M, d)`` embeddings, e.g. ``torch.cat([z1, z2])`` (M = 2N); normalised here.
        labels: ``(M,)`` integer labels, e.g. ``torch.cat([y, y])``.
        temperature: > 0; the paper uses 0.1.

    Returns:
        A scalar tensor, float32 (float64 for float64 input).

    Raises:
        TypeError: a non-tensor, non-float ``z``, non-integer labels, a non-numeric temperature.
        ValueError: shapes that do not match, a temperature that is not > 0, or no anchor
            with a positive (every label unique: give each image's views the same label).

    Example:
        >>> z1, z2 = torch.eye(3), torch.eye(3) + 0.1
        >>> y = torch.arange(3)
        >>> torch.allclose(supcon_loss(torch.cat([z1, z2]), torch.cat([y, y]), 0.5), nt_xent(z1, z2, 0.5))
        True
    """
    z = _check_embeddings("z", z)
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor (M,), got {labels!r:.60}")
    if labels.shape != (z.shape[0],):
        raise ValueError(f"labels has shape {tuple(labels.shape)} but z has {z.shape[0]} rows; one label per row")
    temperature = _check_positive("temperature", temperature, "SupCon uses 0.1")
    dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = F.normalize(z.to(dtype), dim=1)  # (M, d)
        logits = z @ z.T / temperature  # (M, M)
    labels = labels.to(z.device)
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)  # (M, M)
    positive = (labels[:, None] == labels[None, :]) & ~self_mask  # (M, M)
    n_positives = positive.sum(dim=1)  # (M,)
    has_positive = n_positives > 0
    if not has_positive.any():
        raise ValueError("no anchor has a positive (every label is unique); give each image's views the same label")
    # The anchor itself is never a candidate: -inf leaves it out of the log-sum-exp.
    log_prob = logits - logits.masked_fill(self_mask, float("-inf")).logsumexp(dim=1, keepdim=True)  # (M, M)
    mean_log_prob = (log_prob * positive).sum(dim=1)[has_positive] / n_positives[has_positive]  # (M',)
    return -mean_log_prob.mean()


# -------------------------------------------------------------------- triplet
def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 0.2) -> Tensor:
    r"""FaceNet's triplet loss on the unit sphere (Schroff et al. 2015, eq. 1).

    .. math:: \ell_i = \max\big(\lVert a_i - p_i \rVert^2 - \lVert a_i - n_i \rVert^2 + \alpha,\; 0\big)

    with every embedding L2-normalised (FaceNet constrains :math:`\lVert f(x) \rVert = 1`),
    so squared distances lie in [0, 4]. The loss is the mean over the N triplets. Unlike
    InfoNCE it compares ONE negative per anchor and stops caring once that negative is
    ``margin`` farther than the positive.

    Args:
        anchor, positive, negative: ``(N, d)`` each; row ``i`` is one triplet.
        margin: :math:`\alpha \ge 0`; 0.2 as in FaceNet.

    Returns:
        A scalar tensor, float32 (float64 for float64 inputs).

    Raises:
        TypeError, ValueError: non-tensors, mismatched shapes, a negative or non-finite margin.

    Example:
        >>> a, p, n = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
        >>> triplet_loss(a, p, n, margin=0.2).item()  # 0 - 2 + 0.2 < 0: satisfied
        0.0
        >>> triplet_loss(a, n, p, margin=0.2).item()  # 2 - 0 + 0.2
        2.200000047683716
    """
    anchor = _check_embeddings("anchor", anchor)
    positive = _check_embeddings("positive", positive)
    negative = _check_embeddings("negative", negative)
    if not anchor.shape == positive.shape == negative.shape:
        raise ValueError(f"anchor {tuple(anchor.shape)}, positive {tuple(positive.shape)} and negative "
                         f"{tuple(negative.shape)} must have the same shape, one triplet per row")
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin={margin!r} must be a finite number >= 0; FaceNet uses 0.2")
    dtype = torch.float64 if torch.float64 in (anchor.dtype, positive.dtype, negative.dtype) else torch.float32
    a, p, n = (F.normalize(t.to(dtype), dim=1) for t in (anchor, positive, negative))  # (N, d) each
    d_ap = (a - p).pow(2).sum(dim=1)  # (N,)
    d_an = (a - n).pow(2).sum(dim=1)  # (N,)
    return F.relu(d_ap - d_an + margin).mean()


@torch.no_grad()
def semi_hard_negatives(anchor: Tensor, positive: Tensor, candidates: Tensor | None = None) -> Tensor:
    r"""For each anchor, the index of its semi-hard negative among ``candidates`` (Schroff et al. 2015, sec. 3.2).

    FaceNet warns that the hardest negatives lead to bad local minima (a collapsed model) early
    in training, and picks negatives that are farther than the positive but as close as
    possible: :math:`\arg\min_j \{ d(a_i, c_j) : d(a_i, c_j) > d(a_i, p_i) \}`. When no candidate
    is that far, the farthest one is taken (as TensorFlow Addons' semi-hard loss does).
    Candidate ``i`` is never chosen for anchor ``i`` (it is the anchor's own image).
    Distances are squared Euclidean between normalised rows.

    Args:
        anchor, positive: ``(N, d)``; row ``i`` of each from image ``i``.
        candidates: ``(N, d)`` embeddings of the N images (row ``i`` from image ``i``);
            default ``positive``.

    Returns:
        int64 ``(N,)`` indices into ``candidates``; use ``candidates[index]`` as the negatives.

    Raises:
        TypeError, ValueError: non-tensors, mismatched shapes, N < 2.

    Example:
        >>> a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
        >>> semi_hard_negatives(a, a).tolist()  # the nearest other image, since all are farther than p = a
        [1, 0, 1]
    """
    anchor = _check_embeddings("anchor", anchor)
    positive = _check_embeddings("positive", positive)
    candidates = positive if candidates is None else _check_embeddings("candidates", candidates)
    if not anchor.shape == positive.shape == candidates.shape:
        raise ValueError(f"anchor {tuple(anchor.shape)}, positive {tuple(positive.shape)} and candidates "
                         f"{tuple(candidates.shape)} must have the same shape, row i from image i")
    if anchor.shape[0] < 2:
        raise ValueError("semi-hard mining needs N >= 2 images (a negative must come from another image)")
    a, p, c = (F.normalize(t.float(), dim=1) for t in (anchor, positive, candidates))
    d_ap = (a - p).pow(2).sum(dim=1, keepdim=True)  # (N, 1)
    d_ac = (2 - 2 * a @ c.T).clamp_min(0)  # (N, N) squared distances of unit vectors
    own = torch.eye(len(a), dtype=torch.bool, device=a.device)  # (N, N)
    semi_hard = (d_ac > d_ap) & ~own  # (N, N)
    nearest_outside = d_ac.masked_fill(~semi_hard, float("inf")).argmin(dim=1)  # (N,)
    farthest = d_ac.masked_fill(own, float("-inf")).argmax(dim=1)  # (N,)
    return torch.where(semi_hard.any(dim=1), nearest_outside, farthest)  # (N,)


# ------------------------------------------------------------ one training loop
@dataclass(frozen=True)
class MethodConfig:
    """The knobs of the methods beyond SimCLR; the shared ones (epochs, lr, temperature...) stay in TrainConfig."""

    bank_momentum: float = 0.5  # InstDisc's code: an entry averages its last visits
    bank_negatives: int = 1024  # InstDisc samples 4096 of 1.28M; 1024 is a fifth of the 5,000 shapes
    queue_size: int = 2048  # MoCo's CIFAR setting is 4096 of 50,000; clamped to n_train - batch_size
    moco_momentum: float = 0.99  # 0.999 is for 800 ImageNet epochs; a few hundred steps need a faster follower
    margin: float = 0.2  # FaceNet's alpha, for unit-norm embeddings

    def __post_init__(self) -> None:
        _check_fraction("bank_momentum", self.bank_momentum, "InstDisc uses 0.5")
        _check_int("bank_negatives", self.bank_negatives, 1)
        _check_int("queue_size", self.queue_size, 1)
        _check_fraction("moco_momentum", self.moco_momentum, "MoCo uses 0.99 to 0.999")
        if isinstance(self.margin, bool) or not isinstance(self.margin, numbers.Real) or self.margin < 0:
            raise ValueError(f"margin={self.margin!r} must be a number >= 0; FaceNet uses 0.2")


def _shuffled_key_forward(key_model: nn.Module, x: Tensor, generator: torch.Generator, groups: int = 2) -> Tensor:
    """MoCo's shuffling BN on one device: the keys' BatchNorm sees a different mix of images than the queries'.

    Without it the query and its key are normalised with statistics of the same images, a
    signal the model can use to find its positive without learning anything (He et al. 2020,
    sec. 3.3). Here the key batch is permuted and split into ``groups`` sub-batches, each
    normalised on its own, then un-permuted.
    """
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)  # (B,)
    chunks = [key_model(chunk)[1] for chunk in x[perm].chunk(groups)]
    z = torch.cat(chunks)  # (B, d), permuted order
    return z[torch.argsort(perm)]  # (B, d), original order


def train_method(method: str, config=None, data=None, *, options: MethodConfig = MethodConfig(),
                 callback: Callable[[int, nn.Module, dict], None] | None = None) -> dict:
    """Pretrain with one of :data:`METHODS` in SimCLR's loop, then report kNN accuracy (test).

    Everything but the objective comes from ``config`` and :mod:`crl_helpers.train`: the model
    (:func:`~crl_helpers.train.build_model`), the optimizer, the warm-up + cosine learning rate
    (:func:`~crl_helpers.train.cosine_schedule`), the batched views
    (:class:`~crl_helpers.views.ViewAugmenter`), the kNN read-out. Per method:

    * ``"simclr"``: NT-Xent over the two views of the batch (Chen et al. 2020);
    * ``"memory_bank"``: one view; InfoNCE against the image's bank entry and
      ``options.bank_negatives`` random entries (Wu et al. 2018);
    * ``"moco"``: query = view 1 through the model, key = view 2 through a momentum copy
      (with shuffled BN); InfoNCE against the queue (He et al. 2020);
    * ``"supcon"``: SupCon with the class labels, so it is SUPERVISED (Khosla et al. 2020);
    * ``"triplet"``: view 1 as anchor, view 2 as positive, the semi-hard other image's view 2
      as negative (Schroff et al. 2015).

    Args:
        method: one of :data:`METHODS`.
        config: a :class:`~crl_helpers.train.TrainConfig` (default ``train.CPU``); ``out_dir``
            is ignored (nothing is written), ``progress`` shows a tqdm bar.
        data: ``(train, test)`` :class:`~crl_helpers.data.ImageData`; default ``train.load_data(config)``.
        options: the method-specific knobs.
        callback: ``callback(epoch, model, row)`` after each epoch.

    Returns:
        ``{"method", "knn_acc", "final_loss", "history" (per epoch: epoch, loss, seconds),
        "train_seconds", "negatives" (negative keys per query), "memory" (the MemoryBank or
        MoCoQueue, else None), "model" (the trained SimCLRModel, on the CPU), "mean", "std"}``.

    Raises:
        ValueError: an unknown method, a batch larger than the training set.
        crl_helpers.train.NonFiniteLossError: the loss became NaN or inf.
    """
    import copy

    from crl_helpers.device import autocast_dtype, pick_device
    from crl_helpers.evaluate import extract_embeddings, knn_accuracy
    from crl_helpers.train import (CPU, NonFiniteLossError, build_model, build_optimizer, cosine_schedule, epoch_seeds,
                                   load_data)
    from crl_helpers.views import ViewAugmenter

    if method not in METHODS:
        raise ValueError(f"method={method!r} is unknown; choose one of {', '.join(METHODS)}")
    config = CPU if config is None else config
    if not isinstance(options, MethodConfig):
        raise TypeError(f"options must be a MethodConfig, got {type(options).__name__}")
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    train_data, test_data = data if data is not None else load_data(config)
    n_train = len(train_data)
    if config.batch_size > n_train:
        raise ValueError(f"batch_size={config.batch_size} exceeds the {n_train} training images; lower it")
    mean, std = train_data.channel_stats()
    views = replace(config.views, image_size=train_data.image_size, mean=mean, std=std)

    model = build_model(config).to(device)
    optimizer = build_optimizer(model, config, device)
    steps_per_epoch = n_train // config.batch_size
    lr_schedule = cosine_schedule(config.lr, config.epochs, steps_per_epoch, config.warmup_epochs)
    amp = autocast_dtype(device)
    store_gen = torch.Generator().manual_seed(config.seed + 1)  # bank/queue init and sampling
    dim = model.head.out_dim

    bank = queue = key_model = None
    n_negatives = {"simclr": 2 * config.batch_size - 2, "supcon": 2 * config.batch_size - 2, "triplet": 1}.get(method)
    if method == "memory_bank":
        bank = MemoryBank(n_train, dim, options.bank_momentum, generator=store_gen).to(device)
        n_negatives = min(options.bank_negatives, n_train)
    elif method == "moco":
        # A queue longer than the data minus a batch would hold keys of the current images (false negatives).
        n_negatives = max(config.batch_size, min(options.queue_size, n_train - config.batch_size))
        queue = MoCoQueue(n_negatives, dim, generator=store_gen).to(device)
        key_model = copy.deepcopy(model).requires_grad_(False)
    y_train = train_data.y.to(device)

    # Views as train.train makes them (same generator, seeds and call), so the SimCLR arm IS the train loop.
    augment = ViewAugmenter(views, device, n_views=1 if method == "memory_bank" else 2)

    def objective(x: Tensor, index: Tensor) -> Tensor:
        if method == "memory_bank":
            x1 = augment(x)  # (B, 3, S, S): InstDisc uses a single view
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                _, z = model(x1)  # (B, d)
            z = z.float()
            loss = info_nce(z, bank[index], bank.negatives(n_negatives, store_gen), config.temperature, validate=False)
            bank.update(index, z)
            return loss
        x12 = augment(x)  # (2B, 3, S, S) = [view 1; view 2]
        x1, x2 = x12.chunk(2)  # (B, 3, S, S) each
        if method == "moco":
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                _, query = model(x1)  # (B, d)
                with torch.no_grad():
                    key = _shuffled_key_forward(key_model, x2, store_gen)  # (B, d)
            negatives = queue.keys.clone()  # (K, d): snapshot, since enqueue below writes in place
            loss = info_nce(query.float(), key.float(), negatives, config.temperature, validate=False)
            queue.enqueue(key.float())
            return loss
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            _, z = model(x12)  # (2B, d): one forward, BN sees both views
        z1, z2 = z.float().chunk(2)  # (B, d) each
        if method == "simclr":
            return nt_xent(z1, z2, config.temperature, validate=False)
        if method == "supcon":
            y = y_train[index]  # (B,)
            return supcon_loss(torch.cat([z1, z2]), torch.cat([y, y]), config.temperature)
        negative = z2[semi_hard_negatives(z1, z2)]  # (B, d): another image's view, just past the positive
        return triplet_loss(z1, z2, negative, options.margin)

    progress = None
    if config.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=config.epochs * steps_per_epoch, desc=method, unit="step", dynamic_ncols=True)
    x_train = train_data.x.to(device)  # uint8 (N, 3, H, W)
    order_gen = torch.Generator()
    history: list[dict] = []
    for epoch in range(config.epochs):
        model.train()
        order_seed, view_seed = epoch_seeds(config.seed, epoch)  # as train.train: same batches and views
        order = torch.randperm(n_train, generator=order_gen.manual_seed(order_seed))  # (N,) CPU: indexes the bank too
        augment.manual_seed(view_seed)
        total, t0 = 0.0, time.perf_counter()
        for i in range(steps_per_epoch):
            for group in optimizer.param_groups:
                group["lr"] = lr_schedule[epoch * steps_per_epoch + i]
            index = order[i * config.batch_size:(i + 1) * config.batch_size]  # (B,)
            loss = objective(x_train[index.to(device)], index.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if key_model is not None:
                momentum_update(model, key_model, options.moco_momentum)
            total += loss.item()
            if progress is not None:
                progress.set_postfix(epoch=epoch + 1, loss=f"{total / (i + 1):.3f}", refresh=False)
                progress.update(1)
        row = {"epoch": epoch + 1, "loss": total / steps_per_epoch, "seconds": time.perf_counter() - t0}
        if not math.isfinite(row["loss"]):
            if progress is not None:
                progress.close()
            raise NonFiniteLossError(f"{method}: the loss became {row['loss']} in epoch {epoch + 1}; "
                                     f"lower the lr or raise the temperature")
        history.append(row)
        if callback is not None:
            callback(epoch + 1, model, row)
    if progress is not None:
        progress.close()

    v_train = extract_embeddings(model.encoder, train_data.x, device=device, mean=mean, std=std)  # (N, D)
    v_test = extract_embeddings(model.encoder, test_data.x, device=device, mean=mean, std=std)  # (M, D)
    knn_acc = knn_accuracy(v_train, train_data.y, v_test, test_data.y, k=config.knn_k,
                           temperature=config.knn_temperature)
    memory = bank.to("cpu") if bank is not None else queue.to("cpu") if queue is not None else None
    return {"method": method, "knn_acc": knn_acc, "final_loss": history[-1]["loss"], "history": history,
            "train_seconds": sum(r["seconds"] for r in history), "negatives": n_negatives, "memory": memory,
            "model": model.cpu(), "mean": mean, "std": std}
