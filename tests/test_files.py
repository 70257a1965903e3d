"""Tests for crl_helpers.files: only regular files open, and the refusal says what the path names instead."""
from __future__ import annotations

import os
import sys

import pytest

from crl_helpers.files import NotARegularFile, open_regular_file


def test_a_regular_file_and_a_symlink_to_one_open(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"\x00\x01\x02")
    with open_regular_file(path) as f:
        assert f.read() == b"\x00\x01\x02" and os.fstat(f.fileno()).st_size == 3
    (tmp_path / "link").symlink_to(path)
    with open_regular_file(tmp_path / "link") as f:
        assert f.read() == b"\x00\x01\x02"


def test_a_directory_is_named_as_one(tmp_path):
    with pytest.raises(NotARegularFile, match="^a directory, not a regular file$"):
        open_regular_file(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_at_once_without_a_writer(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFile, match="a FIFO \\(named pipe\\), not a regular file"):
        open_regular_file(fifo)  # would block forever without O_NONBLOCK


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/dev/zero as Linux has it")
def test_a_device_is_refused():
    with pytest.raises(NotARegularFile, match="a character device"):
        open_regular_file("/dev/zero")


def test_a_missing_file_is_the_usual_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_regular_file(tmp_path / "missing")
