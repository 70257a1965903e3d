"""Checkpoints that survive interruption and load without executing code.

A checkpoint is written to a temporary file in the same folder and renamed over the
old one (``os.replace`` is atomic on POSIX and Windows), so a crash mid-write leaves
the last good checkpoint in place. The temporary file has a fresh random name per
write (two writers never share one) and is created with mode 0666 less the umask,
like every other file a run writes. Loading uses ``torch.load(weights_only=True)``,
which refuses pickled objects: a checkpoint carrying code is rejected, not run; and it
reads only a regular file of at most :data:`MAX_CHECKPOINT_BYTES` (a FIFO would hang
the reader, a symlink to ``/dev/zero`` would fill the memory) whose entries are stored
uncompressed, as ``torch.save`` writes them, so that what it unpacks to is bounded by the
file's size (a compressed entry of 1 MB could unpack to gigabytes). Tensors must be real
(a ``meta`` tensor has no values). A write that fails (a full disk, a file-size limit) raises
:class:`CheckpointError` and leaves the previous checkpoint as it was.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "checkpoint.pt")
    >>> save_checkpoint({"epoch": 1, "w": torch.zeros(2)}, path)
    >>> load_checkpoint(path)["epoch"]
    1
"""
from __future__ import annotations

import os
import pickle
import re
import secrets
import zipfile
from pathlib import Path

import torch

from crl_helpers.files import open_regular_file

# The largest file load_checkpoint reads: a ResNet-50 with its AdamW state is ~0.3 GiB, so
# anything past 4 GiB is not a checkpoint of this course, and reading it could exhaust memory.
MAX_CHECKPOINT_BYTES = 4 * 2**30


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, truncated or unsafe; the message says which and what to do."""


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically (temp file in the same folder + rename).

    ``state`` must hold only tensors, numbers, strings, bools, None, and lists, tuples
    and dicts of those, so that :func:`load_checkpoint` can read it with ``weights_only=True``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        # Whatever happened (disk full, Ctrl-C), the previous checkpoint is untouched.
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, (OSError, RuntimeError)):  # torch reports ENOSPC / EFBIG as "[enforce fail at ...]"
            reason = " ".join(str(err).split())[:200]
            kept = "the previous checkpoint is kept" if path.exists() else "no checkpoint was written"
            raise CheckpointError(f"could not write {path} ({type(err).__name__}: {reason}): is the disk full, or "
                                  f"a file-size limit (ulimit -f) set? {kept}; free space and resume with "
                                  f"resume=True, or point TrainConfig.out_dir at another disk") from err
        raise


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file ``<name>.<random>.tmp`` next to ``path``, opened for writing: ``(fd, its path)``.

    ``O_EXCL`` makes the file this writer's alone (64 random bits make a clash with another writer
    or a crashed one's leftover all but impossible, and an error, never a shared file); mode 0o666
    lets the kernel apply the umask (and any default ACL) as for every file ``open`` creates,
    where ``tempfile.mkstemp`` would give 0600.
    """
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp


def _culprit(err: Exception) -> str:
    """The line of torch's refusal that names the offending object ("... unsupported GLOBAL ..."), plain text.

    Torch's message opens with advice on how to load the file anyway and carries terminal bold codes;
    the useful part is the line naming what the unpickler met.
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # "Unsupported global: GLOBAL a.b", "Trying to load unsupported GLOBAL a.b whose module a is blocked", ...
    named = [line for line in lines if "unsupported" in line.lower() and "weights only load failed" not in line.lower()]
    return (named or lines or [type(err).__name__])[0]


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`, never executing code.

    Raises:
        CheckpointError: the file is missing, not a regular file (a directory, a FIFO, a device),
            larger than :data:`MAX_CHECKPOINT_BYTES`, truncated or corrupt, or carries pickled
            objects that ``weights_only=True`` refuses.
    """
    path = Path(path)
    try:
        f = open_regular_file(path)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}; train without resume=True first") from None
    except OSError as err:  # NotARegularFile, a symlink loop, no permission
        raise CheckpointError(f"{path} is not a checkpoint file ({err.strerror or err}); delete it, "
                              f"or point TrainConfig.out_dir at a fresh folder") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(f"{path} is {size / 2**30:.1f} GiB, more than a checkpoint can be "
                                  f"(MAX_CHECKPOINT_BYTES = {MAX_CHECKPOINT_BYTES / 2**30:g} GiB); it is not one "
                                  f"that save_checkpoint wrote: delete it, or point TrainConfig.out_dir at a fresh folder")
        return _load_open(path, f, map_location)


def _load_open(path: Path, f, map_location: str | torch.device) -> dict:
    """``load_checkpoint`` once ``path`` is open as the regular file ``f`` of a sane size."""
    if not zipfile.is_zipfile(f):
        # torch.save writes a zip archive; anything else (truncated, garbage, empty) would reach the
        # unpickler and be reported as "pickled objects", sending a student after an attacker, not a bad copy.
        raise CheckpointError(f"{path} is corrupt or truncated (not the zip archive torch.save writes); "
                              f"delete it to start afresh, or point TrainConfig.out_dir at a fresh folder")
    f.seek(0)
    _check_entries(path, f)
    f.seek(0)
    try:
        state = torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} was refused by torch.load(weights_only=True): besides tensors it carries pickled objects "
            f"({_culprit(err)}), and loading those would run code from the file. Do not load files you do not "
            f"trust (and do not turn weights_only off for them); delete it or point TrainConfig.out_dir at a fresh folder") from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is corrupt or truncated ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            f"delete it to start afresh, or point TrainConfig.out_dir at a fresh folder") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a checkpoint dict; delete it or point TrainConfig.out_dir at a fresh folder")
    if any(t.is_meta for t in _tensors(state)):
        raise CheckpointError(f"{path} holds meta tensors (shapes without values): it is not a saved run; "
                              f"delete it or point TrainConfig.out_dir at a fresh folder")
    return state


def _tensors(value) -> list[torch.Tensor]:
    """Every tensor in a nest of dicts, lists and tuples."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    return []


def _check_entries(path: Path, f) -> None:
    """Refuse an archive whose entries are compressed or unpack to more than the file holds (a zip bomb).

    ``torch.save`` stores every entry uncompressed, so an honest checkpoint unpacks to its own size.
    """
    try:
        with zipfile.ZipFile(f) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise CheckpointError(f"{path} is corrupt or truncated ({type(err).__name__}: {err}); delete it to start "
                              f"afresh, or point TrainConfig.out_dir at a fresh folder") from None
    size = os.fstat(f.fileno()).st_size
    packed = [e for e in entries if e.compress_type != zipfile.ZIP_STORED]
    unpacked = sum(e.file_size for e in entries)
    if packed or unpacked > size:
        what = (f"{packed[0].filename} is compressed" if packed
                else f"its entries claim {unpacked:,} bytes, more than the file's {size:,}")
        raise CheckpointError(f"{path} is not a checkpoint torch.save wrote ({what}; torch.save stores entries "
                              f"uncompressed, and unpacking it could exhaust the memory); delete it, or point "
                              f"TrainConfig.out_dir at a fresh folder")
