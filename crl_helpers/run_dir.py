"""A run's output folder: one run at a time, and only that run's files in it.

:func:`hold` locks ``out_dir`` for the lifetime of a run (an advisory ``flock`` on
``out_dir/.crl.lock``, which the operating system releases when the process ends, even by
``kill -9``, so a killed run never blocks ``--resume``); a second run into the same folder
is refused with :class:`RunDirInUse`, naming the holder's process id. When a run starts,
the report files of any earlier run (:data:`REPORT_FILES`) are removed, so the folder never
mixes two runs' outputs; ``checkpoint.pt`` is replaced only when the new run saves its first
epoch. A folder the run created is removed again if the run fails before writing anything.
Where ``fcntl`` is missing (Windows) folders are not locked.

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

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["REPORT_FILES", "OUTPUTS", "RunDirInUse", "hold", "clear_report_files", "atomic_write_text",
           "write_history"]

#: What the end-of-run report writes; an earlier run's copies are removed when a run starts.
REPORT_FILES = ("history.csv", "metrics.json", "curves.png", "umap.png")
#: Every file a run writes.
OUTPUTS = ("checkpoint.pt",) + REPORT_FILES
_LOCK = ".crl.lock"
_held: dict[Path, tuple[int, int]] = {}  # folder -> (lock file descriptor, depth) held by this process


class RunDirInUse(ValueError):
    """Another process is running into the same output folder."""


def _unused_folder(path: Path) -> bool:
    return path.is_dir() and all(child.name == _LOCK for child in path.iterdir())


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
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / _LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise ValueError(f"--out {str(out_dir)!r} is not writable ({err.strerror}); "
                         f"choose a folder you can write to") from err
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirInUse(f"--out {str(out_dir)!r} is in use by another run (process {holder}); wait for it "
                              f"to finish, stop it, or choose another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
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
        if failed and created and _unused_folder(path):
            with contextlib.suppress(OSError):
                path.rmdir()


def clear_report_files(out_dir: str | os.PathLike) -> None:
    """Remove an earlier run's report files from ``out_dir`` (not its checkpoint)."""
    for name in REPORT_FILES:
        with contextlib.suppress(FileNotFoundError):
            (Path(out_dir) / name).unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a uniquely named temporary file and a rename (respecting the umask)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
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
