"""The browser explorers' JavaScript (crl_helpers/widgets_js) computes what the Python package computes.

Each test writes the ES module a widget ships (:func:`crl_helpers.widgets.explorer_module`) to a file, imports
it with Node.js and calls its exported pure functions; the oracle is :mod:`crl_helpers.temperature` (itself
tested against float64 loops). Skips when ``node`` is missing.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch

from crl_helpers import temperature as tm
from crl_helpers.widgets import K_CHOICES, explorer_module, negative_draws

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="no node (Node.js) on PATH: apt-get install nodejs")

TEMPERATURES = (0.01, 0.07, 0.2, 0.5, 1.0, 3.0, 10.0)


def _run_js(tmp_path, module: str, body: str):
    """Import the shipped module ``module`` as ``m`` in Node, run ``body`` (which sets ``result``), return it."""
    path = tmp_path / f"{module}.mjs"
    path.write_text(explorer_module(module), encoding="utf-8")
    script = f"import * as m from {json.dumps(path.as_uri())};\nlet result;\n{body}\nconsole.log(JSON.stringify(result));"
    done = subprocess.run([NODE, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _vectors():
    g = torch.Generator().manual_seed(0)
    return [
        [0.8, 0.7, 0.1, 0.0],
        [0.3, 0.3, 0.3, 0.3],  # all equal: p uniform, loss log(K + 1)
        [-0.5, 0.9, 0.95, -1.0],  # the positive below its negatives
        tm.example_similarities(31).tolist(),
        (2 * torch.rand(256, generator=g, dtype=torch.float64) - 1).tolist(),
    ]


def test_softmax_loss_and_gradient_match_the_package(tmp_path):
    cases = [{"s": s, "tau": tau} for s in _vectors() for tau in TEMPERATURES]
    got = _run_js(tmp_path, "temperature", f"""
        const cases = {json.dumps(cases)};
        result = cases.map(({{s, tau}}) => m.explorerNumbers({{ similarities: s, temperature: tau }}));""")
    for case, js in zip(cases, got):
        s, tau = torch.tensor(case["s"], dtype=torch.float64), case["tau"]
        where = f"s of length {len(s)} at temperature {tau}"
        torch.testing.assert_close(torch.tensor(js["p"], dtype=torch.float64), tm.key_distribution(s, tau),
                                   atol=1e-6, rtol=0, msg=lambda m: f"key distribution, {where}: {m}")
        torch.testing.assert_close(torch.tensor(js["weights"], dtype=torch.float64), tm.gradient_weights(s, tau),
                                   atol=1e-6, rtol=1e-9, msg=lambda m: f"gradient weights, {where}: {m}")
        assert js["loss"] == pytest.approx(tm.info_nce_from_similarities(s, tau), abs=1e-6), where
        assert js["hardnessShare"] == pytest.approx(tm.hardness_share(s, tau), abs=1e-6), where


def test_similarities_from_the_draws_are_similarities_with(tmp_path):
    cases = [{"k": k, "mean": mean} for k in (1, 4, 15, 63, 255) for mean in (-0.9, 0.0, 0.3, 0.85)]
    draws = {str(k): negative_draws(k) for k in {c["k"] for c in cases}}
    got = _run_js(tmp_path, "temperature", f"""
        const cases = {json.dumps(cases)}, draws = {json.dumps(draws)};
        result = cases.map(({{k, mean}}) => m.similaritiesFromDraws(draws[String(k)], mean, 0.7, 0.1));""")
    for case, js in zip(cases, got):
        expected = tm.similarities_with(case["k"], case["mean"])
        torch.testing.assert_close(torch.tensor(js, dtype=torch.float64), expected, atol=1e-12, rtol=0)
    assert set(K_CHOICES) <= set(range(1, 256))


def test_loss_curve_temperatures_are_the_python_sweep(tmp_path):
    got = _run_js(tmp_path, "temperature", "result = m.logspace(-2, 1, 61);")
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), torch.logspace(-2, 1, 61, dtype=torch.float64),
                               atol=0, rtol=1e-12)


def test_map_captions_and_colours(tmp_path):
    got = _run_js(tmp_path, "maps", """
        const classes = { kind: "class", values: [0, 1, 11], names: [], range: [] };
        const floats = { kind: "value", values: [0, 0.5, 1], names: [], range: [0, 1] };
        result = {
          one: m.captionText({ runs: ["map"], key: "epoch 3", index: 1, count: 4, colouring: "class" }),
          two: m.captionText({ runs: ["a", "b"], key: "epoch 3", index: 1, count: 4, colouring: "class",
                               shared: 0.456, k: 10 }),
          colours: [0, 1, 2].map((i) => m.pointColour(classes, i)),
          hues: [0, 2].map((i) => m.pointColour(floats, i)),
        };""")
    assert got["one"] == "snapshot epoch 3 (2 of 4), colour: class"
    assert got["two"] == ("a vs b at epoch 3, coloured by class: the two maps agree on 46% of each point's "
                          "10 nearest neighbours")
    assert got["colours"] == ["#1f77b4", "#ff7f0e", "#ff7f0e"]  # tab10, class 11 wraps to 1
    assert got["hues"][0] != got["hues"][1]


# A DOM just large enough for the explorers' render(): elements with attributes, children, text, dataset and
# event listeners. It lets Node run render() on the state a Python explorer sends, and move its controls.
FAKE_DOM = r"""
class Element {
  constructor(tag) { this.tagName = tag; this.attributes = {}; this.children = []; this.listeners = {};
                     this.dataset = {}; this.textContent = ""; this.value = ""; this.disabled = false; }
  setAttribute(k, v) { this.attributes[k] = String(v); if (k.startsWith("data-")) this.dataset[k.slice(5)] = String(v); }
  getAttribute(k) { return this.attributes[k]; }
  appendChild(c) { this.children.push(c); return c; }
  replaceChildren(...c) { this.children = c; }
  addEventListener(type, f) { (this.listeners[type] ||= []).push(f); }
  fire(type) { for (const f of this.listeners[type] || []) f(); }
  all() { return [this, ...this.children.flatMap((c) => c.all())]; }
  find(attr, value) { return this.all().find((e) => e.attributes[attr] === value); }
}
globalThis.document = { createElement: (t) => new Element(t), createElementNS: (_, t) => new Element(t) };
globalThis.setInterval = () => 0;
globalThis.clearInterval = () => {};
function fakeModel(state) {
  const handlers = {};
  return {
    get: (k) => state[k],
    set: (k, v) => { state[k] = v; for (const f of handlers["change:" + k] || []) f(); },
    on: (e, f) => { (handlers[e] ||= []).push(f); },
    off: () => {},
    save_changes: () => { throw new Error("no comm"); },
    send: () => {},
  };
}
"""


def _render(tmp_path, module: str, state: dict, actions: str):
    """render() the shipped module on a fake DOM with ``state`` as the model; run ``actions``; return result."""
    return _run_js(tmp_path, module, FAKE_DOM + f"""
        const model = fakeModel({json.dumps(state)});
        const el = new Element("div");
        m.default.render({{ model, el }});
        const root = el.children[0];
        const caption = () => root.all().find((e) => e.attributes.class === "crl-caption").textContent;
        {actions}""")


def _synced(widget) -> dict:
    return {name: value for name, value in widget.get_state().items() if not name.startswith("_")}


def test_temperature_render_draws_the_python_state_and_follows_its_sliders(tmp_path):
    from crl_helpers.widgets import temperature_explorer

    w = temperature_explorer(temperature=0.5, train_steps=4, n_points=8)
    got = _render(tmp_path, "temperature", _synced(w), """
        const first = caption();
        const k = root.find("data-control", "n_negatives");
        k.value = String(model.get("k_options").indexOf(63)); k.fire("input");
        const t = root.find("data-control", "temperature");
        t.value = "-1.3"; t.fire("input");
        root.find("data-control", "train").fire("click");
        result = { first, after: caption(), loss: Number(root.dataset.loss), svgs: root.all().filter((e) => e.tagName === "svg").length };""")
    assert got["first"] == w.text  # the same words and numbers as Python's
    w.controls["n_negatives"].value, w.controls["temperature"].value = 63, 10 ** -1.3
    assert got["loss"] == pytest.approx(w.state["loss"], abs=1e-6)
    assert "K = 63 negatives" in got["after"] and "trained at temperature 0.050" in got["after"]
    assert got["svgs"] == 4


def test_temperature_captions_name_the_sliders_centre_and_the_draws_mean_as_python_does(tmp_path):
    import torch

    from crl_helpers.widgets import temperature_explorer

    w = temperature_explorer(temperature=0.5, negative_mean=0.5, train_steps=2, n_points=4)
    got = _render(tmp_path, "temperature", _synced(w), """
        const first = caption();
        const mean = root.find("data-control", "negative_mean");
        mean.value = "0.75"; mean.fire("input");
        result = { first, after: caption() };""")
    assert got["first"] == w.text and "negatives drawn around 0.50 (mean of this draw" in w.text
    w.controls["negative_mean"].value = 0.75
    assert got["after"] == w.text and "negatives drawn around 0.75 (mean of this draw" in w.text
    passed = temperature_explorer(torch.tensor([0.9, 0.85, 0.1, 0.0]), train_steps=2, n_points=4)
    got = _render(tmp_path, "temperature", _synced(passed), "result = caption();")
    assert got == passed.text and "K = 3 negatives as passed (mean similarity 0.32)" in got


def test_maps_render_draws_the_python_state_and_follows_its_controls(tmp_path):
    import numpy as np

    from crl_helpers.widgets import run_comparison_explorer

    rng = np.random.default_rng(0)
    maps = {run: {f"epoch {e}": rng.normal(size=(12, 2)) for e in (0, 1)} for run in ("a", "b", "c")}
    w = run_comparison_explorer(maps, {"class": rng.integers(0, 3, 12), "hue": rng.random(12)}, k=3)
    got = _render(tmp_path, "maps", _synced(w), """
        const first = caption();
        const right = root.find("data-control", "right");
        right.value = "c"; right.fire("change");
        const step = root.find("data-control", "snapshot");
        step.value = "0"; step.fire("input");
        const colour = root.find("data-control", "colour");
        colour.value = "hue"; colour.fire("change");
        result = { first, after: caption(), shared: Number(root.dataset.shared),
                   points: root.all().filter((e) => e.tagName === "circle").length };""")
    assert got["first"] == w.text
    w.controls["right"].value, w.controls["epoch"].value, w.controls["colour"].value = "c", "epoch 0", "hue"
    assert got["after"] == w.text and got["shared"] == pytest.approx(w.state["shared_neighbours"], abs=1e-12)
    assert got["points"] >= 2 * 12


def test_augmentation_explorer_looks_up_the_grid_point_python_nested(tmp_path):
    """The static augmentation explorer computes nothing: its module loads and picks points[crop][jitter][seed],
    the nesting crl_helpers.widgets ships."""
    from crl_helpers.widgets import augmentation_explorer

    w = augmentation_explorer(torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8), n_views=2, static=True)
    picks = [(c, j, s) for c in range(len(w.crop_values)) for j in range(len(w.jitter_values)) for s in range(len(w.seeds))]
    got = _run_js(tmp_path, "augment", f"""
        const points = {json.dumps(w.points)};
        result = {json.dumps(picks)}.map(([c, j, s]) => m.pointAt(points, c, j, s).caption);""")
    for (c, j, s), caption in zip(picks, got):
        w.crop_index, w.jitter_index, w.seed_index = c, j, s
        assert caption == w.text
