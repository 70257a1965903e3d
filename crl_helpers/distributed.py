"""Data-parallel SimCLR across processes: torchrun set-up, a gradient-correct all-gather, a global NT-Xent.

SimCLR (Chen et al. 2020, section 2.2 and appendix B.1) trains with a global batch split over many
devices and computes NT-Xent over the GLOBAL batch: every device's anchors are contrasted with the
embeddings of every other device, which are all-gathered. Two details decide whether the gradients are
those of the single-process loss over the global batch:

* :func:`gather_with_grad` -- the all-gather must pass gradients back to the rank that owns each slice.
  Rank ``r``'s loss ``L_r`` depends on every rank's embeddings, so the gradient a rank needs for its own
  ``z`` is ``d(sum_r L_r)/dz``: backward all-reduces (sums) the incoming gradient over ranks and keeps its
  own slice. Implementations that return only the local slice of the local gradient (or that rescale it
  by the world size) silently train a different loss.
* :func:`nt_xent_distributed` -- the one NT-Xent code path, :func:`crl_helpers.losses.view_logits`, given
  the all-gathered views as its keys and this rank's offset among them. Each rank's loss is the MEAN over its
  own ``2N_local`` anchors. DDP then
  AVERAGES the parameter gradients over the ``W`` ranks, so the step follows
  ``(1/W) d(sum_r L_r)/dtheta = d(mean over all 2N_global anchors)/dtheta``: exactly :func:`nt_xent` on
  the global batch in one process.

BatchNorm is the one part that is not equivalent: each rank normalises with its own local batch
statistics. The paper uses global (synchronised) BN so that positives cannot be matched through
batch statistics; :func:`crl_helpers.train.train` converts to ``SyncBatchNorm`` on CUDA
(PyTorch implements it for GPUs only; on the CPU each rank keeps its own statistics).

Launch with torchrun, which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``::

    torchrun --nproc_per_node=2 -m crl_helpers.cli train --batch-size 256

Without torchrun (``WORLD_SIZE`` unset or 1) every function here is the single-process identity:

Example:
    >>> ctx = setup_distributed("cpu")
    >>> ctx.world_size, ctx.rank, is_main_process()
    (1, 0, True)
    >>> z1, z2 = torch.eye(3), torch.eye(3)
    >>> from crl_helpers.losses import nt_xent
    >>> bool(nt_xent_distributed(z1, z2, temperature=0.5) == nt_xent(z1, z2, temperature=0.5))
    True
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from crl_helpers.device import pick_device
from crl_helpers.losses import compute_dtype, nt_xent, view_logits
from crl_helpers.validate import check_embedding_pair, check_temperature

__all__ = [
    "DistributedContext",
    "all_reduce_mean",
    "check_torchrun_environment",
    "cleanup_distributed",
    "gather_with_grad",
    "is_distributed",
    "is_main_process",
    "nt_xent_distributed",
    "setup_distributed",
]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a (possibly one-process) data-parallel run."""

    # torchrun's RANK: this process's index among all processes; rank 0 writes files and prints.
    rank: int = 0
    # torchrun's LOCAL_RANK: the index on this machine, which picks the GPU (cuda:LOCAL_RANK).
    local_rank: int = 0
    # torchrun's WORLD_SIZE: 1 is plain single-process training, nothing is initialised.
    world_size: int = 1
    # The device this process trains on.
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # True when setup_distributed initialised the process group, so cleanup_distributed must destroy it.
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """True when there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes checkpoints and prints."""
        return self.rank == 0


def _env_int(name: str, default: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        if default is None:
            raise ValueError(
                f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} is set but {name} is not; "
                "launch with torchrun --nproc_per_node=N ..., which sets RANK, LOCAL_RANK and WORLD_SIZE"
            )
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer; launch with torchrun") from None
    if value < 0:
        raise ValueError(f"environment variable {name}={value} must be >= 0; launch with torchrun")
    return value


# How long the processes of a torchrun world wait for each other to appear at start-up; the collectives
# of the run itself wait ``timeout_s``. torchrun starts all processes within seconds, so a longer wait
# means stale variables (WORLD_SIZE=2 left in the shell) or an unreachable MASTER_ADDR, not a slow peer.
# CRL_INIT_TIMEOUT (seconds) overrides it, for clusters whose nodes start minutes apart.
INIT_TIMEOUT_S = 120.0
_TORCHRUN_FIX = ("launch with torchrun --nproc_per_node=N ..., or unset RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR "
                 "and MASTER_PORT for a single-process run")


def check_torchrun_environment() -> int:
    """The world size that torchrun's variables describe (1 without them), checked before any work.

    Raises:
        ValueError: ``RANK``, ``LOCAL_RANK`` or ``WORLD_SIZE`` is not a non-negative integer, or
            ``RANK``/``LOCAL_RANK`` is set without ``WORLD_SIZE`` (a variable left over from another
            launch: the process would think it is not rank 0 and silently write nothing).

    Example:
        >>> import os
        >>> check_torchrun_environment() if "WORLD_SIZE" not in os.environ else 1
        1
    """
    world_size = _env_int("WORLD_SIZE", default=1)
    for name in ("RANK", "LOCAL_RANK"):
        if name in os.environ:
            value = _env_int(name)
            if "WORLD_SIZE" not in os.environ:
                raise ValueError(f"environment variable {name}={value} is set but WORLD_SIZE is not (left over "
                                 f"from an earlier launch?); {_TORCHRUN_FIX}")
            if world_size >= 1 and value >= world_size:
                raise ValueError(f"environment variable {name}={value} must be < WORLD_SIZE={world_size}; "
                                 f"{_TORCHRUN_FIX}")
    return world_size


def _rendezvous(rank: int, world_size: int, timeout_s: float):
    """torchrun's store (``env://``), reached by all ``world_size`` processes within ``timeout_s``."""
    host, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not host or not port or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"WORLD_SIZE={world_size} but MASTER_ADDR={host!r} and MASTER_PORT={port!r} do not name "
                         f"a host and a port; {_TORCHRUN_FIX}")
    try:
        # Rank 0's store waits for every process to connect, the others wait to connect: both for timeout_s.
        store, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=world_size,
                                           timeout=datetime.timedelta(seconds=timeout_s)))
    except (RuntimeError, OSError, ValueError) as err:  # DistStoreError (a timeout), an address in use, no route
        timed_out = isinstance(err, getattr(dist, "DistStoreError", ())) or "timed out" in str(err).lower()
        reason = ("no other process came" if timed_out
                  else f"{type(err).__name__}: {' '.join(str(err).split())[:160]}")
        raise ValueError(f"the {world_size} processes of WORLD_SIZE={world_size} did not meet at "
                         f"{host}:{port} within {timeout_s:g} s ({reason}); stale torchrun "
                         f"variables? {_TORCHRUN_FIX} (CRL_INIT_TIMEOUT sets the wait in seconds)") from None
    return store


def setup_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistributedContext:
    """Initialise the process group from torchrun's environment (NCCL on CUDA, gloo on the CPU).

    With ``WORLD_SIZE`` unset or 1 nothing is initialised and the context describes one process on
    ``pick_device(device)``. If a process group already exists (a test, a notebook launcher) it is used
    as it is and left alone by :func:`cleanup_distributed`.

    Args:
        device: ``"auto"`` (CUDA when present, else the CPU), ``"cpu"`` or ``"cuda"``; under torchrun a
            CUDA run uses ``cuda:LOCAL_RANK``. Apple MPS has no distributed backend.
        timeout_s: how long a collective waits for the other ranks before failing. At start-up the
            processes wait for each other :data:`INIT_TIMEOUT_S` (``$CRL_INIT_TIMEOUT``) at most.

    Returns:
        A :class:`DistributedContext`.

    Raises:
        ValueError: torchrun's variables are missing, malformed or stale (the other processes do not
            appear within the start-up wait), the device does not exist here,
            ``LOCAL_RANK`` exceeds the number of GPUs, or ``device`` is MPS with ``WORLD_SIZE > 1``.

    Example:
        >>> setup_distributed("cpu").enabled
        False
    """
    if dist.is_available() and dist.is_initialized():
        backend = dist.get_backend()
        rank, world_size = dist.get_rank(), dist.get_world_size()
        local_rank = _env_int("LOCAL_RANK", default=rank)
        on_cuda = backend == "nccl"
        placed = torch.device("cuda", local_rank) if on_cuda else torch.device("cpu")
        return DistributedContext(rank, local_rank, world_size, placed, owns_group=False)

    world_size = check_torchrun_environment()
    if world_size <= 1:
        return DistributedContext(device=pick_device(device))
    if not dist.is_available():
        raise ValueError(f"WORLD_SIZE={world_size} but this PyTorch build has no torch.distributed; "
                         "run without torchrun")
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if rank >= world_size:
        raise ValueError(f"RANK={rank} must be < WORLD_SIZE={world_size}; launch with torchrun")
    wanted = pick_device(device) if device != "auto" else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    if wanted.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA GPU(s) are visible; "
                f"use --nproc_per_node={torch.cuda.device_count()} or fewer"
            )
        placed, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(placed)
    elif wanted.type == "cpu":
        placed, backend = torch.device("cpu"), "gloo"
    else:
        raise ValueError(f"device={device!r} has no distributed backend; use --device cuda or cpu with torchrun")
    raw = os.environ.get("CRL_INIT_TIMEOUT", "")
    try:
        init_timeout = float(raw) if raw else INIT_TIMEOUT_S
    except ValueError:
        init_timeout = float("nan")
    if not 0 < init_timeout < float("inf"):
        raise ValueError(f"CRL_INIT_TIMEOUT={raw!r} is not a number of seconds > 0; e.g. 120")
    store = _rendezvous(rank, world_size, init_timeout)
    store.set_timeout(datetime.timedelta(seconds=timeout_s))
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return DistributedContext(rank, local_rank, world_size, placed, owns_group=True)


def cleanup_distributed(context: DistributedContext) -> None:
    """Destroy the process group if :func:`setup_distributed` created it (a no-op otherwise)."""
    if context.owns_group and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process.

    Example:
        >>> is_distributed()
        False
    """
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main_process() -> bool:
    """True on rank 0 (and in any single-process run): the process that writes files and prints.

    Before the group is initialised (or after it is destroyed) torchrun's ``RANK`` decides, so the CLI
    can ask at any time.

    Example:
        >>> is_main_process()
        True
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    # torchrun's RANK counts only with WORLD_SIZE > 1; malformed or stray variables count as rank 0, so
    # that the process that refuses them (check_torchrun_environment) is the one that prints why.
    try:
        world_size, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    except ValueError:
        return True
    return not (world_size > 1 and 0 < rank < world_size)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward sums the gradient over ranks and returns this rank's slice."""

    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:
        parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, z)
        ctx.rank, ctx.n = dist.get_rank(), z.shape[0]
        return torch.cat(parts, dim=0)  # (W*N, d), rank r's rows at [r*N, (r+1)*N)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        # Every rank's loss saw this rank's rows, so the gradient it needs is the SUM over ranks of
        # d(L_r)/d(gathered); the clone keeps autograd's buffer intact for any other consumer.
        grad = grad.contiguous().clone()  # (W*N, d)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]  # (N, d)


def gather_with_grad(z: Tensor) -> Tensor:
    """All-gather ``z`` from every rank, with gradients routed back to the rank that owns each row.

    The forward is ``torch.cat`` of every rank's ``z`` in rank order. The backward all-reduces (sums)
    the incoming gradient over ranks and returns this rank's slice, i.e. ``d(sum_r L_r)/dz`` where
    ``L_r`` is rank ``r``'s loss (SimCLR, Chen et al. 2020, appendix B.1: a global-batch loss over
    embeddings gathered from all devices).

    Args:
        z: (N, d) on this rank; every rank must pass the same shape and dtype.

    Returns:
        (W*N, d): rank ``r``'s rows at ``[r*N, (r+1)*N)``. Outside a process group (or with one
        process) ``z`` itself.

    Raises:
        TypeError: ``z`` is not a tensor.

    Example:
        >>> z = torch.ones(2, 3, requires_grad=True)
        >>> gather_with_grad(z) is z  # one process
        True
    """
    if not isinstance(z, Tensor):
        raise TypeError(f"z is a {type(z).__name__}; pass a torch.Tensor")
    if not is_distributed():
        return z
    return _GatherWithGrad.apply(z.contiguous())


def _check_ranks_agree(z1: Tensor, z2: Tensor) -> None:
    # One tiny collective, so that every rank raises the same error: a rank that raised alone would
    # leave the others waiting in all_gather until the timeout.
    finite = bool(torch.isfinite(z1).all() and torch.isfinite(z2).all())
    status = torch.tensor([z1.shape[0], z1.shape[1], int(not finite), int(z1.dtype == torch.float64)],
                          device=z1.device)
    statuses = [torch.empty_like(status) for _ in range(dist.get_world_size())]
    dist.all_gather(statuses, status)
    table = torch.stack(statuses).cpu()  # (W, 4)
    shapes = [tuple(row[:2].tolist()) for row in table]
    if len(set(shapes)) > 1:
        raise ValueError(
            f"z1 has shape (N, d) = {shapes} on ranks 0..{len(shapes) - 1}; every rank needs the same "
            "local batch: split the global batch evenly (batch_size divisible by the world size)"
        )
    if len(set(table[:, 3].tolist())) > 1:
        raise ValueError("z1 is float64 on some ranks only; use the same dtype on every rank")
    bad = [r for r, row in enumerate(table) if row[2]]
    if bad:
        raise ValueError(
            f"z1 or z2 contains NaN or inf on rank(s) {bad}; check the model's outputs "
            "(a diverged run or an fp16 overflow)"
        )


def nt_xent_distributed(z1: Tensor, z2: Tensor, temperature: float = 0.5, *, validate: bool = True) -> Tensor:
    r"""NT-Xent (Chen et al. 2020, eq. 1) of this rank's anchors against the GLOBAL batch of 2N_global views.

    Each rank holds ``N = N_global / W`` images (two views each). Its ``2N`` anchors are contrasted
    with all ``2N_global`` views, all-gathered with :func:`gather_with_grad` and handed to
    :func:`crl_helpers.losses.view_logits` as its ``keys``, with this rank's block at ``offset = rank * 2N``:
    the positive of anchor ``a`` sits at its partner's global index and the anchor itself is masked out
    (one code path with the single-process loss). The gathered keys hold every rank's block by
    construction, once the ranks agree on shapes (checked with ``validate``). The result is the
    mean of :math:`\ell_a` over this rank's ``2N`` anchors, so the mean over ranks is :func:`nt_xent`
    of the global batch and, with DDP averaging gradients over ranks, so is the gradient.

    Args:
        z1, z2: (N, d) embeddings of the two views on this rank; same N, d and dtype on every rank.
        temperature: > 0, as in :func:`crl_helpers.losses.nt_xent`.
        validate: True (default) also scans for NaN/inf and checks that all ranks agree on shapes
            and dtype, with one small collective; False skips both (a training loop that checks its
            loss for non-finite values).

    Returns:
        A scalar tensor, float32 (float64 for float64 inputs): the mean over this rank's anchors.
        Outside a process group, exactly :func:`crl_helpers.losses.nt_xent`.

    Raises:
        TypeError: a non-tensor, a non-floating dtype, or a non-numeric temperature.
        ValueError: a non-2-D input, mismatched shapes, N < 1 (N < 2 with one process), NaN/inf in
            an input or shapes that differ between ranks (unless ``validate=False``), or a
            temperature that is not finite and >= 1e-8 (>= 3.05e-5 for float16 inputs). Every rank
            raises the same error.

    Example:
        >>> import math
        >>> z1, z2 = torch.ones(4, 8), torch.ones(4, 8)
        >>> loss = nt_xent_distributed(z1, z2, temperature=0.5)  # one process: 2N - 1 = 7 candidates
        >>> abs(loss.item() - math.log(7)) < 1e-6
        True
    """
    # Every non-collective check first: a rank that raised after entering a collective would hang the others.
    z1, z2 = check_embedding_pair("z1", z1, "z2", z2)
    temperature = check_temperature(temperature, z1, z2)
    if not is_distributed():
        return nt_xent(z1, z2, temperature, validate=validate)
    if validate:
        _check_ranks_agree(z1, z2)
    n = z1.shape[0]
    if n < 1:
        raise ValueError(f"z1 and z2 have N={n} rows on this rank; every rank needs at least one image")
    views = torch.cat([z1, z2]).to(compute_dtype(z1, z2))  # (2N, d): cast first, so gradients are summed in float32
    keys = gather_with_grad(views)  # (W*2N, d): rank r's block is [z1_r; z2_r]
    logits, targets = view_logits(z1, z2, temperature, keys=keys, offset=dist.get_rank() * 2 * n)  # (2N, W*2N)
    return F.cross_entropy(logits, targets)


def all_reduce_mean(value: Tensor | float) -> Tensor | float:
    """The mean of ``value`` over all ranks (for logging metrics); ``value`` itself in one process.

    Args:
        value: a tensor (any shape, on the process group's device) or a Python number.

    Returns:
        A new tensor of the same shape (floating), or a float for a number input. Gradients do
        not flow through it.

    Raises:
        TypeError: ``value`` is neither a tensor nor a number.

    Example:
        >>> all_reduce_mean(2.5)
        2.5
    """
    if isinstance(value, bool) or not isinstance(value, (Tensor, int, float)):
        raise TypeError(f"value is a {type(value).__name__}; pass a tensor or a number")
    if not is_distributed():
        return value.detach().clone() if isinstance(value, Tensor) else float(value)
    if isinstance(value, Tensor):
        t = value.detach().clone()
        if not t.is_floating_point():
            t = t.double()
    else:
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor(float(value), dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= dist.get_world_size()
    return t if isinstance(value, Tensor) else float(t)
