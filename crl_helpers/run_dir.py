"""A run's output folder: one run at a time, and only that run's files in it.

:func:`hold` locks ``out_dir`` for the lifetime of a run (an advisory ``flock`` on
``out_dir/.crl.lock``, which the operating system releases when the process ends, even by
``kill -9``, so a killed run never blocks ``--resume``); a second run into the same folder
is refused with :class:`RunDirInUse`, naming the holder's process id. Files another run left
(:data:`OUTPUTS`) are never touched by a run that was not told to: :func:`check_outputs` refuses
a folder that holds them without ``--resume`` or ``--overwrite``, or where one of them is not a
file, before any work starts. The earlier run's report files (:data:`REPORT_FILES`) are removed
only once the new run has saved its first epoch (its checkpoint and history), so a run that fails
before that leaves the folder as it was. A run that fails before writing anything removes the
folders it created (its parents included). Temporary files that a killed writer left behind
are removed when the next run takes the folder. Where ``fcntl`` is missing (Windows) folders are
not locked.

Example:
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "run"
    >>> with hold(out):
    ...     with hold(out):  # the same process may hold it again (train inside train_and_evaluate)
    ...         (out / "metrics.json").write_text("{}")
    2
    >>> sorted(p.name for p in out.iterdir())  # the lock file goes with the run
    ['metrics.json']
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from crl_helpers.files import kind_of

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["REPORT_FILES", "OUTPUTS", "RunDirInUse", "hold", "check_outputs", "clear_report_files",
           "atomic_write_text", "write_history"]

#: What the end-of-run report writes; an earlier run's copies are removed when a run saves its first epoch.
REPORT_FILES = ("history.csv", "metrics.json", "curves.png", "umap.png")
#: Every file a run writes.
OUTPUTS = ("checkpoint.pt",) + REPORT_FILES
_LOCK = ".crl.lock"
_held: dict[Path, tuple[int, int]] = {}  # folder -> (lock file descriptor, depth) held by this process


class RunDirInUse(ValueError):
    """Another process is running into the same output folder."""


def _unused_folder(path: Path) -> bool:
    return path.is_dir() and all(child.name == _LOCK for child in path.iterdir())


def _remove_created(path: Path, first_existing: Path) -> None:
    """Remove ``path`` and its parents up to (not including) ``first_existing``, while they are empty."""
    while path != first_existing and path.is_relative_to(first_existing) and _unused_folder(path):
        try:
            path.rmdir()
        except OSError:
            return
        path = path.parent


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files of a writer that was killed mid-write (``checkpoint.pt.<hex>.tmp``, ...)."""
    for name in OUTPUTS:
        for pattern in (f"{name}.*.tmp", f".{name}.*.tmp"):
            for stale in path.glob(pattern):
                if stale.is_file() and not stale.is_symlink():
                    with contextlib.suppress(OSError):
                        stale.unlink()


def check_outputs(out_dir: str | os.PathLike, resume: bool, overwrite: bool) -> None:
    """Refuse, before any work, a folder whose files this run must not touch or cannot write.

    Raises:
        ValueError: both ``resume`` and ``overwrite``; an output name (``metrics.json``, ...) that is a
            directory or another non-file; ``checkpoint.pt`` or report files of another run without
            ``resume`` or ``overwrite``.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> _ = (out / "metrics.json").write_text("{}")
        >>> check_outputs(out, resume=False, overwrite=False)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: --out '...' already holds metrics.json but no checkpoint.pt; ...
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other; pass one of them")
    out = Path(out_dir)
    for name in OUTPUTS:
        path = out / name
        if os.path.lexists(path) and not path.is_file():
            kind = kind_of(path.stat().st_mode) if path.exists() else "a broken symlink"
            raise ValueError(f"{path} is {kind}, not a file, where the run writes its {name}; move it away or "
                             f"choose another --out")
    if resume or overwrite:
        return
    if (out / "checkpoint.pt").exists():
        raise ValueError(f"--out {str(out_dir)!r} already holds checkpoint.pt; continue that run with --resume, "
                         f"start afresh with --overwrite, or choose another --out")
    found = [name for name in REPORT_FILES if (out / name).exists()]
    if found:
        raise ValueError(f"--out {str(out_dir)!r} already holds {', '.join(found)} but no checkpoint.pt; replace "
                         f"{'them' if len(found) > 1 else 'it'} with --overwrite, or choose another --out")


@contextlib.contextmanager
def hold(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Lock ``out_dir`` (made if missing) for the ``with`` block; re-entrant within one process.

    Raises:
        RunDirInUse: another process holds the folder.
        ValueError: the folder cannot be made or written to.
    """
    path = Path(out_dir).resolve()
    if path in _held:
        fd, depth = _held[path]
        _held[path] = (fd, depth + 1)
        try:
            yield path
        finally:
            _held[path] = (fd, depth)
        return
    first_existing = next(p for p in (path, *path.parents) if p.exists())
    created = first_existing != path
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / _LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise ValueError(f"the output folder {str(out_dir)!r} is not writable ({err.strerror}); "
                         f"choose a folder you can write to") from err
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirInUse(f"the output folder {str(out_dir)!r} is in use by another run (process {holder}); "
                              f"wait for it to finish, stop it, or choose another folder") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _remove_stale_temporaries(path)  # the lock is ours: no live writer owns them
    _held[path] = (fd, 1)
    failed = False
    try:
        yield path
    except BaseException:
        failed = True
        raise
    finally:
        del _held[path]
        with contextlib.suppress(OSError):
            os.unlink(path / _LOCK)
        os.close(fd)  # releases the flock
        if failed and created:
            _remove_created(path, first_existing)


def clear_report_files(out_dir: str | os.PathLike, keep: tuple[str, ...] = ()) -> None:
    """Remove an earlier run's report files from ``out_dir`` (not its checkpoint, nor the names in ``keep``)."""
    for name in set(REPORT_FILES) - set(keep):
        with contextlib.suppress(FileNotFoundError):
            (Path(out_dir) / name).unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a uniquely named temporary file and a rename (respecting the umask)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_history(history: list[dict], path: str | os.PathLike) -> None:
    """Write per-epoch rows (dicts) to CSV, atomically; columns in order of first appearance."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for row in history for k in row)))
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, text.getvalue())
