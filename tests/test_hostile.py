"""Hostile input: files that carry code, files that are not what their name says, and random garbage
thrown at the public tensor functions.

The contract under test: a file never executes code when loaded; a damaged, empty or special file
(a FIFO, ``/dev/zero``, a directory, a symlink loop) gives one line naming it and the fix, promptly,
or is skipped with a warning when it is one image among many; and every tensor call either returns
finite numbers or raises a clear ``ValueError``/``TypeError``: never a silent NaN, never another
exception type.
"""
from __future__ import annotations

import dataclasses
import io
import os
import pickle
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from crl_helpers.checkpoint import MAX_CHECKPOINT_BYTES, CheckpointError, load_checkpoint, save_checkpoint
from crl_helpers.data import load_cifar10_npz, load_dataset, load_image_folder
from crl_helpers.image_data import DatasetUnavailable
from crl_helpers.losses import info_nce, nt_xent
from crl_helpers.views import NO_AUGMENTATION, SIMCLR, ViewConfig
from crl_helpers.views_batched import augment_batch, make_views

REPO = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this runs ``exec``: it writes a marker file, the harmless stand-in for an attack."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


# ---------------------------------------------------------------- files that carry code
def test_pickled_checkpoint_is_refused_by_crl_train_resume(tmp_path):
    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    out.mkdir()
    checkpoint = out / "checkpoint.pt"
    torch.save({"epoch": 1, "model": {"w": torch.zeros(2)}, "history": [_Payload(marker)]}, checkpoint)
    before = checkpoint.read_bytes()

    cmd = [sys.executable, "-m", "crl_helpers.cli", "train", "--resume", "--out", str(out), "--n-train", "64",
           "--n-test", "16", "--batch-size", "32", "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"crl: error: {checkpoint} was refused by torch.load(weights_only=True)")
    assert "Do not load files you do not trust" in lines[0] and "\x1b" not in lines[0]
    assert not marker.exists(), "the payload ran"
    assert checkpoint.read_bytes() == before

    # The payload is real: a careless loader would have run it.
    torch.load(checkpoint, weights_only=False)
    assert marker.read_text() == "pwned"


def _cifar_npz(path: Path, class_names: np.ndarray) -> None:
    np.savez(path, train_jpeg=np.zeros(4, np.uint8), train_offsets=np.array([0, 4]), y_train=np.array([0]),
             class_names=class_names)


def test_arrays_load_without_pickle(tmp_path):
    marker = tmp_path / "pwned"
    root = tmp_path / "data"
    root.mkdir()
    npz = root / "cifar10_jpeg.npz"
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(marker)
    _cifar_npz(npz, payload)

    with pytest.raises(ValueError, match="allow_pickle=False"):
        load_cifar10_npz(npz, "train")
    with pytest.raises(ValueError, match="allow_pickle=False"):
        load_dataset("cifar10", "train", root=root, download=False)
    assert not marker.exists(), "the payload ran"

    # The payload is real: allow_pickle=True would have run it.
    with np.load(npz, allow_pickle=True) as z:
        z["class_names"]
    assert marker.read_text() == "pwned"


# ---------------------------------------------------------------- folders of images
_COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "fox": (0, 0, 255)}


def _write_images(folder: Path, colour: tuple[int, int, int], n: int) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (12, 10), colour).save(folder / f"{i}.png")


def _class_of(x: torch.Tensor) -> list[str]:
    """The class each image shows, read off its colour: the oracle for the labels."""
    by_colour = {colour: name for name, colour in _COLOURS.items()}
    return [by_colour[tuple(int(c) for c in image[:, 0, 0])] for image in x]


def test_a_test_folder_without_a_training_class_keeps_every_label(tmp_path):
    # test/ lacks "cat": numbering test/'s own classes made dog 0 and fox 1, so every label was wrong.
    for name in _COLOURS:
        _write_images(tmp_path / "train" / name, _COLOURS[name], 3)
    for name in ("dog", "fox"):
        _write_images(tmp_path / "test" / name, _COLOURS[name], 2)
    for load in (lambda split: load_image_folder(tmp_path, split, image_size=4),
                 lambda split: load_dataset("folder", split, root=tmp_path, image_size=4)):
        train, test = load("train"), load("test")
        assert train.class_names == test.class_names == ("cat", "dog", "fox")
        for data in (train, test):
            assert [data.class_names[i] for i in data.y] == _class_of(data.x)
        assert sorted(test.y.tolist()) == [1, 1, 2, 2]

    _write_images(tmp_path / "test" / "owl", (9, 9, 9), 1)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'test'} has class folder owl that {tmp_path / 'train'} lacks")):
        load_image_folder(tmp_path, "test")


def test_unreadable_images_are_skipped_with_one_warning(tmp_path):
    for name in ("cat", "dog"):
        _write_images(tmp_path / name, _COLOURS[name], 5)
    cat = tmp_path / "cat"
    (cat / "0-corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    good = (cat / "0.png").read_bytes()
    (cat / "0-truncated.png").write_bytes(good[: len(good) // 2])
    (cat / "0-loop.png").symlink_to("0-loop.png")  # a symlink to itself
    (cat / "0-folder.png").mkdir()
    # Skipped silently: hidden files, macOS's AppleDouble companions, Jupyter's checkpoint folder.
    (cat / "._0.png").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 40)
    (cat / ".DS_Store").write_bytes(b"\x00" * 40)
    _write_images(cat / ".ipynb_checkpoints", (1, 2, 3), 1)
    (tmp_path / ".Trashes").mkdir()

    with pytest.warns(UserWarning) as caught:
        data = [load_image_folder(tmp_path, split, image_size=4) for split in ("train", "test")]
    messages = [str(w.message) for w in caught]
    # The four bad files are all cat's; each split reports the ones that fell in it, naming the first.
    pattern = rf"skipped (\d) unreadable files? of the (train|test) split, first: {re.escape(str(cat))}/0-\w+\.png \(.+\)"
    matches = [re.fullmatch(pattern, m) for m in messages]
    assert all(matches) and sum(int(m.group(1)) for m in matches) == 4, messages
    assert len(data[0]) + len(data[1]) == 10
    for d in data:
        assert d.class_names == ("cat", "dog") and [d.class_names[i] for i in d.y] == _class_of(d.x)


def test_a_folder_with_no_readable_image_or_an_empty_split_says_which(tmp_path):
    (tmp_path / "bad" / "cat").mkdir(parents=True)
    (tmp_path / "bad" / "cat" / "a.png").write_bytes(b"not a png")
    (tmp_path / "bad" / "cat" / "b.png").mkdir()
    bad = tmp_path / "bad"
    with pytest.raises(DatasetUnavailable, match=re.escape(f"none of the 2 image files of the train split in {bad} is "
                                                           f"readable, first: {bad / 'cat' / 'a.png'} (not an image PIL")):
        load_image_folder(bad, "train")

    # Two images per class: round(0.2 * 2) = 0 go to test. It used to say the folder "holds no images".
    for name in ("cat", "dog"):
        _write_images(tmp_path / "small" / name, _COLOURS[name], 2)
    assert len(load_image_folder(tmp_path / "small", "train")) == 4
    with pytest.raises(DatasetUnavailable, match=re.escape(f"the test split of {tmp_path / 'small'} is empty: test_fraction"
                                                           "=0.2 of at most 2 images per class rounds to none; put at least 3")):
        load_image_folder(tmp_path / "small", "test")


# ---------------------------------------------------------------- damaged CIFAR-10 archives
def _good_archive() -> bytes:
    buffer = io.BytesIO()
    image = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(image, format="PNG")
    blob = np.frombuffer(image.getvalue(), np.uint8)
    np.savez(buffer, train_jpeg=blob, train_offsets=np.array([0, len(blob)]), y_train=np.array([0]),
             class_names=np.array(["airplane"]))
    return buffer.getvalue()


def _damage(kind: str, path: Path) -> None:
    good = _good_archive()
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "pickled":
        path.write_bytes(pickle.dumps({"not": "an archive"}))
    elif kind == "npy":
        with path.open("wb") as f:
            np.save(f, np.zeros(3))
    elif kind == "bad CRC":
        damaged = bytearray(good)
        damaged[good.index(b"\x89PNG") + 20] ^= 0xFF  # inside a stored member: zip's checksum catches it
        path.write_bytes(bytes(damaged))
    else:  # a zip of the right names whose arrays are of the wrong kind
        arrays = {"scalar class_names": dict(class_names=np.array("airplane")),
                  "float offsets": dict(train_offsets=np.array([0.0, 4.0])),
                  "label out of range": dict(y_train=np.array([7]))}[kind]
        np.savez(path, **{**dict(train_jpeg=np.zeros(4, np.uint8), train_offsets=np.array([0, 4]),
                                 y_train=np.array([0]), class_names=np.array(["airplane"])), **arrays})


@pytest.mark.parametrize("kind", ["truncated", "empty", "pickled", "npy", "bad CRC", "scalar class_names",
                                  "float offsets", "label out of range"])
def test_a_damaged_cifar_archive_is_one_line_naming_the_file(tmp_path, kind):
    # These raised BadZipFile, EOFError, TypeError, or numpy's advice to load the file unsafely.
    path = tmp_path / "cifar10_jpeg.npz"
    _damage(kind, path)
    for load in (lambda: load_cifar10_npz(path, "train"), lambda: load_dataset("cifar10", root=tmp_path, download=False)):
        with pytest.raises(ValueError) as caught:
            load()
        message = str(caught.value)
        assert message.startswith(f"{path} is not a readable CIFAR-10 archive (") and "\n" not in message
        assert "delete it and copy it again" in message
        assert "allow_pickle=`" not in message and "unsafe" not in message and "pickle.load" not in message


# ---------------------------------------------------------------- files that are not files
_NOT_FILES = textwrap.dedent("""
    import os, resource, sys
    from pathlib import Path
    from crl_helpers.checkpoint import load_checkpoint
    from crl_helpers.data import load_cifar10_npz, load_image_folder

    # A runaway read fails here at 1 GiB more than the imports took, instead of filling the machine.
    vm = int(next(line for line in open("/proc/self/status") if line.startswith("VmSize")).split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, resource.RLIM_INFINITY))
    tmp = Path(sys.argv[1])
    os.symlink("/dev/zero", tmp / "zero")
    os.mkfifo(tmp / "fifo")
    (tmp / "images" / "cat").mkdir(parents=True)
    os.mkfifo(tmp / "images" / "cat" / "a.png")
    for label, call in [("zero", lambda: load_checkpoint(tmp / "zero")), ("fifo", lambda: load_checkpoint(tmp / "fifo")),
                        ("npz", lambda: load_cifar10_npz(tmp / "fifo")),
                        ("image", lambda: load_image_folder(tmp / "images"))]:
        try:
            call()
            print(label, "returned", flush=True)
        except Exception as err:
            print(label, type(err).__name__, err, flush=True)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and RLIMIT_AS as Linux has them")
def test_a_fifo_or_dev_zero_is_refused_promptly(tmp_path):
    # A symlink to /dev/zero was read until memory ran out; a FIFO hung the reader forever.
    proc = subprocess.run([sys.executable, "-c", _NOT_FILES, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert proc.returncode == 0 and len(lines) == 4, proc.stdout + proc.stderr
    assert lines["zero"] == (f"CheckpointError {tmp_path / 'zero'} is not a checkpoint file (a character device, "
                             f"not a regular file); delete it, or point TrainConfig.out_dir at a fresh folder")
    assert lines["fifo"].startswith(f"CheckpointError {tmp_path / 'fifo'} is not a checkpoint file (a FIFO (named pipe)")
    assert lines["npz"].startswith(f"ValueError {tmp_path / 'fifo'} is not a readable CIFAR-10 archive (a FIFO")
    assert lines["image"].startswith("DatasetUnavailable none of the 1 image files") and "(a FIFO (named pipe)" in lines["image"]


def test_a_directory_or_an_oversized_file_is_not_read_as_a_checkpoint(tmp_path):
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(CheckpointError, match=r"folder\.pt is not a checkpoint file \(a directory, not a regular file\)"):
        load_checkpoint(tmp_path / "folder.pt")
    huge = tmp_path / "huge.pt"
    with huge.open("wb") as f:
        f.truncate(MAX_CHECKPOINT_BYTES + 1)  # sparse: no disk used, nothing read
    with pytest.raises(CheckpointError, match=r"huge\.pt is 4\.0 GiB, more than a checkpoint can be "
                                              r"\(MAX_CHECKPOINT_BYTES = 4 GiB\)"):
        load_checkpoint(huge)


# ---------------------------------------------------------------- what a checkpoint is written as
@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077], ids=oct)
def test_a_checkpoint_gets_the_mode_the_umask_gives_every_file(tmp_path, umask):
    # It was created 0600 (tempfile.mkstemp) whatever the umask, unlike the run's other outputs.
    previous = os.umask(umask)
    try:
        save_checkpoint({"epoch": 1}, tmp_path / "checkpoint.pt")
        (tmp_path / "metrics.json").write_text("{}")  # the oracle: any file open() creates
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "checkpoint.pt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == 0o666 & ~umask


def test_each_write_has_its_own_temporary_file(tmp_path, monkeypatch):
    seen = []
    real = os.replace

    def record(src, dst):
        seen.append(Path(src))
        real(src, dst)

    monkeypatch.setattr(os, "replace", record)
    for epoch in range(3):
        save_checkpoint({"epoch": epoch}, tmp_path / "checkpoint.pt")
    assert len(set(seen)) == 3 and all(p.parent == tmp_path and p.name.startswith("checkpoint.pt.") for p in seen)
    assert os.listdir(tmp_path) == ["checkpoint.pt"] and load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2


# ---------------------------------------------------------------- random garbage at the tensor functions
_SPECIALS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-30, -1e-30, 1e30, -1e30, 65504.0, 1e-8, 3e38, -3e38,
             float("nan"), float("inf"), float("-inf")]
_FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
_OTHER_DTYPES = [torch.int32, torch.int64, torch.uint8, torch.bool]
_TEMPERATURES = [0.1, 0.5, 1.0, 2, 1e-3, 1e-8, 1e-12, 1e-30, 1e-300, 5e-324, 1e3, 1e300, 0, 0.0, -0.1, -1,
                 float("nan"), float("inf"), float("-inf"), True, None, "0.1", torch.tensor(0.1), np.float32(0.2)]


@st.composite
def _tensors(draw, shape=None, dtypes=_FLOAT_DTYPES + _OTHER_DTYPES, values=None):
    if shape is None:
        shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=3)))
    dtype = draw(st.sampled_from(dtypes))
    size = int(np.prod(shape)) if shape else 1
    if dtype.is_floating_point:
        if values is None:
            values = st.one_of(st.sampled_from(_SPECIALS), st.floats(-10, 10))
        drawn = draw(st.lists(values, min_size=size, max_size=size))
        return torch.tensor(drawn, dtype=torch.float64).reshape(shape).to(dtype)
    values = draw(st.lists(st.integers(0, 255), min_size=size, max_size=size))
    return torch.tensor(values, dtype=torch.int64).reshape(shape).to(dtype)


@st.composite
def _embedding_pairs(draw):
    """Mostly well-formed float (N, d) pairs (so that the numerics get exercised, not just the shape
    checks), some with special values, the rest of any shape, dtype, or not a tensor at all."""
    kind = draw(st.sampled_from(["plain", "plain", "special", "any"]))
    n, d = draw(st.integers(0, 4)), draw(st.integers(1, 4))
    if kind == "any":
        a = draw(st.one_of(_tensors(shape=(n, d)), _tensors(), st.just([[1.0, 2.0]]), st.none()))
        return a, draw(st.one_of(_tensors(shape=(n, d)), _tensors()))
    values = st.floats(-10, 10) if kind == "plain" else st.one_of(st.sampled_from(_SPECIALS), st.floats(-10, 10))
    return tuple(draw(_tensors(shape=(n, d), dtypes=_FLOAT_DTYPES, values=values)) for _ in range(2))


def _assert_finite_or_clear_error(call) -> None:
    try:
        result = call()
    except (ValueError, TypeError) as err:
        assert str(err), "an error must say what is wrong"
        return
    tensors = result if isinstance(result, (list, tuple)) else [result]
    for t in tensors:
        assert isinstance(t, torch.Tensor)
        assert torch.isfinite(t).all(), f"silent non-finite result {t}"


def _grad_is_finite(loss: torch.Tensor, *inputs) -> None:
    leaves = [x for x in inputs if isinstance(x, torch.Tensor) and x.requires_grad]
    if leaves:
        for g in torch.autograd.grad(loss, leaves, allow_unused=True):
            assert g is None or torch.isfinite(g).all(), "non-finite gradient"


def _maybe_requires_grad(x):
    if isinstance(x, torch.Tensor) and x.dtype in (torch.float32, torch.float64):
        return x.clone().requires_grad_()
    return x


_TINY = [1e-39, 1e-300, 5e-324]  # the temperatures that overflowed float32 logits before the lower bound


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=_embedding_pairs(), temperature=st.one_of(st.sampled_from(_TEMPERATURES), st.sampled_from(_TINY)))
@example(pair=(torch.randn(3, 2), torch.randn(3, 2)), temperature=1e-300)
def test_nt_xent_is_finite_or_raises_clearly(pair, temperature):
    z1, z2 = (_maybe_requires_grad(z) for z in pair)

    def call():
        loss = nt_xent(z1, z2, temperature)
        _grad_is_finite(loss, z1, z2)
        return loss

    _assert_finite_or_clear_error(call)


@st.composite
def _negatives_for(draw, query):
    """None, keys that fit the query ((M, d) shared or (N, M, d) per query), or anything at all."""
    kind = draw(st.sampled_from(["none", "shared", "per-query", "any"]))
    if kind == "none":
        return None
    if kind == "any" or not isinstance(query, torch.Tensor) or query.ndim != 2:
        return draw(_tensors())
    n, d = query.shape
    shape = (draw(st.integers(0, 3)), d) if kind == "shared" else (n, draw(st.integers(0, 3)), d)
    return draw(_tensors(shape=shape, dtypes=_FLOAT_DTYPES))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), pair=_embedding_pairs(),
       temperature=st.one_of(st.sampled_from(_TEMPERATURES), st.sampled_from(_TINY)))
def test_info_nce_is_finite_or_raises_clearly(data, pair, temperature):
    query, positive_key = (_maybe_requires_grad(z) for z in pair)
    negatives = _maybe_requires_grad(data.draw(_negatives_for(query)))

    def call():
        loss = info_nce(query, positive_key, negatives, temperature)
        _grad_is_finite(loss, query, positive_key, negatives)
        return loss

    _assert_finite_or_clear_error(call)


_CONFIGS = [SIMCLR, NO_AUGMENTATION, dataclasses.replace(SIMCLR, blur_p=0.5, image_size=8),
            dataclasses.replace(SIMCLR, image_size=1), dataclasses.replace(SIMCLR, blur_p=1.0, image_size=2),
            ViewConfig(image_size=5, jitter_strength=2.5)]


@st.composite
def _images(draw):
    ndim = draw(st.sampled_from([4, 4, 4, 3, 5]))
    shape = [draw(st.integers(0, 3))] + [3] * (ndim > 3) + [draw(st.integers(1, 9)) for _ in range(max(ndim - 2, 1))]
    if ndim > 3 and draw(st.integers(0, 9)) == 0:
        shape[1] = draw(st.sampled_from([1, 4]))
    return draw(st.one_of(_tensors(shape=tuple(shape[:ndim])), st.just("an image")))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=_images(), config=st.sampled_from(_CONFIGS), seed=st.one_of(st.none(), st.integers(0, 2**31)),
       n_views=st.sampled_from([1, 2, 3, 0, -1, True, 2.0, None]))
def test_augment_batch_and_make_views_are_finite_or_raise_clearly(x, config, seed, n_views):
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    _assert_finite_or_clear_error(lambda: augment_batch(x, config, generator))
    _assert_finite_or_clear_error(lambda: make_views(x, config, n_views, generator))


def test_blur_on_a_one_pixel_view_is_refused_by_the_config():
    # Found by the property test above: reflect padding needs a neighbour, so torch raised a RuntimeError.
    with pytest.raises(ValueError, match="image_size=1 is too small to blur"):
        ViewConfig(image_size=1, blur_p=1.0)


def test_known_silent_nans_now_raise():
    # Found by the property tests: each of these used to return NaN.
    z = torch.randn(3, 2)
    with pytest.raises(ValueError, match="below 1e-08"):
        nt_xent(z, z.flip(0), temperature=1e-300)  # cos / 1e-300 overflows to inf
    with pytest.raises(ValueError, match="N=0 rows"):
        info_nce(torch.zeros(0, 2), torch.zeros(0, 2), torch.ones(3, 2))  # a mean over no queries
    with pytest.raises(ValueError, match="NaN or inf"):
        augment_batch(torch.full((1, 3, 4, 4), float("nan")), SIMCLR)


def test_float_images_outside_unit_range_are_refused():
    # The classic slip: float pixels still in 0..255. Once normalised they are huge but finite,
    # so only a range check catches it.
    x = torch.full((2, 3, 8, 8), 200.0)
    with pytest.raises(ValueError, match=r"\[0, 1\].*divide by 255"):
        augment_batch(x, SIMCLR)


# ------------------------------------------------------------- crl train: outputs, locks, divergence
TINY = ["--n-train", "64", "--n-test", "16", "--batch-size", "32", "--device", "cpu", "--no-umap", "--quiet"]


def _crl(capsys, *argv: str) -> tuple[int, list[str]]:
    from crl_helpers import cli

    status = cli.main(["train", *TINY, *argv])
    return status, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_an_empty_out_is_refused_and_nothing_is_reported(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for out in ("", "   "):
        status, err = _crl(capsys, "--epochs", "1", "--out", out)
        assert status == 2 and len(err) == 1 and "is empty; name a folder" in err[0]
    assert list(tmp_path.iterdir()) == []  # nothing written anywhere


@pytest.mark.parametrize("flags, fragment", [
    (("--lr", "1e39"), "--lr 1e+39 must be <= 100"),
    (("--epochs", "1000000000"), "--epochs 1000000000 must be an int in [1, 100000]"),
    (("--n-train", "1000000000"), "--n-train 1000000000 must be an int in [2, 100000]"),
    (("--device", "meta"), "--device 'meta' is not a device to train on"),
    (("--method", "byol"), "--method 'byol' is unknown"),
    (("--precision", "fp8"), "--precision 'fp8' is unknown"),
])
def test_absurd_flags_are_one_line_before_any_work(tmp_path, capsys, flags, fragment):
    status, err = _crl(capsys, *flags, "--out", str(tmp_path / "run"))
    assert status == 2 and len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "run").exists()


def test_too_few_test_images_for_umap_is_refused_before_training(tmp_path, capsys):
    from crl_helpers import cli

    status = cli.main(["train", "--n-train", "64", "--n-test", "2", "--batch-size", "32", "--quiet", "--umap",
                       "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and "too few for the UMAP plot" in err and "or --no-umap" in err
    assert not (tmp_path / "run").exists()


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    from crl_helpers import objectives

    def broken(*args, **kwargs):
        raise KeyError("something no check foresaw")

    monkeypatch.setattr(objectives, "nt_xent", broken)
    status, err = _crl(capsys, "--epochs", "1", "--out", str(tmp_path / "run"))
    assert status == 1 and len(err) == 1 and err[0].startswith("crl: error: KeyError:") and "--debug" in err[0]
    assert not (tmp_path / "run").exists()  # a failed run leaves no empty folder
    with pytest.raises(KeyError):
        _crl(capsys, "--epochs", "1", "--out", str(tmp_path / "run"), "--debug")


def test_a_failed_run_leaves_no_empty_folder(tmp_path, capsys):
    status, err = _crl(capsys, "--epochs", "1", "--resume", "--out", str(tmp_path / "new"))
    assert status == 2 and "checkpoint" in err[0]
    assert not (tmp_path / "new").exists()


HOLD_CHILD = """
import sys, time
from crl_helpers import run_dir
with run_dir.hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_run_into_a_held_folder_is_refused_and_a_killed_holder_blocks_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-c", HOLD_CHILD, str(out)], stdout=subprocess.PIPE, text=True,
                             cwd=REPO)
    try:
        assert child.stdout.readline().strip() == "held"
        status, err = _crl(capsys, "--epochs", "1", "--out", str(out))
        assert status == 2 and len(err) == 1
        assert f"is in use by another run (process {child.pid})" in err[0]
    finally:
        child.kill()  # SIGKILL: the lock file stays behind, its flock does not
        child.wait()
    assert (out / ".crl.lock").exists()
    status, err = _crl(capsys, "--epochs", "1", "--out", str(out))
    assert (status, err) == (0, [])
    assert not (out / ".crl.lock").exists()


def test_overwrite_and_resume_never_leave_another_runs_files(tmp_path, capsys, monkeypatch):
    from crl_helpers import train as train_module

    out = tmp_path / "run"
    assert _crl(capsys, "--epochs", "1", "--out", str(out))[0] == 0
    assert (out / "metrics.json").exists() and (out / "curves.png").exists()
    (out / "umap.png").write_bytes(b"an older run's plot")  # as a run without --no-umap leaves it
    real = train_module.save_run

    def save_then_interrupt(run, config, epoch):
        real(run, config, epoch)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_run", save_then_interrupt)
    status, _ = _crl(capsys, "--epochs", "2", "--seed", "1", "--overwrite", "--out", str(out))
    assert status == 130
    # The folder holds the interrupted run alone: its checkpoint and history, no earlier report.
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "history.csv"]
    assert load_checkpoint(out / "checkpoint.pt")["config"]["seed"] == 1
    monkeypatch.setattr(train_module, "save_run", real)
    assert _crl(capsys, "--epochs", "2", "--seed", "1", "--resume", "--out", str(out))[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "curves.png", "history.csv", "metrics.json"]


@pytest.mark.parametrize("flags, fragment", [
    (("--seed", "1"), "was trained with --seed 0, this run asks for --seed 1"),
    (("--temperature", "0.5"), "was trained with --temperature 0.2, this run asks for --temperature 0.5"),
    (("--batch-size", "16"), "was trained with --batch-size 32, this run asks for --batch-size 16"),
])
def test_a_resume_with_another_config_is_refused_naming_the_difference(tmp_path, capsys, flags, fragment):
    out = tmp_path / "run"
    assert _crl(capsys, "--epochs", "1", "--out", str(out))[0] == 0
    before = (out / "checkpoint.pt").read_bytes()
    status, err = _crl(capsys, "--epochs", "2", "--resume", *flags, "--out", str(out))
    assert status == 2 and len(err) == 1 and fragment in err[0], err
    assert (out / "checkpoint.pt").read_bytes() == before  # the saved config is not rewritten
    assert _crl(capsys, "--epochs", "2", "--resume", "--out", str(out))[0] == 0  # only --epochs may change


@pytest.mark.parametrize("epoch, history", [(-3, []), (2, [{"epoch": 1, "loss": 1.0}]),
                                             (1, [{"epoch": -2, "loss": 1.0}]), (True, [{"epoch": 1}])])
def test_a_crafted_epoch_or_history_is_refused(tmp_path, capsys, epoch, history):
    out = tmp_path / "run"
    save_checkpoint({"epoch": epoch, "history": history, "model": {}}, out / "checkpoint.pt")
    status, err = _crl(capsys, "--epochs", "3", "--resume", "--out", str(out))
    assert status == 2 and len(err) == 1 and "invalid epoch count or history" in err[0], err


def test_divergence_with_a_finite_loss_stops_and_a_resume_never_calls_it_good(tmp_path, capsys, monkeypatch):
    from crl_helpers import train as train_module

    out = tmp_path / "run"
    assert _crl(capsys, "--epochs", "1", "--out", str(out))[0] == 0
    kept = (out / "checkpoint.pt").read_bytes()
    real = train_module.TrainStep.__call__

    def step_then_overflow(self, *args, **kwargs):  # what --lr 1e10 did: BatchNorm variances at inf
        result = real(self, *args, **kwargs)
        for name, buffer in self.model.named_buffers():
            if name.endswith("running_var"):
                buffer.fill_(float("inf"))
        return result

    monkeypatch.setattr(train_module.TrainStep, "__call__", step_then_overflow)
    status, err = _crl(capsys, "--epochs", "2", "--resume", "--out", str(out))
    assert status == 2 and len(err) == 1
    assert "training diverged in epoch 2" in err[0] and "running_var" in err[0]
    assert "the checkpoint of epoch 1, the last that passed this check, is kept" in err[0]
    assert (out / "checkpoint.pt").read_bytes() == kept
    # A checkpoint that diverged (written by an older version, or by hand) is refused, never called good.
    state = load_checkpoint(out / "checkpoint.pt")
    state["model"] = {k: v * float("nan") if v.is_floating_point() else v for k, v in state["model"].items()}
    save_checkpoint(state, out / "checkpoint.pt")
    monkeypatch.setattr(train_module.TrainStep, "__call__", real)
    status, err = _crl(capsys, "--epochs", "2", "--resume", "--out", str(out))
    assert status == 2 and "holds a diverged run" in err[0] and "good" not in err[0]


def test_collapsed_embeddings_stop_the_run():
    from dataclasses import replace

    from crl_helpers.train import CPU, COLLAPSE_STD, NonFiniteLossError, build_model, check_healthy

    model = build_model(CPU)
    row = {"epoch": 3, "embedding_std": 0.0}
    with pytest.raises(NonFiniteLossError, match="collapsed in epoch 3.*epoch 2, the last that passed"):
        check_healthy(model, row, replace(CPU, out_dir="runs/x"))
    check_healthy(model, {"epoch": 3, "embedding_std": 10 * COLLAPSE_STD}, CPU)  # spread: no error
