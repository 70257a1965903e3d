"""The notebooks' explorers, driven from code the way a learner's mouse drives them (01, 04, 05).

These checks lived in the notebooks ("moving the controls from code, as CI does"); a learner's notebook now
shows each explorer as it opens, and the controls are exercised here, on small inputs.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crl_helpers.data import load_dataset
from crl_helpers.pairs import object_masks
from crl_helpers.train import CPU
from crl_helpers.widgets import augmentation_explorer, run_comparison_explorer, temperature_explorer

pytest.importorskip("ipywidgets")


def test_01_augmentation_explorer_redraws_and_a_whole_image_crop_keeps_the_whole_object():
    shapes = load_dataset("shapes", "train", n=2)
    images = F.interpolate(shapes.x.float(), size=(64, 64), mode="bilinear").round().clamp(0, 255).to(torch.uint8)
    masks = F.interpolate(object_masks(shapes)[:, None], size=(64, 64), mode="bilinear")[:, 0].clamp(0, 1)
    explorer = augmentation_explorer(images, config=CPU.views, n_views=3, seed=0, masks=masks)
    before = explorer.png
    explorer.controls["jitter_strength"].value = 2.0
    explorer.update()
    assert explorer.png != before and explorer.state["config"].jitter_strength == 2.0
    explorer.controls["perspective"].value = 0.0
    kept = {}
    for low in (1.0, 0.05):
        explorer.controls["crop_scale_min"].value = low
        kept[low] = explorer.state["object_kept_mean"]
    assert kept[1.0] == 1.0 and kept[0.05] < 1.0  # whole-image crops keep the object; small ones cut it


def test_04_temperature_explorer_follows_its_sliders_and_trains_the_circle():
    explorer = temperature_explorer(temperature=0.5, train_steps=5, n_points=16)
    assert explorer.state["temperature"] == pytest.approx(0.5)  # it opens where the notebook says
    before_png, before = explorer.png, dict(explorer.state)
    explorer.controls["temperature"].value = 0.05
    explorer.controls["negative_mean"].value = 0.5
    explorer.update()
    assert explorer.png != before_png and explorer.state["loss"] != before["loss"]
    assert explorer.state["temperature"] == pytest.approx(0.05)
    # The state reports the mean of the K negatives actually drawn around the slider's value (spread 0.1 each).
    k = explorer.state["n_negatives"]
    assert abs(explorer.state["negative_mean"] - 0.5) < 4 * 0.1 / k ** 0.5
    assert explorer.state["hardness_share"] > before["hardness_share"]  # a smaller temperature: a harder push
    circle = explorer.train()
    assert circle["step"] == 5 and circle["temperature"] == pytest.approx(0.05)


def test_05_run_comparison_explorer_switches_run_colouring_and_epoch():
    rng = np.random.default_rng(0)
    maps = {run: {f"epoch {e}": rng.normal(size=(20, 2)) for e in (0, 1, 3)} for run in ("crop only", "colour only",
                                                                                          "crop + colour")}
    colourings = {"class": rng.integers(0, 3, 20), "object_hue": rng.random(20)}
    explorer = run_comparison_explorer(maps, colourings, names=["a", "b", "c"], left="crop only", right="crop + colour")
    before = explorer.png
    explorer.controls["right"].value = "colour only"
    explorer.controls["colour"].value = "object_hue"
    explorer.controls["epoch"].value = "epoch 0"
    explorer.update()
    assert explorer.png != before
    assert (explorer.state["left"], explorer.state["right"], explorer.state["epoch"], explorer.state["colouring"]) == (
        "crop only", "colour only", "epoch 0", "object_hue")
    assert 0.0 <= explorer.state["shared_neighbours"] <= 1.0
