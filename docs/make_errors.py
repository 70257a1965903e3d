"""Write ``docs/errors.md``: every bad input and the exact message it gets, by calling the code.

Run it after changing a message (``tests/test_errors_doc.py`` fails while the committed file is stale)::

    python docs/make_errors.py            # rewrites docs/errors.md
    python docs/make_errors.py OUT.md     # writes elsewhere (the test does)

Every row calls the code and prints what it raised or printed; nothing here types a message. The
``crl`` rows call :func:`crl_helpers.cli.main` in-process, which is what the ``crl`` script runs
(``sys.exit(main())``), capturing stderr and the returned status. No row needs a real process: the
faults a CPU cannot produce are simulated the way ``tests/test_faults.py`` and ``tests/test_cli.py``
simulate them (a loss that raises CUDA's out-of-memory error or returns NaN, a faked 2-process world,
CUDA and MPS reported absent), and Ctrl-C is a real SIGINT sent to this process after the first epoch.
The header's claims (status 2, one line, only rank 0 prints) are checked, not assumed.

"Known weak messages" holds only the weaknesses observed in this run: each bullet has a check, and
a bullet whose check no longer holds (the message was fixed) drops out.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import sys
import tempfile
import textwrap
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, ContextManager
from unittest import mock

# As in conftest.py: spinning OpenMP threads make small torch ops ~100x slower on busy cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from crl_helpers import cli, course, data, device, distributed, evaluate, losses, metrics, models, shapes  # noqa: E402
from crl_helpers import objectives  # noqa: E402
from crl_helpers import train as train_module  # noqa: E402
from crl_helpers import views, views_batched  # noqa: E402
from crl_helpers.checkpoint import MAX_CHECKPOINT_BYTES, load_checkpoint, save_checkpoint  # noqa: E402
from crl_helpers.image_data import ImageData  # noqa: E402

DOC = REPO / "docs" / "errors.md"
# Every crl row starts from this small CPU run; a row's own flags come after and win.
TINY = ("--n-train", "64", "--n-test", "16", "--batch-size", "32", "--epochs", "1", "--device", "cpu",
        "--no-umap", "--quiet")
# torchrun's variables: cleared for every row (and set by the rows that need them), so the run's own
# environment cannot change the file.
_TORCHRUN_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# Terminal colour/bold codes, which torch puts in some messages; a table cannot show them.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _NotATensor:
    """A harmless class: a checkpoint that pickles one is refused by ``torch.load(weights_only=True)``."""


# ------------------------------------------------------------------------------------------- crl
@dataclass(frozen=True)
class CliRow:
    """One ``crl train`` row: ``TINY`` + ``flags`` (``{tmp}`` is the row's own empty folder)."""

    label: str
    flags: tuple[str, ...]
    prepare: Callable[[Path], object] | None = None  # writes the files the row needs into its folder
    patch: Callable[[Path], ContextManager] | None = None  # a fault the CPU cannot produce, simulated
    status: int = 2  # what the header promises
    command: str = "train"  # the crl sub-command; only train rows start from TINY


def _no_cuda(_tmp: Path | None = None) -> ContextManager:
    return mock.patch.object(torch.cuda, "is_available", lambda: False)


def _no_mps() -> ContextManager:
    return mock.patch.object(torch.backends.mps, "is_available", lambda: False)


def _loss_raises_oom(_tmp: Path) -> ContextManager:
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    return mock.patch.object(objectives, "nt_xent", out_of_memory)  # the training step's loss


def _loss_is_nan(_tmp: Path) -> ContextManager:
    real = objectives.nt_xent
    return mock.patch.object(objectives, "nt_xent", lambda *a, **k: real(*a, **k) * float("nan"))


def _two_processes(_tmp: Path) -> ContextManager:
    world = distributed.DistributedContext(rank=0, local_rank=0, world_size=2)
    return mock.patch.object(train_module, "setup_distributed", lambda device: world)


@contextlib.contextmanager
def _signal_after_first_epoch(signum: int):
    """A real ``signum`` to this process once epoch 1's checkpoint is written."""
    real = train_module.save_run

    def write_then_signal(run, config, epoch):
        real(run, config, epoch)
        if epoch == 1:
            os.kill(os.getpid(), signum)  # the handler (Python's for SIGINT, crl's for SIGTERM) raises here

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with mock.patch.object(train_module, "save_run", write_then_signal):
            yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_after_first_epoch(_tmp: Path) -> ContextManager:
    return _signal_after_first_epoch(signal.SIGINT)


def _good_checkpoint(path: Path) -> None:
    save_checkpoint({"epoch": 1, "model": {"w": torch.zeros(64, 64)}}, path)


def _truncated_checkpoint(tmp: Path) -> None:
    path = tmp / "trunc" / "checkpoint.pt"
    _good_checkpoint(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _pickled_checkpoint(tmp: Path) -> None:
    (tmp / "pickled").mkdir()
    torch.save({"epoch": 1, "history": [_NotATensor()]}, tmp / "pickled" / "checkpoint.pt")


def _fifo_checkpoint(tmp: Path) -> None:
    (tmp / "fifo").mkdir()
    os.mkfifo(tmp / "fifo" / "checkpoint.pt")  # reading it would wait for a writer forever


def _truncated_npz(tmp: Path) -> None:
    (tmp / "cifar").mkdir()
    np.savez(tmp / "cifar" / data.CIFAR10_NPZ, train_jpeg=np.zeros(4000, np.uint8), train_offsets=np.array([0, 4000]),
             y_train=np.array([0]), class_names=np.array(["airplane"]))
    path = tmp / "cifar" / data.CIFAR10_NPZ
    path.write_bytes(path.read_bytes()[:2000])


def _images(folder: Path, n: int) -> Path:
    """``n`` small PNGs in ``folder`` (made); returns it."""
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(folder / f"{i}.png")
    return folder


def _folder_with_unknown_test_class(tmp: Path) -> None:
    _images(tmp / "images" / "train" / "cat", 3)
    _images(tmp / "images" / "test" / "cat", 1)
    _images(tmp / "images" / "test" / "owl", 1)


def _resnet_checkpoint(tmp: Path) -> None:
    # What a run with --encoder resnet18 leaves; the rows resume with the default convnet.
    config = replace(train_module.CPU, encoder="resnet18")
    model = train_module.build_model(config)
    state = {"epoch": 1, "model": model.state_dict(), "config": asdict(config)}
    save_checkpoint(state, tmp / "other" / "checkpoint.pt")


def _finished_run(tmp: Path, *flags: str) -> None:
    """A real finished tiny run in ``tmp/run``."""
    if _run_crl(["train", *TINY, *flags, "--out", str(tmp / "run")])[0] != 0:
        raise SystemExit("docs/make_errors.py: the tiny run that a resume row needs failed")


def _crafted_epoch_checkpoint(tmp: Path) -> None:
    save_checkpoint({"epoch": -3, "history": [], "model": {}}, tmp / "crafted" / "checkpoint.pt")


def _diverged_checkpoint(tmp: Path) -> None:
    _finished_run(tmp)
    path = tmp / "run" / "checkpoint.pt"
    state = load_checkpoint(path)
    first = next(iter(state["model"]))
    state["model"][first] = state["model"][first] * float("nan")
    save_checkpoint(state, path)


@contextlib.contextmanager
def _folder_in_use(tmp: Path):
    """Another process holds the folder's lock, as a running crl train does."""
    import subprocess
    import sys

    hold = f"from crl_helpers import run_dir; import time\nwith run_dir.hold({str(tmp / 'busy')!r}):\n" \
           f"    print('held', flush=True); time.sleep(600)"
    child = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        child.stdout.readline()
        yield
    finally:
        child.kill()
        child.wait()


def _statistics_become_inf(_tmp: Path) -> ContextManager:
    real = train_module.TrainStep.__call__

    def step_then_overflow(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        for name, buffer in self.model.named_buffers():
            if name.endswith("running_var"):
                buffer.fill_(float("inf"))
                break
        return out

    return mock.patch.object(train_module.TrainStep, "__call__", step_then_overflow)


def _sigterm_after_first_epoch(_tmp: Path) -> ContextManager:
    return _signal_after_first_epoch(signal.SIGTERM)


def _free_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _written(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _class_folders(root: Path, names: tuple[str, ...], n: int = 50) -> None:
    """``n`` 8x8 PNGs of shades of one colour per class folder."""
    from PIL import Image

    for c, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(n):
            colour = [40] * 3
            colour[c % 3] = 100 + i
            Image.new("RGB", (8, 8), tuple(colour)).save(root / name / f"{i}.png")


def _run_on_other_images(tmp: Path) -> None:
    _class_folders(tmp / "pets", ("cat", "dog"))
    _class_folders(tmp / "insects", ("ant", "bee"))
    _finished_run(tmp, "--dataset", "folder", "--data-root", str(tmp / "pets"))


def _checkpoint_without_config(tmp: Path) -> None:
    _finished_run(tmp)
    state = load_checkpoint(tmp / "run" / "checkpoint.pt")
    del state["config"]
    save_checkpoint(state, tmp / "run" / "checkpoint.pt")


def _checkpoint_with_bad_initial_encoder(tmp: Path) -> None:
    _finished_run(tmp)
    state = load_checkpoint(tmp / "run" / "checkpoint.pt")
    state["initial_encoder"] = {"w": torch.zeros(3)}
    save_checkpoint(state, tmp / "run" / "checkpoint.pt")


def _compressed_checkpoint(tmp: Path) -> None:
    import zipfile

    plain = tmp / "plain.pt"
    save_checkpoint({"epoch": 1, "w": torch.zeros(100_000)}, plain)
    (tmp / "zip").mkdir()
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(tmp / "zip" / "checkpoint.pt", "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))


def _jpegs(side: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (90, 30, 200)).save(buffer, "JPEG")
    one = np.frombuffer(buffer.getvalue(), np.uint8)
    return np.tile(one, n), np.arange(n + 1) * len(one)


def _npz_bomb(tmp: Path) -> None:
    import zipfile

    (tmp / "cifar").mkdir()
    path = tmp / "cifar" / data.CIFAR10_NPZ
    jpeg, offsets = _jpegs(8, 2)
    np.savez(path, train_jpeg=jpeg, train_offsets=offsets, y_train=np.arange(2), class_names=np.array(["a", "b"]))
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": (300_000_000,)})
    members["y_train.npy"] = header.getvalue() + np.arange(2, dtype="<i8").tobytes()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, blob in members.items():
            z.writestr(name, blob)


def _tiny_image_archive(tmp: Path) -> None:
    (tmp / "tiny").mkdir()
    jpeg, offsets = _jpegs(4, 40)
    y = np.arange(40) % 2
    np.savez(tmp / "tiny" / data.CIFAR10_NPZ, train_jpeg=jpeg, train_offsets=offsets, y_train=y,
             test_jpeg=jpeg, test_offsets=offsets, y_test=y, class_names=np.array(["a", "b"]))


def _notebooks(tmp: Path) -> Path:
    import shutil

    shutil.copytree(REPO / "notebooks", tmp / "notebooks", ignore=shutil.ignore_patterns(".*"))
    return tmp / "notebooks"


def _edited_instructor_copy(tmp: Path) -> None:
    from crl_helpers.exercises.instructor import write_instructor_version

    write_instructor_version(_notebooks(tmp), tmp / "inst")
    edited = tmp / "inst" / "04_infonce_and_temperature.ipynb"
    edited.write_text(edited.read_text().replace("self_mask", "my own attempt"))


def _linked_instructor_copy(tmp: Path) -> None:
    (tmp / "inst").mkdir()
    os.link(_notebooks(tmp) / "04_infonce_and_temperature.ipynb", tmp / "inst" / "04_infonce_and_temperature.ipynb")


CLI_ROWS = [
    *(CliRow(f"`{' '.join(flags)}`", flags) for flags in [
        ("--n-train", "0"), ("--n-train", "1"), ("--n-test", "0"), ("--epochs", "0"), ("--epochs", "two"),
        ("--batch-size", "1"), ("--temperature", "0"), ("--temperature", "nan"), ("--temperature", "-0.1"),
        ("--lr", "-1"), ("--lr", "inf"), ("--seed", "-1"), ("--dataset", "imagenet"), ("--encoder", "vit"),
        ("--preset", "tpu"), ("--optimizer", "lars"), ("--device", "tpu"), ("--device", "meta"),
        ("--lr", "1e39"), ("--epochs", "1000000000"), ("--n-train", "1000000000"), ("--method", "byol"),
        ("--precision", "fp8"), ("--threads", "0"),
    ]),
    CliRow("`--out ''` (an unset shell variable)", ("--out", "")),
    CliRow("`--out <folder another crl train is writing to>`", ("--out", "{tmp}/busy"), patch=_folder_in_use),
    CliRow("`--resume --seed 1` (the checkpoint was trained with --seed 0)", ("--resume", "--seed", "1", "--out",
                                                                              "{tmp}/run"), prepare=_finished_run),
    CliRow("`--resume --epochs 1`, the checkpoint holds 2 epochs", ("--resume", "--out", "{tmp}/run"),
           prepare=lambda tmp: _finished_run(tmp, "--epochs", "2")),
    CliRow("`--resume`, checkpoint.pt with a crafted epoch -3", ("--resume", "--out", "{tmp}/crafted"),
           prepare=_crafted_epoch_checkpoint),
    CliRow("`--resume`, checkpoint.pt of a diverged run (NaN weights)", ("--resume", "--out", "{tmp}/run"),
           prepare=_diverged_checkpoint),
    CliRow("`the weights or BatchNorm statistics become inf (the loss still finite)`", ("--out", "{tmp}/inf"),
           patch=_statistics_become_inf),
    CliRow("`--device cuda (no CUDA here)`", ("--device", "cuda"), patch=_no_cuda),
    CliRow("`--frobnicate (unknown flag)`", ("--frobnicate",)),
    CliRow("`--batch-size 128 with --n-train 64`", ("--batch-size", "128")),
    CliRow("`--dataset folder --data-root <empty folder>`",
           ("--dataset", "folder", "--data-root", "{tmp}/empty-folder"),
           prepare=lambda tmp: (tmp / "empty-folder").mkdir()),
    CliRow("`--dataset folder`, `test/` has a class `train/` lacks", ("--dataset", "folder", "--data-root", "{tmp}/images"),
           prepare=_folder_with_unknown_test_class),
    CliRow("`--dataset cifar10`, truncated `cifar10_jpeg.npz`", ("--dataset", "cifar10", "--data-root", "{tmp}/cifar"),
           prepare=_truncated_npz),
    CliRow("`--resume without a checkpoint`", ("--resume", "--out", "{tmp}/run")),
    CliRow("`--resume --overwrite`", ("--resume", "--overwrite", "--out", "{tmp}/run")),
    CliRow("`--out under a file (unwritable)`", ("--out", "{tmp}/a-file/run"),
           prepare=lambda tmp: (tmp / "a-file").write_text("not a folder")),
    CliRow("`--resume, truncated checkpoint.pt`", ("--resume", "--out", "{tmp}/trunc"), prepare=_truncated_checkpoint),
    CliRow("`--resume, checkpoint.pt is a FIFO`", ("--resume", "--out", "{tmp}/fifo"), prepare=_fifo_checkpoint),
    CliRow("`--resume, checkpoint.pt with a pickled payload`", ("--resume", "--out", "{tmp}/pickled"),
           prepare=_pickled_checkpoint),
    CliRow("`--resume, checkpoint.pt of another model (--encoder resnet18)`", ("--resume", "--out", "{tmp}/other"),
           prepare=_resnet_checkpoint),
    CliRow("`no --resume, --out already holds checkpoint.pt`", ("--out", "{tmp}/exists"),
           prepare=lambda tmp: _good_checkpoint(tmp / "exists" / "checkpoint.pt")),
    CliRow("`out of GPU memory in a step (--batch-size 32)`", ("--out", "{tmp}/oom"), patch=_loss_raises_oom),
    CliRow("`the loss becomes NaN in the first epoch`", ("--out", "{tmp}/nan"), patch=_loss_is_nan),
    CliRow("`torchrun with 2 processes, --batch-size 33`", ("--batch-size", "33", "--out", "{tmp}/ddp"),
           patch=_two_processes),
    CliRow("`Ctrl-C (SIGINT) after the first epoch`", ("--epochs", "3", "--out", "{tmp}/ctrl-c"),
           patch=_ctrl_c_after_first_epoch, status=130),
    CliRow("`SIGTERM (kill) after the first epoch`", ("--epochs", "3", "--out", "{tmp}/sigterm"),
           patch=_sigterm_after_first_epoch, status=143),
    CliRow("`--out <folder with another run's metrics.json, no checkpoint.pt>`", ("--out", "{tmp}/foreign"),
           prepare=lambda tmp: _written(tmp / "foreign" / "metrics.json", b"{}")),
    CliRow("`--overwrite --out <folder where metrics.json is a directory>`", ("--overwrite", "--out", "{tmp}/dir"),
           prepare=lambda tmp: (tmp / "dir" / "metrics.json").mkdir(parents=True)),
    CliRow("`RANK=1` left in the shell, no `WORLD_SIZE`", ("--out", "{tmp}/rank"),
           patch=lambda tmp: _torchrun_env(RANK="1")),
    CliRow("`RANK=abc`", ("--out", "{tmp}/rank"), patch=lambda tmp: _torchrun_env(RANK="abc", WORLD_SIZE="2")),
    CliRow("stale `WORLD_SIZE=2 RANK=0 MASTER_ADDR MASTER_PORT` (no other process; `CRL_INIT_TIMEOUT=1`)",
           ("--out", "{tmp}/stale"), patch=lambda tmp: _torchrun_env(
               WORLD_SIZE="2", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=_free_port(),
               CRL_INIT_TIMEOUT="1")),
    CliRow("`--view-size 1024` (32-pixel images)", ("--view-size", "1024")),
    CliRow("`--method moco --batch-size 2`", ("--method", "moco", "--batch-size", "2")),
    CliRow("`--dataset folder`, one class folder", ("--dataset", "folder", "--data-root", "{tmp}/one-class"),
           prepare=lambda tmp: _class_folders(tmp / "one-class", ("cat",))),
    CliRow("`--dataset folder --out <a folder inside --data-root>`",
           ("--dataset", "folder", "--data-root", "{tmp}/pets", "--out", "{tmp}/pets/run"),
           prepare=lambda tmp: _class_folders(tmp / "pets", ("cat", "dog"))),
    CliRow("`--resume --data-root <other images>` (trained on cat/dog, resumed on ant/bee)",
           ("--dataset", "folder", "--data-root", "{tmp}/insects", "--epochs", "2", "--resume", "--out", "{tmp}/run"),
           prepare=_run_on_other_images),
    CliRow("`--resume`, checkpoint.pt without a config", ("--resume", "--out", "{tmp}/run"),
           prepare=_checkpoint_without_config),
    CliRow("`--resume`, checkpoint.pt whose initial_encoder is not the encoder's", ("--resume", "--out", "{tmp}/run"),
           prepare=_checkpoint_with_bad_initial_encoder),
    CliRow("`--resume`, checkpoint.pt with a DEFLATE-compressed entry (a zip bomb)", ("--resume", "--out", "{tmp}/zip"),
           prepare=_compressed_checkpoint),
    CliRow("`--dataset cifar10`, `y_train` declares 300 million labels", ("--dataset", "cifar10", "--data-root",
                                                                         "{tmp}/cifar"), prepare=_npz_bomb),
    CliRow("`--dataset cifar10`, an archive of 4x4 images", ("--dataset", "cifar10", "--data-root", "{tmp}/tiny",
                                                            "--n-train", "32", "--n-test", "8"),
           prepare=_tiny_image_archive),
    CliRow("`crl instructor --out ''`", ("--notebooks", "{tmp}/notebooks", "--out", ""), command="instructor",
           prepare=_notebooks),
    CliRow("`crl instructor --out <a file>`", ("--notebooks", "{tmp}/notebooks", "--out", "{tmp}/file"),
           command="instructor", prepare=lambda tmp: (_notebooks(tmp), _written(tmp / "file", b"mine"))),
    CliRow("`crl instructor`, `--out` holds the learner's edited copy", ("--notebooks", "{tmp}/notebooks", "--out",
                                                                        "{tmp}/inst"),
           command="instructor", prepare=_edited_instructor_copy),
    CliRow("`crl instructor`, `--out` holds a hard link to a notebook", ("--notebooks", "{tmp}/notebooks", "--out",
                                                                        "{tmp}/inst", "--overwrite"),
           command="instructor", prepare=_linked_instructor_copy),
    CliRow("`crl instructor`, a notebook that is `{}`", ("--notebooks", "{tmp}/notebooks", "--out", "{tmp}/inst"),
           command="instructor", prepare=lambda tmp: (_notebooks(tmp), _written(tmp / "notebooks" / "99_x.ipynb", b"{}"))),
]


def _run_crl(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = cli.main(argv)
    return status, err.getvalue()


def cli_rows(tmp: Path) -> list[tuple[str, str, str]]:
    """``(bad input, status, stderr)`` per row; checks the header's promises on the way."""
    out = []
    for i, row in enumerate(CLI_ROWS):
        folder = tmp / f"crl-{i:02d}"
        folder.mkdir()
        if row.prepare:
            row.prepare(folder)
        flags = [f.replace("{tmp}", str(folder)) for f in row.flags]
        if "--out" not in flags:
            flags += ["--out", str(folder / "run")]
        with row.patch(folder) if row.patch else contextlib.nullcontext():
            status, stderr = _run_crl([row.command, *TINY, *flags] if row.command == "train" else [row.command, *flags])
        lines = stderr.splitlines()
        if status != row.status or len(lines) != 1:
            raise SystemExit(f"docs/make_errors.py: `crl {row.command} {' '.join(flags)}` ({row.label}) gave status {status} "
                             f"and {len(lines)} stderr lines, but docs/errors.md promises status {row.status} "
                             f"and one line:\n{stderr}")
        out.append((row.label, str(status), _scrub(lines[0], folder)))
    # "Under torchrun only rank 0 prints it": a rank-1 process fails with the same status, silently.
    with mock.patch.dict(os.environ, {"RANK": "1", "WORLD_SIZE": "2"}):
        status, stderr = _run_crl(["train", *TINY, "--epochs", "0"])
    if (status, stderr) != (2, ""):
        raise SystemExit(f"docs/make_errors.py: with RANK=1 WORLD_SIZE=2, crl printed {stderr!r} (status {status}); "
                         "docs/errors.md promises that only rank 0 prints")
    return out


def _site_busy(tmp: Path) -> ContextManager:
    """Another build holds the build folder: its lock taken on a file descriptor of its own (as another process's)."""
    import fcntl

    import crl_site.build

    @contextlib.contextmanager
    def held():
        folder = tmp / "repo" / "build" / "site-smoke"
        folder.mkdir(parents=True)
        fd = os.open(folder / ".crl.lock", os.O_RDWR | os.O_CREAT)
        os.write(fd, str(os.getpid()).encode())
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            with mock.patch.object(crl_site.build, "REPO_ROOT", tmp / "repo"):
                yield
        finally:
            os.close(fd)

    return held()


def _no_clone(tmp: Path) -> ContextManager:
    """An installed package: no docs/site/conf.py around it and no notebooks/ in the working folder."""
    import crl_site.build

    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(crl_site.build, "CONF_DIR", tmp / "site-packages" / "docs" / "site"))
    stack.enter_context(contextlib.chdir(tmp))
    return stack


#: ``crl site`` / ``crl lecture`` rows: (label, argv, fault); refused before any notebook runs.
SITE_ROWS = [
    ("`crl site --out ''` (an unset shell variable)", ("site", "--out", ""), None),
    ("`crl site --out .` in the repository", ("site", "--out", "."), lambda tmp: contextlib.chdir(REPO)),
    ("`crl lecture --out notebooks/lecture`", ("lecture", "--out", "notebooks/lecture"),
     lambda tmp: contextlib.chdir(REPO)),
    ("`crl site` from an installed package (no clone of the repository)", ("site", "--out", "{tmp}/site"), _no_clone),
    ("`crl site` while another `crl site` builds in the same tier", ("site", "--out", "{tmp}/site"), _site_busy),
]


def site_rows(tmp: Path) -> list[tuple[str, str, str]]:
    """``(bad input, status, stderr)`` per ``crl site`` row; nothing is executed (a notebook run would fail)."""
    import crl_site.build

    def no_execution(*args, **kwargs):
        raise SystemExit("docs/make_errors.py: a crl site row executed the notebooks instead of refusing")

    out = []
    for i, (label, argv, fault) in enumerate(SITE_ROWS):
        folder = tmp / f"site-{i:02d}"
        folder.mkdir()
        argv = [a.replace("{tmp}", str(folder)) for a in argv]
        with fault(folder) if fault else contextlib.nullcontext(), \
                mock.patch.object(crl_site.build, "execute_notebooks", no_execution):
            out.append(_one_line_row(label, argv, folder))
    return out


def _one_line_row(label: str, argv: list[str], tmp: Path) -> tuple[str, str, str]:
    """``(label, "2", the one stderr line)`` of ``crl argv``, or SystemExit if it is not status 2 and one line."""
    status, stderr = _run_crl(argv)
    lines = stderr.splitlines()
    if status != 2 or len(lines) != 1:
        raise SystemExit(f"docs/make_errors.py: `crl {' '.join(argv)}` ({label}) gave status {status} and "
                         f"{len(lines)} stderr lines, but docs/errors.md promises status 2 and one line:\n{stderr}")
    return label, str(status), _scrub(lines[0], tmp)


# ---------------------------------------------------- crl grade, crl assign, crl instructor, crl reference
def _classroom_files(tmp: Path) -> None:
    import nbformat

    (tmp / "student").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), tmp / "student" / "01.ipynb")
    (tmp / "empty").mkdir()
    (tmp / "notes.txt").write_text("not a notebook")
    (tmp / "other.json").write_text('{"experiment": "augmentation", "epochs": 40}')


# (label, argv, environment): each fails before any notebook runs.
CLASSROOM_ROWS = [
    ("`crl grade <missing path>`", ["grade", "{tmp}/nobody"], {}),
    ("`crl grade notes.txt`", ["grade", "{tmp}/notes.txt"], {}),
    ("`crl grade <folder without notebooks>`", ["grade", "{tmp}/empty"], {}),
    ("`crl grade student/ --out student/grades.csv`", ["grade", "{tmp}/student", "--out", "{tmp}/student/g.csv"], {}),
    ("`crl grade student/ --out <a folder>`", ["grade", "{tmp}/student", "--out", "{tmp}/empty"], {}),
    ("`crl grade student/ --out <a path under a file>`", ["grade", "{tmp}/student", "--out", "{tmp}/notes.txt/g.csv"],
     {}),
    ("`crl grade student/ --tier tpu`", ["grade", "{tmp}/student", "--tier", "tpu", "--out", "{tmp}/g.csv"], {}),
    ("`crl grade student/ --memory-gb -1`", ["grade", "{tmp}/student", "--memory-gb", "-1", "--out", "{tmp}/g.csv"],
     {}),
    ("`crl grade student/ --cell-timeout 0`", ["grade", "{tmp}/student", "--cell-timeout", "0"], {}),
    ("`crl assign --format otter`", ["assign", "--format", "otter", "--out", "{tmp}/a"], {}),
    ("`crl assign --notebooks <folder without notebooks>`", ["assign", "--notebooks", "{tmp}/empty", "--out", "{tmp}/a"],
     {}),
    ("`crl assign --notebooks student --out student/nbgrader`",
     ["assign", "--notebooks", "{tmp}/student", "--out", "{tmp}/student/nbgrader"], {}),
    ("`crl assign --points 0`", ["assign", "--points", "0", "--out", "{tmp}/a"], {}),
    ("`crl assign`, `CRL_WITHHOLD_SOLUTIONS=1` (classroom install)", ["assign", "--out", "{tmp}/a"],
     {"CRL_WITHHOLD_SOLUTIONS": "1"}),
    ("`crl instructor`, `CRL_WITHHOLD_SOLUTIONS=1` (classroom install)", ["instructor", "--out", "{tmp}/i"],
     {"CRL_WITHHOLD_SOLUTIONS": "1"}),
    ("`crl reference colour`", ["reference", "colour"], {}),
    ("`crl reference temperature --epochs 0`", ["reference", "temperature", "--epochs", "0"], {}),
    ("`crl reference temperature --seeds 1 1`", ["reference", "temperature", "--seeds", "1", "1"], {}),
    ("`crl reference temperature --out <another experiment's file>`",
     ["reference", "temperature", "--out", "{tmp}/other.json"], {}),
]


def classroom_rows(tmp: Path) -> list[tuple[str, str, str]]:
    """``(command, status, stderr)`` per row of :data:`CLASSROOM_ROWS`, status 2 and one line checked."""
    _classroom_files(tmp)
    out = []
    for label, argv, environment in CLASSROOM_ROWS:
        argv = [a.replace("{tmp}", str(tmp)) for a in argv]
        with mock.patch.dict(os.environ, environment):
            out.append(_one_line_row(label, argv, tmp))
    return out


# -------------------------------------------------------------------------------------- Python API
def _z(*shape: int, dtype=torch.float32) -> torch.Tensor:
    return torch.ones(shape, dtype=dtype)


def _with(value: float, *shape: int) -> torch.Tensor:
    z = torch.ones(shape)
    z[0, 0] = value
    return z


def _loss_rows(name: str, loss: Callable) -> list[tuple[str, str, Callable]]:
    z = _z(4, 8)
    inputs = [
        ("z1 a list", lambda: loss(z.tolist(), z, 0.5)),
        ("z1 int64", lambda: loss(_z(4, 8, dtype=torch.int64), z, 0.5)),
        ("z1 3-D", lambda: loss(_z(1, 4, 8), _z(1, 4, 8), 0.5)),
        ("shapes differ", lambda: loss(z, _z(3, 8), 0.5)),
        ("N = 1", lambda: loss(_z(1, 8), _z(1, 8), 0.5)),
        ("d = 0", lambda: loss(_z(4, 0), _z(4, 0), 0.5)),
        ("NaN in z1", lambda: loss(_with(float("nan"), 4, 8), z, 0.5)),
    ]
    temperatures = [0, -1, float("nan"), float("inf"), 1e-12, "0.1", True]
    inputs += [(f"temperature={t!r}", lambda t=t: loss(z, z, t)) for t in temperatures]
    return [(name, label, call) for label, call in inputs]


def _info_nce_rows() -> list[tuple[str, str, Callable]]:
    q = _z(4, 8)
    inputs = [
        ("query (0, d) with negative_keys", lambda: losses.info_nce(_z(0, 8), _z(0, 8), _z(5, 8))),
        ("N = 1 and negative_keys=None", lambda: losses.info_nce(_z(1, 8), _z(1, 8))),
        ("negative_keys 1-D", lambda: losses.info_nce(q, q, _z(8))),
        ("negative_keys d differs", lambda: losses.info_nce(q, q, _z(5, 7))),
        ("negative_keys (N', M, d), N' != N", lambda: losses.info_nce(q, q, _z(3, 5, 8))),
        ("negative_keys with M = 0", lambda: losses.info_nce(q, q, _z(0, 8))),
        ("negative_keys bool", lambda: losses.info_nce(q, q, _z(5, 8, dtype=torch.bool))),
        ("inf in positive_key", lambda: losses.info_nce(q, _with(float("inf"), 4, 8))),
        ("temperature=0", lambda: losses.info_nce(q, q, temperature=0)),
    ]
    return [("info_nce", label, call) for label, call in inputs]


def _torchrun_env(**values: str) -> ContextManager:
    return mock.patch.dict(os.environ, values)


def _distributed_rows() -> list[tuple[str, str, Callable]]:
    z, loss = _z(4, 8), distributed.nt_xent_distributed

    def setup(device: str = "cpu", **env: str) -> Callable:
        def call():
            with _torchrun_env(**env), _no_mps():
                return distributed.setup_distributed(device)
        return call

    return [
        ("nt_xent_distributed", "z1 int64", lambda: loss(_z(4, 8, dtype=torch.int64), z)),
        ("nt_xent_distributed", "shapes differ", lambda: loss(z, _z(3, 8))),
        ("nt_xent_distributed", "temperature=0", lambda: loss(z, z, 0)),
        ("nt_xent_distributed", "N = 1 in one process", lambda: loss(_z(1, 8), _z(1, 8))),
        ("gather_with_grad", "a list", lambda: distributed.gather_with_grad([1.0])),
        ("all_reduce_mean", "a string", lambda: distributed.all_reduce_mean("1.0")),
        ("setup_distributed", "WORLD_SIZE=2 without RANK", setup(WORLD_SIZE="2")),
        ("setup_distributed", "RANK='x'", setup(WORLD_SIZE="2", RANK="x", LOCAL_RANK="0")),
        ("setup_distributed", "RANK=2 with WORLD_SIZE=2", setup(WORLD_SIZE="2", RANK="2", LOCAL_RANK="0")),
        ("setup_distributed", "device='mps' under torchrun", setup("mps", WORLD_SIZE="2", RANK="0", LOCAL_RANK="0")),
    ]


def _view_rows() -> list[tuple[str, str, Callable]]:
    configs = [("flip_p", 1.5), ("jitter_p", -0.1), ("crop_scale", (0.0, 1.0)), ("crop_scale", (0.9, 0.5)),
               ("crop_ratio", (2.0, 1.0)), ("jitter_strength", 3.0), ("blur_sigma", (0.0, 1.0)),
               ("std", (0.0, 1.0, 1.0)), ("mean", (0.5, 0.5)), ("crop_scale", "big"), ("image_size", 0),
               ("image_size", 32.0)]
    rows = [("ViewConfig", f"{k}={v!r}", lambda k=k, v=v: views.ViewConfig(**{k: v})) for k, v in configs]
    rows.append(("ViewConfig", "blur_p=1.0, image_size=1", lambda: views.ViewConfig(blur_p=1.0, image_size=1)))
    u8 = _z(2, 3, 8, 8, dtype=torch.uint8)
    empty = torch.zeros(0, 3, 32, 32, dtype=torch.uint8)
    with_nan = torch.full((2, 3, 8, 8), 0.5)
    with_nan[0, 0, 0, 0] = float("nan")
    in_0_255 = (torch.arange(2 * 3 * 8 * 8) % 256).float().view(2, 3, 8, 8)  # values 0 ... 255
    batch_inputs = [
        ("x a numpy array", np.zeros((2, 3, 8, 8), np.uint8)),
        ("x (3, H, W)", _z(3, 8, 8, dtype=torch.uint8)),
        ("x with 1 channel", _z(2, 1, 8, 8, dtype=torch.uint8)),
        ("x with 4 channels (RGBA)", _z(2, 4, 8, 8, dtype=torch.uint8)),
        ("x channels last (B, H, W, 3)", _z(2, 8, 8, 3, dtype=torch.uint8)),
        ("x int32", _z(2, 3, 8, 8, dtype=torch.int32)),
        ("x float with NaN", with_nan),
        ("x float in 0..255", in_0_255),
        ("x with B = 0, uint8 (0, 3, 32, 32)", empty),
    ]
    rows += [("augment_batch", label, lambda x=x: views_batched.augment_batch(x)) for label, x in batch_inputs]
    augment = views_batched.ViewAugmenter(views.SIMCLR, "cpu")
    rows += [
        ("augment_batch", "config a dict", lambda: views_batched.augment_batch(u8, {"flip_p": 0.5})),
        ("ViewAugmenter", "x with B = 0, uint8 (0, 3, 32, 32)", lambda: augment(empty)),
        ("ViewAugmenter", "built for 'cpu', uint8 x on the meta device",
         lambda: augment(torch.zeros(2, 3, 32, 32, dtype=torch.uint8, device="meta"))),
        ("ViewAugmenter", "built for 'cpu', float x on the meta device",
         lambda: augment(torch.zeros(2, 3, 32, 32, device="meta"))),
        ("make_views", "n_views=0", lambda: views_batched.make_views(u8, n_views=0)),
        ("make_views", "n_views=2.0", lambda: views_batched.make_views(u8, n_views=2.0)),
        ("sample_view_params", "batch_size=0", lambda: views_batched.sample_view_params(0)),
        ("apply_view_params", "params of another batch size",
         lambda: views_batched.apply_view_params(u8, views_batched.ViewParams.identity(3, 8, 8))),
        ("MultiViewTransform", "n_views=-1", lambda: views.MultiViewTransform(n_views=-1)),
    ]
    return rows


def _data_rows(tmp: Path) -> list[tuple[str, str, Callable]]:
    def npz(name: str, **arrays) -> Path:
        np.savez(tmp / name, **arrays)
        return tmp / name

    def object_array() -> np.ndarray:
        names = np.empty(1, dtype=object)
        names[0] = "airplane"
        return names

    def written(name: str, content: bytes) -> Path:
        (tmp / name).write_bytes(content)
        return tmp / name

    def warning_as_error(call: Callable) -> Callable:
        def raising():
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                return call()
        return raising

    (tmp / "images").mkdir()
    _images(tmp / "split" / "train" / "cat", 2)
    _images(tmp / "split" / "test" / "cat", 1)
    _images(tmp / "split" / "test" / "owl", 1)
    _images(tmp / "two-each" / "cat", 2)
    _images(tmp / "two-each" / "dog", 2)
    _images(tmp / "one-bad" / "cat", 4)
    (tmp / "one-bad" / "cat" / "3.png").write_bytes(b"\x89PNG garbage")
    (tmp / "none-readable" / "cat" / "a.png").mkdir(parents=True)  # a directory named like an image
    (tmp / "none-readable" / "cat" / "b.png").write_bytes(b"garbage")
    os.mkfifo(tmp / "fifo.npz")
    cifar = dict(train_jpeg=np.zeros(4, np.uint8), train_offsets=np.array([0, 4]), y_train=np.array([0]))
    good = npz("good.npz", class_names=np.array(["airplane"]), **cifar).read_bytes()
    return [
        ("load_dataset", "name='imagenet'", lambda: data.load_dataset("imagenet")),
        ("load_dataset", "split='val'", lambda: data.load_dataset("shapes", "val")),
        ("load_dataset", "n=0", lambda: data.load_dataset("shapes", n=0)),
        ("load_dataset", "cifar10 offline, no files",
         lambda: data.load_dataset("cifar10", root=tmp / "nothing", download=False)),
        ("load_image_folder", "an empty folder", lambda: data.load_image_folder(tmp / "images")),
        ("load_image_folder", "test_fraction=0", lambda: data.load_image_folder(tmp / "two-each", test_fraction=0)),
        ("load_image_folder", "`test/` has a class `train/` lacks", lambda: data.load_image_folder(tmp / "split", "test")),
        ("load_image_folder", "two images per class, split='test' (rounds to none)",
         lambda: data.load_image_folder(tmp / "two-each", "test")),
        ("load_image_folder", "no readable image (garbage, a directory named `a.png`)",
         lambda: data.load_image_folder(tmp / "none-readable")),
        ("load_image_folder", "one corrupt PNG among good ones (a warning: the others load)",
         warning_as_error(lambda: data.load_image_folder(tmp / "one-bad"))),
        ("load_cifar10_npz", "no such file", lambda: data.load_cifar10_npz(tmp / "missing.npz")),
        ("load_cifar10_npz", "file without the split's arrays", lambda: data.load_cifar10_npz(npz("empty.npz"))),
        ("load_cifar10_npz", "object (pickled) array inside",
         lambda: data.load_cifar10_npz(npz("object.npz", class_names=object_array(), **cifar))),
        ("load_cifar10_npz", "truncated file",
         lambda: data.load_cifar10_npz(written("truncated.npz", good[:len(good) // 2]))),
        ("load_cifar10_npz", "empty file", lambda: data.load_cifar10_npz(written("zero-bytes.npz", b""))),
        ("load_cifar10_npz", "a pickle, not a .npz",
         lambda: data.load_cifar10_npz(written("pickle.npz", b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94."))),
        ("load_cifar10_npz", "class_names a scalar",
         lambda: data.load_cifar10_npz(npz("scalar.npz", class_names=np.array("airplane"), **cifar))),
        ("load_cifar10_npz", "a FIFO", lambda: data.load_cifar10_npz(tmp / "fifo.npz")),
        ("ImageData", "x float", lambda: ImageData(torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long), ())),
        ("ImageData", "y of the wrong length",
         lambda: ImageData(_z(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), ())),
        ("make_shapes", "n=0", lambda: shapes.make_shapes(0)),
        ("make_shapes", "image_size=4", lambda: shapes.make_shapes(4, image_size=4)),
    ]


def _model_rows() -> list[tuple[str, str, Callable]]:
    return [
        ("build_encoder", "name='vit'", lambda: models.build_encoder("vit")),
        ("SmallConvNet", "width=0", lambda: models.SmallConvNet(width=0)),
        ("ProjectionHead", "in_dim=0", lambda: models.ProjectionHead(0)),
        ("ProjectionHead", "depth=-1", lambda: models.ProjectionHead(8, depth=-1)),
        ("ProjectionHead", "out_dim=2.5", lambda: models.ProjectionHead(8, out_dim=2.5)),
    ]


def _metric_rows() -> list[tuple[str, str, Callable]]:
    rows = []
    for name in ("contrastive_accuracy", "alignment", "cosine_stats"):
        f = getattr(metrics, name)
        rows += [(name, "shapes differ", lambda f=f: f(_z(4, 8), _z(3, 8))),
                 (name, "N = 1", lambda f=f: f(_z(1, 8), _z(1, 8)))]
    for name in ("uniformity", "embedding_std"):
        f = getattr(metrics, name)
        rows += [(name, "1-D z", lambda f=f: f(_z(8))), (name, "a list", lambda f=f: f([[1.0, 0.0]]))]
    return rows


def _evaluate_rows() -> list[tuple[str, str, Callable]]:
    v, y = torch.eye(4, 8), torch.tensor([0, 1, 0, 1])
    x, encoder = _z(4, 3, 32, 32, dtype=torch.uint8), models.SmallConvNet(width=4)
    probe, tune = evaluate.linear_probe_on_features, evaluate.fine_tune
    rows = [
        ("knn_predict", "k=0", lambda: evaluate.knn_predict(v, y, v, k=0)),
        ("knn_predict", "labels of the wrong length", lambda: evaluate.knn_predict(v, y[:3], v)),
        ("knn_predict", "weighting='cosine'", lambda: evaluate.knn_predict(v, y, v, weighting="cosine")),
        ("knn_predict", "d differs", lambda: evaluate.knn_predict(v, y, v[:, :5])),
        ("knn_predict", "temperature=0", lambda: evaluate.knn_predict(v, y, v, temperature=0)),
        ("knn_accuracy", "test_y of the wrong length", lambda: evaluate.knn_accuracy(v, y, v, y[:3])),
        ("extract_embeddings", "which='w'", lambda: evaluate.extract_embeddings(encoder, x, which="w")),
        ("extract_embeddings", "batch_size=0", lambda: evaluate.extract_embeddings(encoder, x, batch_size=0)),
        ("linear_probe", "config=5", lambda: evaluate.linear_probe(encoder, x, y, x, y, 5)),
    ]
    features = [
        ("v_train a list", lambda: probe(v.tolist(), y, v, y)),
        ("v_train 1-D", lambda: probe(v[0], y, v, y)),
        ("v_train int64", lambda: probe(v.long(), y, v, y)),
        ("y_train float", lambda: probe(v, y.float(), v, y)),
        ("y_train of the wrong length", lambda: probe(v, y[:3], v, y)),
        ("a negative label", lambda: probe(v, y - 1, v, y)),
        ("v_test of another d", lambda: probe(v, y, v[:, :5], y)),
        ("NaN in v_train", lambda: probe(v * float("nan"), y, v, y)),
    ]
    rows += [("linear_probe_on_features", label, call) for label, call in features]
    bad_probe = {"epochs": 0, "lr": 0, "batch_size": 0, "weight_decay": -1.0, "seed": -1}
    rows += [("ProbeConfig", f"{k}={val!r}", lambda k=k, val=val: evaluate.ProbeConfig(**{k: val}))
             for k, val in bad_probe.items()]
    tuning = [
        ("encoder a string", lambda: tune("convnet", x, y, x, y)),
        ("x_train (0, C, H, W)", lambda: tune(encoder, x[:0], y[:0], x, y)),
        ("x_test of another size", lambda: tune(encoder, x, y, x[..., :16, :16], y)),
        ("augment=3", lambda: tune(encoder, x, y, x, y, augment=3)),
        ("eval_every=-1", lambda: tune(encoder, x, y, x, y, eval_every=-1)),
        ("eval_every=0.5", lambda: tune(encoder, x, y, x, y, eval_every=0.5)),
    ]
    return rows + [("fine_tune", label, call) for label, call in tuning]


def _checkpoint_rows(tmp: Path) -> list[tuple[str, str, Callable]]:
    (tmp / "garbage.pt").write_bytes(b"not a checkpoint at all" * 10)
    torch.save({"epoch": 1, "history": [_NotATensor()]}, tmp / "pickled.pt")
    torch.save([torch.zeros(2)], tmp / "list.pt")
    (tmp / "folder.pt").mkdir()
    os.mkfifo(tmp / "fifo.pt")
    (tmp / "zero.pt").symlink_to("/dev/zero")
    (tmp / "loop.pt").symlink_to("loop.pt")
    with (tmp / "huge.pt").open("wb") as f:
        f.truncate(MAX_CHECKPOINT_BYTES + 2**29)  # sparse: takes no disk space
    return [("load_checkpoint", label, lambda name=name: load_checkpoint(tmp / name)) for label, name in [
        ("no such file", "missing.pt"), ("garbage bytes", "garbage.pt"), ("a pickled object inside", "pickled.pt"),
        ("not a dict", "list.pt"), ("a directory", "folder.pt"), ("a FIFO", "fifo.pt"),
        ("a symlink to /dev/zero", "zero.pt"), ("a symlink to itself", "loop.pt"),
        ("4.5 GiB (over MAX_CHECKPOINT_BYTES)", "huge.pt")]]


def _config_rows() -> list[tuple[str, str, Callable]]:
    rows = [
        ("pick_device", "name='tpu'", lambda: device.pick_device("tpu")),
        ("pick_device", "name='cuda' without CUDA", lambda: _call_without_cuda(device.pick_device, "cuda")),
        ("pick_tier", "override='huge'", lambda: course.pick_tier("huge")),
        ("main_config", "tier='huge'", lambda: course.main_config("huge")),
    ]
    bad = [("dataset", "imagenet"), ("encoder", "vit"), ("epochs", 0), ("batch_size", 1), ("temperature", 0),
           ("lr", -1.0), ("weight_decay", -1.0), ("optimizer", "lars"), ("warmup_epochs", -1), ("knn_k", 0),
           ("n_train", 1), ("n_test", 0), ("seed", -1), ("out_dir", ""), ("method", "byol"),
           ("precision", "fp8"), ("epochs", 10**9), ("lr", 1e39)]
    rows += [("TrainConfig", "n_test=2, umap=True", lambda: train_module.TrainConfig(n_test=2, umap=True))]
    rows += [("TrainConfig", f"{k}={v!r}", lambda k=k, v=v: train_module.TrainConfig(**{k: v})) for k, v in bad]
    return rows + [("train", "threads=0", lambda: train_module.train(threads=0))]


def _call_without_cuda(f: Callable, *args):
    with _no_cuda():
        return f(*args)


def api_rows(tmp: Path) -> list[tuple[str, str, str, str]]:
    """``(function, bad input, exception type, message)`` per row, in the order of the package's chapters."""
    cases = [*_loss_rows("nt_xent", losses.nt_xent), *_loss_rows("nt_xent_logits", losses.nt_xent_logits),
             *_info_nce_rows(), *_distributed_rows(), *_view_rows(), *_data_rows(tmp), *_model_rows(),
             *_metric_rows(), *_evaluate_rows(), *_checkpoint_rows(tmp), *_config_rows()]
    out = []
    for function, label, call in cases:
        try:
            call()
        except Exception as err:  # noqa: BLE001 - whatever it raises is what the row shows
            out.append((function, label, type(err).__name__, _scrub(str(err), tmp)))
            continue
        raise SystemExit(f"docs/make_errors.py: {function} with {label} no longer raises; "
                         "change or drop its row in docs/make_errors.py")
    return out


# --------------------------------------------------------------------------------- weak messages
def _meta_augmenter_error() -> str:
    """What following the meta-device message's advice, ``ViewAugmenter(config, 'meta')``, gives."""
    try:
        views_batched.ViewAugmenter(views.SIMCLR, "meta")(torch.zeros(2, 3, 32, 32, dtype=torch.uint8, device="meta"))
    except Exception as err:  # noqa: BLE001
        return f"`{type(err).__name__}` (\"{str(err).splitlines()[0]}\")"
    return ""


def _torch_refusal() -> str:
    """torch's whole message when ``weights_only=True`` refuses a pickled object."""
    buffer = io.BytesIO()
    torch.save({"history": [_NotATensor()]}, buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, weights_only=True)
    except Exception as err:  # noqa: BLE001
        return str(err)
    return ""


def weak_messages(crl: dict[str, str], api: dict[tuple[str, str], tuple[str, str]]) -> list[str]:
    """The bullets whose weakness this run observed; each is (check, text) so a fix drops its bullet."""
    pickled = api[("load_checkpoint", "a pickled object inside")][1]
    pickled_crl = crl["`--resume, checkpoint.pt with a pickled payload`"]
    still_loadable = "This file can still be loaded"
    npz_keys = api[("load_cifar10_npz", "file without the split's arrays")][1]
    npz_object = api[("load_cifar10_npz", "object (pickled) array inside")][1]
    meta_u8 = api[("ViewAugmenter", "built for 'cpu', uint8 x on the meta device")][1]
    meta_float = api[("ViewAugmenter", "built for 'cpu', float x on the meta device")]
    other = crl["`--resume, checkpoint.pt of another model (--encoder resnet18)`"]
    detail = re.search(r"\((RuntimeError: .*)\); resume with", other)
    followed = _meta_augmenter_error() if "ViewAugmenter(config, 'meta')" in meta_u8 else ""
    candidates = [
        (still_loadable in pickled and still_loadable in pickled_crl and "Unsupported global" not in pickled
         and "Unsupported global" in _torch_refusal(),
         f"`load_checkpoint` and `crl train --resume` on a real pickled payload quote torch's first line "
         f"(\"{still_loadable} ...\"), which invites `weights_only=False`; the useful part is torch's "
         "\"Unsupported global\" line, which is cut off."),
        ("is not a file in the archive" in npz_keys,
         f"`load_cifar10_npz` on a file without the split's arrays pastes numpy's KeyError text where the array's "
         f"name belongs: \"{npz_keys.split(';')[0]}\"."),
        ("<tmp>" not in npz_object,
         f"`load_cifar10_npz` on an object array passes numpy's message through (\"{npz_object}\"), "
         "without the file's name or a fix."),
        (bool(detail) and len(detail.group(1)) >= 200 and "resnet18" not in other,
         "`crl train --resume` with a checkpoint of another model cuts torch's message at 200 characters, "
         "mid-name, and does not say which `--encoder` the checkpoint was trained with (it stores its config)."),
        (bool(followed),
         f"`ViewAugmenter` given images on the meta device tells you to build `ViewAugmenter(config, 'meta')`; "
         f"doing so fails with {followed}."),
        (meta_float[0] not in ("ValueError", "TypeError"),
         f"`ViewAugmenter` given float images on the meta device raises torch's `{meta_float[0]}` "
         f"(\"{meta_float[1]}\") from the NaN check, before the device check that would name the problem."),
        (bool(_ANSI.search(pickled)),
         "`load_checkpoint`'s message on a pickled payload carries torch's terminal bold codes (`\\x1b[1m`), "
         "garbage in a log file or a notebook; `crl` strips them, the Python API does not (the table above shows "
         "the message without them)."),
    ]
    return [text for observed, text in candidates if observed]


# --------------------------------------------------------------------------------------- the page
def _scrub(text: str, tmp: Path) -> str:
    """``text`` with the temporary folder ``tmp`` written as ``<tmp>``, and process ids as ``<pid>``."""
    for path in sorted({str(tmp), str(tmp.resolve())}, key=len, reverse=True):
        text = text.replace(path, "<tmp>")
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    return re.sub(r"\(process \d+\)", "(process <pid>)", text)


def _cell(text: str) -> str:
    """A message as one table cell: terminal codes dropped, on one line, pipes escaped."""
    return " ".join(_ANSI.sub("", text).split()).replace("|", "\\|")


def _wrap(text: str, width: int = 108) -> list[str]:
    return textwrap.wrap(text, width, initial_indent="- ", subsequent_indent="  ", break_on_hyphens=False)


def render(tmp: Path) -> str:
    """The whole of docs/errors.md, from calling the code with temporary files under ``tmp``."""
    with mock.patch.dict(os.environ), _seeded():
        for name in _TORCHRUN_VARS:
            os.environ.pop(name, None)
        crl = cli_rows(tmp / "crl")
        site = site_rows(tmp / "site")
        (tmp / "classroom").mkdir()
        classroom = classroom_rows(tmp / "classroom")
        api = api_rows(tmp / "api")
    lines = [
        "# Errors: every bad input and the exact message it gets",
        "",
        "Generated by calling the code, not written by hand: each row is what the code raised or printed",
        "when this file was made. Paths under a temporary folder appear as `<tmp>`. To refresh it, run",
        "`python docs/make_errors.py`; `tests/test_errors_doc.py` fails while it is stale.",
        "",
        "## The `crl` command",
        "",
        "Every failure below exits with status 2 (130 for Ctrl-C, 143 for SIGTERM) and prints exactly one line on",
        "stderr, no traceback. Under `torchrun` only rank 0 prints it.",
        "",
        "The rows call `crl train` in-process (`crl_helpers.cli.main`) with small CPU flags; a GPU that runs out",
        "of memory, a loss that becomes NaN, a 2-process `torchrun` world and a machine without CUDA are",
        "simulated as the tests do, and Ctrl-C is a real SIGINT (SIGTERM a real SIGTERM). The `crl instructor` rows",
        "run on a copy of the course's notebooks.",
        "",
        "| bad input | status | stderr |",
        "|---|---|---|",
        *(f"| {label} | {status} | {_cell(stderr)} |" for label, status, stderr in crl),
        "",
        "`crl site` and `crl lecture` refuse these before any notebook runs:",
        "",
        "| bad input | status | stderr |",
        "|---|---|---|",
        *(f"| {label} | {status} | {_cell(stderr)} |" for label, status, stderr in site),
        "",
        "### `crl grade`, `crl assign`, `crl instructor`, `crl reference`",
        "",
        "The classroom commands and the reference runs, called the same way; every row fails before a notebook "
        "runs or a run trains.",
        "",
        "| command | status | stderr |",
        "|---|---|---|",
        *(f"| {label} | {status} | {_cell(stderr)} |" for label, status, stderr in classroom),
        "",
        "## Python API",
        "",
        "| function | bad input | raises | message |",
        "|---|---|---|---|",
        *(f"| `{function}` | {label} | `{kind}` | {_cell(message)} |" for function, label, kind, message in api),
        "",
        "## Known weak messages",
        "",
    ]
    weak = weak_messages({label: stderr for label, _, stderr in crl},
                         {(function, label): (kind, message) for function, label, kind, message in api})
    lines += [line for bullet in weak for line in _wrap(bullet)] or ["None observed."]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _seeded():
    """Fixed seeds for the rows, the caller's RNG state restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        np_state = np.random.get_state()
        np.random.seed(0)
        try:
            yield
        finally:
            np.random.set_state(np_state)


def main(path: str | os.PathLike = DOC) -> Path:
    """Write the page to ``path`` (default ``docs/errors.md``); returns the path."""
    path = Path(path)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="crl-errors-") as tmp:
        base = Path(tmp)
        (base / "crl").mkdir()
        (base / "site").mkdir()
        (base / "api").mkdir()
        text = render(base)
    path.write_text(text)
    print(f"wrote {path} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return path


if __name__ == "__main__":
    main(*sys.argv[1:2])
