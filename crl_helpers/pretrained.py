"""Pre-trained encoders as small files: the encoder's weights and the normalisation it was trained with.

A training checkpoint (``<out>/checkpoint.pt`` of ``crl train``) also holds the projection head, the
optimizer's state and the initial weights, everything a resumed run needs. An evaluation needs less:
:func:`save_encoder` keeps the encoder's ``state_dict``, its name (:func:`crl_helpers.models.build_encoder`
rebuilds it), the per-channel ``mean``/``std`` its inputs were normalised with, and the run's config;
:func:`load_encoder` builds the encoder back, in eval mode. Both go through
:mod:`crl_helpers.checkpoint`, so loading never executes code. :func:`sha256` fingerprints a shipped
file, so that a notebook can check it holds the weights its documentation describes.

Example:
    >>> import os, tempfile
    >>> from crl_helpers.models import build_encoder
    >>> path = os.path.join(tempfile.mkdtemp(), "encoder.pt")
    >>> save_encoder(build_encoder("convnet", width=8), "convnet", path, mean=(0.5,) * 3, std=(0.25,) * 3,
    ...              encoder_kwargs={"width": 8})
    >>> loaded = load_encoder(path)
    >>> loaded.encoder.feature_dim, loaded.mean, loaded.encoder.training
    (128, (0.5, 0.5, 0.5), False)
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from crl_helpers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from crl_helpers.files import open_regular_file
from crl_helpers.models import build_encoder
from crl_helpers.validate import check_channel_stats

__all__ = ["CHECKPOINTS", "CIFAR10_CONVNET", "CIFAR10_CONVNET_SHA256", "PretrainedEncoder", "encoder_from_run",
           "load_encoder", "save_encoder", "sha256"]

FORMAT = "crl-encoder-1"  # the file's "format" field: load_encoder refuses anything else
# The repository's checkpoints/ folder, found from the package (absent from a wheel install).
CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
# The course's ConvNet pre-trained with SimCLR on CIFAR-10 on a CPU; checkpoints/README.md gives the command.
CIFAR10_CONVNET = CHECKPOINTS / "cifar10-convnet-simclr.pt"
CIFAR10_CONVNET_SHA256 = "344306921b1008df93baba01e596b07aeaec6e185f8bb82947f7a6ecf8c14004"


@dataclass(frozen=True)
class PretrainedEncoder:
    """An encoder loaded by :func:`load_encoder`, with what evaluating it needs."""

    encoder: nn.Module  # in eval mode
    name: str  # build_encoder's name: "convnet", "resnet18", ...
    mean: tuple[float, ...]  # per-channel statistics its uint8 inputs are normalised with: (x / 255 - mean) / std
    std: tuple[float, ...]
    config: dict  # the training run's config (as train.config_from_dict reads it), {} when unknown


def save_encoder(encoder: nn.Module, name: str, path: str | os.PathLike, *, mean: Sequence[float],
                 std: Sequence[float], config: dict | None = None, encoder_kwargs: dict | None = None) -> None:
    """Write ``encoder``'s weights, its ``build_encoder`` name and normalisation to ``path`` (atomically).

    Args:
        encoder: the encoder (its ``state_dict`` is saved; a ``SimCLRModel`` must be passed without its head).
        name: the name :func:`crl_helpers.models.build_encoder` rebuilds it from.
        path: the file to write.
        mean, std: per-channel statistics of its inputs, one value per channel.
        config: the training run's config, kept for the record.
        encoder_kwargs: keyword arguments ``build_encoder`` needs besides the name (``width`` ...).

    Raises:
        ValueError: ``mean``/``std`` of different lengths or empty.
    """
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if len(mean) != len(std) or not mean:
        raise ValueError(f"mean={mean!r} and std={std!r} need one value per channel each")
    state = {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()}
    save_checkpoint({"format": FORMAT, "name": name, "encoder_kwargs": dict(encoder_kwargs or {}),
                     "state_dict": state, "mean": mean, "std": std, "config": dict(config or {})}, path)


def encoder_from_run(checkpoint_path: str | os.PathLike, path: str | os.PathLike) -> None:
    """Write the encoder of a ``crl train`` checkpoint (``<out>/checkpoint.pt``) to ``path`` with :func:`save_encoder`.

    The run's config goes along without ``data_root`` and ``out_dir``: folders of the machine that trained
    it, which mean nothing where the file is shipped to.

    Raises:
        CheckpointError: ``checkpoint_path`` is not a training checkpoint.
    """
    state = load_checkpoint(checkpoint_path)
    if not {"model", "config", "mean", "std"} <= state.keys():
        raise CheckpointError(f"{checkpoint_path} is not a training checkpoint (no model/config/mean/std); "
                              f"pass the checkpoint.pt that crl train wrote")
    prefix = "encoder."
    weights = {k[len(prefix):]: v for k, v in state["model"].items() if k.startswith(prefix)}
    encoder = build_encoder(state["config"]["encoder"])
    encoder.load_state_dict(weights)
    config = {k: v for k, v in state["config"].items() if k not in ("data_root", "out_dir")}
    save_encoder(encoder, state["config"]["encoder"], path, mean=state["mean"], std=state["std"], config=config)


def load_encoder(path: str | os.PathLike) -> PretrainedEncoder:
    """The encoder saved by :func:`save_encoder` at ``path``, rebuilt and in eval mode, on the CPU.

    A file named like the shipped one (:data:`CIFAR10_CONVNET`) must hold its bytes (:data:`CIFAR10_CONVNET_SHA256`),
    so that results computed from it are those its documentation describes.

    Raises:
        CheckpointError: the file is missing, corrupt, not an encoder file, or holds fields of the wrong
            kind (a name ``build_encoder`` does not know, weights of other shapes, a ``mean``/``std`` that
            is not one finite number per channel); or it is named like the shipped file but is not it.
    """
    if Path(path).name == CIFAR10_CONVNET.name:
        digest = sha256(path) if Path(path).is_file() else None
        if digest is not None and digest != CIFAR10_CONVNET_SHA256:
            raise CheckpointError(f"{path} is named like the shipped encoder but does not hold its weights (sha256 "
                                  f"{digest[:12]}..., expected {CIFAR10_CONVNET_SHA256[:12]}...); restore it with "
                                  f"git checkout -- checkpoints/{CIFAR10_CONVNET.name}, or save yours under another name")
    state = load_checkpoint(path)
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an encoder file (format {state.get('format')!r}, expected "
                              f"{FORMAT!r}); write one with crl_helpers.pretrained.save_encoder")
    fix = "write it again with crl_helpers.pretrained.save_encoder"
    try:
        mean, std = check_channel_stats(state.get("mean"), state.get("std"))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path} holds a bad normalisation ({err}); {fix}") from None
    name, kwargs, config = state.get("name"), state.get("encoder_kwargs", {}), state.get("config", {})
    if not isinstance(name, str) or not isinstance(kwargs, dict) or not isinstance(config, dict):
        raise CheckpointError(f"{path} holds name={name!r}, encoder_kwargs of type {type(kwargs).__name__}, "
                              f"config of type {type(config).__name__}; {fix}")
    try:
        encoder = build_encoder(name, **kwargs)
        encoder.load_state_dict(state.get("state_dict"))
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as err:
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:200]
        raise CheckpointError(f"{path} does not rebuild encoder {name!r} ({reason}); {fix}") from None
    return PretrainedEncoder(encoder.eval(), name, mean, std, config)


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits.

    Raises:
        OSError: ``path`` is missing, or not a regular file (:class:`crl_helpers.files.NotARegularFile`).

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile(delete=False) as f:
        ...     _ = f.write(b"abc")
        >>> sha256(f.name)[:16]
        'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open_regular_file(path) as f:  # a FIFO or a device would block or never end
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
