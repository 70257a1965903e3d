"""Tests for crl_helpers.widgets: the explorers and their pure functions (the 2-D map helpers they use are
tested in test_plots.py)."""
from __future__ import annotations

import dataclasses
import math

import anywidget
import numpy as np
import pytest
import torch

from crl_helpers.plots import compare_maps
from crl_helpers.views import NO_AUGMENTATION, SIMCLR
from crl_helpers.temperature import similarities_with
from crl_helpers.widgets import (
    CIRCLE_TEMPERATURES,
    CONTROL_FIELDS,
    K_CHOICES,
    STATIC_CROP_SCALES,
    STATIC_JITTER_STRENGTHS,
    STATIC_SEEDS,
    STATIC_WIDGETS_ENV,
    augmentation_explorer,
    augmentation_grid,
    config_from_controls,
    explorer_module,
    run_comparison_explorer,
    temperature_explorer,
    umap_explorer,
)

ipywidgets = pytest.importorskip("ipywidgets")



def _images(k: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (k, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------ augmentation_grid
def test_grid_shape_range_and_determinism():
    x = _images()
    config = dataclasses.replace(SIMCLR, image_size=16)
    grid = augmentation_grid(x, config, n_views=4, seed=3)
    assert grid.shape == (3, 4, 3, 16, 16) and grid.dtype == torch.float32
    assert grid.min() >= 0 and grid.max() <= 1
    assert torch.equal(grid, augmentation_grid(x, config, n_views=4, seed=3))
    assert not torch.equal(grid, augmentation_grid(x, config, n_views=4, seed=4))
    assert not torch.equal(grid[:, 0], grid[:, 1])  # views of one image differ


def test_grid_without_augmentation_is_the_image_in_unit_range():
    # Whatever mean/std the config carries, the grid is un-normalised: x / 255 exactly.
    x = _images(2, 8)
    config = dataclasses.replace(NO_AUGMENTATION, image_size=8, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.1))
    grid = augmentation_grid(x, config, n_views=2)
    for view in range(2):
        torch.testing.assert_close(grid[:, view], x.float() / 255, atol=1e-5, rtol=0)


def test_grid_all_grayscale_has_equal_channels():
    config = config_from_controls(dataclasses.replace(NO_AUGMENTATION, image_size=16), grayscale_p=1.0)
    grid = augmentation_grid(_images(), config, n_views=2)
    torch.testing.assert_close(grid[:, :, 0], grid[:, :, 1])
    torch.testing.assert_close(grid[:, :, 1], grid[:, :, 2])


def test_grid_flip_always_mirrors():
    x = _images(2, 8)
    config = config_from_controls(dataclasses.replace(NO_AUGMENTATION, image_size=8), flip_p=1.0)
    grid = augmentation_grid(x, config, n_views=1)
    torch.testing.assert_close(grid[:, 0], x.float().flip(-1) / 255, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------- config_from_controls
def test_config_from_controls_maps_each_field():
    config = config_from_controls(SIMCLR, crop_scale_min=0.35, flip_p=0.1, jitter_strength=1.5, jitter_p=0.3,
                                  grayscale_p=0.9, blur_p=0.4, hue_shift=0.45)
    assert config.crop_scale == (0.35, 1.0)
    assert (config.flip_p, config.jitter_strength, config.jitter_p, config.grayscale_p, config.blur_p) == \
        (0.1, 1.5, 0.3, 0.9, 0.4)
    assert config.hue == 0.45 and config_from_controls(SIMCLR, jitter_strength=1.5).hue == pytest.approx(0.3)
    assert config.mean == SIMCLR.mean and config.image_size == SIMCLR.image_size  # untouched fields kept
    assert config_from_controls(SIMCLR) == SIMCLR


def test_config_from_controls_raises_on_unknown_or_invalid():
    with pytest.raises(TypeError, match="unknown control 'hue'"):
        config_from_controls(SIMCLR, hue=0.1)
    with pytest.raises(ValueError, match="flip_p"):
        config_from_controls(SIMCLR, flip_p=1.5)
    with pytest.raises(TypeError, match="ViewConfig"):
        config_from_controls({"flip_p": 0.5})


def test_crop_min_above_base_max_raises_the_max():
    base = dataclasses.replace(SIMCLR, crop_scale=(0.2, 0.5))
    assert config_from_controls(base, crop_scale_min=0.7).crop_scale == (0.7, 0.7)


# ------------------------------------------------------------------------------------------ explorers
def test_augmentation_explorer_controls_redraw():
    w = augmentation_explorer(_images(2), n_views=3, seed=5)
    assert isinstance(w, ipywidgets.VBox) and isinstance(w.output, ipywidgets.Output)
    assert set(CONTROL_FIELDS) | {"resample"} == set(w.controls)
    assert w.state["grid_shape"] == (2, 3, 3, 16, 16) and w.png.startswith(b"\x89PNG")
    before_png, before_grid = w.png, w.state["grid"]
    w.controls["grayscale_p"].value = 1.0  # the observer redraws
    assert w.state["config"].grayscale_p == 1.0
    assert w.controls["hue_shift"].value == pytest.approx(SIMCLR.hue)  # the amplitude in force, 0.2 x strength
    assert w.png != before_png and not torch.equal(w.state["grid"], before_grid)
    g = w.state["grid"]
    torch.testing.assert_close(g[:, :, 0], g[:, :, 2])  # every view grey now
    w.controls["resample"].click()
    assert w.state["seed"] == 6
    assert w.update() is w.figure


def test_augmentation_explorer_rejects_bad_images():
    with pytest.raises(ValueError, match=r"images has shape \(3, 8, 8\); it must be a batch \(N, 3, H, W\)"):
        augmentation_explorer(torch.zeros(3, 8, 8, dtype=torch.uint8))


# ------------------------------------------------------------------ the static (precomputed) augmentation explorer
def _explorer_inputs():
    """Shapes images with their object masks, the first image's mask unknown (its meter is the crop's area)."""
    from crl_helpers.pairs import object_masks
    from crl_helpers.shapes import make_shapes

    data = make_shapes(3, seed=0)
    masks = object_masks(data)
    masks[0] = 1.0
    return data.x, masks


STATIC_CONFIG = dataclasses.replace(SIMCLR, crop_scale=(0.4, 1.0), jitter_strength=0.5, hue_shift=0.5)


def test_static_augmentation_grid_is_the_pure_functions_and_the_live_explorer():
    """Every grid point ships the meters that crop_object_fraction and histogram_shortcut give for its views
    (the oracle), and the live explorer shows the same numbers and caption at the same settings and seed."""
    from crl_helpers.pairs import crop_object_fraction, histogram_shortcut
    from crl_helpers.widgets.augment import _views_and_params

    x, masks = _explorer_inputs()
    w = augmentation_explorer(x, config=STATIC_CONFIG, n_views=3, seed=7, masks=masks, static=True)
    assert isinstance(w, anywidget.AnyWidget)
    crops, jitters = w.controls["crop_scale_min"].options, w.controls["jitter_strength"].options
    assert crops == sorted({*STATIC_CROP_SCALES, 0.4}) and jitters == sorted({*STATIC_JITTER_STRENGTHS, 0.5})
    assert w.controls["resample"].options == [7 + i for i in range(STATIC_SEEDS)]
    assert w.grid_points == len(crops) * len(jitters) * STATIC_SEEDS
    assert (w.controls["crop_scale_min"].value, w.controls["jitter_strength"].value) == (0.4, 0.5)  # the config's
    for c, crop in enumerate(crops):
        for j, jitter in enumerate(jitters):
            for s, seed in enumerate(w.seeds):
                config = dataclasses.replace(STATIC_CONFIG, image_size=32, crop_scale=(crop, 1.0),
                                             jitter_strength=jitter)
                grid, params = _views_and_params(x, config, 3, seed, 0.0)
                kept = torch.stack([crop_object_fraction(masks, p.top, p.left, p.height, p.width) for p in params], 1)
                shortcut = histogram_shortcut(grid, x)
                point = w.points[c][j][s]
                assert point["object_kept"] == pytest.approx(kept.mean().item(), abs=1e-12)
                assert point["shortcut_rate"] == pytest.approx(shortcut.float().mean().item(), abs=1e-12)
                assert point["matched"] == shortcut.tolist()
                assert point["labels"][1][0] == f"obj {kept[1, 0].item():.0%} | hist {'✓' if shortcut[1, 0] else '✗'}"
                assert point["labels"][0][0].startswith(f"area {kept[0, 0].item():.0%}")
                assert point["object_kept_text"].startswith(f"{kept.mean().item():.0%} of the object inside the crop")
                assert point["caption"].startswith(f"crop scale [{crop:.2f}, 1.00]") and f"| seed {seed} |" in point["caption"]
    live = augmentation_explorer(x, config=STATIC_CONFIG, n_views=3, seed=7, masks=masks, static=False)
    for s, (crop, jitter) in enumerate(((0.05, 2.0), (1.0, 0.0), (0.4, 0.5))):  # seeds 7, 8, 9
        for name, value in (("crop_scale_min", crop), ("jitter_strength", jitter)):
            live.controls[name].value = w.controls[name].value = value
        if s:
            live.resample()
            w.resample()
        assert w.state["seed"] == live.state["seed"] == 7 + s
        torch.testing.assert_close(w.state["grid"], live.state["grid"], atol=0, rtol=0)
        torch.testing.assert_close(w.state["object_kept"], live.state["object_kept"], atol=0, rtol=0)
        assert torch.equal(w.state["shortcut"], live.state["shortcut"]) and w.state["config"] == live.state["config"]
        assert w.caption.value == w.text == live.caption.value
        point = w.points[crops.index(crop)][jitters.index(jitter)][s]
        assert (point["object_kept"], point["caption"]) == (live.meters["object kept"].value, live.caption.value)
        assert point["shortcut_rate"] == live.meters["colour shortcut"].value


def test_static_augmentation_explorer_ships_its_views_small():
    import base64
    import io

    from PIL import Image

    x, masks = _explorer_inputs()
    w = augmentation_explorer(x, config=STATIC_CONFIG, n_views=3, seed=0, masks=masks, static=True)
    w.controls["crop_scale_min"].value = 0.2
    header, data = w.points[w.crop_index][w.jitter_index][0]["views"].split(",", 1)
    assert header == "data:image/webp;base64"
    mosaic = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"), dtype=np.float64) / 255
    assert mosaic.shape == (3 * 32, 3 * 32, 3) and w.side == 32  # K rows, V columns of 32 px tiles
    shown = w.state["grid"].permute(0, 3, 1, 4, 2).reshape(96, 96, 3).numpy()  # (K*S, V*S, 3)
    assert np.abs(mosaic - shown).mean() < 0.03  # lossy, but the same views
    payload = len(w.originals) + sum(len(p["views"]) for c in w.points for j in c for p in j)
    assert payload < 250_000, payload  # 3 shapes x 3 views at 32 px, every grid point


def test_static_augmentation_explorer_controls():
    x, masks = _explorer_inputs()
    w = augmentation_explorer(x, config=STATIC_CONFIG, n_views=2, seed=0, masks=masks, static=True)
    assert set(w.controls) == set(CONTROL_FIELDS) | {"resample"}
    before = w.png
    w.controls["jitter_strength"].value = 2.0
    assert w.state["config"].jitter_strength == 2.0 and w.png != before and "colour jitter s=2.00" in w.text
    w.controls["perspective"].value = 0.0  # the value it holds: accepted
    assert w.controls["flip_p"].value == 0.5 and w.controls["flip_p"].disabled
    with pytest.raises(ValueError, match=r"crop_scale_min=0\.3 is not on the static explorer's grid \[0\.05, 0\.08"):
        w.controls["crop_scale_min"].value = 0.3
    with pytest.raises(ValueError, match="the static explorer holds perspective at 0.00"):
        w.controls["perspective"].value = 0.4
    seeds = []
    for _ in range(STATIC_SEEDS + 1):
        seeds.append(w.state["seed"])
        w.controls["resample"].click()
    assert seeds == [*range(STATIC_SEEDS), 0]  # re-sample steps through the seeds drawn ahead, then starts again


def test_augmentation_explorer_version_follows_the_environment(monkeypatch):
    from crl_site.build import _kernel_env

    x = _images(2)
    monkeypatch.delenv(STATIC_WIDGETS_ENV, raising=False)
    assert isinstance(augmentation_explorer(x, n_views=2), ipywidgets.VBox)  # JupyterLab: the live explorer
    monkeypatch.setenv(STATIC_WIDGETS_ENV, "0")
    assert isinstance(augmentation_explorer(x, n_views=2), ipywidgets.VBox)
    monkeypatch.setenv(STATIC_WIDGETS_ENV, "1")
    assert isinstance(augmentation_explorer(x, n_views=2), anywidget.AnyWidget)
    assert isinstance(augmentation_explorer(x, n_views=2, static=False), ipywidgets.VBox)  # the argument wins
    monkeypatch.delenv(STATIC_WIDGETS_ENV)
    assert _kernel_env("smoke", __import__("pathlib").Path("cache"))[STATIC_WIDGETS_ENV] == "1"  # crl site's kernels


def test_temperature_explorer_state_matches_oracle_and_slider_redraws():
    s = [0.7, 0.5, 0.1, -0.2]
    w = temperature_explorer(torch.tensor(s), temperature=0.5, train_steps=4, n_points=8)
    slider = w.controls["temperature"]
    assert isinstance(w, anywidget.AnyWidget) and w.controls["n_negatives"].disabled

    def oracle(tau):
        exps = [math.exp(v / tau) for v in s]
        return -math.log(exps[0] / sum(exps)), max(exps[1:]) / sum(exps[1:])

    loss, share = oracle(0.5)
    assert w.state["loss"] == pytest.approx(loss) and w.state["hardness_share"] == pytest.approx(share)
    before = w.png
    slider.value = 0.05
    loss, share = oracle(0.05)
    assert w.temperature == 0.05 and w.state["temperature"] == 0.05  # the synced trait the browser draws from
    assert w.state["loss"] == pytest.approx(loss) and w.state["hardness_share"] == pytest.approx(share)
    assert w.png != before
    assert f"loss {loss:.3f}" in w.text
    with pytest.raises(ValueError, match="temperature"):
        slider.value = 0.0


def test_temperature_explorer_ships_draws_and_circle_runs_for_the_browser():
    w = temperature_explorer(temperature=0.3, n_negatives=9, train_steps=6, n_points=8)
    assert 9 in w.k_options and set(K_CHOICES) <= set(w.k_options)
    for k in w.k_options:  # the browser rebuilds similarities_with(K, mean) from these draws
        z = torch.tensor(w.draws[str(k)], dtype=torch.float64)
        expected = similarities_with(k, 0.45)
        torch.testing.assert_close(torch.cat([expected[:1], (0.45 + 0.1 * z).clamp(-1, 1)]), expected, atol=0, rtol=0)
    assert sorted(float(key) for key in w.circle_runs) == sorted({*CIRCLE_TEMPERATURES, 0.3})
    run = w.circle_runs[repr(0.3)]
    assert [snap["step"] for snap in run["snapshots"]][-1] == 6 and len(run["snapshots"][0]["z1"]) == 16
    assert w.state["circle"]["step"] == 0 and "untrained" in w.text
    w.controls["n_negatives"].value = 100  # a K the slider does not offer: its draws are added
    assert w.state["n_negatives"] == 100 and str(100) in w.draws and 100 in w.k_options
    w.temperature = 0.2  # what the browser's slider does
    circle = w.train()  # trained at 0.2 already: shown, not retrained
    assert circle == {**circle, "step": 6, "temperature": 0.2}
    assert "trained at temperature 0.200" in w.text
    w._handle_custom_msg({"event": "train", "temperature": 0.7}, [])  # the browser's button, with a kernel
    assert w.state["circle"] == {**w.state["circle"], "step": 6, "temperature": 0.7}
    assert [snap["step"] for snap in w.circle_runs[repr(0.7)]["snapshots"]] == [0, 1, 2, 3, 4, 5, 6]


def test_temperature_explorer_caption_keeps_the_sliders_centre_apart_from_the_draws_mean():
    # The slider sets the centre of N(mean, 0.1^2); the mean of 15 draws misses it (here by about 0.03).
    w = temperature_explorer(negative_mean=0.5, n_negatives=15, train_steps=2, n_points=4)
    drawn = similarities_with(15, 0.5)[1:].mean().item()
    assert f"{drawn:.2f}" != "0.50"  # the case the caption must not blur
    assert f"K = 15 negatives drawn around 0.50 (mean of this draw {drawn:.2f})" in w.text
    assert w.controls["negative_mean"].description == "negatives around"
    passed = temperature_explorer(torch.tensor([0.7, 0.5, 0.1, -0.2]), train_steps=2, n_points=4)
    assert "K = 3 negatives as passed (mean similarity 0.13)" in passed.text and "drawn around" not in passed.text


def test_temperature_explorer_defaults_and_range():
    w = temperature_explorer(train_steps=2, n_points=4)
    assert w.state["p"].shape == (16,)
    wide = temperature_explorer([0.5, 0.1], temperature=50.0, train_steps=2, n_points=4)
    assert wide.controls["temperature"].max >= 2 and wide.state["temperature"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="temperature"):
        temperature_explorer([0.5, 0.1], temperature=0.0)
    with pytest.raises(ValueError, match="1..255"):
        temperature_explorer(n_negatives=256)


def test_explorer_module_is_common_then_the_explorer():
    module = explorer_module("maps")
    assert module.index("export function node") < module.index("export function pointColour")
    with pytest.raises(ValueError, match="no browser explorer named 'common'; use one of augment, maps, temperature"):
        explorer_module("common")


def test_umap_explorer_aligns_and_switches():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 2))
    rotation = np.array([[0.0, -1.0], [1.0, 0.0]])
    snapshots = {"epoch 1": base, "epoch 2": base @ rotation + 10.0, "epoch 3": base * np.array([-1.0, 1.0])}
    labels = rng.integers(0, 3, size=40)
    w = umap_explorer(snapshots, {"class": labels, "object_hue": rng.random(40)}, names=["a", "b", "c"])
    assert w.state["snapshot"] == "epoch 3"  # starts at the last snapshot
    np.testing.assert_allclose(w.state["points"], base, atol=1e-9)  # the mirror image was undone
    np.testing.assert_allclose(np.reshape(w.points["map"][1], (40, 2)), base, atol=1e-4)  # what the browser draws
    before = w.png
    w.controls["snapshot"].value = "epoch 2"
    assert w.index == 1
    np.testing.assert_allclose(w.state["points"], base, atol=1e-9)  # rotation and shift undone
    w.controls["colour"].value = "object_hue"
    assert w.state["colouring"] == "object_hue" and w.png != before
    assert w.colourings["class"] == {"kind": "class", "values": labels.tolist(), "names": ["a", "b", "c"], "range": []}
    assert w.controls["play"].max == 2 and w.text == "snapshot epoch 2 (2 of 3), colour: object_hue"
    with pytest.raises(ValueError, match="not one of the snapshots"):
        w.controls["snapshot"].value = "epoch 9"


def test_umap_explorer_validates_colourings():
    with pytest.raises(ValueError, match="one value per point"):
        umap_explorer({"a": np.zeros((5, 2))}, {"class": np.zeros(4, dtype=int)})
    with pytest.raises(ValueError, match="non-empty"):
        umap_explorer({"a": np.zeros((5, 2))}, {})


def test_run_comparison_explorer_shares_neighbours_as_compare_maps():
    rng = np.random.default_rng(1)
    maps = {run: {f"epoch {e}": rng.normal(size=(30, 2)) for e in (0, 2)} for run in ("a", "b", "c")}
    maps["c"] = {key: points @ np.array([[0.0, 1.0], [1.0, 0.0]]) * 3 for key, points in maps["a"].items()}  # a mirrored
    w = run_comparison_explorer(maps, {"class": rng.integers(0, 2, 30)}, k=5)
    assert (w.state["left"], w.state["right"], w.state["epoch"]) == ("a", "b", "epoch 2")
    for a in maps:  # the browser's table is compare_maps for every pair and epoch
        for b in maps:
            for index, epoch in enumerate(maps[a]):
                expected = compare_maps(maps[a][epoch], maps[b][epoch], k=5)["shared_neighbours"]
                assert w.shared[f"{a}\t{b}"][index] == pytest.approx(expected, abs=1e-12), (a, b, epoch)
    before = w.png
    w.controls["right"].value = "c"
    assert w.state["shared_neighbours"] == pytest.approx(1.0) and w.png != before
    assert "agree on 100% of each point's 5 nearest neighbours" in w.text
    with pytest.raises(ValueError, match="not one of the runs"):
        w.controls["left"].value = "d"
