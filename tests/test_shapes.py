import math

import pytest
import torch

from crl_helpers.shapes import SHAPE_NAMES, _inside, make_shapes, render_masks


def test_deterministic_from_seed_and_seeds_differ():
    a, b, c = make_shapes(30, seed=3), make_shapes(30, seed=3), make_shapes(30, seed=4)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)


def test_classes_balanced_and_shapes():
    data = make_shapes(100, seed=0, image_size=24)
    assert data.x.shape == (100, 3, 24, 24) and data.x.dtype == torch.uint8
    assert torch.bincount(data.y, minlength=10).tolist() == [10] * 10
    assert data.class_names == SHAPE_NAMES
    for name, f in data.factors.items():
        assert f.shape == (100,), name


def test_nuisances_vary_within_a_class():
    data = make_shapes(200, seed=0)
    disks = data.subset(data.y == 0)
    assert disks.factors["object_hue"].std() > 0.2  # colours spread over the hue circle
    spread = disks.factors["rotation"].max() - disks.factors["rotation"].min()
    assert math.radians(40) < spread <= math.radians(60)  # default: uniform in [-30, 30] degrees
    turned = make_shapes(200, seed=0, max_rotation=180).factors["rotation"]
    assert turned.max() - turned.min() > math.pi


def test_object_centre_has_object_colour_and_corner_background():
    # Oracle from the definition: the pixel at the object's centre is inside a disk, so it is
    # brighter (or darker) than the background by the margin the generator guarantees.
    data = make_shapes(200, seed=1, noise=0.0)
    disks = (data.y == 0).nonzero().squeeze(1)
    size = data.image_size
    for i in disks[:10].tolist():
        cx = int((data.factors["x_position"][i] + 1) / 2 * size)
        cy = int((data.factors["y_position"][i] + 1) / 2 * size)
        centre = data.x[i, :, cy, cx].float().mean()
        corner = data.x[i, :, 0, 0].float().mean()
        assert abs(centre - corner) > 0.1 * 255


@pytest.mark.parametrize("shape", range(len(SHAPE_NAMES)))
def test_each_shape_is_a_distinct_mask(shape):
    coords = torch.linspace(-1, 1, 64)
    w, u = torch.meshgrid(coords, coords, indexing="ij")
    mask = _inside(shape, u[None], w[None])[0]
    area = mask.float().mean()
    assert 0.05 < area < 0.8  # neither empty nor the whole frame
    for other in range(len(SHAPE_NAMES)):
        if other != shape:
            assert (mask != _inside(other, u[None], w[None])[0]).float().mean() > 0.03


def test_bad_arguments():
    with pytest.raises(ValueError, match="n=0"):
        make_shapes(0)
    with pytest.raises(ValueError, match="image_size"):
        make_shapes(4, image_size=4)
    with pytest.raises(ValueError, match="noise"):
        make_shapes(4, noise=2.0)
    with pytest.raises(ValueError, match="max_rotation"):
        make_shapes(4, max_rotation=360)
    with pytest.raises(ValueError, match="scale_range"):
        make_shapes(4, scale_range=(0.9, 0.5))


def test_shapes_and_image_data_do_not_import_data():
    # crl_helpers.data imports make_shapes; the other way round would be an import cycle.
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "crl_helpers"
    for module in ("shapes.py", "image_data.py"):
        tree = ast.parse((package / module).read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert "crl_helpers.data" not in imported and "crl_helpers" not in imported, module


# ----------------------------------------------------------------------- hue_bins
from fractions import Fraction  # noqa: E402  (this section's imports, kept with it)

from crl_helpers.shapes import hue_bins  # noqa: E402


def _hue_bin_exact(hue: float, n_bins: int) -> int:
    """floor(hue * n_bins) in exact rational arithmetic, on a circular wheel (hue 1 is hue 0)."""
    return math.floor(Fraction(hue) * n_bins) % n_bins


@pytest.mark.parametrize("n_bins", [1, 3, 6, 10, 37])
def test_hue_bins_against_exact_arithmetic(n_bins):
    edges = [k / n_bins for k in range(n_bins + 1)]
    just_below = [math.nextafter(e, 0.0) for e in edges[1:]]
    random = torch.rand(500, generator=torch.Generator().manual_seed(n_bins)).tolist()
    hue = torch.tensor(edges + just_below + random, dtype=torch.float32)  # (M,) edges, their neighbours, the rest
    bins = hue_bins(hue, n_bins)
    assert bins.dtype == torch.int64 and bins.shape == hue.shape
    assert bins.tolist() == [_hue_bin_exact(h, n_bins) for h in hue.tolist()]


def test_hue_bins_of_the_dataset_are_balanced_and_wrap_around():
    hue = make_shapes(2000, seed=0).factors["object_hue"]  # uniform on [0, 1)
    counts = torch.bincount(hue_bins(hue, 10), minlength=10)
    assert counts.sum() == 2000 and counts.min() > 150  # about 200 per bin
    assert hue_bins(torch.tensor([1.0, 0.0]), 4).tolist() == [0, 0]


@pytest.mark.parametrize("hue, n_bins, error, match", [
    (torch.tensor([0.2, 1.5]), 10, ValueError, r"outside \[0, 1\], e.g. 1.5"),
    (torch.tensor([float("nan")]), 10, ValueError, "outside"),
    (torch.tensor([-0.1]), 10, ValueError, "outside"),
    (torch.tensor([1, 2]), 10, TypeError, "float hues"),
    (torch.tensor([0.5]), 0, ValueError, "n_bins=0"),
    (torch.tensor([0.5]), 2.0, TypeError, "n_bins=2.0"),
])
def test_hue_bins_rejects_what_is_not_a_hue(hue, n_bins, error, match):
    with pytest.raises(error, match=match):
        hue_bins(hue, n_bins)


def test_render_masks_draws_a_disk_of_the_area_its_radius_gives():
    # Oracle: a disk (shape 0, radius 0.95 in the object's own units) of scale s covers pi (0.95 s)^2 of the
    # [-1, 1]^2 square, i.e. pi (0.95 s)^2 / 4 of the pixels; rotation cannot change a disk.
    assert SHAPE_NAMES[0] == "disk"
    scale = torch.tensor([0.5, 0.8, 0.8])
    factors = {"x_position": torch.tensor([0.0, 0.1, 0.1]), "y_position": torch.tensor([0.0, -0.1, -0.1]),
               "scale": scale, "rotation": torch.tensor([0.0, 0.0, 1.0])}
    masks = render_masks(torch.zeros(3, dtype=torch.long), factors, image_size=64)  # (3, 64, 64)
    assert masks.shape == (3, 64, 64) and masks.min() >= 0 and masks.max() <= 1
    expected = math.pi * (0.95 * scale) ** 2 / 4  # (3,) area fractions
    torch.testing.assert_close(masks.mean(dim=(1, 2)), expected, atol=2e-3, rtol=0)
    torch.testing.assert_close(masks[1], masks[2], atol=1e-6, rtol=0)  # the turned disk is the same disk
    assert masks[0, 32, 32] == 1 and masks[0, 0, 0] == 0  # the centre inside, a corner outside
    with pytest.raises(ValueError, match="lack \\['rotation'\\]"):
        render_masks(torch.zeros(1, dtype=torch.long), {k: v[:1] for k, v in factors.items() if k != "rotation"})


def test_make_shapes_paints_its_objects_with_render_masks():
    # Without noise and texture, a pixel is mask * object colour + (1 - mask) * background colour, rounded:
    # the fully covered pixels of render_masks hold the object's colour, the uncovered ones the background's.
    data = make_shapes(12, seed=4, noise=0.0, texture=0.0)
    masks = render_masks(data.y, data.factors, image_size=32)  # (12, 32, 32)
    for x, mask in zip(data.x, masks):
        inside, outside = x[:, mask == 1], x[:, mask == 0]  # (3, P) each
        assert inside.shape[1] > 0 and outside.shape[1] > 0
        assert (inside == inside[:, :1]).all() and (outside == outside[:, :1]).all()  # one colour each
