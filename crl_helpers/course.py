"""Course plumbing: the cost tier a notebook runs in, and train-or-load caching.

Every notebook picks one of three tiers with one call at its top:

- ``"smoke"``: when the environment variable ``CRL_SMOKE=1`` is set (CI); tiny data,
  a few steps, at most 2 minutes per notebook on 2 cores;
- ``"cpu"``: no GPU; the built-in dataset at full size, at most ~10 minutes per notebook;
- ``"gpu"``: a CUDA GPU; real datasets (CIFAR-10) when present, ResNet-18.

Trained models are cached on disk by a hash of their config, so a later notebook never
forces a re-run of an earlier one (the UvA tutorial's "load if trained" pattern). The
course's main SimCLR run, trained by notebook 05 and loaded by notebook 06, is built by :func:`main_config`
alone, so that both ask the cache for the same key; whichever runs first trains it (in course order 05, with
live curves), and the other loads it. A cached run keeps its encoder's weights after a few epochs
(:func:`snapshot_epochs`), from which notebook 05 draws how the embedding formed
(:func:`snapshot_encoders`) without training again.

Example:
    >>> pick_tier("cpu")
    'cpu'
    >>> config_key(main_config("smoke")) == config_key(main_config("smoke"))
    True
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # annotations only: this module imports the training stack lazily, where it is used
    from crl_helpers.models import SimCLRModel

TIERS = ("smoke", "cpu", "gpu")
CACHE_DIR = Path(os.environ.get("CRL_CACHE", "runs/cache"))
NOTEBOOK_DATA_ROOT = "../data"  # the repository's data/ folder, seen from notebooks/ where the notebooks run


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def env_flag(name: str) -> bool:
    """The environment variable ``name`` read as a yes/no flag: 1/true/yes/on or 0/false/no/off (any case), unset = no.

    Raises:
        ValueError: any other value (a typo must not pick a tier silently).

    Example:
        >>> os.environ["CRL_EXAMPLE_FLAG"] = "Off"
        >>> env_flag("CRL_EXAMPLE_FLAG")
        False
    """
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise ValueError(f"{name}={os.environ[name]!r} is not a yes/no value; set {name}=1 (or true, yes, on) "
                     f"or {name}=0 (or false, no, off), or unset it")


def pick_tier(override: str | None = None) -> str:
    """The notebook's cost tier: ``override`` if given, else smoke under ``CRL_SMOKE=1``
    (:func:`env_flag`: ``false``, ``no``, ``off`` mean no), else gpu with CUDA, else cpu.

    Raises:
        ValueError: ``override`` is not one of :data:`TIERS`; ``CRL_SMOKE`` is not a yes/no value.
    """
    if override is not None:
        if override not in TIERS:
            raise ValueError(f"tier={override!r} is unknown; choose one of {', '.join(TIERS)}")
        return override
    if env_flag("CRL_SMOKE"):
        return "smoke"
    return "gpu" if torch.cuda.is_available() else "cpu"


def describe_environment(tier: str) -> str:
    """One line saying which tier and device a notebook uses, to print at its top."""
    from crl_helpers.device import pick_device

    device = pick_device("auto")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return f"tier: {tier} | device: {name} | torch {torch.__version__} | {torch.get_num_threads()} CPU threads"


def config_key(config) -> str:
    """A short stable hash of a config (dataclass), naming its cache folder.

    Example:
        >>> from crl_helpers.train import CPU
        >>> config_key(CPU) == config_key(CPU), len(config_key(CPU))
        (True, 12)
    """
    d = asdict(config)
    d.pop("out_dir", None)
    d.pop("progress", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def main_config(tier: str, data_root: str = NOTEBOOK_DATA_ROOT):
    """The course's main SimCLR run for ``tier``: the one ``TrainConfig`` that notebooks 05 and 06 train or load.

    The first of them to run trains it, the other loads it; since the cache is keyed by
    :func:`config_key`, the notebooks share one run only because they both build it here.

    - ``"smoke"``: the ``CPU`` preset on 256 training and 128 test images for 2 epochs (CI);
    - ``"cpu"``: the ``CPU`` preset, the small ConvNet on the built-in shapes;
    - ``"gpu"``: the ``CIFAR10_GPU`` preset, ResNet-18 on CIFAR-10 when it is in ``data_root``
      (or can be downloaded there), else on the built-in shapes (a note is printed).

    Every tier evaluates kNN every few epochs (``knn_every``) and skips the UMAP plot,
    which the notebooks draw themselves.

    Args:
        tier: one of :data:`TIERS`, usually :func:`pick_tier`'s answer.
        data_root: where real datasets live. Part of the config, hence of the cache key:
            the default is the repository's ``data/`` as seen from ``notebooks/``.

    Returns:
        :class:`crl_helpers.train.TrainConfig`.

    Raises:
        ValueError: ``tier`` is not one of :data:`TIERS`.

    Example:
        >>> config = main_config("smoke")
        >>> config.dataset, config.epochs, config.n_train, config.data_root
        ('shapes', 2, 256, '../data')
    """
    from dataclasses import replace

    from crl_helpers.data import load_dataset
    from crl_helpers.image_data import DatasetUnavailable
    from crl_helpers.train import CIFAR10_GPU, CPU

    if tier not in TIERS:
        raise ValueError(f"tier={tier!r} is unknown; choose one of {', '.join(TIERS)}")
    if tier == "smoke":
        return replace(CPU, data_root=data_root, n_train=256, n_test=128, epochs=2, batch_size=128,
                       knn_every=1, linear_epochs=5, umap=False)
    if tier == "cpu":
        return replace(CPU, data_root=data_root, knn_every=5, umap=False)
    try:
        load_dataset("cifar10", "test", root=data_root, n=16)  # a small probe: is CIFAR-10 there?
    except DatasetUnavailable as err:
        print(f"Note: CIFAR-10 is not available ({err}).\nUsing ResNet-18 on the built-in shapes dataset instead.")
        return replace(CIFAR10_GPU, dataset="shapes", data_root=data_root, knn_every=10, umap=False)
    return replace(CIFAR10_GPU, data_root=data_root, knn_every=10, umap=False)


SNAPSHOT_FOLDER = "snapshots"  # inside a cached run's folder: the encoder's weights after a few epochs


def snapshot_epochs(epochs: int) -> list[int]:
    """The epochs after which :func:`train_or_load` keeps the encoder's weights: 1, ~10 %, 25 %, 50 % and the last.

    Together with the random initialisation (epoch 0, in every checkpoint) they let a notebook watch
    the embedding form (:func:`snapshot_encoders`) without training the run again.

    Example:
        >>> snapshot_epochs(100), snapshot_epochs(6), snapshot_epochs(1)
        ([1, 10, 25, 50, 100], [1, 3, 6], [1])
    """
    from crl_helpers.validate import check_int

    epochs = check_int("epochs", epochs, minimum=1)
    return sorted({1, max(1, epochs // 10), max(1, epochs // 4), max(1, epochs // 2), epochs})


def _snapshot_file(folder: Path, epoch: int) -> Path:
    return folder / SNAPSHOT_FOLDER / f"encoder_epoch{epoch:04d}.pt"


def train_or_load(config, cache_dir: str | os.PathLike | None = None, evaluate: bool = True,
                  callback: Callable[[int, SimCLRModel, dict], None] | None = None, data=None):
    """Train ``config`` once and cache it; later calls (any notebook) load the result.

    The run lives in ``cache_dir/<config_key>/``. A finished run is loaded (model weights,
    history, metrics); an interrupted one is resumed from its last checkpoint. While training, the
    encoder's weights after each of :func:`snapshot_epochs` (but the last, which the checkpoint
    holds) are kept in ``snapshots/``, so that :func:`snapshot_encoders` can show how the run
    learned without training it again. One line says which happened: ``train_or_load: training
    run <key> ...``, ``resuming run <key> ...`` or ``loaded run <key> ...``.

    Args:
        config: a :class:`crl_helpers.train.TrainConfig`; its ``out_dir`` is replaced by the cache folder.
        cache_dir: the cache's root; ``None`` = :data:`CACHE_DIR` (``$CRL_CACHE`` or ``runs/cache``).
        evaluate: run the final evaluation (kNN, linear probe, ``metrics.json``), as ``crl train`` does.
        callback: passed to :func:`crl_helpers.train.train`, which calls ``callback(epoch, model, row)`` after each
            epoch it trains (live curves, say). It is **ignored when the result comes from the cache**, and a
            resumed run calls it only for the epochs still to train; what a notebook needs of every
            epoch it reads from the snapshots instead.
        data: ``(train, test)`` already in memory (:func:`crl_helpers.train.load_data`); default: loaded when training.

    Returns:
        :class:`crl_helpers.train.TrainResult`.
    """
    from dataclasses import replace

    from crl_helpers.checkpoint import load_checkpoint, save_checkpoint
    from crl_helpers.report import train_and_evaluate
    from crl_helpers.train import TrainResult, build_model

    key = config_key(config)
    root = Path(cache_dir or CACHE_DIR)
    if root.exists() and not root.is_dir():
        named = "cache_dir" if cache_dir else "CRL_CACHE" if "CRL_CACHE" in os.environ else "the cache folder"
        raise ValueError(f"{named}={str(root)!r} is a file, not a folder; point it at a folder (default "
                         f"runs/cache), or move the file away")
    folder = root / key
    config = replace(config, out_dir=str(folder))
    metrics_file, ckpt = folder / "metrics.json", folder / "checkpoint.pt"
    resume = ckpt.exists()
    if resume:
        state = load_checkpoint(ckpt)
        if state["epoch"] >= config.epochs and (metrics_file.exists() or not evaluate):
            model = build_model(config)
            model.load_state_dict(state["model"])
            metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
            print(f"train_or_load: loaded run {key} from {folder}")
            return TrainResult(model=model, history=list(state["history"]), metrics=metrics,
                               mean=tuple(state["mean"]), std=tuple(state["std"]),
                               initial_encoder=state["initial_encoder"])
    print(f"train_or_load: {'resuming' if resume else 'training'} run {key} into {folder}")
    keep = set(snapshot_epochs(config.epochs)) - {config.epochs}

    def record(epoch: int, model, row: dict) -> None:
        if epoch in keep:
            encoder = getattr(model, "module", model).encoder  # DistributedDataParallel wraps the model
            save_checkpoint({"epoch": epoch, "encoder": {k: v.detach().cpu() for k, v in encoder.state_dict().items()}},
                            _snapshot_file(folder, epoch))
        if callback is not None:
            callback(epoch, model, row)

    return train_and_evaluate(config, resume=resume, data=data, evaluate=evaluate, callback=record)


#: The seeds of every experiment whose outcome a notebook interprets: three runs give a mean and a range, and a
#: difference counts only where the ranges do not overlap (:func:`crl_helpers.verdicts.compare`).
SEEDS = (0, 1, 2)


def tier_seeds(tier: str) -> tuple:
    """The seeds a notebook's experiments run in ``tier``: :data:`SEEDS`, or its first two in the smoke tier.

    The smoke tier only has to run every code path (a spread needs two runs) within CI's budget.

    Example:
        >>> tier_seeds("cpu"), tier_seeds("smoke")
        ((0, 1, 2), (0, 1))
    """
    if tier not in TIERS:
        raise ValueError(f"tier={tier!r} is unknown; choose one of {', '.join(TIERS)}")
    return SEEDS[:2] if tier == "smoke" else SEEDS


def train_or_load_seeds(config, seeds=SEEDS, cache_dir: str | os.PathLike | None = None) -> list:
    """:func:`train_or_load` for ``config`` at each of ``seeds``: the runs of one setting of an experiment.

    Each seed is its own cached run (the seed is part of the cache key); ``config.seed`` itself is ignored.

    Args:
        config: a :class:`crl_helpers.train.TrainConfig`.
        seeds: an iterable of ints; default :data:`SEEDS`.
        cache_dir: as for :func:`train_or_load`. Each run loads its own data: the seed also draws the subset
            of images when ``n_train`` or ``n_test`` is set.

    Returns:
        list of :class:`crl_helpers.train.TrainResult`, in the order of ``seeds``.

    Raises:
        ValueError: no seeds, or a seed repeated (its run would count twice in the spread).

    Example:
        >>> import tempfile
        >>> from dataclasses import replace
        >>> tiny = replace(main_config("smoke"), n_train=64, n_test=32, epochs=1, batch_size=32, progress=False)
        >>> runs = train_or_load_seeds(tiny, seeds=(0, 1), cache_dir=tempfile.mkdtemp())  # doctest: +ELLIPSIS
        train_or_load: training run ...
        train_or_load: training run ...
        >>> [run.metrics["knn_acc"] >= 0 for run in runs]
        [True, True]
    """
    from dataclasses import replace

    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds={seeds!r}: pass distinct seeds, e.g. course.SEEDS = {SEEDS}")
    return [train_or_load(replace(config, seed=seed), cache_dir=cache_dir) for seed in seeds]


def snapshot_encoders(config, cache_dir: str | os.PathLike | None = None) -> dict:
    """The encoders of the cached run ``config`` after the epochs it kept, from epoch 0 (random init) to the last.

    Reads the run that :func:`train_or_load` trained: epoch 0 is the checkpoint's initial encoder,
    the last epoch its final model, the epochs between are the ``snapshots/`` of
    :func:`snapshot_epochs` that are on disk (a run cached before snapshots were kept has none).
    Nothing is trained: call :func:`train_or_load` first.

    Args:
        config: the run's :class:`crl_helpers.train.TrainConfig` (its cache key finds the folder).
        cache_dir: as for :func:`train_or_load`.

    Returns:
        dict epoch -> encoder (``nn.Module`` in eval mode, on the CPU), in epoch order.

    Raises:
        FileNotFoundError: the run is not in the cache (or not finished); the message says to train it.
    """
    from crl_helpers.checkpoint import load_checkpoint
    from crl_helpers.train import build_model

    folder = Path(cache_dir or CACHE_DIR) / config_key(config)
    ckpt = folder / "checkpoint.pt"
    state = load_checkpoint(ckpt) if ckpt.exists() else None
    if state is None or state["epoch"] < config.epochs:
        raise FileNotFoundError(f"no finished run {config_key(config)} in {folder.parent}; "
                                "call train_or_load(config) first")
    weights = {0: state["initial_encoder"]}
    for epoch in snapshot_epochs(config.epochs)[:-1]:
        if _snapshot_file(folder, epoch).exists():
            weights[epoch] = load_checkpoint(_snapshot_file(folder, epoch))["encoder"]
    weights[config.epochs] = {k.removeprefix("encoder."): v for k, v in state["model"].items()
                              if k.startswith("encoder.")}
    encoders = {}
    for epoch, encoder_state in weights.items():
        encoder = build_model(config).encoder
        encoder.load_state_dict(encoder_state)
        encoders[epoch] = encoder.eval()
    return encoders


if TYPE_CHECKING:
    from crl_helpers.data import ImageData

REPOSITORY_DATA = Path(__file__).resolve().parent.parent / "data"  # the repository's data/ folder, from anywhere
_CIFAR10_FOLDER = "cifar-10-batches-py"  # torchvision's copy; the course's own is data.CIFAR10_NPZ


def cifar10_root() -> Path | None:
    """The folder that holds a local copy of CIFAR-10, or ``None``: nothing is downloaded.

    Looks in the folder named by the environment variable ``CRL_DATA`` (when set), then in the
    repository's ``data/`` (:data:`REPOSITORY_DATA`). A folder holds a copy when it has the course's
    JPEG archive ``cifar10_jpeg.npz`` or torchvision's ``cifar-10-batches-py/``.

    Example:
        >>> root = cifar10_root()
        >>> root is None or (root / "cifar10_jpeg.npz").is_file() or (root / "cifar-10-batches-py").is_dir()
        True
    """
    from crl_helpers.data import CIFAR10_NPZ

    for root in (os.environ.get("CRL_DATA", ""), REPOSITORY_DATA):
        if root and ((Path(root) / CIFAR10_NPZ).is_file() or (Path(root) / _CIFAR10_FOLDER).is_dir()):
            return Path(root)
    return None


def find_cifar10(split: str = "test", n: int | None = None) -> ImageData | None:
    """One split of the local CIFAR-10 copy found by :func:`cifar10_root`, or ``None`` when there is none.

    Notebooks use it to show real photographs where a copy is on disk, and go on with the built-in
    shapes where it is not; it never downloads (the course runs offline). Point ``CRL_DATA`` at a
    folder holding ``cifar10_jpeg.npz`` (or ``cifar-10-batches-py/``), or put one in ``data/``.

    Args:
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000).
        n: keep ``n`` images, a seeded random subset (see :func:`crl_helpers.data.load_dataset`); ``None`` = all.

    Returns:
        :class:`crl_helpers.data.ImageData` (uint8 (N, 3, 32, 32), labels (N,)), or ``None``.

    Raises:
        ValueError: an unknown ``split``, ``n`` < 1, or a copy whose archive is malformed.
        TypeError: ``n`` is neither an int nor ``None``.
        DatasetUnavailable: a ``cifar-10-batches-py/`` folder that torchvision cannot read (incomplete).

    Example:
        >>> cifar = find_cifar10("test", n=8)
        >>> cifar is None or (len(cifar), cifar.image_size) == (8, 32)
        True
    """
    from crl_helpers.data import SPLITS, load_dataset
    from crl_helpers.validate import check_int

    if split not in SPLITS:  # checked here too, so that a typo fails on machines without a copy as well
        raise ValueError(f"split={split!r} is unknown; choose 'train' or 'test'")
    if n is not None:
        check_int("n", n, minimum=1, hint="or None for the whole split")
    root = cifar10_root()
    if root is None:
        return None
    return load_dataset("cifar10", split, root=root, n=n, download=False)


# ------------------------------------------------------------------ the setup cell for hosted runtimes
#: Where a fresh hosted runtime (Colab and the like) installs the package from when the notebook is not inside
#: a clone of the course: a pip requirement, e.g. ``"crl-helpers @ git+https://<host>/<owner>/<repo>"``. Empty
#: until the course is published; ``CRL_COURSE_SOURCE`` in the environment overrides it. After changing it,
#: :func:`stamp_setup_cells` writes the new cell into every notebook.
COURSE_SOURCE = ""
SETUP_CELL_TAG = "setup"  # the cell's tag in the notebooks' metadata

_SETUP_CELL = '''\
# Setup for a fresh hosted runtime (Colab and the like). Where crl_helpers is installed, this cell does nothing.
# Elsewhere it installs the course package from the clone this notebook sits in (or from CRL_COURSE_SOURCE),
# and pins the runtime's own torch and torchvision, so that pip never replaces them.
import importlib.metadata, importlib.util, os, pathlib, subprocess, sys

if importlib.util.find_spec("crl_helpers") is None:
    clone = pathlib.Path.cwd().parent
    in_clone = (clone / "crl_helpers").is_dir() and (clone / "pyproject.toml").is_file()
    source = str(clone) if in_clone else os.environ.get("CRL_COURSE_SOURCE", {source})
    if not source:
        raise RuntimeError("crl_helpers is not installed and this notebook is not inside a clone of the course: "
                           "clone the course and open this notebook from its notebooks/ folder")
    pins = []
    for name in ("torch", "torchvision"):
        try:
            pins.append(f"{{name}}=={{importlib.metadata.version(name)}}")  # the runtime's build, CUDA included
        except importlib.metadata.PackageNotFoundError:
            pass
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", source, *pins], check=True)
    importlib.invalidate_caches()'''


def setup_cell_source(source: str = COURSE_SOURCE) -> str:
    """The first code cell of every notebook: installs ``crl_helpers`` in a fresh hosted runtime, never torch.

    Self-contained (the package it installs is not importable yet). It does nothing where ``crl_helpers``
    imports; otherwise it ``pip install``-s the clone the notebook sits in (``notebooks/..``), else
    ``CRL_COURSE_SOURCE`` or ``source``, together with ``torch==<installed>`` and
    ``torchvision==<installed>``: requirements the runtime already meets, so pip keeps its torch build (a
    package needing another torch fails to resolve instead of replacing it).

    Example:
        >>> "find_spec" in setup_cell_source() and "torchvision" in setup_cell_source()
        True
    """
    return _SETUP_CELL.format(source=json.dumps(str(source)))


def stamp_setup_cells(notebooks_dir: str | os.PathLike = "notebooks", source: str = COURSE_SOURCE) -> list[str]:
    """Write :func:`setup_cell_source` as the first code cell of every notebook in ``notebooks_dir``.

    The cell tagged ``"setup"`` is replaced; a notebook without one gets it before its first code cell.
    Returns the names of the notebooks that changed (outputs are never written).
    """
    import nbformat

    changed = []
    for path in sorted(Path(notebooks_dir).glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        text = setup_cell_source(source)
        tagged = [c for c in nb.cells if SETUP_CELL_TAG in c.metadata.get("tags", [])]
        if tagged and tagged[0].source == text:
            continue
        if tagged:
            tagged[0].source = text
        else:
            first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
            cell = nbformat.v4.new_code_cell(text, metadata={"tags": [SETUP_CELL_TAG]})
            cell.id = SETUP_CELL_TAG
            nb.cells.insert(first_code, cell)
        nbformat.write(nb, path)
        changed.append(path.name)
    return changed
