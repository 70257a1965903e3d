"""Hostile input: files that carry code, and random garbage thrown at the public tensor functions.

The contract under test: a file never executes code when loaded, and every call either returns
finite numbers or raises a clear ``ValueError``/``TypeError``: never a silent NaN, never another
exception type.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from crl_helpers.data import load_cifar10_npz, load_dataset
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
