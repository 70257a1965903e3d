"""Tests for the ``crl`` command: every flag validates, with exit status 2 and one line naming value and fix."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crl_helpers import cli

REPO = Path(__file__).resolve().parents[1]
TINY = ["--n-train", "64", "--n-test", "16", "--batch-size", "32", "--epochs", "1", "--device", "cpu",
        "--no-umap", "--quiet"]


def _fails(capsys, argv: list[str]) -> str:
    """Run ``crl`` in-process; assert status 2 and a single stderr line; return that line."""
    status = cli.main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 2, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("crl: error: ")
    assert captured.out == ""
    return lines[0]


# (flags, what the one line must contain: the bad value and the way out)
BAD_FLAGS = [
    (["--n-train", "0"], ["--n-train", "0 must be >= 2"]),
    (["--n-train", "1"], ["--n-train", "1 must be >= 2"]),
    (["--n-test", "0"], ["--n-test", "0 must be >= 1"]),
    (["--epochs", "0"], ["--epochs", "0 must be >= 1", "e.g. 30"]),
    (["--epochs", "-3"], ["--epochs", "-3 must be >= 1"]),
    (["--epochs", "two"], ["--epochs", "'two' is not an integer"]),
    (["--batch-size", "1"], ["--batch-size", "1 must be >= 2", "e.g. 256"]),
    (["--batch-size", "2.5"], ["--batch-size", "'2.5' is not an integer"]),
    (["--temperature", "0"], ["--temperature", "0 must be a finite number > 0", "e.g. 0.2"]),
    (["--temperature", "-0.1"], ["--temperature", "-0.1 must be a finite number > 0"]),
    (["--temperature", "nan"], ["--temperature", "nan must be a finite number > 0"]),
    (["--temperature", "inf"], ["--temperature", "inf must be a finite number > 0"]),
    (["--temperature", "warm"], ["--temperature", "'warm' is not a number"]),
    (["--lr", "-1"], ["--lr", "-1 must be a finite number > 0", "e.g. 2e-3"]),
    (["--lr", "0"], ["--lr", "0 must be a finite number > 0"]),
    (["--seed", "-1"], ["--seed", "-1 must be in [0, 4294967296)"]),
    (["--seed", str(2**40)], ["--seed", f"{2**40} must be in [0, 4294967296)"]),
    (["--dataset", "imagenet"], ["--dataset 'imagenet' is unknown", "choose one of shapes, cifar10"]),
    (["--encoder", "vit"], ["--encoder 'vit' is unknown", "choose one of convnet, resnet18"]),
    (["--preset", "tpu"], ["--preset 'tpu' is unknown", "choose one of cpu, cifar10-gpu"]),
    (["--optimizer", "lars"], ["--optimizer 'lars' is unknown; choose one of adamw, sgd"]),
    (["--device", "tpu"], ["--device 'tpu' is not a device name", "'auto', 'cpu'"]),
    (["--view-size", "4"], ["--view-size", "4 must be >= 8", "e.g. 24"]),
    (["--view-size", "2000"], ["--view-size 2000 must be an int in [8, 1024]"]),
    (["--frobnicate"], ["unrecognized arguments: --frobnicate", "crl --help"]),
    (["--epochs"], ["--epochs: expected one argument"]),
]


@pytest.mark.parametrize("flags, expected", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flag_gives_one_line_and_status_2(capsys, tmp_path, flags, expected):
    line = _fails(capsys, ["train", *TINY, "--out", str(tmp_path / "run"), *flags])
    for text in expected:
        assert text in line, line
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_missing_command(capsys):
    assert "required: command" in _fails(capsys, [])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda(capsys, tmp_path):
    line = _fails(capsys, ["train", *TINY, "--out", str(tmp_path / "run"), "--device", "cuda"])
    assert "--device 'cuda' but no CUDA GPU is available here; use --device 'auto' or 'cpu'" in line
    assert not (tmp_path / "run").exists(), "a refused run must not leave a folder behind"


def test_unwritable_out(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = _fails(capsys, ["train", *TINY, "--out", str(blocker / "run")])
    assert f"the output folder {str(blocker / 'run')!r} is not writable" in line and "choose a folder you can write to" in line


def test_batch_larger_than_the_data(capsys, tmp_path):
    line = _fails(capsys, ["train", *TINY, "--out", str(tmp_path / "run"), "--batch-size", "128"])
    assert "--batch-size 128 exceeds the 64 training images; use --batch-size 64 or fewer" in line


def test_folder_dataset_without_images(capsys, tmp_path):
    empty = tmp_path / "images"
    empty.mkdir()
    line = _fails(capsys, ["train", *TINY, "--out", str(tmp_path / "run"), "--dataset", "folder",
                           "--data-root", str(empty)])
    assert "holds no images in class sub-folders" in line


def test_resume_without_checkpoint(capsys, tmp_path):
    line = _fails(capsys, ["train", *TINY, "--out", str(tmp_path / "run"), "--resume"])
    assert "no checkpoint at" in line and "train without --resume first" in line


def test_odd_global_batch_under_torchrun_is_refused_before_training(capsys, tmp_path, monkeypatch):
    # The divisibility check runs before the process group would be used; fake a 2-process world whose
    # set-up we stub out (the real one is in test_distributed.py).
    import crl_helpers.train as train_module
    from crl_helpers.distributed import DistributedContext

    monkeypatch.setattr(train_module, "setup_distributed", lambda device: DistributedContext(0, 0, 2))
    line = _fails(capsys, ["train", *TINY, "--out", str(tmp_path / "run"), "--batch-size", "33"])
    assert "--batch-size 33 is the global batch and must be divisible by the 2 processes; use --batch-size 32" in line


def test_real_process_exits_2_without_traceback(tmp_path):
    cmd = [sys.executable, "-m", "crl_helpers.cli", "train", "--epochs", "0", "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "crl: error: argument --epochs: 0 must be >= 1; e.g. 30 (see: crl train --help)"]


def test_success_prints_the_summary(capsys, tmp_path):
    assert cli.main(["train", *TINY, "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "kNN accuracy (trained encoder)" in out and "umap.png" not in out  # --no-umap: none promised


def test_a_resnet_on_the_cpu_gets_a_note_about_time(capsys, tmp_path):
    assert cli.main(["train", *TINY, "--encoder", "resnet18", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "crl: note: --encoder resnet18 on the CPU" in err and "--encoder convnet" in err
    assert cli.main(["train", *TINY, "--out", str(tmp_path / "small")]) == 0
    assert "note" not in capsys.readouterr().err  # the default convnet gets none


def test_umap_flag_draws_the_plot_in_the_background(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--umap", "--out", str(out)]) == 0  # the last of --no-umap/--umap wins
    assert (out / "umap.png").stat().st_size > 0
    stages = json.loads((out / "metrics.json").read_text())["stage_seconds"]
    assert "umap" in stages and "umap.png" in capsys.readouterr().out


def test_python_names_become_flags_in_one_place():
    # The package speaks Python (TrainConfig.lr, resume=True); every error the CLI prints passes through cli_words.
    assert cli.cli_words("TrainConfig.view_size=2000 must be an int in [8, 1024]") == "--view-size 2000 must be an int in [8, 1024]"
    assert cli.cli_words("Lower TrainConfig.lr or raise TrainConfig.temperature") == "Lower --lr or raise --temperature"
    assert cli.cli_words("start afresh with resume=False, or train without resume=True") == \
        "start afresh with --overwrite, or train without --resume"
    assert cli.cli_words("TrainConfig.knn_k=0 must be >= 1") == "TrainConfig.knn_k=0 must be >= 1"  # no flag sets it
    assert cli.cli_words("use TrainConfig.n_test=3 or more, or TrainConfig.umap=False") == "use --n-test 3 or more, or --no-umap"
    train_parser = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    options = {option for action in train_parser._actions for option in action.option_strings}
    assert {f"--{flag}" for flag in cli.CLI_FLAGS.values()} <= options  # every flag the table names exists
