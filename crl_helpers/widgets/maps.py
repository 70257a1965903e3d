"""The map explorers: 2-D maps of an embedding (UMAP, McInnes et al. 2018) stepped through, or two runs side by side.

Thin layers over :func:`crl_helpers.plots.align_snapshots` and :func:`crl_helpers.plots.compare_maps`, drawn by
``widgets_js/maps.js`` in the browser.
"""
from __future__ import annotations

import numpy as np
import torch

from crl_helpers.plots import map_neighbours, neighbour_agreement
from crl_helpers.widgets.base import _new_figure, _rounded
from crl_helpers.widgets.browser import BrowserControl, _browser_classes

__all__ = ["umap_explorer", "run_comparison_explorer"]


def _check_colourings(colourings: dict, n_points: int) -> dict[str, np.ndarray]:
    if not isinstance(colourings, dict) or not colourings:
        raise ValueError("colourings must be a non-empty dict: name -> (N,) labels or floats, e.g. {'class': y}")
    out = {}
    for name, values in colourings.items():
        values = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        if values.shape != (n_points,):
            raise ValueError(f"colouring {name!r} has shape {values.shape}; it needs one value per point ({n_points},)")
        out[str(name)] = values
    return out


def _names_by_colouring(names, first_colouring: str) -> dict:
    # names: None, a dict colouring -> class names, or a sequence of class names for the first colouring.
    if names is None or isinstance(names, dict):
        return dict(names or {})
    return {first_colouring: list(names)}


def _colourings_json(colours: dict[str, np.ndarray], names_by_colouring: dict) -> dict:
    out = {}
    for name, values in colours.items():
        if np.issubdtype(values.dtype, np.integer):
            out[name] = {"kind": "class", "values": [int(v) for v in values],
                         "names": [str(n) for n in names_by_colouring.get(name, [])], "range": []}
        else:
            values = values.astype(np.float64)
            out[name] = {"kind": "value", "values": _rounded(values), "names": [],
                         "range": [float(values.min()), float(values.max())]}
    return out


def _limits(maps) -> list[float]:
    everything = np.concatenate(list(maps))  # (S*N, 2)
    low, high = everything.min(axis=0), everything.max(axis=0)
    margin = 0.05 * np.maximum(high - low, 1e-9)
    return [float(v) for v in (*(low - margin), *(high + margin))]


def _maps_figure(panels: list[tuple[str, np.ndarray]], values: np.ndarray, label_names, limits):
    """Scatter plots of 2-D maps side by side on shared axes, the legend on the last (the PNG of ``w.png``)."""
    from crl_helpers.plots import scatter_2d

    fig = _new_figure(5.0 * len(panels) + 1.0, 4.6 if len(panels) == 1 else 4.4)
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharex=True, sharey=True))
    for i, (ax, (title, points)) in enumerate(zip(axes, panels)):
        scatter_2d(ax, points, values, label_names if i == len(panels) - 1 else None, title=title)
        ax.set_xlim(limits[0], limits[2])
        ax.set_ylim(limits[1], limits[3])
    return fig


def _maps_widget(aligned: dict, colourings: dict, names, *, key_label: str, left: str, right: str, shared: dict,
                 k: int):
    """The browser map explorer over ``aligned`` (run -> key -> (N, 2)); one panel, or two when ``shared``."""
    runs = list(aligned)
    keys = list(aligned[runs[0]])
    colours = _check_colourings(colourings, len(aligned[runs[0]][keys[0]]))
    first_colouring = next(iter(colours))
    names_by_colouring = _names_by_colouring(names, first_colouring)
    widget = _browser_classes()["maps"](
        panels=2 if shared else 1, runs=runs, steps=keys, key_label=key_label,
        points={run: [_rounded(aligned[run][key]) for key in keys] for run in runs},
        limits=_limits(m for run in runs for m in aligned[run].values()),
        colourings=_colourings_json(colours, names_by_colouring), shared=shared, k=k, left=left, right=right,
        index=len(keys) - 1, colouring=first_colouring)

    def put_key(key) -> int:
        if key not in keys:
            raise ValueError(f"{key!r} is not one of the {key_label}s {keys}")
        return keys.index(key)

    def put_colouring(name) -> str:
        if name not in colours:
            raise ValueError(f"colouring {name!r} is not one of {list(colours)}")
        return name

    def put_run(run) -> str:
        if run not in aligned:
            raise ValueError(f"run {run!r} is not one of the runs {runs}")
        return run

    widget.controls = {
        key_label: BrowserControl(widget, "index", get=lambda i: keys[i], put=put_key, options=keys,
                                  description=key_label),
        "colour": BrowserControl(widget, "colouring", put=put_colouring, options=list(colours), description="colour by"),
        "play": BrowserControl(widget, "index", min=0, max=len(keys) - 1, description="animate"),
    }
    if shared:
        widget.controls["left"] = BrowserControl(widget, "left", put=put_run, options=runs, description="left run")
        widget.controls["right"] = BrowserControl(widget, "right", put=put_run, options=runs, description="right run")
    widget.names_by_colouring, widget.colours = names_by_colouring, colours
    return widget


def umap_explorer(snapshots: dict, colourings: dict, names=None, align: bool = True):
    """Step through 2-D maps of an embedding (epochs, temperatures ...) coloured by class or a nuisance.

    Drawn by JavaScript in the browser (``widgets_js/maps.js``, an anywidget), so it works in JupyterLab and
    on a static page without a kernel: ``w.controls["snapshot"]`` (a slider over the snapshot keys, with an
    "animate" button, ``w.controls["play"]``) picks the map; ``w.controls["colour"]`` picks the colouring:
    integer labels get tab10 colours and a legend, floats (e.g. ``object_hue``) a hue scale. Maps are
    aligned to each other first (:func:`crl_helpers.plots.align_snapshots`) and share axis limits, so
    motion on screen is motion of the points, not UMAP's arbitrary rotations.

    Args:
        snapshots: key -> (N, 2) map coordinates (UMAP of the same N points), in display order.
        colourings: name -> (N,) integer labels or float values.
        names: class names for integer colourings: a sequence (used for the first colouring) or
            a dict colouring name -> sequence.
        align: Procrustes-align the maps (turn off for maps that are already comparable).

    Returns:
        An :class:`Explorer` (an ``anywidget.AnyWidget``); ``w.state`` holds ``snapshot``, ``colouring``
        and ``points`` (N, 2); ``w.text`` the caption; ``w.png`` a matplotlib rendering.

    Raises:
        ValueError: as :func:`crl_helpers.plots.align_snapshots`, or colourings of the wrong length.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> w = umap_explorer({"epoch 0": rng.normal(size=(20, 2)), "epoch 1": rng.normal(size=(20, 2))},
        ...                   {"class": rng.integers(0, 3, 20)})
        >>> w.state["snapshot"], w.controls["snapshot"].options
        ('epoch 1', ['epoch 0', 'epoch 1'])
    """
    from crl_helpers.plots import align_snapshots

    maps = align_snapshots(snapshots) if align else {k: np.asarray(v, dtype=np.float64) for k, v in snapshots.items()}
    if not align:
        align_snapshots(snapshots)  # the same validation
    widget = _maps_widget({"map": maps}, colourings, names, key_label="snapshot", left="map", right="map", shared={},
                          k=0)
    keys = list(maps)

    def compute() -> dict:
        key, colouring = keys[widget.index], widget.colouring
        widget.text = f"snapshot {key} ({widget.index + 1} of {len(keys)}), colour: {colouring}"
        return {"snapshot": key, "colouring": colouring, "points": maps[key]}

    def draw(state: dict):
        values = widget.colours[state["colouring"]]
        label_names = widget.names_by_colouring.get(state["colouring"]) if np.issubdtype(values.dtype, np.integer) else None
        return _maps_figure([(f"{state['snapshot']}: coloured by {state['colouring']}", state["points"])], values,
                            label_names, widget.limits)

    widget._start(compute, draw, ["index", "colouring"])
    return widget


def run_comparison_explorer(maps: dict, colourings: dict, names=None, left=None, right=None, k: int = 10):
    """Two runs side by side, epoch by epoch: the same N points mapped by each run's encoder, on one colouring.

    ``maps`` holds, for every run (the arms of an ablation, the temperatures of a sweep ...), the
    2-D maps of its features after the same epochs. Drawn by JavaScript in the browser (``widgets_js/maps.js``,
    an anywidget), so it works on a static page without a kernel: ``w.controls["left"]`` and
    ``w.controls["right"]`` pick the two runs, ``w.controls["epoch"]`` (a slider, animated by
    ``w.controls["play"]``) the epoch, ``w.controls["colour"]`` the colouring, shared by both panels.
    Every map is aligned onto one reference (the first run's last map) and all panels share their axes;
    the caption gives the share of nearest neighbours the two maps agree on (:func:`crl_helpers.plots.compare_maps`),
    computed here in Python for every pair of runs and every epoch.

    Args:
        maps: run -> (epoch key -> (N, 2) map), every run with the same epoch keys, in display order.
        colourings: name -> (N,) integer labels or float values.
        names: class names for integer colourings, as for :func:`umap_explorer`.
        left, right: the runs shown first; default the first two runs (the first twice if there is one).
        k: neighbours per point for the agreement.

    Returns:
        An :class:`Explorer` (an ``anywidget.AnyWidget``); ``w.state`` holds ``left``, ``right``, ``epoch``,
        ``colouring``, ``points`` (the two aligned (N, 2) maps) and ``shared_neighbours``; ``w.text`` the
        caption; ``w.png`` a matplotlib rendering.

    Raises:
        ValueError: no runs, runs with different epoch keys, an unknown ``left``/``right``, maps of
            different N, colourings of the wrong length, or k < 1.
    """
    from crl_helpers.plots import align_snapshots

    if not isinstance(maps, dict) or not maps or not all(isinstance(m, dict) and m for m in maps.values()):
        raise ValueError("maps must be a non-empty dict: run -> {epoch key -> (N, 2) map}, e.g. {'crop only': maps}")
    if not (isinstance(k, (int, np.integer)) and k >= 1):
        raise ValueError(f"k={k!r} must be an int >= 1 (neighbours per point)")
    runs = list(maps)
    epochs = list(maps[runs[0]])
    for run in runs:
        if list(maps[run]) != epochs:
            raise ValueError(f"run {run!r} has the epochs {list(maps[run])} but run {runs[0]!r} has {epochs}; "
                             "give every run maps after the same epochs")
    left = runs[0] if left is None else left
    right = runs[min(1, len(runs) - 1)] if right is None else right
    for side, run in (("left", left), ("right", right)):
        if run not in maps:
            raise ValueError(f"{side}={run!r} is not one of the runs {runs}")
    reference = align_snapshots(maps[runs[0]])[epochs[-1]]  # validates the first run's maps too
    aligned = {run: {epoch: align_snapshots({"reference": reference, "map": points})["map"]
                     for epoch, points in maps[run].items()} for run in runs}
    if len(reference) < 2:
        raise ValueError(f"the maps have {len(reference)} point(s); neighbourhoods need at least 2")
    k = min(int(k), len(reference) - 1)
    # Neighbourhoods ignore rotations, mirrors, shifts and a common scale: one table per map serves every pair.
    tables = {run: [map_neighbours(aligned[run][epoch], k) for epoch in epochs] for run in runs}
    shared = {f"{a}\t{b}": [neighbour_agreement(x, y) for x, y in zip(tables[a], tables[b])] for a in runs for b in runs}
    widget = _maps_widget(aligned, colourings, names, key_label="epoch", left=left, right=right, shared=shared, k=k)

    def compute() -> dict:
        run_a, run_b, epoch, colouring = widget.left, widget.right, epochs[widget.index], widget.colouring
        share = widget.shared[f"{run_a}\t{run_b}"][widget.index]
        widget.text = (f"{run_a} vs {run_b} at {epoch}, coloured by {colouring}: the two maps agree on "
                       f"{100 * share:.0f}% of each point's {k} nearest neighbours")
        return {"left": run_a, "right": run_b, "epoch": epoch, "colouring": colouring,
                "points": (aligned[run_a][epoch], aligned[run_b][epoch]), "shared_neighbours": share}

    def draw(state: dict):
        values = widget.colours[state["colouring"]]
        label_names = widget.names_by_colouring.get(state["colouring"]) if np.issubdtype(values.dtype, np.integer) else None
        return _maps_figure([(f"{state['left']}, {state['epoch']}", state["points"][0]),
                             (f"{state['right']}, {state['epoch']}", state["points"][1])], values, label_names,
                            widget.limits)

    widget._start(compute, draw, ["index", "colouring", "left", "right"])
    return widget
