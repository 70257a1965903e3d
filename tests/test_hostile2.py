"""Hostile use, round two: the learner's notebooks, foreign files, odd images, stale environments.

The contract under test, as in ``test_hostile.py``: a command never deletes or replaces a file it did
not write in this run unless ``--overwrite`` says so (and then only once the new run has validated its
inputs); inputs are checked before any work, so nothing fails after training; what a file unpacks to
is bounded before it is unpacked; every failure is one line naming the value and the fix.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from crl_helpers import cli
from crl_helpers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
TINY = ["--n-train", "64", "--n-test", "16", "--batch-size", "32", "--device", "cpu", "--no-umap", "--quiet"]


def _crl(capsys, *argv: str) -> tuple[int, list[str]]:
    status = cli.main(list(argv))
    return status, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _train(capsys, *argv: str) -> tuple[int, list[str]]:
    return _crl(capsys, "train", *TINY, *argv)


def _one_line(status_err, status: int = 2, *fragments: str) -> str:
    code, err = status_err
    assert code == status and len(err) == 1, err
    for fragment in fragments:
        assert fragment in err[0], err[0]
    assert "Traceback" not in err[0]
    return err[0]


# ------------------------------------------------------------------ crl instructor: the learner's notebooks
@pytest.fixture
def course(tmp_path) -> Path:
    """A copy of the course's notebooks, the learner's working folder."""
    folder = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, folder, ignore=shutil.ignore_patterns(".*"))
    return folder


def _instructor(capsys, course: Path, out, *flags: str):
    return _crl(capsys, "instructor", "--notebooks", str(course), "--out", str(out), *flags)


def test_instructor_never_replaces_the_learners_edited_notebook_without_overwrite(tmp_path, capsys, course):
    out = tmp_path / "inst"
    assert _instructor(capsys, course, out)[0] == 0
    target = out / "04_infonce_and_temperature.ipynb"
    solved = target.read_bytes()
    target.write_text(target.read_text().replace("self_mask", "my own attempt"))  # the learner worked here
    edited = target.read_bytes()
    _one_line(_instructor(capsys, course, out), 2, str(target), "differs", "--overwrite")
    assert target.read_bytes() == edited
    assert _instructor(capsys, course, out)[0] == 2  # still refused: nothing was written meanwhile
    assert _instructor(capsys, course, out, "--overwrite")[0] == 0
    assert target.read_bytes() == solved
    assert _instructor(capsys, course, out)[0] == 0  # the same notebooks again: nothing to refuse


def test_instructor_refuses_an_empty_out_and_an_out_that_is_a_file(tmp_path, capsys, course, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for out in ("", "  "):
        _one_line(_instructor(capsys, course, out), 2, "is empty; name a folder")
    (tmp_path / "a-file").write_text("mine")
    _one_line(_instructor(capsys, course, "a-file"), 2, "is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "notebooks"]
    assert (tmp_path / "a-file").read_text() == "mine"


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_instructor_never_writes_through_a_link_into_the_notebooks(tmp_path, capsys, course, link):
    out = tmp_path / "inst"
    out.mkdir()
    learner = course / "04_infonce_and_temperature.ipynb"
    before = learner.read_bytes()
    (os.link if link == "hard" else os.symlink)(learner, out / learner.name)
    for flags in ((), ("--overwrite",)):
        err = _one_line(_instructor(capsys, course, out, *flags), 2, str(out / learner.name))
        assert ("hard link" if link == "hard" else "symlink") in err
    assert learner.read_bytes() == before
    assert [p.name for p in out.iterdir()] == [learner.name]  # nothing else written either


@pytest.mark.parametrize("content", ["{not json", "{}"])
def test_a_broken_notebook_is_named_and_nothing_is_written(tmp_path, capsys, course, content):
    broken = course / "99_broken.ipynb"
    broken.write_text(content)
    out = tmp_path / "inst"
    _one_line(_instructor(capsys, course, out), 2, f"{broken} is not a readable notebook")
    assert not out.exists()  # every notebook is read before the first is written


# ------------------------------------------------------------------ crl train: files it did not write
def test_a_foreign_report_is_never_deleted_or_replaced_without_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text('{"mine": 1}')
    (out / "curves.png").write_bytes(b"my plot")
    _one_line(_train(capsys, "--epochs", "1", "--out", str(out)), 2, "already holds", "metrics.json",
              "--overwrite")
    _one_line(_train(capsys, "--epochs", "1", "--lr", "1e39", "--out", str(out)), 2, "--lr")
    assert (out / "metrics.json").read_text() == '{"mine": 1}' and (out / "curves.png").read_bytes() == b"my plot"
    assert _train(capsys, "--epochs", "1", "--overwrite", "--out", str(out))[0] == 0
    assert "knn_acc" in json.loads((out / "metrics.json").read_text())


def test_a_failed_overwrite_run_keeps_the_previous_report(tmp_path, capsys, monkeypatch):
    from crl_helpers import train as train_module

    out = tmp_path / "run"
    assert _train(capsys, "--epochs", "1", "--out", str(out))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # Bad input found after the folder was taken: more images per batch than there are.
    _one_line(_train(capsys, "--epochs", "1", "--overwrite", "--batch-size", "128", "--out", str(out)), 2,
              "exceeds the 64 training images")

    def fails_in_the_first_step(self, *args, **kwargs):
        raise ValueError("a failure in the first epoch")

    monkeypatch.setattr(train_module.TrainStep, "__call__", fails_in_the_first_step)
    _one_line(_train(capsys, "--epochs", "1", "--overwrite", "--out", str(out)), 2, "first epoch")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("name", ["metrics.json", "checkpoint.pt", "history.csv"])
def test_an_output_name_that_is_a_directory_is_refused_before_any_work(tmp_path, capsys, name, monkeypatch):
    from crl_helpers import report

    out = tmp_path / "run"
    (out / name).mkdir(parents=True)
    monkeypatch.setattr(report, "train", lambda *a, **k: pytest.fail("trained although the run cannot finish"))
    for flags in ((), ("--overwrite",)):
        _one_line(_train(capsys, "--epochs", "1", "--out", str(out), *flags), 2, f"{out / name} is a directory")
    assert (out / name).is_dir()


def test_a_failed_run_removes_every_folder_it_created(tmp_path, capsys):
    _one_line(_train(capsys, "--epochs", "1", "--batch-size", "128", "--out", str(tmp_path / "a" / "b" / "c")), 2)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    _one_line(_train(capsys, "--epochs", "1", "--batch-size", "128", "--out", str(tmp_path / "kept" / "b" / "c")), 2)
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and list((tmp_path / "kept").iterdir()) == []


def test_sigterm_during_a_checkpoint_write_leaves_no_temporary_and_a_stale_one_is_removed(tmp_path, capsys,
                                                                                           monkeypatch):
    from crl_helpers import checkpoint

    out = tmp_path / "run"
    assert _train(capsys, "--epochs", "1", "--out", str(out))[0] == 0
    kept = (out / "checkpoint.pt").read_bytes()
    real_save = checkpoint.torch.save

    def save_then_terminated(state, f):  # SIGTERM arrives while the temporary file is half written
        f.write(b"half a checkpoint")
        os.kill(os.getpid(), signal.SIGTERM)
        real_save(state, f)

    monkeypatch.setattr(checkpoint.torch, "save", save_then_terminated)
    status, err = _train(capsys, "--epochs", "2", "--resume", "--out", str(out))
    assert status == 143 and len(err) == 1 and "terminated (SIGTERM)" in err[0] and "--resume" in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "curves.png", "history.csv", "metrics.json"]
    assert (out / "checkpoint.pt").read_bytes() == kept
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    (out / "checkpoint.pt.0123456789abcdef.tmp").write_bytes(b"left by a kill -9")  # SIGKILL runs no handler
    assert _train(capsys, "--epochs", "2", "--resume", "--out", str(out))[0] == 0
    assert not list(out.glob("*.tmp"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_sha256_of_a_fifo_is_refused_promptly(tmp_path):
    from crl_helpers.files import NotARegularFile
    from crl_helpers.pretrained import sha256

    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NotARegularFile, match="FIFO"):
        sha256(tmp_path / "fifo")  # would block forever on open() for reading


def test_a_full_disk_or_a_file_size_limit_is_one_error_and_the_checkpoint_stays(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1, "w": torch.zeros(4)}, path)
    before = path.read_bytes()
    # A real RLIMIT_FSIZE (ulimit -f) in a child: Python ignores SIGXFSZ, so the write fails with EFBIG.
    child = f"""
import resource, torch
from crl_helpers.checkpoint import CheckpointError, save_checkpoint
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
try:
    save_checkpoint({{"epoch": 2, "w": torch.zeros(1_000_000)}}, {str(path)!r})
except CheckpointError as err:
    print(err)
"""
    proc = subprocess.run([sys.executable, "-c", child], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"could not write {path}" in proc.stdout and "the previous checkpoint is kept" in proc.stdout
    assert path.read_bytes() == before and not list(tmp_path.glob("*.tmp"))


def test_a_full_disk_while_writing_the_report_is_one_line_and_keeps_the_checkpoint(tmp_path, capsys, monkeypatch):
    import errno

    from crl_helpers import run_dir

    def disk_full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(run_dir, "atomic_write_text", disk_full)
    out = tmp_path / "run"
    _one_line(_train(capsys, "--epochs", "1", "--out", str(out)), 2, "(No space left on device): free space",
              f"the last finished epoch is kept in {out}/checkpoint.pt")
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1


def test_a_notebook_whose_exercise_cannot_be_solved_is_named(tmp_path, capsys, course):
    import nbformat

    path = course / "04_infonce_and_temperature.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("f = check_nothing_such(f).or_reference()"))
    nbformat.write(nb, path)
    _one_line(_instructor(capsys, course, tmp_path / "inst"), 2, f"{path}, cell {len(nb.cells) - 1}: check_nothing_such")
    assert not (tmp_path / "inst").exists()


# ------------------------------------------------------------------ resume: the same run, or nothing
def _folder(root: Path, colours: dict[str, tuple[int, int, int]], n: int = 10, suffix: str = ".png") -> Path:
    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            # A gradient, so the channel statistics are not degenerate.
            pixels = np.clip(np.array(colour)[None, None] * (0.5 + np.arange(12)[:, None, None] / 24), 0, 255)
            Image.fromarray(np.broadcast_to(pixels, (12, 12, 3)).astype(np.uint8)).save(root / name / f"{i}{suffix}")
    return root


def test_resume_with_another_data_root_is_refused(tmp_path, capsys):
    cats = _folder(tmp_path / "pets", {"cat": (200, 40, 40), "dog": (40, 200, 40)})
    ants = _folder(tmp_path / "insects", {"ant": (40, 40, 200), "bee": (200, 200, 40)})
    out = str(tmp_path / "run")
    flags = ("--dataset", "folder", "--n-train", "16", "--n-test", "4", "--batch-size", "8")
    assert _train(capsys, *flags, "--data-root", str(cats), "--epochs", "1", "--out", out)[0] == 0
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    _one_line(_train(capsys, *flags, "--data-root", str(ants), "--epochs", "2", "--resume", "--out", out), 2,
              "was trained on other data", "(cat, dog)", "(ant, bee)")
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    assert _train(capsys, *flags, "--data-root", str(cats), "--epochs", "2", "--resume", "--out", out)[0] == 0


def _finished(capsys, out: Path) -> dict:
    assert _train(capsys, "--epochs", "1", "--out", str(out))[0] == 0
    return load_checkpoint(out / "checkpoint.pt")


@pytest.mark.parametrize("crafted, fragment", [
    (lambda s: s.pop("config"), "holds no config"),
    (lambda s: s["history"][0].update(loss="0.5"), "invalid epoch count or history"),
    (lambda s: s.update(initial_encoder={"w": torch.zeros(3)}), "does not match this config"),
    (lambda s: next(iter(s["optimizer"]["state"].values())).update(exp_avg=torch.zeros(7)),
     "does not match this config"),
])
def test_a_crafted_checkpoint_is_refused_before_the_first_epoch(tmp_path, capsys, monkeypatch, crafted, fragment):
    from crl_helpers import train as train_module

    out = tmp_path / "run"
    state = _finished(capsys, out)
    crafted(state)
    save_checkpoint(state, out / "checkpoint.pt")
    monkeypatch.setattr(train_module, "train_one_epoch", lambda *a, **k: pytest.fail("trained on a bad checkpoint"))
    _one_line(_train(capsys, "--epochs", "2", "--resume", "--out", str(out)), 2, fragment)


def test_a_compressed_checkpoint_entry_is_refused_before_it_is_unpacked(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1, "w": torch.zeros(10_000)}, path)  # 40 KB of zeros: compresses ~1000x
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    assert bomb.stat().st_size < path.stat().st_size / 4
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load unpacked it"))
    with pytest.raises(CheckpointError, match="is compressed; torch.save stores entries uncompressed"):
        load_checkpoint(bomb)


def test_meta_tensors_are_refused_in_one_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1, "model": {"w": torch.empty(3, device="meta")}}, path)
    with pytest.raises(CheckpointError, match="meta tensors"):
        load_checkpoint(path)


# ------------------------------------------------------------------ torchrun's variables, stale or malformed
@pytest.mark.parametrize("env, fragment", [
    ({"RANK": "1"}, "RANK=1 is set but WORLD_SIZE is not"),
    ({"RANK": "abc"}, "RANK='abc' is not an integer"),
    ({"WORLD_SIZE": "2", "RANK": "5"}, "RANK=5 must be < WORLD_SIZE=2"),
])
def test_stray_or_malformed_torchrun_variables_are_one_line(tmp_path, capsys, monkeypatch, env, fragment):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _one_line(_train(capsys, "--epochs", "1", "--out", str(tmp_path / "run")), 2, fragment)
    assert not (tmp_path / "run").exists()


def test_stale_torchrun_variables_fail_within_the_start_up_wait(tmp_path, capsys, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free now; nobody else will come
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(port), "CRL_INIT_TIMEOUT": "1"}.items():
        monkeypatch.setenv(name, value)
    t0 = time.monotonic()
    _one_line(_train(capsys, "--epochs", "1", "--out", str(tmp_path / "run")), 2,
              f"did not meet at 127.0.0.1:{port} within 1 s", "stale torchrun variables?")
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ printing the summary
class _ClosedPipe(io.TextIOWrapper):
    def __init__(self, path: Path) -> None:
        super().__init__(open(path, "wb"), encoding="utf-8")

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stdout_or_an_ascii_one_does_not_fail_a_finished_run(tmp_path, capsys, monkeypatch):
    pipe = _ClosedPipe(tmp_path / "devnull")
    monkeypatch.setattr(sys, "stdout", pipe)
    status, err = _train(capsys, "--epochs", "1", "--out", str(tmp_path / "run"))
    assert status == 0 and len(err) == 1 and "stdout was closed" in err[0]
    assert (tmp_path / "run" / "metrics.json").exists()
    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", ascii_out)
    out = tmp_path / "résumé"
    assert _train(capsys, "--epochs", "1", "--out", str(out)) == (0, [])
    ascii_out.flush()
    assert "r\\xe9sum\\xe9" in ascii_out.buffer.getvalue().decode("ascii")


# ------------------------------------------------------------------ images and archives
def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    from crl_helpers.data import load_image_folder

    for name in ("deep", "float"):
        (tmp_path / name).mkdir()
    for i in range(5):
        Image.fromarray(np.full((6, 6), 1000 * (i + 1), np.uint16)).save(tmp_path / "deep" / f"{i}.png")
        Image.fromarray(np.full((6, 6), 0.1 * (i + 1), np.float32)).save(tmp_path / "float" / f"{i}.tif")
    assert Image.open(tmp_path / "deep" / "0.png").mode.startswith("I")  # what convert("RGB") clipped to 255
    assert Image.open(tmp_path / "float" / "0.tif").mode == "F"  # what convert("RGB") rounded to 0
    data = load_image_folder(tmp_path, "train", image_size=4, test_fraction=0.2)
    seen = sorted(data.x[:, 0, 0, 0].tolist())
    deep = {1000 * (i + 1) // 257 for i in range(5)}  # the oracle: 16 bits to 8
    flt = {round(0.1 * (i + 1) * 255) for i in range(5)}
    assert set(seen) <= deep | flt and len(set(seen) & deep) == 4 and len(set(seen) & flt) == 4
    Image.fromarray(np.full((6, 6), 3.0, np.float32)).save(tmp_path / "float" / "bad.tif")
    with pytest.warns(UserWarning, match=r"bad.tif \(ValueError: floating-point pixels in \[3, 3\]"):
        load_image_folder(tmp_path, "train", image_size=4)


def test_images_in_sub_folders_and_in_other_formats_are_found(tmp_path):
    from crl_helpers.data import load_image_folder

    _folder(tmp_path, {"cat": (200, 40, 40)}, n=16)
    _folder(tmp_path / "dog", {"2019": (40, 200, 40)}, n=16)  # dog/2019/*.png
    _folder(tmp_path, {"fox": (40, 40, 200)}, n=16, suffix=".ppm")
    (tmp_path / "fox" / "README.txt").write_text("foxes")
    with pytest.warns(UserWarning, match="ignored 1 file .*README.txt"):
        train = load_image_folder(tmp_path, "train", image_size=8, test_fraction=0.25)
    assert train.class_names == ("cat", "dog", "fox")
    assert torch.bincount(train.y).tolist() == [12, 12, 12]


def test_an_image_too_large_to_decode_is_skipped_before_decoding(tmp_path, monkeypatch):
    from crl_helpers import data

    _folder(tmp_path, {"cat": (200, 40, 40), "dog": (40, 200, 40)}, n=5)
    Image.new("RGB", (200, 100)).save(tmp_path / "cat" / "huge.png")
    monkeypatch.setattr(data, "MAX_IMAGE_PIXELS", 10_000)
    monkeypatch.setattr(data, "_to_rgb", lambda image: pytest.fail("decoded") if image.size == (200, 100)
                        else image.convert("RGB"))
    with pytest.warns(UserWarning, match=r"huge.png \(ValueError: 200x100 pixels, more than MAX_IMAGE_PIXELS"):
        data.load_image_folder(tmp_path, "train", image_size=8)


def _jpeg(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (90, 30, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


def _archive(path: Path, jpegs: list[bytes], n_test: int = 0, labels=None) -> Path:
    blob = np.frombuffer(b"".join(jpegs), np.uint8)
    offsets = np.cumsum([0] + [len(j) for j in jpegs])
    y = np.arange(len(jpegs)) % 2 if labels is None else labels
    arrays = {"train_jpeg": blob, "train_offsets": offsets, "y_train": y, "class_names": np.array(["a", "b"])}
    if n_test:
        test = np.frombuffer(b"".join(jpegs[:n_test]), np.uint8)
        arrays.update(test_jpeg=test, test_offsets=offsets[:n_test + 1], y_test=y[:n_test])
    np.savez(path, **arrays)
    return path


def test_an_archive_of_huge_jpegs_is_refused_from_the_first_header(tmp_path, monkeypatch):
    from crl_helpers import data

    path = _archive(tmp_path / data.CIFAR10_NPZ, [_jpeg(data.MAX_ARCHIVE_SIDE + 1)] * 3)
    with pytest.raises(ValueError, match=r"3 images of 1025x1025 pixels in train_jpeg would decode to"):
        data.load_cifar10_npz(path)


def test_an_archive_member_that_declares_more_than_it_holds_is_refused_unloaded(tmp_path, monkeypatch):
    from crl_helpers import data

    path = _archive(tmp_path / data.CIFAR10_NPZ, [_jpeg(8)] * 2)
    # Rewrite y_train's .npy header to declare 300 million labels (the data stay 2): a 2 GB allocation.
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": (300_000_000,)})
    members["y_train.npy"] = header.getvalue() + np.arange(2, dtype="<i8").tobytes()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, blob in members.items():
            z.writestr(name, blob)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load unpacked it"))
    with pytest.raises(ValueError, match=r"y_train declares shape \(300000000,\) of int64 .* more than the archive"):
        data.load_cifar10_npz(path)


@pytest.mark.parametrize("side, flags, fragment", [
    (4, (), "images are 4x4 pixels; the encoders need at least 8x8"),
    (16, ("--view-size", "1024"), "--view-size 1024 is larger than the 16-pixel images; views are crops"),
])
def test_images_or_views_of_the_wrong_size_are_refused_before_training(tmp_path, capsys, side, flags, fragment):
    root = tmp_path / "cifar"
    root.mkdir()
    _archive(root / "cifar10_jpeg.npz", [_jpeg(side)] * 40, n_test=8)
    _one_line(_train(capsys, "--dataset", "cifar10", "--data-root", str(root), "--n-train", "32", "--n-test", "8",
                     "--epochs", "1", *flags, "--out", str(tmp_path / "run")), 2, fragment)
    assert not (tmp_path / "run").exists()


def test_a_one_class_folder_is_refused_not_scored_1(tmp_path, capsys):
    root = _folder(tmp_path / "images", {"cat": (200, 40, 40)}, n=20)
    _one_line(_train(capsys, "--dataset", "folder", "--data-root", str(root), "--n-train", "16", "--n-test", "4",
                     "--batch-size", "8", "--epochs", "1", "--out", str(tmp_path / "run")), 2,
              "holds one class (cat)", "would be 1.000")


def test_red_only_images_train(tmp_path, capsys):
    root = tmp_path / "images"
    for name, red in (("light", 250), ("dark", 120)):
        (root / name).mkdir(parents=True)
        for i in range(20):
            Image.new("RGB", (8, 8), (red - i, 0, 0)).save(root / name / f"{i}.png")  # green and blue constant 0
    assert _train(capsys, "--dataset", "folder", "--data-root", str(root), "--n-train", "16", "--n-test", "4",
                  "--batch-size", "8", "--epochs", "1", "--out", str(tmp_path / "run")) == (0, [])


def test_an_out_inside_the_image_folder_is_refused(tmp_path, capsys):
    root = _folder(tmp_path / "images", {"cat": (200, 40, 40), "dog": (40, 200, 40)})
    _one_line(_train(capsys, "--dataset", "folder", "--data-root", str(root), "--epochs", "1",
                     "--out", str(root / "run")), 2, "is inside --data-root")
    assert sorted(p.name for p in root.iterdir()) == ["cat", "dog"]


def test_moco_with_a_batch_too_small_for_shuffled_batchnorm_is_one_line(tmp_path, capsys):
    _one_line(_train(capsys, "--method", "moco", "--batch-size", "2", "--epochs", "1", "--out", str(tmp_path / "r")),
              2, "too small for --method 'moco'", "--batch-size 4")


# ------------------------------------------------------------------ the course's environment variables
@pytest.mark.parametrize("value, smoke", [("1", True), ("true", True), ("Yes", True), ("0", False), ("false", False),
                                          ("no", False), ("OFF", False), ("", False)])
def test_crl_smoke_reads_yes_and_no(monkeypatch, value, smoke):
    from crl_helpers.course import pick_tier

    monkeypatch.setenv("CRL_SMOKE", value)
    assert (pick_tier() == "smoke") is smoke
    monkeypatch.setenv("CRL_SMOKE", "maybe")
    with pytest.raises(ValueError, match="CRL_SMOKE='maybe' is not a yes/no value"):
        pick_tier()


def test_crl_cache_that_is_a_file_is_named(tmp_path, monkeypatch):
    from dataclasses import replace

    from crl_helpers import course
    from crl_helpers.train import CPU

    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    monkeypatch.setenv("CRL_CACHE", str(cache))
    monkeypatch.setattr(course, "CACHE_DIR", cache)  # as importing the module under that variable sets it
    config = replace(CPU, epochs=1, n_train=64, n_test=16, batch_size=32)
    with pytest.raises(ValueError, match=r"CRL_CACHE='.*cache' is a file, not a folder"):
        course.train_or_load(config)
    with pytest.raises(ValueError, match=r"cache_dir='.*cache' is a file, not a folder"):
        course.train_or_load(config, cache_dir=cache)
    assert cache.read_text() == "not a folder"
