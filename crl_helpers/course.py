"""Course plumbing: the cost tier a notebook runs in, and train-or-load caching.

Every notebook picks one of three tiers with one call at its top:

- ``"smoke"``: when the environment variable ``CRL_SMOKE=1`` is set (CI); tiny data,
  a few steps, at most 2 minutes per notebook on 2 cores;
- ``"cpu"``: no GPU; the built-in dataset at full size, at most ~10 minutes per notebook;
- ``"gpu"``: a CUDA GPU; real datasets (CIFAR-10) when present, ResNet-18.

Trained models are cached on disk by a hash of their config, so a later notebook never
forces a re-run of an earlier one (the UvA tutorial's "load if trained" pattern).

Example:
    >>> pick_tier("cpu")
    'cpu'
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

TIERS = ("smoke", "cpu", "gpu")
CACHE_DIR = Path(os.environ.get("CRL_CACHE", "runs/cache"))


def pick_tier(override: str | None = None) -> str:
    """The notebook's cost tier: ``override`` if given, else smoke under ``CRL_SMOKE=1``,
    else gpu with CUDA, else cpu.

    Raises:
        ValueError: ``override`` is not one of :data:`TIERS`.
    """
    if override is not None:
        if override not in TIERS:
            raise ValueError(f"tier={override!r} is unknown; choose one of {', '.join(TIERS)}")
        return override
    if os.environ.get("CRL_SMOKE", "") not in ("", "0"):
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


def train_or_load(config, cache_dir: str | os.PathLike | None = None, evaluate: bool = True):
    """Train ``config`` once and cache it; later calls (any notebook) load the result.

    The run lives in ``cache_dir/<config_key>/``. A finished run is loaded (model weights,
    history, metrics); an interrupted one is resumed from its last checkpoint.

    Returns:
        :class:`crl_helpers.train.TrainResult`.
    """
    from dataclasses import replace

    from crl_helpers.checkpoint import load_checkpoint
    from crl_helpers.train import TrainResult, build_model, train

    folder = Path(cache_dir or CACHE_DIR) / config_key(config)
    config = replace(config, out_dir=str(folder))
    metrics_file, ckpt = folder / "metrics.json", folder / "checkpoint.pt"
    if ckpt.exists():
        state = load_checkpoint(ckpt)
        if state["epoch"] >= config.epochs and (metrics_file.exists() or not evaluate):
            model = build_model(config)
            model.load_state_dict(state["model"])
            metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
            return TrainResult(model=model, history=list(state["history"]), metrics=metrics,
                               mean=tuple(state["mean"]), std=tuple(state["std"]))
        return train(config, resume=True, evaluate=evaluate)
    return train(config, evaluate=evaluate)
