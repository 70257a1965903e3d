r"""Objectives: what one training step optimises, as modules that plug into the one training loop.

SimCLR (Chen et al. 2020) takes its negatives from the current batch, so more negatives
cost a bigger batch, and its positives are only other views of the same image. The
objectives here change one piece of that recipe each; everything else (model, optimizer,
learning-rate schedule, views, seeds) is :func:`crl_helpers.train.train`'s, so a comparison
of methods differs only in the objective.

* :class:`SimCLR` -- NT-Xent over the two views of the batch (Chen et al. 2020); the only
  objective that runs under torchrun (its negatives are gathered from every process).
* :class:`InstDisc` with :class:`MemoryBank` -- InstDisc (Wu, Xiong, Yu, Lin 2018,
  "Unsupervised Feature Learning via Non-Parametric Instance Discrimination"): one view per
  image, one stored embedding per training image refreshed by a moving average each time the
  image is seen; negatives are sampled from the bank.
* :class:`MoCo` with :class:`MoCoQueue` and :func:`momentum_update` -- MoCo (He, Fan, Wu, Xie,
  Girshick 2020, "Momentum Contrast for Unsupervised Visual Representation Learning"): keys
  from a slowly moving copy of the encoder, kept in a FIFO queue that outlives the batch.
* :class:`SupCon` with :func:`supcon_loss` -- SupCon (Khosla et al. 2020, "Supervised
  Contrastive Learning"), the :math:`\mathcal{L}^{sup}_{out}` form: every view with the same
  label is a positive (this objective uses labels: it is supervised).
* :class:`Triplet` with :func:`triplet_loss` and :func:`semi_hard_negatives` -- FaceNet
  (Schroff, Kalenichenko, Philbin 2015): one positive, one negative, a margin instead of a softmax.
* :class:`Debiased` with :func:`crl_helpers.losses.debiased_nt_xent` -- Debiased Contrastive
  Learning (Chuang, Robinson, Lin, Torralba, Jegelka 2020): SimCLR's batch with the expected
  share of same-class "negatives" (class prior ``1 / C``) taken out of the denominator.
* :class:`SimSiam` with :func:`simsiam_loss` -- SimSiam (Chen & He 2021, "Exploring Simple
  Siamese Representation Learning"): no negatives at all; a predictor on one branch and a
  stop-gradient on the other. ``"simsiam_no_stopgrad"`` is the paper's ablation without it.

Every objective is an :class:`Objective`: ``objective(model, views, index, labels)`` returns
``(loss, z1, z2)``: the loss to differentiate and the detached embeddings of the queries and
of their positive keys (the loop's alignment, uniformity and contrastive accuracy read them).
State (bank, queue, momentum encoder) lives in the module's buffers and submodules, so
``objective.state_dict()`` is checkpointed with the model. :func:`build_objective` makes one
from a config's ``method`` and ``objective`` fields.

Example:
    >>> from crl_helpers.models import ProjectionHead, SimCLRModel, SmallConvNet
    >>> model = SimCLRModel(SmallConvNet(width=8), ProjectionHead(128, 32, 16))
    >>> objective = MoCo(model, temperature=0.2, queue_size=8)
    >>> x12 = torch.randn(8, 3, 32, 32)  # [view 1; view 2] of 4 images
    >>> loss, z1, z2 = objective(model, x12, index=torch.arange(4), labels=torch.zeros(4, dtype=torch.long))
    >>> loss.ndim, z1.shape, int(objective.queue.ptr)
    (0, torch.Size([4, 16]), 4)
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crl_helpers.distributed import nt_xent_distributed
from crl_helpers.losses import compute_dtype, debiased_nt_xent, info_nce, normalize_rows, nt_xent
from crl_helpers.models import ProjectionHead
from crl_helpers.validate import (check_embedding_pair, check_embeddings, check_fraction, check_int, check_nonnegative,
                                  check_positive, check_temperature)

__all__ = [
    "METHODS",
    "ObjectiveConfig",
    "Objective",
    "SimCLR",
    "InstDisc",
    "MoCo",
    "SupCon",
    "Triplet",
    "Debiased",
    "SimSiam",
    "build_objective",
    "MemoryBank",
    "MoCoQueue",
    "momentum_update",
    "supcon_loss",
    "triplet_loss",
    "semi_hard_negatives",
    "simsiam_loss",
]

#: The objectives ``crl train --method`` offers; only "simclr" runs under torchrun.
METHODS = ("simclr", "instdisc", "moco", "supcon", "triplet", "debiased", "simsiam", "simsiam_no_stopgrad")


def _unit_rows(n: int, dim: int, generator: torch.Generator | None) -> Tensor:
    # Random directions: a fresh bank or queue holds no information, but is spread over the sphere.
    return F.normalize(torch.randn(n, dim, generator=generator), dim=1)  # (n, dim)


# ----------------------------------------------------------------- memory bank
class MemoryBank(nn.Module):
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
        bank: ``(size, dim)`` float32 buffer of unit rows (in ``state_dict``, moved by ``.to``).

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
        super().__init__()
        self.size = check_int("size", size, 1)
        self.dim = check_int("dim", dim, 1)
        self.momentum = check_fraction("momentum", momentum, "InstDisc uses 0.5")
        if self.momentum == 1.0:
            raise ValueError("momentum=1.0 would never update the bank; use a value in [0, 1), e.g. 0.5")
        self.register_buffer("bank", _unit_rows(self.size, self.dim, generator))  # (size, dim)

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
    def update(self, index: Tensor, z: Tensor, *, validate: bool = True) -> None:
        """Move the entries of images ``index`` ``(B,)`` towards embeddings ``z`` ``(B, dim)`` and renormalise.

        ``z`` is normalised first (only its direction counts, whatever its scale) and detached. Indices
        must be distinct within one call (a batch never holds an image twice). ``validate=False`` skips
        the NaN/inf scan of ``z`` (a host sync), for a training step that checks its loss.

        Raises:
            TypeError, ValueError: bad index, mismatched shapes, repeated indices, NaN/inf in ``z``
                (a NaN entry would poison every later loss that draws it).
        """
        index = self._check_index(index)
        z = check_embeddings("z", z, self.dim, finite=validate)
        if z.shape[0] != index.shape[0]:
            raise ValueError(f"z has {z.shape[0]} rows but index has {index.shape[0]}; one index per embedding")
        if index.unique().numel() != index.numel():
            raise ValueError("index repeats an image; a batch must hold each image once")
        z = normalize_rows(z.detach(), self.bank.dtype).to(self.bank.device)  # (B, dim)
        mixed = self.momentum * self.bank[index] + (1 - self.momentum) * z  # (B, dim)
        self.bank[index] = F.normalize(mixed, dim=1)

    def negatives(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` entries drawn uniformly with replacement, ``(n, dim)``: the negatives shared by a batch.

        A draw can hit a query's own image; with ``n`` much smaller than ``size`` this is rare
        and, as in InstDisc, ignored.
        """
        n = check_int("n", n, 1)
        index = torch.randint(self.size, (n,), generator=generator)  # (n,)
        return self.bank[index.to(self.bank.device)].clone()  # (n, dim)

    def loss(self, query: Tensor, index: Tensor, n_negatives: int, temperature: float,
             generator: torch.Generator | None = None) -> Tensor:
        """InfoNCE of ``query`` ``(B, dim)`` against its own entries and ``n_negatives`` random entries.

        Equals ``info_nce(query, self[index], self.negatives(n_negatives), temperature)``.
        """
        return info_nce(query, self[index], self.negatives(n_negatives, generator), temperature)


# ------------------------------------------------------------------- MoCo
class MoCoQueue(nn.Module):
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
        keys: ``(size, dim)`` buffer; row ``ptr`` is the next to be overwritten (the oldest).
        ptr: a 0-d int64 buffer (both in ``state_dict``, moved by ``.to``).

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
        super().__init__()
        self.size = check_int("size", size, 1)
        self.dim = check_int("dim", dim, 1)
        self.register_buffer("keys", _unit_rows(self.size, self.dim, generator))  # (size, dim)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: Tensor, *, validate: bool = True) -> None:
        """Add ``keys`` ``(B, dim)`` (normalised whatever their scale, detached), overwriting the ``B`` oldest.

        ``validate=False`` skips the NaN/inf scan of ``keys`` (a host sync), for a training step.

        Raises:
            TypeError, ValueError: not a 2-D float tensor of width ``dim``; ``B > size``
                (a batch would overwrite its own keys: make the queue larger than the batch); NaN/inf.
        """
        keys = check_embeddings("keys", keys, self.dim, finite=validate)
        b = keys.shape[0]
        if b > self.size:
            raise ValueError(f"keys has {b} rows but the queue holds {self.size}; use a queue of at least "
                             f"batch_size keys (MoCo: many batches)")
        ptr = int(self.ptr)
        slots = (ptr + torch.arange(b)) % self.size  # (B,) wraps around the ring
        self.keys[slots.to(self.keys.device)] = normalize_rows(keys.detach(), self.keys.dtype).to(self.keys.device)
        self.ptr.fill_((ptr + b) % self.size)

    def ordered(self) -> Tensor:
        """The keys oldest first, ``(size, dim)`` (a copy): ``keys`` rolled so the ring starts at ``ptr``."""
        return torch.roll(self.keys, shifts=-int(self.ptr), dims=0).clone()


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
    m = check_fraction("m", m, "MoCo uses 0.99 to 0.999")
    online_params = dict(online.named_parameters())
    target_params = dict(target.named_parameters())
    if online_params.keys() != target_params.keys() or any(
            online_params[k].shape != target_params[k].shape for k in online_params):
        raise ValueError("online and target have different parameters; build the target as copy.deepcopy(online)")
    for name, param in target_params.items():
        param.mul_(m).add_(online_params[name].detach().to(param), alpha=1 - m)


# --------------------------------------------------------------------- SupCon
def supcon_loss(z: Tensor, labels: Tensor, temperature: float = 0.1, *, validate: bool = True) -> Tensor:
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
        temperature: > 0; the paper uses 0.1. The rule of every loss (:func:`crl_helpers.validate.check_temperature`).
        validate: False skips the NaN/inf scan of ``z`` (a host sync), for a training step that checks its loss.

    Returns:
        A scalar tensor, float32 (float64 for float64 input). Rows are normalised whatever their scale
        (:func:`crl_helpers.losses.normalize_rows`), so ``z * 1e20`` gives the same loss.

    Raises:
        TypeError: a non-tensor, non-float ``z``, non-integer labels, a non-numeric temperature.
        ValueError: shapes that do not match, fewer than 2 rows, NaN/inf in ``z``, a temperature that is
            not finite and >= 1e-8, or no anchor with a positive (every label unique: give each image's
            views the same label).

    Example:
        >>> z1, z2 = torch.eye(3), torch.eye(3) + 0.1
        >>> y = torch.arange(3)
        >>> torch.allclose(supcon_loss(torch.cat([z1, z2]), torch.cat([y, y]), 0.5), nt_xent(z1, z2, 0.5))
        True
    """
    z = check_embeddings("z", z, min_rows=2, why="an anchor needs another row as its positive", finite=validate)
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor (M,), got {labels!r:.60}")
    if labels.shape != (z.shape[0],):
        raise ValueError(f"labels has shape {tuple(labels.shape)} but z has {z.shape[0]} rows; one label per row")
    temperature = check_temperature(temperature, z)
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = normalize_rows(z)  # (M, d), float32 (float64 stays float64)
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
def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 0.2, *,
                 validate: bool = True) -> Tensor:
    r"""FaceNet's triplet loss on the unit sphere (Schroff et al. 2015, eq. 1).

    .. math:: \ell_i = \max\big(\lVert a_i - p_i \rVert^2 - \lVert a_i - n_i \rVert^2 + \alpha,\; 0\big)

    with every embedding L2-normalised (FaceNet constrains :math:`\lVert f(x) \rVert = 1`),
    so squared distances lie in [0, 4]. The loss is the mean over the N triplets. Unlike
    InfoNCE it compares ONE negative per anchor and stops caring once that negative is
    ``margin`` farther than the positive.

    Args:
        anchor, positive, negative: ``(N, d)`` each; row ``i`` is one triplet.
        margin: :math:`\alpha \ge 0`; 0.2 as in FaceNet.
        validate: False skips the NaN/inf scan of the inputs (a host sync), for a training step.

    Returns:
        A scalar tensor, float32 (float64 for float64 inputs); rows are normalised whatever their scale.

    Raises:
        TypeError, ValueError: non-tensors, mismatched shapes, no rows, NaN/inf in an input, a negative
            or non-finite margin.

    Example:
        >>> a, p, n = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
        >>> triplet_loss(a, p, n, margin=0.2).item()  # 0 - 2 + 0.2 < 0: satisfied
        0.0
        >>> triplet_loss(a, n, p, margin=0.2).item()  # 2 - 0 + 0.2
        2.200000047683716
    """
    anchor, positive, negative = (check_embeddings(name, t, min_rows=1, finite=validate) for name, t in
                                  (("anchor", anchor), ("positive", positive), ("negative", negative)))
    if not anchor.shape == positive.shape == negative.shape:
        raise ValueError(f"anchor {tuple(anchor.shape)}, positive {tuple(positive.shape)} and negative "
                         f"{tuple(negative.shape)} must have the same shape, one triplet per row")
    margin = check_nonnegative("margin", margin, "FaceNet uses 0.2")
    dtype = compute_dtype(anchor, positive, negative)
    a, p, n = (normalize_rows(t, dtype) for t in (anchor, positive, negative))  # (N, d) each
    d_ap = (a - p).pow(2).sum(dim=1)  # (N,)
    d_an = (a - n).pow(2).sum(dim=1)  # (N,)
    return F.relu(d_ap - d_an + margin).mean()


@torch.no_grad()
def semi_hard_negatives(anchor: Tensor, positive: Tensor, candidates: Tensor | None = None, *,
                        validate: bool = True) -> Tensor:
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
        validate: False skips the NaN/inf scan (a host sync), for a training step.

    Returns:
        int64 ``(N,)`` indices into ``candidates``; use ``candidates[index]`` as the negatives.

    Raises:
        TypeError, ValueError: non-tensors, mismatched shapes, N < 2, NaN/inf.

    Example:
        >>> a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
        >>> semi_hard_negatives(a, a).tolist()  # the nearest other image, since all are farther than p = a
        [1, 0, 1]
    """
    anchor = check_embeddings("anchor", anchor, finite=validate)
    positive = check_embeddings("positive", positive, finite=validate)
    candidates = positive if candidates is None else check_embeddings("candidates", candidates, finite=validate)
    if not anchor.shape == positive.shape == candidates.shape:
        raise ValueError(f"anchor {tuple(anchor.shape)}, positive {tuple(positive.shape)} and candidates "
                         f"{tuple(candidates.shape)} must have the same shape, row i from image i")
    if anchor.shape[0] < 2:
        raise ValueError("semi-hard mining needs N >= 2 images (a negative must come from another image)")
    a, p, c = (normalize_rows(t, torch.float32) for t in (anchor, positive, candidates))  # any scale
    d_ap = (a - p).pow(2).sum(dim=1, keepdim=True)  # (N, 1)
    d_ac = (2 - 2 * a @ c.T).clamp_min(0)  # (N, N) squared distances of unit vectors
    own = torch.eye(len(a), dtype=torch.bool, device=a.device)  # (N, N)
    semi_hard = (d_ac > d_ap) & ~own  # (N, N)
    nearest_outside = d_ac.masked_fill(~semi_hard, float("inf")).argmin(dim=1)  # (N,)
    farthest = d_ac.masked_fill(own, float("-inf")).argmax(dim=1)  # (N,)
    return torch.where(semi_hard.any(dim=1), nearest_outside, farthest)  # (N,)


# ------------------------------------------------------------------ objectives
@dataclass(frozen=True)
class ObjectiveConfig:
    """The knobs of the objectives beyond SimCLR; the shared ones (temperature, batch, lr...) are the run's."""

    bank_momentum: float = 0.5  # InstDisc's code: an entry averages its last visits
    bank_negatives: int = 1024  # InstDisc samples 4096 of 1.28M; 1024 is a fifth of the 5,000 shapes
    queue_size: int = 2048  # MoCo's CIFAR setting is 4096 of 50,000; clamped to n_train - batch_size
    moco_momentum: float = 0.99  # 0.999 is for 800 ImageNet epochs; a few hundred steps need a faster follower
    margin: float = 0.2  # FaceNet's alpha, for unit-norm embeddings

    def __post_init__(self) -> None:
        check_fraction("bank_momentum", self.bank_momentum, "InstDisc uses 0.5")
        if self.bank_momentum == 1.0:
            raise ValueError("bank_momentum=1.0 would never update the bank; use a value in [0, 1), e.g. 0.5")
        check_int("bank_negatives", self.bank_negatives, 1)
        check_int("queue_size", self.queue_size, 1)
        check_fraction("moco_momentum", self.moco_momentum, "MoCo uses 0.99 to 0.999")
        check_nonnegative("margin", self.margin, "FaceNet uses 0.2")


class Objective(nn.Module):
    """What one step of the training loop optimises; subclasses are the methods of :data:`METHODS`.

    ``forward(model, views, index, labels) -> (loss, z1, z2)``:

    * ``model``: the :class:`~crl_helpers.models.SimCLRModel` (``model(x)`` returns ``(v, z)``);
    * ``views``: ``(n_views * B, 3, S, S)``, view 1 of the batch's images first;
    * ``index``: ``(B,)`` the images' positions in the training set (the memory bank's keys);
    * ``labels``: ``(B,)`` their class labels (only :class:`SupCon` reads them);
    * ``loss``: a scalar in float32 (the model runs under ``amp`` autocast, the loss does not);
    * ``z1, z2``: ``(B, d)`` detached embeddings of the queries and of their positive keys.

    Class attributes: ``n_views`` (views per image the loop must make), ``distributable``
    (runs under torchrun), ``uses_labels`` (supervised).
    """

    n_views = 2
    distributable = False
    uses_labels = False
    halt_on_collapse = True  # the loop stops a run whose embeddings collapse (False: collapse is what is studied)

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature, "try 0.1 to 0.5")
        self.amp: torch.dtype | None = None  # autocast dtype of the model's forward; set by the training step
        self.generator = torch.Generator()  # the objective's own draws (bank negatives, MoCo's shuffle)

    def manual_seed(self, seed: int) -> "Objective":
        """Reseed the objective's own random draws (the loop does it every epoch, so a resumed run repeats them)."""
        self.generator.manual_seed(seed)
        return self

    def embed(self, model: nn.Module, x: Tensor) -> Tensor:
        """``z`` of images ``x`` ``(B, 3, S, S)`` -> ``(B, d)`` float32, the forward under ``amp`` autocast."""
        with torch.autocast(x.device.type, dtype=self.amp, enabled=self.amp is not None):
            _, z = model(x)  # (B, d)
        return z.float()

    def negatives_per_query(self, batch_size: int) -> int:
        """How many negative keys each query is contrasted with at this batch size."""
        return 2 * batch_size - 2

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        """Called after each optimizer step (MoCo moves its key encoder here)."""


class SimCLR(Objective):
    """NT-Xent over both views of the batch (Chen et al. 2020): :func:`~crl_helpers.losses.nt_xent`.

    Under torchrun (``distributed=True``) the keys of every process are gathered, so each
    query sees the negatives of the global batch (:func:`~crl_helpers.distributed.nt_xent_distributed`).
    """

    distributable = True

    def __init__(self, temperature: float = 0.2, distributed: bool = False) -> None:
        super().__init__(temperature)
        self.distributed = distributed

    def forward(self, model: nn.Module, views: Tensor, index: Tensor | None = None,
                labels: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        z1, z2 = self.embed(model, views).chunk(2)  # (B, d) each: one forward, so BN sees both views
        loss_fn = nt_xent_distributed if self.distributed else nt_xent
        loss = loss_fn(z1, z2, self.temperature, validate=False)  # the loop checks the loss once per epoch
        return loss, z1.detach(), z2.detach()


class InstDisc(Objective):
    """Instance discrimination with a memory bank (Wu et al. 2018): ONE view per image.

    The query ``z_i`` of image ``i`` is scored against its own bank entry (the positive key)
    and ``n_negatives`` entries drawn at random (shared by the batch) with InfoNCE; then the
    entries of the batch's images move towards their new embeddings (:meth:`MemoryBank.update`).
    ``z2`` is the positive keys as they were before the update.
    """

    n_views = 1

    def __init__(self, n_images: int, dim: int, temperature: float = 0.2, n_negatives: int = 1024,
                 momentum: float = 0.5, generator: torch.Generator | None = None) -> None:
        super().__init__(temperature)
        self.bank = MemoryBank(n_images, dim, momentum, generator=generator)
        self.n_negatives = check_int("n_negatives", n_negatives, 1)

    def negatives_per_query(self, batch_size: int) -> int:
        return self.n_negatives

    def forward(self, model: nn.Module, views: Tensor, index: Tensor, labels: Tensor | None = None
                ) -> tuple[Tensor, Tensor, Tensor]:
        z = self.embed(model, views)  # (B, d)
        positive = self.bank[index]  # (B, d) a copy: the update below does not change it
        loss = info_nce(z, positive, self.bank.negatives(self.n_negatives, self.generator), self.temperature,
                        validate=False)
        self.bank.update(index, z, validate=False)
        return loss, z.detach(), positive


def _shuffled_key_forward(objective: Objective, key_model: nn.Module, x: Tensor, groups: int = 2) -> Tensor:
    """MoCo's shuffling BN on one device: the keys' BatchNorm sees a different mix of images than the queries'.

    Without it the query and its key are normalised with statistics of the same images, a
    signal the model can use to find its positive without learning anything (He et al. 2020,
    sec. 3.3). Here the key batch is permuted and split into ``groups`` sub-batches, each
    normalised on its own, then un-permuted.
    """
    perm = torch.randperm(x.shape[0], generator=objective.generator).to(x.device)  # (B,)
    z = torch.cat([objective.embed(key_model, chunk) for chunk in x[perm].chunk(groups)])  # (B, d), permuted
    return z[torch.argsort(perm)]  # (B, d), original order


class MoCo(Objective):
    """Momentum contrast (He et al. 2020): query = view 1 through the model, key = view 2 through a momentum copy.

    The loss is InfoNCE of the query against its key and the queue's keys; then the batch's keys
    are enqueued, and after the optimizer step the key model follows the model by
    :func:`momentum_update`. The key model (``key_model``) starts as a copy of ``model``.
    """

    def __init__(self, model: nn.Module, temperature: float = 0.2, queue_size: int = 2048,
                 momentum: float = 0.99, generator: torch.Generator | None = None) -> None:
        super().__init__(temperature)
        self.momentum = check_fraction("momentum", momentum, "MoCo uses 0.99 to 0.999")
        self.key_model = copy.deepcopy(model).requires_grad_(False)
        self.queue = MoCoQueue(queue_size, model.head.out_dim, generator=generator)

    def negatives_per_query(self, batch_size: int) -> int:
        return self.queue.size

    def forward(self, model: nn.Module, views: Tensor, index: Tensor | None = None,
                labels: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        x1, x2 = views.chunk(2)  # (B, 3, S, S) each
        query = self.embed(model, x1)  # (B, d)
        with torch.no_grad():
            key = _shuffled_key_forward(self, self.key_model, x2)  # (B, d)
        negatives = self.queue.keys.clone()  # (K, d): a snapshot, since enqueue writes in place
        loss = info_nce(query, key, negatives, self.temperature, validate=False)
        self.queue.enqueue(key[-self.queue.size:], validate=False)  # a queue shorter than the batch keeps its newest keys
        return loss, query.detach(), key

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        momentum_update(model, self.key_model, self.momentum)


class SupCon(Objective):
    """Supervised contrastive learning (Khosla et al. 2020): views with the same LABEL are positives."""

    uses_labels = True

    def forward(self, model: nn.Module, views: Tensor, index: Tensor | None = None,
                labels: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        z1, z2 = self.embed(model, views).chunk(2)  # (B, d) each
        loss = supcon_loss(torch.cat([z1, z2]), torch.cat([labels, labels]), self.temperature, validate=False)
        return loss, z1.detach(), z2.detach()


class Debiased(Objective):
    """SimCLR's views and negatives with the debiased loss (Chuang et al. 2020): :func:`~crl_helpers.losses.debiased_nt_xent`.

    ``tau_plus`` is the class prior: the probability that a random other image shares the anchor's
    class, ``1 / C`` for C balanced classes. The labels themselves are never read.
    """

    def __init__(self, temperature: float = 0.2, tau_plus: float = 0.1) -> None:
        super().__init__(temperature)
        self.tau_plus = tau_plus

    def forward(self, model: nn.Module, views: Tensor, index: Tensor | None = None,
                labels: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        z1, z2 = self.embed(model, views).chunk(2)  # (B, d) each
        loss = debiased_nt_xent(z1, z2, self.temperature, self.tau_plus, validate=False)
        return loss, z1.detach(), z2.detach()


def simsiam_loss(p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor, stop_gradient: bool = True, *,
                 validate: bool = True) -> Tensor:
    r"""SimSiam's symmetrised negative cosine (Chen & He 2021, eq. 2 and Algorithm 1).

    .. math:: \mathcal{L} = \tfrac12 D(p_1, \mathrm{sg}(z_2)) + \tfrac12 D(p_2, \mathrm{sg}(z_1)),
              \qquad D(p, z) = -\frac{p}{\lVert p\rVert} \cdot \frac{z}{\lVert z\rVert}

    ``p_i`` is the predictor's output on view ``i``'s projection ``z_i``. The stop-gradient
    :math:`\mathrm{sg}` makes the projection of the OTHER view a constant target; with
    ``stop_gradient=False`` the gradient also flows into ``z``, the ablation whose embeddings
    collapse in the paper (Fig. 2). No negatives: the loss lies in [-1, 1], -1 when every
    prediction points at its target.

    Args:
        p1, p2: ``(N, d)`` predictions from view 1 and view 2.
        z1, z2: ``(N, d)`` projections of view 1 and view 2 (the targets).
        stop_gradient: detach the targets, as SimSiam does.
        validate: False skips the NaN/inf scan of the inputs (a host sync), for a training step.

    Returns:
        A scalar tensor, float32 (float64 for float64 inputs).

    Raises:
        TypeError, ValueError: non-tensors, non-float, shapes that differ, no rows, or NaN/inf.

    Example:
        >>> z = torch.randn(4, 8, requires_grad=True)
        >>> abs(simsiam_loss(z, z, z, z).item() + 1) < 1e-6  # every prediction on its target
        True
    """
    p1, z2 = check_embedding_pair("p1", p1, "z2", z2, min_rows=1, finite=validate)
    p2, z1 = check_embedding_pair("p2", p2, "z1", z1, min_rows=1, finite=validate)
    if p1.shape != p2.shape:
        raise ValueError(f"p1 {tuple(p1.shape)} and p2 {tuple(p2.shape)} must have the same shape, row i from image i")
    if stop_gradient:
        z1, z2 = z1.detach(), z2.detach()
    with torch.autocast(device_type=p1.device.type, enabled=False):
        d12 = -(normalize_rows(p1) * normalize_rows(z2)).sum(dim=1).mean()  # D(p1, z2)
        d21 = -(normalize_rows(p2) * normalize_rows(z1)).sum(dim=1).mean()  # D(p2, z1)
        return 0.5 * d12 + 0.5 * d21


class SimSiam(Objective):
    """SimSiam (Chen & He 2021): a predictor MLP on each branch, the other branch's projection as the target.

    The predictor ``h`` is a 2-layer MLP with a bottleneck of a quarter of ``d`` (2048 -> 512 ->
    2048 in the paper), trained with the model (the loop's optimizer includes the objective's
    trainable parameters). ``stop_gradient=False`` is the paper's ablation: the run is then
    allowed to collapse (``halt_on_collapse`` is False), since that collapse is what it shows.
    No negatives: ``negatives_per_query`` is 0.
    """

    def __init__(self, dim: int, stop_gradient: bool = True) -> None:
        super().__init__()
        if not isinstance(stop_gradient, bool):
            raise TypeError(f"stop_gradient={stop_gradient!r} must be True or False")
        self.stop_gradient = stop_gradient
        self.halt_on_collapse = stop_gradient
        self.predictor = ProjectionHead(dim, max(1, dim // 4), dim, depth=2)  # (B, d) -> (B, d)

    def negatives_per_query(self, batch_size: int) -> int:
        return 0

    def forward(self, model: nn.Module, views: Tensor, index: Tensor | None = None,
                labels: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        z = self.embed(model, views)  # (2B, d): one forward, so BN sees both views
        p = self.predictor(z)  # (2B, d)
        z1, z2 = z.chunk(2)  # (B, d) each
        p1, p2 = p.chunk(2)  # (B, d) each
        loss = simsiam_loss(p1, p2, z1, z2, self.stop_gradient, validate=False)
        return loss, z1.detach(), z2.detach()


class Triplet(Objective):
    """Triplet loss (Schroff et al. 2015): view 1 the anchor, view 2 the positive, a semi-hard other image's view 2."""

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        self.margin = margin

    def negatives_per_query(self, batch_size: int) -> int:
        return 1

    def forward(self, model: nn.Module, views: Tensor, index: Tensor | None = None,
                labels: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        z1, z2 = self.embed(model, views).chunk(2)  # (B, d) each
        # (B, d): another image's view, just past the positive
        negative = z2[semi_hard_negatives(z1, z2, validate=False)]
        return triplet_loss(z1, z2, negative, self.margin, validate=False), z1.detach(), z2.detach()


def build_objective(method: str, model: nn.Module, n_images: int, batch_size: int, temperature: float,
                    config: ObjectiveConfig = ObjectiveConfig(), seed: int = 0,
                    distributed: bool = False, n_classes: int = 10) -> Objective:
    """The objective ``method`` names (one of :data:`METHODS`), with fresh state seeded by ``seed``.

    Args:
        method: one of :data:`METHODS`.
        model: the model it will train (MoCo copies it into its key model; its head's
            ``out_dim`` sizes the bank and the queue).
        n_images: the training set's size (the bank's size; the queue is capped at
            ``n_images - batch_size`` so that it never holds keys of the current batch's images).
        batch_size: images per step (per process under torchrun).
        temperature: of the softmax losses.
        config: the per-method knobs.
        seed: seeds the bank's or queue's random initial keys.
        distributed: under torchrun; only :class:`SimCLR` accepts it.
        n_classes: classes of the training set; :class:`Debiased`'s class prior is ``1 / n_classes``.

    Raises:
        ValueError: an unknown method, or a method that cannot run under torchrun.

    Example:
        >>> from crl_helpers.models import ProjectionHead, SimCLRModel, SmallConvNet
        >>> model = SimCLRModel(SmallConvNet(width=8), ProjectionHead(128, 32, 16))
        >>> objective = build_objective("instdisc", model, n_images=100, batch_size=10, temperature=0.1)
        >>> type(objective).__name__, objective.n_views, tuple(objective.bank.bank.shape)
        ('InstDisc', 1, (100, 16))
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is unknown; choose one of {', '.join(METHODS)}")
    if distributed and method != "simclr":
        raise ValueError(f"method={method!r} cannot run under torchrun (its bank, queue or label mask is per "
                         f"process); run it in one process, or use method 'simclr'")
    generator = torch.Generator().manual_seed(seed + 1)
    dim = model.head.out_dim
    if method == "simclr":
        return SimCLR(temperature, distributed=distributed)
    if method == "instdisc":
        return InstDisc(n_images, dim, temperature, n_negatives=min(config.bank_negatives, n_images),
                        momentum=config.bank_momentum, generator=generator)
    if method == "moco":
        # A queue longer than the data minus a batch would hold keys of the current images (false negatives).
        size = max(1, min(config.queue_size, n_images - batch_size))
        return MoCo(model, temperature, queue_size=size, momentum=config.moco_momentum, generator=generator)
    if method == "supcon":
        return SupCon(temperature)
    if method == "debiased":
        return Debiased(temperature, tau_plus=1 / check_int("n_classes", n_classes, 2))
    if method in ("simsiam", "simsiam_no_stopgrad"):
        return SimSiam(dim, stop_gradient=method == "simsiam")
    return Triplet(config.margin)
