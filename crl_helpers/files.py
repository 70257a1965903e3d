"""Opening a file from disk without hanging or reading forever: regular files only.

A path can name something that is not a file of bytes: a FIFO blocks its reader until a writer
comes (forever, if none does), ``/dev/zero`` never ends, a directory cannot be read at all. The
loaders of checkpoints, CIFAR-10 archives and image folders open paths through
:func:`open_regular_file`, which opens without blocking and checks what it opened (after
following symlinks) before reading a byte, so there is no window between the check and the read.

Example:
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open_regular_file(folder) as f:
    ...     pass
    Traceback (most recent call last):
    ...
    crl_helpers.files.NotARegularFile: a directory, not a regular file
"""
from __future__ import annotations

import os
import stat
from typing import BinaryIO

# What a path can name besides a regular file, in the words of an error message.
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class NotARegularFile(OSError):
    """A path names a directory, FIFO, device or socket; the message says which."""


def kind_of(mode: int) -> str:
    """What a ``st_mode`` names, in the words of an error message: "a directory", "a FIFO (named pipe)", ...

    Example:
        >>> kind_of(os.stat(".").st_mode)
        'a directory'
    """
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for is_kind, name in _KINDS if is_kind(mode)), "not a file of bytes")


def open_regular_file(path: str | os.PathLike) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file, following symlinks.

    The size is ``os.fstat(f.fileno()).st_size``, for callers that cap it.

    Raises:
        NotARegularFile: ``path`` names a directory, FIFO, device or socket.
        OSError: it cannot be opened (``FileNotFoundError`` for a missing file or a broken
            symlink, ``errno.ELOOP`` for a symlink loop, ``PermissionError``).
    """
    # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer; it changes nothing
    # for a regular file. A directory opens read-only on POSIX and is refused by fstat below.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(f"{kind_of(mode)}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
