"""Fault tolerance of a training run: killed, interrupted, corrupt checkpoints, reruns, out of memory.

The kill and Ctrl-C tests run training in a child process whose epoch callback prints a line and
then waits for a signal; the parent sends the signal upon that line. The child is thus always
stopped at the same point, between two epochs, whatever the machine's speed. The other tests call
``cli.main`` in-process, which is what the ``crl`` script runs.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from crl_helpers import cli
from crl_helpers.checkpoint import save_checkpoint
from crl_helpers.train import CPU, train

REPO = Path(__file__).resolve().parents[1]
TINY_FLAGS = ["--n-train", "64", "--n-test", "16", "--batch-size", "32", "--device", "cpu", "--no-umap", "--quiet"]
CHILD_SECONDS = 300  # a child that neither announces its epoch nor ends by then is killed and the test fails

# train(config, callback=...) on TINY_FLAGS' config in a child process: argv = out_dir epochs stop_at resume.
# At the start of callback(stop_at) the checkpoint holds epoch stop_at - 1: the callback of an epoch runs
# before that epoch is saved, so an exception (or a kill) in it leaves the previous epoch on disk.
TRAIN_CHILD = """
import signal, sys
from dataclasses import replace
from crl_helpers.train import CPU, train

out, epochs, stop_at, resume = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "resume"
config = replace(CPU, n_train=64, n_test=16, batch_size=32, epochs=epochs, device="cpu", umap=False,
                 progress=False, out_dir=out)

def callback(epoch, model, row):
    if epoch == stop_at:
        print(f"epoch {epoch}", flush=True)
        signal.pause()  # until the parent's signal

train(config, resume=resume, callback=callback)
"""

# `crl train ARGS` (cli.main) in a child process whose training announces epoch 2 and waits, as above.
# cli.main imports the report (which imports crl_helpers.train.train) when it runs, so wrapping it adds the callback.
CLI_CHILD = """
import signal, sys
import crl_helpers.train
from crl_helpers import cli

plain_train = crl_helpers.train.train

def callback(epoch, model, row):
    if epoch == 2:
        print("epoch 2", flush=True)
        signal.pause()  # until the parent's signal

def train(config, *args, **kwargs):
    kwargs["callback"] = callback
    return plain_train(config, *args, **kwargs)

crl_helpers.train.train = train
sys.exit(cli.main(sys.argv[1:]))
"""


def _child(script: str, *argv: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # same env, same floats: bit for bit
    return subprocess.Popen([sys.executable, "-c", script, *argv], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_line(proc: subprocess.Popen, line: str) -> None:
    """Block until the child prints ``line`` (it then waits for a signal); fail if it ends first."""
    watchdog = threading.Timer(CHILD_SECONDS, proc.kill)  # a hung child ends the wait below
    watchdog.start()
    try:
        for printed in proc.stdout:
            if printed.rstrip("\n") == line:
                return
    finally:
        watchdog.cancel()
    _, stderr = _finish(proc)
    pytest.fail(f"the child ended (status {proc.returncode}) without printing {line!r}: {stderr[-2000:]}")


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=CHILD_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"the child did not end within {CHILD_SECONDS} s")


def _train_child(out: Path, epochs: int, stop_at: int = 0, resume: bool = False) -> subprocess.Popen:
    return _child(TRAIN_CHILD, str(out), str(epochs), str(stop_at), "resume" if resume else "fresh")


def _run_to_the_end(proc: subprocess.Popen) -> None:
    _, stderr = _finish(proc)
    assert proc.returncode == 0, stderr[-2000:]


def _deterministic(history: list[dict]) -> list[dict]:
    """A history without its wall-clock columns."""
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_second")} for row in history]


def _history_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _main(capsys, *argv: str) -> tuple[int, list[str]]:
    status = cli.main(list(argv))
    return status, capsys.readouterr().err.strip().splitlines()


def test_sigkill_then_resume_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path):
    epochs, killed_after = 4, 2
    reference = _train_child(tmp_path / "reference", epochs)
    _run_to_the_end(reference)
    uninterrupted = torch.load(tmp_path / "reference" / "checkpoint.pt", weights_only=True)

    out = tmp_path / "run"
    proc = _train_child(out, epochs, stop_at=killed_after + 1)
    _wait_for_line(proc, f"epoch {killed_after + 1}")
    proc.send_signal(signal.SIGKILL)  # no handler runs: the worst case
    _finish(proc)
    assert proc.returncode == -signal.SIGKILL
    killed = torch.load(out / "checkpoint.pt", weights_only=True)
    assert killed["epoch"] == killed_after
    assert _deterministic(killed["history"]) == _deterministic(uninterrupted["history"][:killed_after])

    _run_to_the_end(_train_child(out, epochs, resume=True))
    resumed = torch.load(out / "checkpoint.pt", weights_only=True)
    assert resumed["epoch"] == epochs
    # Weights, optimizer state, schedule, batches and views all resumed: the same floats, not just close ones.
    assert _deterministic(resumed["history"]) == _deterministic(uninterrupted["history"])
    assert resumed["model"].keys() == uninterrupted["model"].keys()
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
    history = _history_csv(out / "history.csv")
    assert [int(row["epoch"]) for row in history] == list(range(1, epochs + 1))
    assert [float(row["loss"]) for row in history] == [row["loss"] for row in uninterrupted["history"]]


def test_ctrl_c_exits_130_with_one_line_and_keeps_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = _child(CLI_CHILD, "train", *TINY_FLAGS, "--epochs", "50", "--out", str(out))
    _wait_for_line(proc, "epoch 2")
    proc.send_signal(signal.SIGINT)
    _, stderr = _finish(proc)
    assert proc.returncode == 130
    assert "Traceback" not in stderr
    messages = [line for line in stderr.splitlines() if line.strip()]
    assert len(messages) == 1, stderr
    assert messages[0].startswith("crl: interrupted; the last finished epoch is saved in")
    assert f"crl train --resume --out {out}" in messages[0]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
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
    config = cli.config_from_args(cli.build_parser().parse_args(["train", *TINY_FLAGS, "--epochs", "1",
                                                                 "--out", str(out)]))
    save_checkpoint({"epoch": 1, "history": [{"epoch": 1, "loss": 1.0}], "model": {"w": torch.zeros(2)},
                     "config": json.loads(json.dumps(dataclasses.asdict(config)))}, out / "checkpoint.pt")
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
    from crl_helpers import objectives

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(objectives, "nt_xent", out_of_memory)  # the training step's loss
    status, err = _main(capsys, "train", *TINY_FLAGS, "--epochs", "1", "--out", str(tmp_path / "run"))
    assert (status, err) == (2, ["crl: error: out of GPU memory at --batch-size 32; try --batch-size 16"])


def test_non_finite_loss_stops_with_one_line_and_keeps_last_checkpoint(tmp_path, capsys, monkeypatch):
    from crl_helpers import objectives

    out = tmp_path / "run"
    assert cli.main(["train", *TINY_FLAGS, "--epochs", "1", "--out", str(out)]) == 0
    kept = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    real = objectives.nt_xent
    monkeypatch.setattr(objectives, "nt_xent", lambda *a, **k: real(*a, **k) * float("nan"))
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
    assert "trained with --encoder 'convnet', this run asks for --encoder 'resnet18'" in errors[0]
