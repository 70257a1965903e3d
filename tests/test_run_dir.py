"""Tests for crl_helpers.run_dir: a run's output folder holds one run at a time, and its files are written whole."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crl_helpers import run_dir

REPO = Path(__file__).resolve().parents[1]


def test_hold_makes_the_folder_and_leaves_no_lock(tmp_path):
    out = tmp_path / "a" / "run"
    with run_dir.hold(out) as path:
        assert path == out.resolve() and out.is_dir()
        with run_dir.hold(out):  # re-entrant in one process
            pass
    assert list(out.iterdir()) == []


def test_a_failed_run_removes_the_folder_it_made(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with run_dir.hold(out):
            raise RuntimeError("the run failed before writing anything")
    assert not out.exists()


@pytest.mark.skipif(sys.platform.startswith("win"), reason="flock is POSIX")
def test_a_second_process_is_refused_while_the_first_holds_it(tmp_path):
    out = tmp_path / "run"
    with run_dir.hold(out):
        code = ("import sys\nfrom crl_helpers import run_dir\n"
                "try:\n    run_dir.hold(sys.argv[1]).__enter__()\nexcept run_dir.RunDirInUse as err:\n    print(err)")
        proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert f"is in use by another run (process {os.getpid()})" in proc.stdout, proc.stdout + proc.stderr


def test_atomic_write_and_history_csv(tmp_path):
    path = tmp_path / "history.csv"
    rows = [{"epoch": 1, "loss": 5.0}, {"epoch": 2, "loss": 4.5, "knn_acc": 0.3}]
    run_dir.write_history(rows, path)
    with open(path, newline="") as f:
        read = list(csv.DictReader(f))
    assert [r["epoch"] for r in read] == ["1", "2"] and read[0]["knn_acc"] == "" and read[1]["knn_acc"] == "0.3"
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]  # no temporary file left
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_clear_report_files_keeps_the_checkpoint(tmp_path):
    for name in run_dir.OUTPUTS:
        (tmp_path / name).write_text("x")
    run_dir.clear_report_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
