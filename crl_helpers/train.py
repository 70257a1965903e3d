"""The training loop: views of a batch -> encoder and head -> an objective (SimCLR's NT-Xent by default).

One loop serves every objective of :mod:`crl_helpers.objectives` (SimCLR, InstDisc's memory
bank, MoCo, SupCon, triplet), the CPU and the GPU: the dataset is held on the device as
uint8, views are made there by the batched per-sample augmentation, and the step runs under
bf16 autocast on CUDA with the loss in float32. The run is driven by a frozen
:class:`TrainConfig`; presets are named instances in :data:`PRESETS`. :func:`train` reads
like a table of contents: build or resume, then per epoch :func:`train_one_epoch`, the kNN
monitor, save. The end-of-run report (final kNN, linear probe, files, plots) is
:mod:`crl_helpers.report`'s.

Example:
    >>> from dataclasses import replace
    >>> cfg = replace(CPU, epochs=1, n_train=64, n_test=32, batch_size=32, out_dir=None, progress=False)
    >>> result = train(cfg)
    >>> len(result.history), result.history[0]["epoch"]
    (1, 1)
    >>> train(replace(cfg, method="moco")).objective.queue.size  # queue capped at n_train - batch_size
    32
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.profiler import record_function

from crl_helpers import run_dir
from crl_helpers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from crl_helpers.data import DATASETS, load_dataset
from crl_helpers.image_data import ImageData
from crl_helpers.device import PRECISIONS, autocast_dtype, uses_channels_last
from crl_helpers.distributed import DistributedContext, all_reduce_mean, cleanup_distributed, setup_distributed
from crl_helpers.metrics import alignment, contrastive_accuracy_tensor, embedding_std, uniformity
from crl_helpers.models import ENCODERS, ProjectionHead, SimCLRModel, build_encoder
from crl_helpers.objectives import METHODS, Objective, ObjectiveConfig, SimCLR, build_objective
from crl_helpers.evaluate import extract_embeddings, knn_accuracy
from crl_helpers.threads import ThreadTuner, check_threads, cpu_snapshot
from crl_helpers.views import ViewConfig
from crl_helpers.views_batched import ViewAugmenter
from crl_helpers.validate import check_choice, check_int, check_nonnegative, check_positive, check_temperature


# Bounds that catch a typo before it costs memory or hours: a schedule of MAX_EPOCHS * steps floats,
# MAX_SHAPES_IMAGES generated images (300 MB), a learning rate far above any working one.
MAX_EPOCHS = 100_000
MAX_IMAGES = 10_000_000
MAX_SHAPES_IMAGES = 100_000
MAX_LR = 100.0
MIN_UMAP_POINTS = 3  # plots.umap_embed needs 3 points
# Embedding spread (metrics.embedding_std) below this means every image maps to one point: collapse.
COLLAPSE_STD = 1e-4
# Training views: at least 8 pixels (the encoders downsample 8x), at most a 1024-pixel side.
MIN_VIEW_SIZE, MAX_VIEW_SIZE = 8, 1024


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on. Vary it with ``dataclasses.replace``."""

    method: str = "simclr"  # the objective, one of objectives.METHODS; all share this loop
    objective: ObjectiveConfig = ObjectiveConfig()  # knobs of the objectives beyond SimCLR (bank, queue, margin)
    dataset: str = "shapes"  # the built-in dataset needs no download
    data_root: str = "data"  # where real datasets are downloaded and cached
    n_train: int | None = None  # None: the whole train split (5,000 for shapes)
    n_test: int | None = None  # None: the whole test split (2,000 for shapes)
    encoder: str = "convnet"  # small and fast on a CPU; "resnet18" for real runs
    head_hidden_dim: int = 512  # SimCLR's head: 2-layer MLP, hidden as wide as v
    head_out_dim: int = 128  # the paper's z dimension
    head_depth: int = 2  # paper: depth 2 beats linear (1) and none (0)
    # 10 epochs of batches of 64 at 24-pixel views: ~31 s of training on 2 idle cores, ~43 s in all, kNN 0.86-0.88
    # over seeds 0-2 (random init 0.22-0.26). 15 epochs of 128 at 32 pixels took 58 s for kNN 0.84 (seed 0).
    epochs: int = 10
    batch_size: int = 64  # 2N = 128 views per step: on a CPU budget more steps beat more negatives
    temperature: float = 0.2  # lower than 0.5 suits small batches (paper, table 5)
    optimizer: str = "adamw"  # adamw needs no LR scaling; "sgd" (momentum 0.9) for long GPU runs
    lr: float = 5e-3  # peak learning rate after warm-up (beat 2e-3 in a 10-epoch budget: kNN 0.69 vs 0.64)
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to 0 (Goyal et al. 2017; Loshchilov 2017)
    # Crops keep >= 40% of the area so both views see the object; hue drawn around the whole circle
    # because the shapes' colours are random per image (hue +-0.1 left a colour shortcut:
    # contrastive accuracy 0.53 but kNN 0.46). mean/std are set from the data at run time.
    views: ViewConfig = ViewConfig(crop_scale=(0.4, 1.0), jitter_strength=0.5, hue_shift=0.5)
    # Side of the training views in pixels (None: the images' own side); evaluation reads whole images at their
    # own size. Crops enlarge objects, so views smaller than the test images match the objects' apparent size
    # at test time (Touvron et al. 2019, "FixRes") and cost less: 24 of 32 pixels is 0.56x the pixels per view.
    view_size: int | None = 24
    knn_k: int = 200  # kNN monitor as in InstDisc/DINO: k=200 neighbours
    knn_temperature: float = 0.1  # votes weighted by exp(sim / 0.1); InstDisc and DINO use 0.07
    knn_every: int = 5  # kNN accuracy every k epochs (0: only at the end), for the curves; ~2 s each
    linear_epochs: int = 50  # linear probe on frozen features (cheap: features are precomputed)
    umap: bool = False  # UMAP plot of the test features at the end: ~25 s more on 2 cores (numba compiles)
    device: str = "auto"  # CUDA, then MPS, then CPU
    compile: bool = False  # torch.compile the model (CUDA only; on 2 CPU cores compiling costs more than it saves)
    # bf16 autocast where it is fast (CUDA, a CPU with bfloat16 units), else float32; "bf16"/"fp32" force it.
    precision: str = "auto"
    # Under torchrun on CUDA: global BN as in SimCLR (appendix B.1), so positives cannot be matched through
    # per-device batch statistics. PyTorch's SyncBatchNorm is GPU-only; CPU ranks keep per-rank BN.
    sync_batchnorm: bool = True
    seed: int = 0
    out_dir: str | None = "runs/default"  # None: keep everything in memory (tests, notebooks)
    progress: bool = True  # tqdm progress bar

    def __post_init__(self) -> None:
        # One rule per quantity (crl_helpers.validate); messages name the field as Python spells it
        # (TrainConfig.lr), and the CLI turns those names into its flags (crl_helpers.cli.cli_words).
        def name(field_name: str) -> str:
            return f"TrainConfig.{field_name}"

        # The built-in dataset is generated in memory (3 KB an image); real datasets are capped by their size.
        max_images = MAX_SHAPES_IMAGES if self.dataset == "shapes" else MAX_IMAGES
        whole_split = "leave it out (None) for the whole split"
        check_choice(name("method"), self.method, METHODS)
        check_choice(name("precision"), self.precision, PRECISIONS)
        check_choice(name("dataset"), self.dataset, DATASETS)
        check_choice(name("encoder"), self.encoder, ENCODERS)
        check_int(name("epochs"), self.epochs, 1, maximum=MAX_EPOCHS)
        check_int(name("batch_size"), self.batch_size, 2, "a positive needs a negative")
        check_temperature(self.temperature, name=name("temperature"))
        check_positive(name("lr"), self.lr, "try 5e-3 for adamw, 0.6 for sgd", maximum=MAX_LR)
        check_nonnegative(name("weight_decay"), self.weight_decay)
        check_choice(name("optimizer"), self.optimizer, ("adamw", "sgd"))
        check_nonnegative(name("warmup_epochs"), self.warmup_epochs)
        check_int(name("knn_k"), self.knn_k, 1)
        if self.view_size is not None:
            check_int(name("view_size"), self.view_size, MIN_VIEW_SIZE,
                      "pixels; leave it out (None) to train at the images' own size", maximum=MAX_VIEW_SIZE)
        if self.n_train is not None:
            check_int(name("n_train"), self.n_train, 2, whole_split, maximum=max_images)
        if self.n_test is not None:
            check_int(name("n_test"), self.n_test, 1, whole_split, maximum=max_images)
            if self.umap and self.n_test < MIN_UMAP_POINTS:
                raise ValueError(f"TrainConfig.n_test={self.n_test!r} is too few for the UMAP plot (it needs >= "
                                 f"{MIN_UMAP_POINTS}); use TrainConfig.n_test={MIN_UMAP_POINTS} or more, or "
                                 f"TrainConfig.umap=False")
        if self.out_dir is not None and not (isinstance(self.out_dir, str) and self.out_dir.strip()):
            raise ValueError(f"TrainConfig.out_dir={self.out_dir!r} is empty; name a folder such as runs/default "
                             "(in Python, None keeps everything in memory)")
        # Seeds feed torch.Generator.manual_seed(seed * 100_003 + epoch), which must fit in 64 bits.
        check_int(name("seed"), self.seed, 0, maximum=2**32 - 1)


CPU = TrainConfig()
CIFAR10_GPU = replace(
    CPU, dataset="cifar10", encoder="resnet18", epochs=60, batch_size=512, temperature=0.2,
    optimizer="sgd", lr=0.6, weight_decay=5e-4, warmup_epochs=5, head_hidden_dim=1024,
    views=ViewConfig(crop_scale=(0.2, 1.0), jitter_strength=0.5), view_size=None, compile=True,
    out_dir="runs/cifar10-gpu",
)
PRESETS = {"cpu": CPU, "cifar10-gpu": CIFAR10_GPU}


def cosine_schedule(base: float, epochs: int, steps_per_epoch: int, warmup_epochs: float = 0.0,
                    final: float = 0.0) -> np.ndarray:
    """Per-step values: linear warm-up from 0 to ``base``, then cosine decay to ``final``.

    A plain array (as in DINO) so it is easy to plot and to index by global step.

    Example:
        >>> s = cosine_schedule(1.0, epochs=2, steps_per_epoch=5, warmup_epochs=1)
        >>> s.shape, float(s[4]), float(s[-1]) < 0.1
        ((10,), 1.0, True)
    """
    total = epochs * steps_per_epoch
    warm = min(int(round(warmup_epochs * steps_per_epoch)), total)
    warmup = np.linspace(base / max(warm, 1), base, warm)
    t = np.arange(total - warm) / max(total - warm, 1)
    return np.concatenate([warmup, final + 0.5 * (base - final) * (1 + np.cos(np.pi * t))])


class NonFiniteLossError(RuntimeError):
    """Training diverged: the loss, a weight or a statistic became NaN or inf, or the embeddings collapsed.

    The checkpoint of the last epoch that passed :func:`check_healthy` is kept.
    """


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model, its history, and (after the report) final metrics."""

    model: SimCLRModel
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)  # filled by crl_helpers.report.evaluate_run
    mean: tuple[float, ...] = ()  # the training set's channel statistics, for normalising inputs
    std: tuple[float, ...] = ()
    objective: Objective | None = None  # with its state: the memory bank, MoCo's queue and key model
    initial_encoder: dict | None = None  # the encoder's weights before training: the random-init baseline
    threads: dict = field(default_factory=dict)  # the CPU thread counts used (threads.ThreadTuner.summary)


def build_model(config: TrainConfig) -> SimCLRModel:
    """The encoder and projection head that ``config`` describes (freshly initialised)."""
    encoder = build_encoder(config.encoder)
    head = ProjectionHead(encoder.feature_dim, config.head_hidden_dim, config.head_out_dim, config.head_depth)
    return SimCLRModel(encoder, head)


def build_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    # No weight decay on biases and norm parameters (as in SimCLR's LARS exclusion). Frozen parameters
    # (MoCo's key model, when the objective is passed along) are not optimised.
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim > 1]
    no_decay = [p for p in trainable if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = {"fused": True} if device.type == "cuda" else {}
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True, **fused)
    return torch.optim.AdamW(groups, lr=config.lr, **fused)


def load_data(config: TrainConfig) -> tuple[ImageData, ImageData]:
    """The train and test splits that ``config`` names."""
    train_data = load_dataset(config.dataset, "train", root=config.data_root, n=config.n_train, seed=config.seed)
    test_data = load_dataset(config.dataset, "test", root=config.data_root, n=config.n_test, seed=config.seed)
    return train_data, test_data


def _config_dict(config: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(config)))


def config_from_dict(d: dict) -> TrainConfig:
    """Rebuild a :class:`TrainConfig` from ``asdict`` output (as stored in checkpoints)."""
    known = {f.name for f in fields(TrainConfig)}
    d = {k: v for k, v in d.items() if k in known}
    if isinstance(d.get("views"), dict):
        d["views"] = ViewConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["views"].items()})
    if isinstance(d.get("objective"), dict):
        d["objective"] = ObjectiveConfig(**d["objective"])
    return TrainConfig(**d)


def train(config: TrainConfig = CPU, resume: bool = False, data: tuple[ImageData, ImageData] | None = None,
          callback: Callable[[int, SimCLRModel, dict], None] | None = None, threads: int | None = None) -> TrainResult:
    """Pretrain an encoder and head with ``config.method``'s objective; the table of contents of a run.

    Args:
        config: the run. With ``out_dir`` set, ``checkpoint.pt`` (model, optimizer, objective state,
            history, config) and ``history.csv`` are written there after every epoch (atomically).
        resume: continue from ``out_dir/checkpoint.pt`` (history kept).
        data: (train, test) already in memory; default :func:`load_data`.
        callback: called as ``callback(epoch, model, row)`` after each epoch (epoch counts from 1,
            ``row`` is that epoch's history dict); for live curves or embedding snapshots.
        threads: CPU threads for the whole run; None (default) measures the best count while training
            (:class:`~crl_helpers.threads.ThreadTuner`), unless ``OMP_NUM_THREADS`` or an earlier
            ``torch.set_num_threads`` fixed it. The counts used are in ``result.threads``; torch's count
            is restored afterwards.

    Returns:
        A :class:`TrainResult` with an empty ``metrics``: :func:`crl_helpers.report.train_and_evaluate`
        adds the final evaluation and the files.

    Raises:
        NonFiniteLossError: training diverged: the loss, a weight or a BatchNorm statistic became
            NaN/inf, or the embeddings collapsed (the checkpoint of the last healthy epoch stays).
        CheckpointError: ``resume`` with a missing, corrupt or incompatible checkpoint, or one
            trained with another config (only ``epochs`` may change).
        RunDirInUse: another process is running into ``out_dir``.
        ValueError: a bad device; under torchrun a ``batch_size`` not divisible by the world size,
            or a method other than SimCLR; ``threads`` not an integer >= 1.

    Under torchrun (``WORLD_SIZE > 1``, see :mod:`crl_helpers.distributed`) the model is wrapped in
    DistributedDataParallel and each rank trains on its slice of every global batch of
    ``config.batch_size`` images with :func:`~crl_helpers.distributed.nt_xent_distributed`; the
    history holds metrics averaged over ranks. Only rank 0 writes files, shows progress and
    calls ``callback``.
    """
    check_threads(threads)
    context = setup_distributed(config.device)
    try:
        with contextlib.ExitStack() as stack:
            if config.out_dir and context.is_main:
                stack.enter_context(run_dir.hold(config.out_dir))  # one run per folder, for the run's lifetime
            return _train(config, context, resume, data, callback, threads)
    finally:
        cleanup_distributed(context)


def check_data(config: TrainConfig, train_data: ImageData, test_data: ImageData) -> None:
    """Refuse data that would fail, or give a meaningless number, only after training.

    Raises:
        ValueError: images smaller than :data:`MIN_VIEW_SIZE` pixels (the encoders downsample 8x, and
            evaluation reads whole images); ``view_size`` larger than the images (views are crops
            of them: upscaling costs memory and adds nothing); a training split with fewer than two
            classes (every accuracy would be 1.000 whatever the encoder learned); an empty test split.
    """
    side = min(train_data.x.shape[-2:])
    if side < MIN_VIEW_SIZE:
        raise ValueError(f"the {config.dataset} images are {train_data.x.shape[-1]}x{train_data.x.shape[-2]} pixels; "
                         f"the encoders need at least {MIN_VIEW_SIZE}x{MIN_VIEW_SIZE} (they downsample 8x): "
                         f"use larger images, or TrainConfig.dataset='shapes'")
    if config.view_size is not None and config.view_size > side:
        raise ValueError(f"TrainConfig.view_size={config.view_size} is larger than the {side}-pixel images; views are "
                         f"crops of an image, so use TrainConfig.view_size={side} or less (or unset: the images' own "
                         f"size)")
    classes = torch.unique(train_data.y)
    if len(classes) < 2:
        only = train_data.class_names[int(classes[0])] if len(classes) else "none"
        raise ValueError(f"the training split of TrainConfig.dataset={config.dataset!r} holds one class ({only}): "
                         f"kNN and linear accuracy would be 1.000 whatever the encoder learned; add a second class "
                         f"(a folder per class under TrainConfig.data_root)")
    if len(test_data) == 0:
        raise ValueError(f"the test split of TrainConfig.dataset={config.dataset!r} is empty; add test images")


def _train(config: TrainConfig, context: DistributedContext, resume: bool,
           data: tuple[ImageData, ImageData] | None, callback: Callable | None, threads: int | None = None
           ) -> TrainResult:
    began = cpu_snapshot()  # what else keeps the CPUs busy while the data load: the thread tuner's first count
    train_data, test_data = data if data is not None else load_data(config)
    check_data(config, train_data, test_data)
    run = build_run(config, context, train_data)
    if resume:
        resume_run(run, config)
    step = TrainStep(run.model, run.objective, run.optimizer, config, context.device, context.world_size)
    on_cuda = context.device.type == "cuda"
    augment = ViewAugmenter(run.views, context.device, n_views=run.objective.n_views,
                            compile=config.compile and on_cuda, channels_last=uses_channels_last(context.device))
    x_train, y_train = train_data.x.to(context.device), train_data.y.to(context.device)  # uint8 images on the device
    progress = _progress_bar(config, run.start_epoch, run.steps_per_epoch) if context.is_main else None
    tuner = ThreadTuner.for_run(threads, context.device.type, context.world_size, since=began)  # the user's count wins
    try:
        for epoch in range(run.start_epoch, config.epochs):
            row = train_one_epoch(step, augment, x_train, y_train, epoch, run, config, context, progress, tuner)
            knn_due = config.knn_every and (epoch + 1) % config.knn_every == 0 and epoch + 1 < config.epochs
            if knn_due and context.is_main:  # needs no collective, so the other ranks need not wait for it
                v_train, v_test = split_features(run.model.encoder, train_data, test_data, run.mean, run.std)
                row["knn_acc"] = knn_accuracy(v_train, train_data.y, v_test, test_data.y, k=config.knn_k,
                                              temperature=config.knn_temperature)
            run.history.append(row)
            if callback is not None and context.is_main:
                callback(epoch + 1, run.model, row)
            if config.out_dir and context.is_main:  # one writer: rank 0
                save_run(run, config, epoch + 1)
    finally:
        tuner.restore()
        if progress is not None:
            progress.close()
    return TrainResult(model=run.model, history=run.history, mean=run.mean, std=run.std,
                       objective=run.objective, initial_encoder=run.initial_encoder, threads=tuner.summary())


# Per-rank view generators are seeded this far apart, so no two (rank, epoch) pairs share a stream.
_RANK_SEED_STRIDE = 1_000_000_007
# The objective's own generator (bank negatives, MoCo's shuffle) is seeded this far from the others.
_OBJECTIVE_SEED_OFFSET = 2**62


def epoch_seeds(seed: int, epoch: int, rank: int = 0) -> tuple[int, int]:
    """Seeds of an epoch's batch order (shared by all ranks) and of one rank's views, from (seed, epoch).

    Drawn afresh every epoch, so a resumed run sees the same batches and views.

    Example:
        >>> epoch_seeds(0, 3)
        (3, 1000000010)
    """
    base = seed * 100_003 + epoch
    return base, base + _RANK_SEED_STRIDE * (rank + 1)


@dataclass
class Run:
    """The state of a run between epochs: what :func:`save_run` writes and :func:`resume_run` restores."""

    model: SimCLRModel
    optimizer: torch.optim.Optimizer
    objective: Objective
    lr_schedule: np.ndarray  # per global step
    steps_per_epoch: int
    local_batch: int  # images per step on this process
    views: ViewConfig  # with the image size and the data's mean/std filled in
    mean: tuple[float, ...]
    std: tuple[float, ...]
    initial_encoder: dict  # the encoder's weights before training
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 0
    data: dict = field(default_factory=dict)  # data_fingerprint of the training split: a resume must see the same


def build_run(config: TrainConfig, context: DistributedContext, train_data: ImageData) -> Run:
    """A fresh run: model, optimizer, objective and learning-rate schedule, seeded by ``config.seed``."""
    world_size = context.world_size
    if config.batch_size % world_size:
        raise ValueError(
            f"TrainConfig.batch_size={config.batch_size} is the global batch and must be divisible by the "
            f"{world_size} processes; use TrainConfig.batch_size="
            f"{max(world_size, config.batch_size // world_size * world_size)}")
    if config.batch_size > len(train_data):
        raise ValueError(f"TrainConfig.batch_size={config.batch_size} exceeds the {len(train_data)} training images; "
                         f"use TrainConfig.batch_size={len(train_data)} or fewer")
    if config.method == "moco" and config.batch_size // world_size < 4:
        # MoCo's shuffling BN splits each key batch in two, and BatchNorm needs two images per half.
        raise ValueError(f"TrainConfig.batch_size={config.batch_size} is too small for TrainConfig.method='moco', "
                         f"whose shuffled BatchNorm needs >= 2 images per half batch; use "
                         f"TrainConfig.batch_size={4 * world_size} or more")
    torch.manual_seed(config.seed)
    mean, std = train_data.channel_stats()
    # A channel that is constant in the data (red-only images: green and blue are 0) has std 0, and its
    # normalisation would divide by 0. Colour jitter still moves it in the views, so it is scaled like
    # the widest other channel (or not at all, when every channel is constant).
    widest = max(std) if max(std) >= 1e-3 else 1.0
    std = tuple(s if s >= 1e-3 else widest for s in std)
    model = build_model(config).to(context.device)
    if world_size > 1 and context.device.type == "cuda" and config.sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # same state_dict keys as BatchNorm
    local_batch = config.batch_size // world_size
    objective = build_objective(config.method, model, len(train_data), local_batch, config.temperature,
                                config.objective, seed=config.seed, distributed=world_size > 1,
                                n_classes=max(2, len(train_data.class_names))).to(context.device)
    steps_per_epoch = len(train_data) // config.batch_size
    # The objective's own trainable parameters (SimSiam's predictor) are optimised with the model's.
    optimizer = build_optimizer(nn.ModuleList([model, objective]), config, context.device)
    return Run(model=model, optimizer=optimizer, objective=objective,
               lr_schedule=cosine_schedule(config.lr, config.epochs, steps_per_epoch, config.warmup_epochs),
               steps_per_epoch=steps_per_epoch, local_batch=local_batch,
               views=replace(config.views, image_size=config.view_size or train_data.image_size, mean=mean, std=std), mean=mean, std=std,
               initial_encoder={k: v.detach().clone() for k, v in model.encoder.state_dict().items()},
               data=data_fingerprint(train_data))


def data_fingerprint(data: ImageData) -> dict:
    """What identifies a training split: its size, class names and a SHA-256 of its pixels and labels.

    Saved with every checkpoint, so that ``--resume`` with another ``--data-root`` (other images under
    the same flags) is refused instead of training one run on two datasets.

    Example:
        >>> from crl_helpers.data import load_dataset
        >>> data_fingerprint(load_dataset("shapes", n=4))["n"]
        4
    """
    import hashlib

    digest = hashlib.sha256()
    for t in (data.x, data.y):
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return {"n": len(data), "class_names": list(data.class_names), "sha256": digest.hexdigest()}


def save_run(run: Run, config: TrainConfig, epoch: int) -> None:
    """Write ``checkpoint.pt`` and ``history.csv`` in ``config.out_dir`` after ``epoch`` finished epochs (atomically).

    After the run's first epoch, the report files of an earlier run (``metrics.json``, plots) are removed,
    so the folder never mixes two runs' files, and a run that fails earlier leaves them as they were.
    """
    save_checkpoint({
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "objective": run.objective.state_dict(), "epoch": epoch, "history": run.history,
        "config": _config_dict(config), "mean": list(run.mean), "std": list(run.std),
        "initial_encoder": run.initial_encoder, "torch_rng": torch.get_rng_state(), "data": run.data,
    }, Path(config.out_dir) / "checkpoint.pt")
    run_dir.write_history(run.history, Path(config.out_dir) / "history.csv")
    if epoch == run.start_epoch + 1:  # this run's first epoch is saved: an earlier run's report goes
        run_dir.clear_report_files(config.out_dir, keep=("history.csv",))


def resume_run(run: Run, config: TrainConfig) -> None:
    """Restore ``run`` from ``config.out_dir/checkpoint.pt``: weights, optimizer, objective, history, RNG."""
    if not config.out_dir:
        raise CheckpointError("resume needs an output directory holding checkpoint.pt")
    path = Path(config.out_dir) / "checkpoint.pt"
    state = load_checkpoint(path, map_location=next(run.model.parameters()).device)
    _check_resumable(state, config, path, run.data)
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        _check_optimizer_state(run.optimizer)
        run.objective.load_state_dict(state.get("objective", {}))
        # The random-init baseline is evaluated after the last epoch: load it now, so a bad one fails now.
        build_encoder(config.encoder).load_state_dict(state["initial_encoder"])
        run.initial_encoder = state["initial_encoder"]
        run.history, run.start_epoch = [dict(row) for row in state["history"]], int(state["epoch"])
        torch.set_rng_state(state["torch_rng"])
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        # One line, however long torch's message: the CLI prints it as is.
        detail = " ".join(f"{type(err).__name__}: {err}".split())
        detail = detail if len(detail) <= 200 else detail[:197] + "..."
        saved = state.get("config") if isinstance(state.get("config"), dict) else {}
        was = "".join(f" (it was trained with TrainConfig.{key}={saved[key]!r}, this run asks for "
                      f"TrainConfig.{key}={getattr(config, key)!r})"
                      for key in ("encoder", "method") if saved.get(key) and saved.get(key) != getattr(config, key))
        raise CheckpointError(f"{path} does not match this config{was}: {detail}; resume with the same "
                              f"TrainConfig.encoder, TrainConfig.method and head, or use a fresh TrainConfig.out_dir") from err


# Fields a resumed run may change: they do not change what is trained, only how long, where and how it is shown.
_RESUMABLE_CHANGES = ("epochs", "device", "progress", "umap", "out_dir", "data_root", "compile")
def _check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Refuse optimizer state (momenta, step counts) that does not fit its parameters: it would fail mid-epoch."""
    for p, slots in optimizer.state.items():
        for name, value in slots.items():
            if not isinstance(value, (torch.Tensor, int, float)) or isinstance(value, bool):
                raise ValueError(f"optimizer state {name!r} is a {type(value).__name__}, not a tensor")
            if isinstance(value, torch.Tensor) and value.ndim and value.shape != p.shape:
                raise ValueError(f"optimizer state {name!r} has shape {tuple(value.shape)}, its parameter "
                                 f"{tuple(p.shape)}")
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
                raise ValueError(f"optimizer state {name!r} holds NaN or inf")


def _check_resumable(state: dict, config: TrainConfig, path: Path, data: dict | None = None) -> None:
    """Refuse a checkpoint whose config differs from ``config`` but in the epoch count (and the like), whose
    epoch and history do not fit together, or whose training data differ from ``data`` (a fingerprint)."""
    saved = state.get("config")
    if isinstance(saved, dict):
        now = _config_dict(config)
        changed = [k for k in now if k not in _RESUMABLE_CHANGES and k in saved and saved[k] != now[k]]
        if changed:
            was = ", ".join(f"TrainConfig.{k}={saved[k]!r}" for k in changed[:3])
            asks = ", ".join(f"TrainConfig.{k}={now[k]!r}" for k in changed[:3])
            more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
            raise CheckpointError(f"{path} was trained with {was}, this run asks for {asks}{more}; resume with "
                                  f"the same config (only TrainConfig.epochs may change), or use a fresh "
                                  f"TrainConfig.out_dir")
    epoch, history = state.get("epoch"), state.get("history")
    valid = (isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 and isinstance(history, list)
             and len(history) == epoch and all(isinstance(r, dict) for r in history)
             and [r.get("epoch") for r in history] == list(range(1, epoch + 1))
             and all(isinstance(r.get("loss"), (int, float)) and not isinstance(r.get("loss"), bool) for r in history))
    if not valid:
        raise CheckpointError(f"{path} holds an invalid epoch count or history (epoch {epoch!r}); "
                              f"it was not written by crl train: start afresh with resume=False")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} holds no config, so nothing says it was trained with these flags; it was "
                              f"not written by crl train: start afresh with resume=False, or use a fresh TrainConfig.out_dir")
    saved_data = state.get("data")
    if data and isinstance(saved_data, dict) and saved_data != data:
        def described(d):
            names = [str(name) for name in d.get("class_names") or []]
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            return f"{d.get('n')} images of {len(names)} classes ({shown})"

        raise CheckpointError(f"{path} was trained on other data ({described(saved_data)}) than this run's "
                              f"TrainConfig.dataset={config.dataset!r} TrainConfig.data_root={config.data_root!r} "
                              f"({described(data)}); "
                              f"resume with the data it was trained on, or use a fresh TrainConfig.out_dir")
    if not isinstance(saved_data, dict) and saved.get("data_root", config.data_root) != config.data_root:
        raise CheckpointError(f"{path} was trained with TrainConfig.data_root={saved.get('data_root')!r} and holds no "
                              f"fingerprint of its data, this run asks for TrainConfig.data_root={config.data_root!r}; "
                              f"resume with the same TrainConfig.data_root, or use a fresh TrainConfig.out_dir")
    if epoch > config.epochs:
        raise CheckpointError(f"{path} already holds {epoch} epochs, more than TrainConfig.epochs={config.epochs}; "
                              f"resume with TrainConfig.epochs={epoch} or more")
    finite = all(math.isfinite(r["loss"]) for r in history)
    weights = state.get("model") if isinstance(state.get("model"), dict) else {}
    if not finite or not all(torch.isfinite(t).all() for t in weights.values()
                             if isinstance(t, torch.Tensor) and t.is_floating_point()):
        raise CheckpointError(f"{path} holds a diverged run (NaN or inf weights or loss); start afresh "
                              f"with resume=False and a lower TrainConfig.lr")


def train_one_epoch(step: "TrainStep", augment: ViewAugmenter, x_train: torch.Tensor, y_train: torch.Tensor,
                    epoch: int, run: Run, config: TrainConfig, context: DistributedContext, progress=None,
                    tuner: ThreadTuner | None = None) -> dict:
    """One pass over the training set (0-based ``epoch``); returns its history row.

    The batch order and the views are drawn from seeds of (seed, epoch), so a resumed run
    repeats them. The running loss and accuracy stay on the device (one host sync every 10 steps
    for the progress bar); a non-finite epoch loss raises :class:`NonFiniteLossError`.
    """
    run.model.train()
    order_seed, view_seed = epoch_seeds(config.seed, epoch, context.rank)
    # The permutation is drawn on the CPU and shared by all ranks; each rank draws its own views on its device.
    order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(order_seed)).to(x_train.device)
    augment.manual_seed(view_seed)
    run.objective.manual_seed(order_seed + _OBJECTIVE_SEED_OFFSET)
    sums = step.sums.zero_()  # running (loss, contrastive accuracy), no per-step host sync
    steps, batch = run.steps_per_epoch, config.batch_size
    t0 = time.perf_counter()
    if tuner is not None:
        tuner.begin()
    for i in range(steps):
        start = i * batch + context.rank * run.local_batch  # this rank's slice of the global batch
        index = order[start:start + run.local_batch]  # (B,), B = batch_size / world_size
        with torch.no_grad():
            views = augment(x_train[index])  # (n_views * B, 3, S, S): all views, one call, one forward
        lr = float(run.lr_schedule[epoch * steps + i])  # numpy scalars fail weights_only loads
        labels = y_train[index] if run.objective.uses_labels else None  # (B,) only for supervised objectives
        z1, z2 = step(views, index, labels, lr=lr)
        if tuner is not None:
            tuner.step_done(len(index))
        if progress is not None and (i % 10 == 9 or i == steps - 1):
            loss_avg, acc_avg = (sums / (i + 1)).tolist()  # host sync only every 10 steps
            progress.set_postfix(epoch=epoch + 1, loss=f"{loss_avg:.3f}", acc=f"{acc_avg:.2f}",
                                 img_s=f"{(i + 1) * batch / (time.perf_counter() - t0):.0f}", refresh=False)
            progress.update(10 if i % 10 == 9 else (i % 10) + 1)
    if context.world_size > 1:
        sums = all_reduce_mean(sums)  # every rank sees the same numbers, so all stop together on NaN
    loss_avg, acc_avg = (sums / steps).tolist()
    seconds = time.perf_counter() - t0
    if not math.isfinite(loss_avg):
        kept = kept_epoch(epoch, config)
        raise NonFiniteLossError(
            f"the loss became {loss_avg} in epoch {epoch + 1}{kept}. Lower TrainConfig.lr or raise "
            f"TrainConfig.temperature")
    row = {"epoch": epoch + 1, "loss": loss_avg, "contrastive_acc": acc_avg, "lr": lr,
           "seconds": seconds, "images_per_second": steps * batch / seconds}
    if not bool(torch.isfinite(z1).all() and torch.isfinite(z2).all()):  # the statistics below refuse them
        raise NonFiniteLossError(f"the embeddings became NaN or inf in epoch {epoch + 1} (the loss stayed finite)"
                                 f"{kept_epoch(epoch, config)}. Lower TrainConfig.lr or raise TrainConfig.temperature")
    with torch.no_grad():
        row.update(alignment=alignment(z1, z2), uniformity=uniformity(z1), embedding_std=embedding_std(z1))
    if context.world_size > 1:
        names = ("alignment", "uniformity", "embedding_std")
        means = all_reduce_mean(torch.tensor([row[k] for k in names], dtype=torch.float64, device=x_train.device))
        row.update(zip(names, means.tolist()))
    check_healthy(run.model, row, config, halt_on_collapse=run.objective.halt_on_collapse)
    return row


def kept_epoch(epoch: int, config: TrainConfig) -> str:
    """"; the checkpoint of epoch <epoch> ... is kept in <out>", for a run that stopped in 0-based ``epoch``."""
    return (f"; the checkpoint of epoch {epoch}, the last that passed the checks, is kept in {config.out_dir}"
            if config.out_dir and epoch else "")


def check_healthy(model: nn.Module, row: dict, config: TrainConfig, halt_on_collapse: bool = True) -> None:
    """Stop a run that diverged although its loss stayed finite: NaN/inf weights or statistics, or collapse.

    Called after every epoch, before its checkpoint is saved, so a saved checkpoint always passed it.

    Raises:
        NonFiniteLossError: a parameter or buffer (e.g. BatchNorm's running variance) is NaN or inf,
            or the embeddings collapsed to one point (``row["embedding_std"]`` below :data:`COLLAPSE_STD`)
            and ``halt_on_collapse`` (False for an objective whose collapse is the point, e.g. SimSiam
            without its stop-gradient).
    """
    epoch = row["epoch"]
    kept = (f"; the checkpoint of epoch {epoch - 1}, the last that passed this check, is kept in {config.out_dir}"
            if config.out_dir and epoch > 1 else "")
    tensors = [(name, t) for name, t in (*model.named_parameters(), *model.named_buffers()) if t.is_floating_point()]
    finite = torch.stack([torch.isfinite(t).all() for _, t in tensors])  # one host sync for the whole model
    if not bool(finite.all()):
        bad = [name for (name, _), ok in zip(tensors, finite.tolist()) if not ok]
        raise NonFiniteLossError(f"training diverged in epoch {epoch}: {bad[0]}"
                                 f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''} became NaN or inf{kept}. "
                                 f"Lower TrainConfig.lr (it is {config.lr:g})")
    if halt_on_collapse and not row["embedding_std"] >= COLLAPSE_STD:
        raise NonFiniteLossError(f"training collapsed in epoch {epoch}: every image has the same embedding "
                                 f"(spread {row['embedding_std']:.1e}){kept}. Lower TrainConfig.lr (it is "
                                 f"{config.lr:g}) or raise TrainConfig.temperature")


def split_features(encoder: nn.Module, train_data: ImageData, test_data: ImageData, mean, std
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's features ``v`` of both splits, ``(N, D)`` and ``(M, D)``, normalised with the run's mean/std."""
    device = next(encoder.parameters()).device
    return (extract_embeddings(encoder, train_data.x, device=device, mean=mean, std=std),
            extract_embeddings(encoder, test_data.x, device=device, mean=mean, std=std))


class _Forward(nn.Module):
    """What one step differentiates: ``objective(model, views, ...)`` and the batch's contrastive accuracy.

    One module, so that ``torch.compile`` turns the model, the loss and the accuracy into one
    graph. Returns ``(loss, accuracy, z1, z2)``; ``z1``, ``z2`` (B, d) detached.
    """

    def __init__(self, model: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, views: torch.Tensor, index: torch.Tensor | None, labels: torch.Tensor | None):
        loss, z1, z2 = self.objective(self.model, views, index, labels)
        with torch.no_grad():
            accuracy = contrastive_accuracy_tensor(z1, z2)
        return loss, accuracy, z1, z2


class TrainStep:
    """One optimisation step on a batch of views, exactly as :func:`train` takes it.

    ``step(views, index, labels, lr)``: the objective's forward (the model under the autocast of
    ``config.precision``: bf16 on CUDA and on CPUs with bf16 units; the loss in float32), backward,
    optimizer step (fused on CUDA),
    ``objective.after_step`` (MoCo's momentum update), and the batch's loss and contrastive
    accuracy added to :attr:`sums` on the device: no host sync for SimCLR. On CUDA and the CPU the
    model is put in channels_last; with ``config.compile`` on CUDA, SimCLR's model + loss are one compiled
    graph (under torchrun: the DistributedDataParallel model is compiled, the loss is not).
    ``benchmarks/throughput.py`` times this same object.

    Args:
        model: the :class:`~crl_helpers.models.SimCLRModel`, already on ``device``.
        objective: an :class:`~crl_helpers.objectives.Objective`, already on ``device``.
        optimizer: over ``model``'s parameters (see :func:`build_optimizer`).
        config: supplies ``compile`` and ``precision``.
        device: where ``model`` lives.
        world_size: processes under torchrun; > 1 wraps the model in DistributedDataParallel.
        channels_last: the memory layout of model and views; None: the device's default
            (:func:`~crl_helpers.device.uses_channels_last`). ``benchmarks/cpu_main_job.py`` compares both.

    Example:
        >>> from dataclasses import replace
        >>> cfg = replace(CPU, batch_size=4)
        >>> model = build_model(cfg)
        >>> cpu = torch.device("cpu")
        >>> step = TrainStep(model, SimCLR(0.2), build_optimizer(model, cfg, cpu), cfg, cpu)
        >>> z1, z2 = step(torch.randn(8, 3, 32, 32), lr=1e-3)  # [view 1; view 2] of 4 images
        >>> z1.shape, step.sums.shape
        (torch.Size([4, 128]), torch.Size([2]))
    """

    def __init__(self, model: SimCLRModel, objective: Objective, optimizer: torch.optim.Optimizer,
                 config: TrainConfig, device: torch.device, world_size: int = 1,
                 channels_last: bool | None = None) -> None:
        self.model, self.objective, self.optimizer, self.config, self.device = model, objective, optimizer, config, device
        self.channels_last = uses_channels_last(device) if channels_last is None else channels_last
        if self.channels_last:
            model.to(memory_format=torch.channels_last)  # in place: the optimizer keeps its parameters
        net: nn.Module = model
        if world_size > 1:  # after channels_last: DDP's gradient buckets copy the parameters' strides
            from torch.nn.parallel import DistributedDataParallel

            # Gradients are AVERAGED over ranks; nt_xent_distributed's per-rank mean makes that the global loss's.
            net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self.compiled = config.compile and device.type == "cuda" and isinstance(objective, SimCLR)
        if self.compiled and world_size > 1:
            net = torch.compile(net)  # the all-gather of the loss stays outside the graph
        objective.amp = autocast_dtype(device, config.precision)
        forward = _Forward(net, objective)
        self.forward = torch.compile(forward) if self.compiled and world_size == 1 else forward
        self.sums = torch.zeros(2, device=device)  # running (loss, contrastive accuracy)

    def __call__(self, views: torch.Tensor, index: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                 lr: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on ``views`` (n_views * B, 3, S, S) of images ``index`` (B,) with ``labels`` (B,).

        ``index`` is needed by the memory bank and ``labels`` by SupCon only. Returns the detached ``z1, z2``.
        """
        if lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        if self.channels_last:
            views = views.contiguous(memory_format=torch.channels_last)  # a no-op for ViewAugmenter's views
        # The labels name the stages in a torch.profiler trace (benchmarks/throughput.py --profile).
        with record_function("crl.forward_loss"):
            loss, accuracy, z1, z2 = self.forward(views, index, labels)
        with record_function("crl.backward"):
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("crl.optimizer"):
            self.optimizer.step()
            self.objective.after_step(self.model)
            self.sums += torch.stack([loss.detach(), accuracy])
        return z1, z2


def _progress_bar(config: TrainConfig, start_epoch: int, steps_per_epoch: int):
    if not config.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch,
                desc=config.method, unit="step", dynamic_ncols=True)
