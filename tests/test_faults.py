"""Fault tolerance of a training run: killed, interrupted, corrupt checkpoints, reruns, out of memory.

The kill and Ctrl-C tests run the real ``crl train`` in a subprocess and signal it once its first
checkpoint exists; the others call ``cli.main`` in-process, which is what the ``crl`` script runs.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from crl_helpers import cli
from crl_helpers.checkpoint import save_checkpoint
from crl_helpers.train import CPU, train

REPO = Path(__file__).resolve().parents[1]
# Two steps per epoch: an epoch takes far longer than the 10 ms it takes to notice a new checkpoint,
# so a signal sent then lands mid-run.
TINY_FLAGS = ["--n-train", "64", "--n-test", "16", "--batch-size", "32", "--device", "cpu", "--no-umap", "--quiet"]


def _start(out: Path, *flags: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "crl_helpers.cli", "train", *TINY_FLAGS, "--out", str(out), *flags]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(proc: subprocess.Popen, path: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"training ended (status {proc.returncode}) before a checkpoint: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no checkpoint appeared in time")
        time.sleep(0.01)


def _history_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _main(capsys, *argv: str) -> tuple[int, list[str]]:
    status = cli.main(list(argv))
    return status, capsys.readouterr().err.strip().splitlines()


def test_sigkill_then_resume_continues_from_last_checkpoint(tmp_path):
    out, epochs = tmp_path / "run", 4
    proc = _start(out, "--epochs", str(epochs))
    _wait_for_checkpoint(proc, out / "checkpoint.pt")
    proc.send_signal(signal.SIGKILL)  # no handler runs: the worst case
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed = torch.load(out / "checkpoint.pt", weights_only=True)
    k = killed["epoch"]
    assert 1 <= k < epochs, "the run was not killed mid-way"
    assert [row["epoch"] for row in killed["history"]] == list(range(1, k + 1))

    proc = _start(out, "--epochs", str(epochs), "--resume")
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-2000:]
    final = torch.load(out / "checkpoint.pt", weights_only=True)
    assert final["epoch"] == epochs
    history = _history_csv(out / "history.csv")
    assert [int(row["epoch"]) for row in history] == list(range(1, epochs + 1))
    # Epochs 1..k are the killed run's, kept verbatim.
    assert [float(row["loss"]) for row in history[:k]] == [row["loss"] for row in killed["history"]]
    # The rest is what an uninterrupted run computes: weights, optimizer, schedule and views all resumed.
    config = replace(CPU, n_train=64, n_test=16, batch_size=32, epochs=epochs, device="cpu", umap=False,
                     progress=False, out_dir=None)
    reference = train(config).history
    assert [float(row["loss"]) for row in history] == pytest.approx([row["loss"] for row in reference], rel=1e-4)


def test_ctrl_c_exits_130_with_one_line_and_keeps_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = _start(out, "--epochs", "50")
    _wait_for_checkpoint(proc, out / "checkpoint.pt")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in stderr
    messages = [line for line in stderr.splitlines() if line.strip()]
    assert len(messages) == 1, stderr
    assert messages[0].startswith("crl: interrupted; the last finished epoch is saved in")
    assert f"crl train --resume --out {out}" in messages[0]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert 1 <= state["epoch"] < 50
    assert not list(out.glob("*.tmp")), "an interrupted write left a temporary file"


def _corrupt_files(tmp_path: Path) -> dict[str, bytes]:
    good = tmp_path / "good.pt"
    save_checkpoint({"epoch": 1, "model": {"w": torch.zeros(64, 64)}}, good)
    data = good.read_bytes()
    return {"truncated": data[: len(data) // 2], "garbage": b"not a checkpoint at all" * 10, "empty": b""}


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty"])
def test_corrupt_checkpoint_is_refused_and_never_written_over(tmp_path, capsys, kind):
    out = tmp_path / "run"
    out.mkdir()
    checkpoint = out / "checkpoint.pt"
    checkpoint.write_bytes(_corrupt_files(tmp_path)[kind])
    before = checkpoint.read_bytes()

    status, err = _main(capsys, "train", *TINY_FLAGS, "--epochs", "1", "--out", str(out), "--resume")
    assert status == 2 and len(err) == 1
    assert err[0].startswith(f"crl: error: {checkpoint} is corrupt or truncated")
    assert "delete it" in err[0]

    status, err = _main(capsys, "train", *TINY_FLAGS, "--epochs", "1", "--out", str(out))
    assert status == 2 and len(err) == 1
    assert "already holds checkpoint.pt" in err[0] and "--resume" in err[0] and "--overwrite" in err[0]
    assert checkpoint.read_bytes() == before


def test_rerun_into_a_finished_run_needs_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY_FLAGS, "--epochs", "1", "--out", str(out)]) == 0
    finished = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()

    status, err = _main(capsys, "train", *TINY_FLAGS, "--epochs", "1", "--out", str(out))
    assert (status, len(err)) == (2, 1)
    assert err[0] == (f"crl: error: --out {str(out)!r} already holds checkpoint.pt; continue that run with "
                      "--resume, start afresh with --overwrite, or choose another --out")
    assert (out / "checkpoint.pt").read_bytes() == finished

    status, err = _main(capsys, "train", *TINY_FLAGS, "--out", str(out), "--resume", "--overwrite")
    assert status == 2 and "contradict" in err[0]

    assert cli.main(["train", *TINY_FLAGS, "--epochs", "2", "--out", str(out), "--resume"]) == 0
    assert [row["epoch"] for row in torch.load(out / "checkpoint.pt", weights_only=True)["history"]] == [1, 2]

    assert cli.main(["train", *TINY_FLAGS, "--epochs", "1", "--out", str(out), "--overwrite"]) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1


def test_checkpoint_of_another_shape_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    save_checkpoint({"epoch": 1, "model": {"w": torch.zeros(2)}}, out / "checkpoint.pt")
    status, err = _main(capsys, "train", *TINY_FLAGS, "--epochs", "1", "--out", str(out), "--resume")
    assert (status, len(err)) == (2, 1)
    assert "does not match this config" in err[0] and "fresh --out" in err[0]


def _first_epoch_loss(seed: int) -> float:
    config = replace(CPU, n_train=64, n_test=16, batch_size=32, epochs=1, seed=seed, device="cpu",
                     progress=False, out_dir=None)
    return train(config).history[0]["loss"]


def test_same_seed_same_losses_other_seed_differs():
    first = _first_epoch_loss(seed=0)
    assert _first_epoch_loss(seed=0) == first
    assert _first_epoch_loss(seed=1) != pytest.approx(first, rel=1e-6)


def test_out_of_gpu_memory_suggests_a_smaller_batch(tmp_path, capsys, monkeypatch):
    import crl_helpers.train as train_module

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_module, "nt_xent", out_of_memory)  # the training step's loss
    status, err = _main(capsys, "train", *TINY_FLAGS, "--epochs", "1", "--out", str(tmp_path / "run"))
    assert (status, err) == (2, ["crl: error: out of GPU memory at --batch-size 32; try --batch-size 16"])


def test_non_finite_loss_stops_with_one_line_and_keeps_last_checkpoint(tmp_path, capsys, monkeypatch):
    import crl_helpers.train as train_module

    out = tmp_path / "run"
    assert cli.main(["train", *TINY_FLAGS, "--epochs", "1", "--out", str(out)]) == 0
    kept = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    real = train_module.nt_xent
    monkeypatch.setattr(train_module, "nt_xent", lambda *a, **k: real(*a, **k) * float("nan"))
    status, err = _main(capsys, "train", *TINY_FLAGS, "--epochs", "2", "--out", str(out), "--resume")
    assert (status, len(err)) == (2, 1)
    assert err[0].startswith("crl: error: the loss became nan in epoch 2")
    assert "Lower --lr or raise --temperature" in err[0]
    assert (out / "checkpoint.pt").read_bytes() == kept


def test_resume_with_another_encoder_names_the_one_the_checkpoint_was_trained_with(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY_FLAGS, "--epochs", "1", "--out", str(out)]) == 0  # the default convnet
    status, err = _main(capsys, "train", *TINY_FLAGS, "--epochs", "2", "--encoder", "resnet18", "--out", str(out),
                        "--resume")
    errors = [line for line in err if not line.startswith("crl: note:")]  # a ResNet on the CPU gets a note too
    assert (status, len(errors)) == (2, 1)
    assert "trained with --encoder convnet, this run asks for --encoder resnet18" in errors[0]
