"""Tests for crl_helpers.views: the augmentation settings (ViewConfig, presets) and the per-image pipeline.

Oracles: the paper's CIFAR recipe written out, closed forms (normalisation to zero mean and unit std),
and counting. The batched re-implementation is tested in test_views_batched.py.
"""
from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from crl_helpers.views import (
    COLOUR_ONLY,
    CROP_ONLY,
    NO_AUGMENTATION,
    SIMCLR,
    MultiViewTransform,
    ViewConfig,
    blur_kernel_size,
    view_transform,
)


def _images(batch_size=4, height=32, width=32, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, (batch_size, 3, height, width), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------- config


def test_default_config_is_the_papers_cifar_recipe():
    config = ViewConfig()
    assert config.image_size == 32
    assert config.crop_scale == (0.2, 1.0)
    assert config.crop_ratio == pytest.approx((3 / 4, 4 / 3))
    assert (config.flip_p, config.jitter_p, config.grayscale_p, config.blur_p) == (0.5, 0.8, 0.2, 0.0)
    # s = 0.5: brightness = contrast = saturation = 0.8 s, hue = 0.2 s.
    assert (config.brightness, config.contrast, config.saturation) == pytest.approx((0.4, 0.4, 0.4))
    assert config.hue == pytest.approx(0.1)


def test_presets_turn_off_the_right_stages():
    assert SIMCLR == ViewConfig()
    assert CROP_ONLY.jitter_p == CROP_ONLY.grayscale_p == 0 and CROP_ONLY.crop_scale == SIMCLR.crop_scale
    assert COLOUR_ONLY.crop_scale == (1.0, 1.0) and COLOUR_ONLY.flip_p == 0
    assert COLOUR_ONLY.jitter_p == SIMCLR.jitter_p and COLOUR_ONLY.grayscale_p == SIMCLR.grayscale_p
    assert NO_AUGMENTATION.jitter_p == NO_AUGMENTATION.grayscale_p == NO_AUGMENTATION.flip_p == 0


def test_config_turns_lists_into_tuples_and_stays_hashable():
    config = ViewConfig(crop_scale=[0.5, 1], mean=[0.1, 0.2, 0.3])
    assert config.crop_scale == (0.5, 1.0) and config.mean == (0.1, 0.2, 0.3)
    hash(config)


@pytest.mark.parametrize(
    "field, value",
    [
        ("image_size", 0),
        ("image_size", 32.0),
        ("crop_scale", (0.0, 1.0)),
        ("crop_scale", (0.8, 0.2)),
        ("crop_scale", (0.5, 1.5)),
        ("crop_ratio", (4 / 3, 3 / 4)),
        ("crop_ratio", (0.0, 1.0)),
        ("flip_p", -0.1),
        ("jitter_p", 1.1),
        ("grayscale_p", 2.0),
        ("blur_p", -1.0),
        ("jitter_strength", -0.5),
        ("jitter_strength", 3.0),
        ("blur_sigma", (0.0, 2.0)),
        ("blur_sigma", (2.0, 0.1)),
        ("std", (0.25, 0.0, 0.25)),
        ("mean", (0.5, 0.5)),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ViewConfig(**{field: value})


def test_config_rejects_non_pairs():
    with pytest.raises(TypeError, match="crop_scale"):
        ViewConfig(crop_scale=0.5)


def test_blur_kernel_size_is_odd_and_ten_percent():
    for size in (8, 32, 64, 96, 224):
        k = blur_kernel_size(size)
        assert k % 2 == 1 and (k == 3 or abs(k - 0.1 * size) <= 1)
    assert blur_kernel_size(8) == 3 and blur_kernel_size(224) == 23


# ------------------------------------------------------------------------------ per-image path


def test_multi_view_transform_from_pil_and_from_uint8():
    array = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    transform = MultiViewTransform(SIMCLR, n_views=3)
    for img in (Image.fromarray(array), torch.from_numpy(array).permute(2, 0, 1).contiguous()):
        views = transform(img)
        assert len(views) == 3
        for view in views:
            assert type(view) is torch.Tensor and view.shape == (3, 32, 32) and view.dtype == torch.float32
        assert not torch.allclose(views[0], views[1])


def test_per_image_path_normalises_with_the_given_statistics():
    x = _images(1, 32, 32, seed=9)[0]
    mean = (x.double() / 255).mean(dim=(1, 2))
    std = (x.double() / 255).std(dim=(1, 2))
    config = dataclasses.replace(NO_AUGMENTATION, mean=tuple(mean.tolist()), std=tuple(std.tolist()))
    out = view_transform(config)(x)
    torch.testing.assert_close(out.mean(dim=(1, 2)).double(), torch.zeros(3, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(dim=(1, 2)).double(), torch.ones(3, dtype=torch.float64), atol=1e-4, rtol=0)
    # With augmentation on, the statistics stay in the normalised range on average.
    views = torch.stack(MultiViewTransform(dataclasses.replace(SIMCLR, mean=config.mean, std=config.std), 16)(x))
    assert views.mean().abs() < 0.5 and 0.4 < views.std() < 1.5

def test_view_transform_includes_blur_only_when_asked():
    names = lambda config: [type(t).__name__ for t in view_transform(config).transforms]  # noqa: E731
    assert "RandomApply" in names(SIMCLR) and names(SIMCLR).count("RandomApply") == 1
    assert names(dataclasses.replace(SIMCLR, blur_p=0.5)).count("RandomApply") == 2


def test_multi_view_transform_survives_pickling_for_dataloader_workers():
    transform = pickle.loads(pickle.dumps(MultiViewTransform(SIMCLR, n_views=2)))
    assert transform.n_views == 2 and transform.config == SIMCLR
    assert len(transform(torch.zeros(3, 32, 32, dtype=torch.uint8))) == 2


def test_multi_view_transform_validates():
    with pytest.raises(ValueError, match="n_views"):
        MultiViewTransform(SIMCLR, n_views=0)
    with pytest.raises(TypeError, match="ViewConfig"):
        view_transform("simclr")


# ------------------------------------------------------------------------------ hostile inputs


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "CMYK", "1"])
def test_hostile_pil_images_of_any_mode_give_rgb_views(mode):
    # Real folders hold PNGs with alpha, grayscale and palette images: each becomes RGB, not a crash.
    array = np.random.default_rng(0).integers(0, 256, (40, 40, 4), dtype=np.uint8)
    img = Image.fromarray(array, "RGBA").convert(mode)
    config = dataclasses.replace(SIMCLR, blur_p=0.5)
    for view in MultiViewTransform(config, n_views=4)(img) + [view_transform(config)(img)]:
        assert view.shape == (3, 32, 32) and view.dtype == torch.float32 and torch.isfinite(view).all()


def test_hostile_rgba_image_keeps_its_rgb_pixels():
    # Oracle: the alpha channel is dropped, the colour channels pass through (no augmentation, unit stats).
    array = np.random.default_rng(1).integers(0, 256, (32, 32, 4), dtype=np.uint8)
    config = dataclasses.replace(NO_AUGMENTATION, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    out = view_transform(config)(Image.fromarray(array, "RGBA"))
    expected = torch.from_numpy(array[..., :3]).permute(2, 0, 1).float() / 255  # (3, 32, 32)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_hostile_grayscale_uint8_tensor_gives_rgb_views():
    x = _images(1, seed=2)[0, :1]  # (1, 32, 32)
    config = dataclasses.replace(NO_AUGMENTATION, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    out = view_transform(config)(x)
    torch.testing.assert_close(out, (x.float() / 255).expand(3, -1, -1), atol=1e-6, rtol=0)
