"""Tests for crl_helpers.views_batched: SimCLR views of a whole batch, fresh parameters per sample.

Oracles: torchvision's functional ops applied to one sample at a time (``resized_crop``, ``hflip``,
``adjust_*``, ``rgb_to_grayscale``, ``gaussian_blur``), the per-image pipeline of crl_helpers.views,
closed forms (identity, flip, normalisation, RandomResizedCrop's centre-crop fallback), and counting.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import shutil
import warnings

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from crl_helpers.views import (
    COLOUR_ONLY,
    CROP_ONLY,
    NO_AUGMENTATION,
    SIMCLR,
    ViewConfig,
    blur_kernel_size,
    view_transform,
)
from crl_helpers.views_batched import (
    N_UNIFORMS,
    ViewAugmenter,
    ViewParams,
    apply_view_params,
    augment_batch,
    make_views,
    sample_view_params,
    view_params_from_uniforms,
)


UNIT = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
# Every random stage off, no normalisation: the batched path must return x / 255.
IDENTITY = dataclasses.replace(NO_AUGMENTATION, **UNIT)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(batch_size=4, height=32, width=32, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, (batch_size, 3, height, width), dtype=torch.uint8, generator=_gen(seed))


def _float_images(batch_size=4, height=32, width=32, seed=0) -> torch.Tensor:
    return torch.rand(batch_size, 3, height, width, generator=_gen(seed))


_COLOUR_FNS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


def _oracle_view(x: torch.Tensor, params: ViewParams, i: int, config: ViewConfig) -> torch.Tensor:
    """Sample i through torchvision's per-image functional ops, in view_transform's order."""
    size = config.image_size
    out = TF.resized_crop(
        x[i],
        int(params.top[i]),
        int(params.left[i]),
        int(params.height[i]),
        int(params.width[i]),
        [size, size],
        antialias=True,
    )
    if params.flip[i]:
        out = TF.horizontal_flip(out)
    if params.jitter[i]:
        factors = (params.brightness[i], params.contrast[i], params.saturation[i], params.hue[i])
        for op in params.order[i].tolist():
            out = _COLOUR_FNS[op](out, float(factors[op]))
    if params.grayscale[i]:
        out = TF.rgb_to_grayscale(out, num_output_channels=3)
    if params.blur[i]:
        sigma = float(params.sigma[i])
        out = TF.gaussian_blur(out, [blur_kernel_size(size)] * 2, [sigma, sigma])
    return TF.normalize(out, list(config.mean), list(config.std))


# ------------------------------------------------------------------------------- sampled params


def test_params_are_drawn_independently_per_sample():
    params = sample_view_params(64, SIMCLR, _gen())
    boxes = torch.stack([params.top, params.left, params.height, params.width], dim=1)
    assert len({tuple(b.tolist()) for b in boxes}) > 50
    assert 0 < params.flip.sum() < 64 and 0 < params.jitter.sum() < 64 and 0 < params.grayscale.sum() < 64
    for factor in (params.brightness, params.contrast, params.saturation, params.hue):
        assert len(set(factor.tolist())) == 64
    assert len({tuple(o) for o in params.order.tolist()}) > 10


def test_crop_boxes_follow_random_resized_crop():
    height, width = 32, 40
    params = sample_view_params(2000, SIMCLR, _gen(), height=height, width=width)
    top, left, h, w = params.top, params.left, params.height, params.width
    for value in (top, left, h, w):
        assert torch.equal(value, value.round()), "torchvision crops whole pixels"
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    # Sides are sqrt(area * ratio) rounded, so area and ratio hold up to the rounding of one pixel.
    area = h * w / (height * width)
    assert area.min() >= 0.2 * (1 - 2 / math.sqrt(0.2 * height * width)) and area.max() <= 1.0
    ratio = w / h
    assert ratio.min() > 3 / 4 * 0.85 and ratio.max() < 4 / 3 / 0.85
    # The corner is uniform among whole positions: a box narrower than the image sits anywhere.
    narrow = w <= width / 2
    assert left[narrow].max() >= width / 2 and left[narrow].min() == 0


def test_crop_falls_back_to_the_centre_crop_when_no_candidate_fits():
    # Aspect 4..5 at 90-100% of a square's area never fits: w = sqrt(area * ratio) > side.
    config = ViewConfig(crop_scale=(0.9, 1.0), crop_ratio=(4.0, 5.0))
    params = sample_view_params(16, config, _gen(), height=32, width=32)
    # torchvision's fallback for in_ratio = 1 < 4: w = 32, h = round(32 / 4) = 8, centred.
    assert (params.width == 32).all() and (params.height == 8).all()
    assert (params.left == 0).all() and (params.top == 12).all()


def test_probabilities_and_factor_ranges_follow_the_config():
    params = sample_view_params(4000, SIMCLR, _gen())
    for flag, p in ((params.flip, 0.5), (params.jitter, 0.8), (params.grayscale, 0.2), (params.blur, 0.0)):
        assert abs(flag.float().mean().item() - p) < 0.03
    for factor in (params.brightness, params.contrast, params.saturation):
        assert factor.min() >= 0.6 and factor.max() <= 1.4 and factor.min() < 0.62 and factor.max() > 1.38
    assert params.hue.min() >= -0.1 and params.hue.max() <= 0.1
    assert (params.order.sort(dim=1).values == torch.arange(4)).all(), "each order is a permutation"
    assert len({tuple(o) for o in params.order.tolist()}) == 24
    assert params.sigma.min() >= 0.1 and params.sigma.max() <= 2.0


def test_sample_view_params_validates_sizes():
    with pytest.raises(ValueError, match="batch_size"):
        sample_view_params(0, SIMCLR)
    with pytest.raises(ValueError, match="height"):
        sample_view_params(4, SIMCLR, height=-1)
    with pytest.raises(TypeError, match="ViewConfig"):
        sample_view_params(4, {"image_size": 32})


# ------------------------------------------------------------------------------- batched output


def test_copies_of_one_image_get_different_views():
    image = _images(1)
    x = image.expand(8, -1, -1, -1)
    # Colour always on, so that no two samples can both escape it (with p = 0.8 some pairs would).
    colour = dataclasses.replace(COLOUR_ONLY, jitter_p=1.0, grayscale_p=0.0)
    for config in (SIMCLR, CROP_ONLY, colour):
        out = augment_batch(x, config, _gen())
        for a, b in itertools.combinations(range(8), 2):
            assert not torch.allclose(out[a], out[b], atol=1e-3), (config, a, b)


def test_same_seed_same_views_other_seed_other_views():
    x = _images(8)
    first = augment_batch(x, SIMCLR, _gen(1))
    assert torch.equal(first, augment_batch(x, SIMCLR, _gen(1)))
    assert not torch.allclose(first, augment_batch(x, SIMCLR, _gen(2)))


def test_global_rng_is_used_without_a_generator():
    x = _images(4)
    torch.manual_seed(5)
    first = augment_batch(x, SIMCLR)
    torch.manual_seed(5)
    assert torch.equal(first, augment_batch(x, SIMCLR))


def test_identity_config_returns_the_input_scaled():
    x = _images(4, 32, 32)
    out = augment_batch(x, IDENTITY, _gen())
    assert out.dtype == torch.float32 and out.shape == x.shape
    torch.testing.assert_close(out, x.double().div(255).float(), atol=1e-5, rtol=0)
    xf = _float_images(4, seed=3)
    torch.testing.assert_close(augment_batch(xf, IDENTITY, _gen()), xf, atol=1e-5, rtol=0)


def test_flip_only_mirrors_every_image():
    x = _images(4)
    out = augment_batch(x, dataclasses.replace(IDENTITY, flip_p=1.0), _gen())
    torch.testing.assert_close(out, x.flip(-1).float() / 255, atol=1e-5, rtol=0)


def test_normalisation_uses_mean_and_std_per_channel():
    x = _images(3)
    config = dataclasses.replace(IDENTITY, mean=(0.1, 0.5, 0.9), std=(0.2, 0.3, 0.4))
    out = augment_batch(x, config, _gen())
    expected = (x.double() / 255 - torch.tensor([0.1, 0.5, 0.9]).view(1, 3, 1, 1).double()) / torch.tensor(
        [0.2, 0.3, 0.4]
    ).view(1, 3, 1, 1).double()
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "height, width, size",
    [(32, 32, 32), (20, 24, 16), (48, 40, 16)],  # enlarge, mixed, shrink (antialiased)
)
def test_crop_and_flip_match_torchvision_resized_crop(height, width, size):
    x = _float_images(6, height, width, seed=1)
    config = dataclasses.replace(IDENTITY, image_size=size)
    sampled = sample_view_params(6, SIMCLR, _gen(4), height=height, width=width)
    params = dataclasses.replace(
        ViewParams.identity(6, height, width),
        top=sampled.top,
        left=sampled.left,
        height=sampled.height,
        width=sampled.width,
        flip=torch.tensor([False, True] * 3),
    )
    out = apply_view_params(x, params, config)
    assert out.shape == (6, 3, size, size)
    for i in range(6):
        torch.testing.assert_close(out[i], _oracle_view(x, params, i, config), atol=1e-5, rtol=0)


def test_crop_of_a_known_box_on_a_smooth_image():
    # A linear ramp is reproduced exactly by bilinear interpolation away from the edges: the closed form
    # of resizing the box [left, left + w) is the ramp sampled at the output pixel centres.
    height = width = 32
    ramp = torch.arange(width, dtype=torch.float32) / (width - 1)
    x = ramp.expand(1, 3, height, width).contiguous()
    top, left, h, w = 4.0, 8.0, 16.0, 16.0
    params = dataclasses.replace(
        ViewParams.identity(1, height, width),
        top=torch.tensor([top]),
        left=torch.tensor([left]),
        height=torch.tensor([h]),
        width=torch.tensor([w]),
    )
    out = apply_view_params(x, params, IDENTITY)[0, 0]  # (32, 32)
    centres = left + (torch.arange(32) + 0.5) * w / 32 - 0.5  # input pixel coordinate of each output column
    expected = (centres / (width - 1)).expand(32, 32)
    interior = slice(1, -1)  # the outermost columns repeat the box's edge pixel
    torch.testing.assert_close(out[:, interior], expected[:, interior], atol=1e-6, rtol=0)
    assert torch.all(out[:, 0] == x[0, 0, 0, 8])


@pytest.mark.parametrize("op", [0, 1, 2, 3])
def test_each_colour_op_matches_torchvision_per_sample(op):
    x = _float_images(5, 16, 16, seed=op)
    x[0, :, :4] = 0.5  # gray pixels: hue undefined, chroma 0
    x[1, 0] = x[1, 1]  # ties between channels
    factor = torch.tensor([0.0, 0.5, 1.0, 1.3, 1.7]) if op < 3 else torch.tensor([-0.5, -0.2, 0.0, 0.1, 0.5])
    identity = ViewParams.identity(5, 16, 16)
    factors = {"brightness": identity.brightness, "contrast": identity.contrast, "saturation": identity.saturation}
    name = ("brightness", "contrast", "saturation", "hue")[op]
    params = dataclasses.replace(
        identity,
        jitter=torch.ones(5, dtype=torch.bool),
        order=torch.tensor([op] + [o for o in range(4) if o != op]).expand(5, 4),
        **{**factors, "hue": identity.hue, name: factor},
    )
    config = dataclasses.replace(COLOUR_ONLY, image_size=16, **UNIT)
    out = apply_view_params(x, params, config)
    for i in range(5):
        expected = _COLOUR_FNS[op](x[i], float(factor[i]))
        torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=0)


def test_colour_jitter_runs_each_samples_own_order():
    x = _float_images(24, 16, 16, seed=7)
    sampled = sample_view_params(24, dataclasses.replace(SIMCLR, jitter_strength=1.5), _gen(7))
    params = dataclasses.replace(
        ViewParams.identity(24, 16, 16),
        jitter=torch.arange(24) % 6 != 0,  # a few samples keep their colours
        brightness=sampled.brightness,
        contrast=sampled.contrast,
        saturation=sampled.saturation,
        hue=sampled.hue,
        order=sampled.order,
    )
    config = dataclasses.replace(COLOUR_ONLY, image_size=16, **UNIT)
    out = apply_view_params(x, params, config)
    for i in range(24):
        torch.testing.assert_close(out[i], _oracle_view(x, params, i, config), atol=1e-5, rtol=0)
    # The order matters: the same factors in a fixed order give a different result somewhere.
    fixed = apply_view_params(x, dataclasses.replace(params, order=torch.arange(4).expand(24, 4)), config)
    assert not torch.allclose(out, fixed, atol=1e-4)


def test_grayscale_matches_torchvision_and_spares_the_others():
    x = _float_images(4, 16, 16, seed=2)
    flags = torch.tensor([True, False, True, False])
    params = dataclasses.replace(ViewParams.identity(4, 16, 16), grayscale=flags)
    config = dataclasses.replace(IDENTITY, image_size=16, grayscale_p=0.5)
    out = apply_view_params(x, params, config)
    for i in range(4):
        expected = TF.rgb_to_grayscale(x[i], num_output_channels=3) if flags[i] else x[i]
        torch.testing.assert_close(out[i], expected, atol=1e-6, rtol=0)


def test_blur_matches_torchvision_gaussian_blur_per_sample():
    x = _float_images(4, 32, 32, seed=3)
    params = dataclasses.replace(
        ViewParams.identity(4, 32, 32),
        blur=torch.tensor([True, True, False, True]),
        sigma=torch.tensor([0.3, 1.0, 1.5, 2.0]),
    )
    for size in (32, 96):  # kernel 3 and 9
        xs = torch.nn.functional.interpolate(x, size=(size, size)) if size != 32 else x
        p = dataclasses.replace(params, height=torch.full((4,), float(size)), width=torch.full((4,), float(size)))
        config = dataclasses.replace(IDENTITY, image_size=size, blur_p=0.5)
        out = apply_view_params(xs, p, config)
        for i in range(4):
            torch.testing.assert_close(out[i], _oracle_view(xs, p, i, config), atol=1e-5, rtol=0)


@pytest.mark.parametrize("blur_p", [0.0, 0.5])
def test_whole_pipeline_matches_torchvision_ops_with_the_same_params(blur_p):
    config = dataclasses.replace(SIMCLR, blur_p=blur_p, jitter_strength=1.0, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    x = _float_images(16, 32, 32, seed=11)
    params = sample_view_params(16, config, _gen(11))
    out = apply_view_params(x, params, config)
    for i in range(16):
        torch.testing.assert_close(out[i], _oracle_view(x, params, i, config), atol=1e-4, rtol=0)


def test_make_views_gives_independent_views():
    x = _images(4)
    views = make_views(x, SIMCLR, n_views=3, generator=_gen())
    assert len(views) == 3 and all(v.shape == (4, 3, 32, 32) and v.dtype == torch.float32 for v in views)
    for a, b in itertools.combinations(views, 2):
        assert not torch.allclose(a, b, atol=1e-3)
    with pytest.raises(ValueError, match="n_views"):
        make_views(x, SIMCLR, n_views=0)


def test_resizes_to_image_size_and_accepts_other_float_dtypes():
    config = dataclasses.replace(SIMCLR, image_size=24)
    with torch.no_grad():
        for x in (_images(2, 40, 48), _float_images(2, 40, 48).double(), _float_images(2, 40, 48).half()):
            out = augment_batch(x, config, _gen())
            assert out.shape == (2, 3, 24, 24) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_does_not_modify_the_input():
    x = _float_images(4)
    before = x.clone()
    augment_batch(x, IDENTITY, _gen())
    augment_batch(x, SIMCLR, _gen())
    assert torch.equal(x, before)


@pytest.mark.parametrize(
    "x, error, match",
    [
        ([[1, 2], [3, 4]], TypeError, "torch.Tensor"),
        (torch.zeros(3, 32, 32, dtype=torch.uint8), ValueError, r"\(3, 32, 32\).*unsqueeze"),
        (torch.zeros(2, 1, 32, 32, dtype=torch.uint8), ValueError, "1 channels"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.int32), TypeError, "int32"),
    ],
)
def test_augment_batch_validates_its_input(x, error, match):
    with pytest.raises(error, match=match):
        augment_batch(x, SIMCLR)


@pytest.mark.parametrize("shape", [(8, 32, 32, 3), (8, 32, 32, 1), (2, 16, 24, 3)])
def test_hostile_channels_last_batch_is_named_with_the_permute_that_fixes_it(shape):
    x = torch.zeros(shape, dtype=torch.uint8)
    hint = r"NHWC \(channels last\).*x\.permute\(0, 3, 1, 2\)"
    for make in (lambda: augment_batch(x, SIMCLR), lambda: make_views(x, SIMCLR),
                 lambda: ViewAugmenter(SIMCLR, "cpu")(x)):
        with pytest.raises(ValueError, match=hint):
            make()
    augment_batch(x.permute(0, 3, 1, 2).expand(-1, 3, -1, -1), SIMCLR)  # the hint's fix works


def test_hostile_nchw_batch_with_odd_channel_counts_gets_no_nhwc_hint():
    for shape, match in (((2, 1, 32, 32), r"x\.expand\(-1, 3, -1, -1\)"), ((2, 4, 32, 32), r"x\[:, :3\]")):
        with pytest.raises(ValueError, match=match) as caught:
            augment_batch(torch.zeros(shape, dtype=torch.uint8), SIMCLR)
        assert "NHWC" not in str(caught.value)


def test_apply_view_params_rejects_a_batch_size_mismatch():
    with pytest.raises(ValueError, match="batch_size=3"):
        apply_view_params(_images(4), ViewParams.identity(3, 32, 32), SIMCLR)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu_with_a_cpu_generator():
    x = _images(64)
    cpu = augment_batch(x, dataclasses.replace(SIMCLR, blur_p=0.5), _gen(3))
    gpu = augment_batch(x.cuda(), dataclasses.replace(SIMCLR, blur_p=0.5), _gen(3))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-3, rtol=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_augmentation_does_not_sync_with_the_host():
    x = _images(64).cuda()
    config = dataclasses.replace(SIMCLR, blur_p=0.5)
    augment_batch(x, config, _gen())  # warm-up: kernels load, the pinned-memory pool fills
    torch.cuda.set_sync_debug_mode("error")
    try:
        augment_batch(x, config, _gen(1))
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_per_image_and_batched_paths_agree_without_randomness():
    x = _images(2, 32, 32, seed=4)
    config = dataclasses.replace(NO_AUGMENTATION, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    batched = augment_batch(x, config, _gen())
    for i in range(2):
        torch.testing.assert_close(view_transform(config)(x[i]), batched[i], atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------ ViewAugmenter


def _uniforms(n_rows: int, seed: int) -> torch.Tensor:
    """The draw ViewAugmenter makes: one (rows, N_UNIFORMS) uniform tensor from a generator seeded ``seed``."""
    return torch.rand(n_rows, N_UNIFORMS, generator=_gen(seed))


def test_view_augmenter_rows_are_torchvision_views_of_their_source_image():
    config = dataclasses.replace(SIMCLR, jitter_strength=1.0, blur_p=0.5, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    x = _images(5, seed=3)
    out = ViewAugmenter(config, "cpu", n_views=3, seed=11)(x)  # (15, 3, 32, 32)
    assert out.shape == (15, 3, 32, 32)
    params = view_params_from_uniforms(_uniforms(15, 11), config, height=32, width=32)
    source = x.repeat(3, 1, 1, 1).float() / 255  # row k * 5 + i is view k + 1 of image i
    for row in range(15):
        torch.testing.assert_close(out[row], _oracle_view(source, params, row, config), atol=1e-4, rtol=0)


def test_view_augmenter_without_augmentation_returns_the_images_in_every_view():
    x = _images(6)
    out = ViewAugmenter(IDENTITY, "cpu")(x)
    torch.testing.assert_close(out, (x / 255).repeat(2, 1, 1, 1), atol=1e-5, rtol=0)


def test_view_augmenter_is_reproducible_per_seed_and_its_views_differ():
    x = _images(8)
    augment = ViewAugmenter(SIMCLR, "cpu", seed=5)
    first = augment(x)
    assert not torch.equal(first[:8], first[8:])  # the two views of a batch draw their own parameters
    assert not torch.equal(augment(x), first)  # the generator moves on
    assert torch.equal(augment.manual_seed(5)(x), first)
    assert augment(x).is_contiguous()
    assert ViewAugmenter(SIMCLR, "cpu", channels_last=True)(x).is_contiguous(memory_format=torch.channels_last)


def test_view_augmenter_refuses_images_on_another_device():
    for dtype in (torch.uint8, torch.float32):  # the device is named before any check reads the pixels
        with pytest.raises(ValueError, match="makes views on cpu"):
            ViewAugmenter(SIMCLR, "cpu")(torch.zeros(2, 3, 32, 32, dtype=dtype, device="meta"))


def test_view_augmenter_falls_back_to_eager_views_when_compiling_fails():
    def broken(*args):
        raise RuntimeError("inductor exploded")

    x = _images(4)
    augment = ViewAugmenter(SIMCLR, "cpu", seed=2, compile=True)
    augment._core = broken  # what a compiler failure looks like at the first call
    with pytest.warns(UserWarning, match="inductor exploded"):
        out = augment(x)
    assert augment.compiled is False
    assert torch.equal(out, ViewAugmenter(SIMCLR, "cpu", seed=2)(x))


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile's CPU backend needs a C++ compiler")
def test_compiled_views_equal_eager_views_in_one_graph():
    # fullgraph=True inside ViewAugmenter: a graph break would raise and fall back with a warning, which the
    # warnings filter turns into a failure here. The CUDA twin is in test_gpu.py.
    config = dataclasses.replace(SIMCLR, blur_p=0.5, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    x = _images(16, seed=1)
    compiled = ViewAugmenter(config, "cpu", seed=4, compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        out = compiled(x)
    assert compiled.compiled is True
    torch.testing.assert_close(out, ViewAugmenter(config, "cpu", seed=4)(x), atol=1e-4, rtol=0)


def test_views_trace_as_one_graph_on_any_device():
    # The capture ViewAugmenter(compile=True) relies on, without code generation (seconds): a graph break
    # raises under fullgraph=True. On the meta device nothing is computed, only traced.
    from crl_helpers.views_batched import _augment

    config = dataclasses.replace(SIMCLR, blur_p=0.5)
    traced = torch.compile(_augment, backend="aot_eager", fullgraph=True, dynamic=False)
    for device in ("cpu", "meta"):
        x = torch.zeros(8, 3, 32, 32, dtype=torch.uint8, device=device)
        out = traced(x, torch.rand(8, N_UNIFORMS).to(device), config, True)
        assert out.shape == (8, 3, 32, 32) and out.device.type == device


def test_view_augmenter_does_not_hide_out_of_memory_behind_the_eager_fallback():
    def out_of_memory(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    augment = ViewAugmenter(SIMCLR, "cpu", compile=True)
    augment._core = out_of_memory
    with pytest.raises(torch.cuda.OutOfMemoryError):
        augment(_images(2))
    assert augment.compiled is True  # still compiled: the next, smaller batch may fit
