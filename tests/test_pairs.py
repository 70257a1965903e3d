"""Tests for crl_helpers.pairs against independent oracles: Python loops over pairs, closed forms, known colours."""
from __future__ import annotations

import dataclasses
import itertools
from collections import Counter

import pytest
import torch

from crl_helpers.pairs import (
    augmentation_positives,
    channel_positives,
    colour_histogram,
    crop_object_fraction,
    expected_same_class_fraction,
    false_negative_mask,
    histogram_shortcut,
    lab_to_rgb,
    label_positives,
    negative_mask,
    object_masks,
    rgb_to_lab,
    same_class_fraction,
)
from crl_helpers.shapes import make_shapes
from crl_helpers.views import NO_AUGMENTATION, SIMCLR


# ------------------------------------------------------------------------------------ samplers of p+
def test_augmentation_positives_are_two_different_views_of_each_image():
    x = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x1, x2 = augmentation_positives(x, dataclasses.replace(SIMCLR, image_size=16), torch.Generator().manual_seed(1))
    assert x1.shape == x2.shape == (5, 3, 16, 16)
    assert not torch.equal(x1, x2)
    same1, same2 = augmentation_positives(x, dataclasses.replace(NO_AUGMENTATION, image_size=16))
    torch.testing.assert_close(same1, same2)  # no augmentation: the pair is the image twice


def test_label_positives_share_the_label_and_differ_from_the_anchor():
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3])
    for seed in range(20):
        key = label_positives(labels, torch.Generator().manual_seed(seed))
        for i, j in enumerate(key.tolist()):
            assert labels[j] == labels[i]
            alone = (labels == labels[i]).sum() == 1
            assert (j == i) == bool(alone)


def test_label_positives_draw_every_same_class_candidate():
    labels = torch.tensor([0, 0, 0, 0])
    seen = Counter(label_positives(labels, torch.Generator().manual_seed(s))[0].item() for s in range(300))
    assert set(seen) == {1, 2, 3} and min(seen.values()) > 60  # uniform over the 3 others


@pytest.mark.parametrize("rgb, lab", [
    ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ((1.0, 0.0, 0.0), (53.24, 80.09, 67.20)),  # published sRGB -> Lab (D65) values
    ((0.0, 1.0, 0.0), (87.73, -86.18, 83.18)),
    ((0.0, 0.0, 1.0), (32.30, 79.19, -107.86)),
    ((0.5, 0.5, 0.5), (53.39, 0.0, 0.0)),
])
def test_rgb_to_lab_known_colours(rgb, lab):
    out = rgb_to_lab(torch.tensor(rgb).view(1, 3, 1, 1)).flatten()
    torch.testing.assert_close(out, torch.tensor(lab), atol=0.02, rtol=0)


def test_lab_round_trip_and_channel_split():
    x = torch.rand(3, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(lab_to_rgb(rgb_to_lab(x)), x, atol=1e-4, rtol=0)
    lum, ab = channel_positives(x)
    assert lum.shape == (3, 1, 5, 5) and ab.shape == (3, 2, 5, 5)
    torch.testing.assert_close(torch.cat([lum, ab], dim=1), rgb_to_lab(x))
    gray = x[:, :1].expand(3, 3, 5, 5)  # a gray image has no colour: ab = 0
    assert channel_positives(gray)[1].abs().max() < 1e-3
    with pytest.raises(ValueError, match="RGB images"):
        channel_positives(torch.rand(2, 1, 4, 4))


# ------------------------------------------------------------------------------------ p- and false negatives
def _false_fraction_loop(labels, image_ids):
    """Per anchor: (negatives with its label) / (negatives), averaged; plain Python."""
    labels, image_ids = labels.tolist(), image_ids.tolist()
    fractions = []
    for a in range(len(labels)):
        negatives = [b for b in range(len(labels)) if image_ids[b] != image_ids[a]]
        fractions.append(sum(labels[b] == labels[a] for b in negatives) / len(negatives))
    return sum(fractions) / len(fractions)


def test_negative_and_false_negative_masks_match_loops():
    labels = torch.tensor([0, 1, 0, 2, 1])
    n = len(labels)
    ids = torch.arange(2 * n) % n
    neg = negative_mask(ids)
    false_neg = false_negative_mask(labels.repeat(2), ids)
    for a, b in itertools.product(range(2 * n), repeat=2):
        assert bool(neg[a, b]) == (a % n != b % n)
        assert bool(false_neg[a, b]) == (a % n != b % n and labels[a % n] == labels[b % n])
    assert neg.sum(dim=1).tolist() == [2 * n - 2] * (2 * n)  # SimCLR: 2N - 2 negatives per view


@pytest.mark.parametrize("seed", range(5))
def test_same_class_fraction_matches_loop_for_images_and_views(seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (int(torch.randint(2, 12, (1,), generator=g)),), generator=g)
    n = len(labels)
    one_per_image = same_class_fraction(labels)
    assert one_per_image == pytest.approx(_false_fraction_loop(labels, torch.arange(n)), abs=1e-12)
    # SimCLR's 2N views: every other image contributes two views, the fraction does not change
    ids = torch.arange(2 * n) % n
    assert same_class_fraction(labels.repeat(2), ids) == pytest.approx(one_per_image, abs=1e-12)
    # closed form: mean over anchors of (n_c - 1) / (N - 1)
    counts = Counter(labels.tolist())
    assert one_per_image == pytest.approx(sum((counts[y] - 1) / (n - 1) for y in labels.tolist()) / n, abs=1e-12)


def test_same_class_fraction_limits_and_errors():
    assert same_class_fraction(torch.zeros(5, dtype=torch.long)) == 1.0
    assert same_class_fraction(torch.arange(5)) == 0.0
    with pytest.raises(ValueError, match="at least two images"):
        same_class_fraction(torch.tensor([3]))
    with pytest.raises(ValueError, match="one integer label per image"):
        same_class_fraction(torch.rand(4))


def test_expected_fraction_is_the_pair_count_and_the_mean_over_batches():
    labels = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    n = len(labels)
    pairs = sum(labels[i] == labels[j] for i in range(n) for j in range(n) if i != j)
    assert expected_same_class_fraction(labels) == pytest.approx(float(pairs) / (n * (n - 1)), abs=1e-12)
    # the mean of same_class_fraction over every batch of size 4 (all subsets) is exactly the expectation
    batches = [same_class_fraction(labels[list(s)]) for s in itertools.combinations(range(n), 4)]
    assert sum(batches) / len(batches) == pytest.approx(expected_same_class_fraction(labels), abs=1e-12)
    assert expected_same_class_fraction(torch.arange(1000) % 10) == pytest.approx(99 / 999)


# ------------------------------------------------------------------------------------ meters
def test_object_masks_reproduce_the_rendered_images():
    # Without noise and stripes every pixel is mask * object colour + (1 - mask) * background colour.
    data = make_shapes(20, seed=3, noise=0.0, texture=0.0)
    masks = object_masks(data)  # (N, H, W)
    assert masks.shape == (20, 32, 32) and masks.min() == 0 and masks.max() == 1
    x = data.x.float() / 255  # (N, 3, H, W)
    for i in range(20):
        inside, outside = masks[i] == 1, masks[i] == 0
        obj = x[i][:, inside].mean(dim=1)  # (3,)
        bg = x[i][:, outside].mean(dim=1)
        rebuilt = masks[i] * obj[:, None, None] + (1 - masks[i]) * bg[:, None, None]
        torch.testing.assert_close(rebuilt, x[i], atol=1 / 255 + 1e-4, rtol=0)


def test_object_masks_need_the_shapes_factors():
    from crl_helpers.image_data import ImageData

    data = ImageData(x=torch.zeros(2, 3, 8, 8, dtype=torch.uint8), y=torch.zeros(2, dtype=torch.long),
                     class_names=("a",), factors={})
    with pytest.raises(ValueError, match="load_dataset\\('shapes'"):
        object_masks(data)


def test_crop_object_fraction_matches_a_pixel_loop():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 9, 7, generator=g) * (torch.rand(6, 9, 7, generator=g) > 0.4)
    masks[:, 4, 3] = 1.0  # never empty
    top = torch.randint(0, 5, (6,), generator=g).float()
    left = torch.randint(0, 4, (6,), generator=g).float()
    height = torch.randint(1, 5, (6,), generator=g).float()
    width = torch.randint(1, 4, (6,), generator=g).float()
    out = crop_object_fraction(masks, top, left, height, width)
    for b in range(6):
        kept = total = 0.0
        for r in range(9):
            for c in range(7):
                total += float(masks[b, r, c])
                if top[b] <= r < top[b] + height[b] and left[b] <= c < left[b] + width[b]:
                    kept += float(masks[b, r, c])
        assert float(out[b]) == pytest.approx(kept / total, abs=1e-6)


def test_crop_object_fraction_of_ones_is_the_area_fraction():
    out = crop_object_fraction(torch.ones(2, 10, 10), torch.tensor([0.0, 3.0]), torch.tensor([0.0, 2.0]),
                               torch.tensor([10.0, 5.0]), torch.tensor([10.0, 4.0]))
    torch.testing.assert_close(out, torch.tensor([1.0, 0.2]))
    with pytest.raises(ValueError, match="torch.ones"):
        crop_object_fraction(torch.zeros(1, 4, 4), [0.0], [0.0], [2.0], [2.0])
    with pytest.raises(ValueError, match="lengths"):
        crop_object_fraction(torch.ones(2, 4, 4), [0.0], [0.0], [2.0], [2.0])


def test_colour_histogram_matches_a_loop():
    x = torch.rand(3, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    x[0, 0, 0, 0] = 1.0  # the top edge falls in the last bin
    bins = 4
    out = colour_histogram(x, bins)
    for b in range(3):
        expected = [0.0] * (3 * bins)
        for c in range(3):
            for value in x[b, c].flatten().tolist():
                expected[c * bins + min(int(value * bins), bins - 1)] += 1 / 20
        torch.testing.assert_close(out[b], torch.tensor(expected), atol=1e-6, rtol=0)
    torch.testing.assert_close(colour_histogram((x * 255).round().to(torch.uint8), bins).sum(dim=1), torch.full((3,), 3.0))


def test_histogram_shortcut_matches_a_loop():
    g = torch.Generator().manual_seed(1)
    sources = torch.rand(4, 3, 6, 6, generator=g) ** torch.tensor([0.3, 1.0, 3.0, 6.0]).view(4, 1, 1, 1)
    views = (sources[:, None] + 0.2 * torch.randn(4, 3, 3, 6, 6, generator=g)).clamp(0, 1)  # (K, V, 3, S, S)
    out = histogram_shortcut(views, sources, bins=4)
    hs = colour_histogram(sources, 4).tolist()
    for i in range(4):
        for j in range(3):
            hv = colour_histogram(views[i, j][None], 4)[0].tolist()
            distances = [sum(abs(a - b) for a, b in zip(hv, h)) for h in hs]
            assert bool(out[i, j]) == (distances.index(min(distances)) == i)
    with pytest.raises(ValueError, match="views"):
        histogram_shortcut(views[0], sources)


def test_augmentation_explorer_meters_are_the_pure_functions():
    """The explorer only wires the meters: its numbers are crop_object_fraction and histogram_shortcut."""
    pytest.importorskip("ipywidgets")
    from crl_helpers.widgets import augmentation_explorer
    from crl_helpers.widgets.augment import _views_and_params

    data = make_shapes(3, seed=0)
    masks = object_masks(data)
    masks[0] = 1.0  # one image without a known object: its meter is the crop's area
    w = augmentation_explorer(data.x, n_views=2, seed=4, masks=masks)
    w.controls["crop_scale_min"].value = 0.1
    w.controls["perspective"].value = 0.4
    grid, params = _views_and_params(data.x, w.state["config"], 2, 4, 0.4)
    torch.testing.assert_close(w.state["grid"], grid)
    kept = torch.stack([crop_object_fraction(masks, p.top, p.left, p.height, p.width) for p in params], dim=1)
    torch.testing.assert_close(w.state["object_kept"], kept)
    area = torch.stack([p.height[0] * p.width[0] / 32 ** 2 for p in params])  # image 0: the area fraction
    torch.testing.assert_close(w.state["object_kept"][0], area)
    assert torch.equal(w.state["shortcut"], histogram_shortcut(grid, data.x))
    assert w.meters["colour shortcut"].value == pytest.approx(w.state["shortcut"].float().mean().item())
    assert "perspective 0.40" in w.caption.value
