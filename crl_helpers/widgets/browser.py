"""The bridge to the browser: explorers whose JavaScript (``widgets_js/``, anywidget) draws and computes.

An explorer drawn in the browser keeps working on a static page without a kernel (``crl site``,
``crl lecture``): Python supplies the numbers once, the JavaScript recomputes what the sliders show.

Example:
    >>> "export function infoNce" in explorer_module("temperature")
    True
"""
from __future__ import annotations

import functools
import types
from pathlib import Path
from typing import Callable

from crl_helpers.widgets.base import Explorer, figure_png

__all__ = ["STATIC_WIDGETS_ENV", "static_widgets", "JS_DIR", "explorer_module", "BrowserControl"]

#: The environment variable that asks for explorers that work on a static page: set (to anything but "" or "0"),
#: :func:`augmentation_explorer` returns its precomputed browser version. ``crl site`` sets it in the kernels
#: that execute the notebooks (:func:`crl_site.build.execute_notebooks`).
STATIC_WIDGETS_ENV = "CRL_STATIC_WIDGETS"


def static_widgets() -> bool:
    """Whether explorers should be the versions that work without a kernel (:data:`STATIC_WIDGETS_ENV` is set).

    Example:
        >>> import os
        >>> static_widgets() == (os.environ.get("CRL_STATIC_WIDGETS", "") not in ("", "0"))
        True
    """
    import os

    return os.environ.get(STATIC_WIDGETS_ENV, "") not in ("", "0")


JS_DIR = Path(__file__).resolve().parent.parent / "widgets_js"


def explorer_module(name: str) -> str:
    """The ES module a browser explorer ships: ``widgets_js/common.js`` followed by ``widgets_js/<name>.js``.

    anywidget loads one module per widget (from a string, without a bundler), so the shared drawing kit
    is prepended to each explorer's file; the explorer's pure functions are exported for tests.

    Example:
        >>> "export function infoNce" in explorer_module("temperature")
        True
    """
    path = JS_DIR / f"{name}.js"
    if name == "common" or not path.exists():
        known = sorted(p.stem for p in JS_DIR.glob("*.js") if p.stem != "common")
        raise ValueError(f"no browser explorer named {name!r}; use one of {', '.join(known)}")
    return (JS_DIR / "common.js").read_text(encoding="utf-8") + "\n" + path.read_text(encoding="utf-8")


class BrowserControl:
    """A control that an explorer's JavaScript draws: ``value`` reads and writes the widget's synced trait.

    It stands where an ipywidgets control stood in ``w.controls``: setting ``value`` from Python moves
    the slider in the browser (and redraws there), moving the slider in the browser changes ``value``.
    Other attributes (``min``, ``max``, ``options``, ``disabled``, ``description``) describe the control.
    """

    def __init__(self, widget, trait: str, get: Callable = lambda v: v, put: Callable = lambda v: v, **info):
        self._widget, self._trait, self._get, self._put = widget, trait, get, put
        self.__dict__.update(info)

    @property
    def value(self):
        return self._get(getattr(self._widget, self._trait))

    @value.setter
    def value(self, new) -> None:
        setattr(self._widget, self._trait, self._put(new))

    def __repr__(self) -> str:
        return f"BrowserControl({self._trait}={self.value!r})"


@functools.cache
def _browser_classes() -> dict:
    """The anywidget classes of the browser explorers (built on first use: anywidget is imported then)."""
    import anywidget
    import traitlets as t

    css = (JS_DIR / "explorers.css").read_text(encoding="utf-8")

    class BrowserExplorer(anywidget.AnyWidget, Explorer):
        """An explorer drawn by JavaScript in the browser (JupyterLab, or a static page without a kernel).

        ``state`` is recomputed in Python by the pure functions whenever a synced value changes; ``figure``
        and ``png`` are a matplotlib rendering of the same numbers, drawn on demand (for saving, and for
        checks that the view changed).
        """

        _css = css

        def _start(self, compute: Callable[[], dict], draw: Callable[[dict], object], names: list[str]) -> None:
            self._compute, self._draw, self._figure, self._png = compute, draw, None, None
            self.state = compute()
            self.observe(self._refresh, names=names)

        def _refresh(self, _change=None) -> None:
            self.state, self._figure, self._png = self._compute(), None, None

        @property
        def figure(self):
            if self._figure is None:
                self._figure = self._draw(self.state)
            return self._figure

        @property
        def png(self) -> bytes:
            if self._png is None:
                self._png = figure_png(self.figure)
            return self._png

        def update(self):
            """Recompute ``state`` from the current values; returns the matplotlib Figure of it."""
            self._refresh()
            return self.figure

    class TemperatureWidget(BrowserExplorer):
        _esm = explorer_module("temperature")
        temperature = t.Float(0.5).tag(sync=True)
        log_range = t.List([-2.0, 1.0]).tag(sync=True)  # the slider's log10 range
        n_negatives = t.Int(15).tag(sync=True)
        negative_mean = t.Float(0.3).tag(sync=True)
        k_options = t.List().tag(sync=True)  # the K the slider offers
        draws = t.Dict().tag(sync=True)  # str(K) -> the K sorted standard-normal draws of similarities_with
        positive = t.Float(0.7).tag(sync=True)
        spread = t.Float(0.1).tag(sync=True)
        fixed = t.List().tag(sync=True)  # the caller's similarities, or [] when the sliders draw them
        circle_hue = t.List().tag(sync=True)  # (n,) each toy point's content angle / 2 pi
        circle_runs = t.Dict().tag(sync=True)  # key -> {temperature, snapshots: [{step, z1, z2, ...}]}
        circle_key = t.Unicode("").tag(sync=True)  # the run shown ("" = untrained)
        circle_index = t.Int(0).tag(sync=True)  # its snapshot shown
        even_uniformity = t.Float(0.0).tag(sync=True)

    class MapsWidget(BrowserExplorer):
        _esm = explorer_module("maps")
        panels = t.Int(1).tag(sync=True)
        runs = t.List().tag(sync=True)
        steps = t.List().tag(sync=True)  # the snapshot (epoch) keys, in order
        key_label = t.Unicode("snapshot").tag(sync=True)
        points = t.Dict().tag(sync=True)  # run -> [flat (2N,) map per key], aligned
        limits = t.List().tag(sync=True)  # [x low, y low, x high, y high] over every map
        colourings = t.Dict().tag(sync=True)  # name -> {kind, values, names, range}
        shared = t.Dict().tag(sync=True)  # "left\tright" -> [share of shared neighbours per key]
        k = t.Int(10).tag(sync=True)
        left = t.Unicode("").tag(sync=True)
        right = t.Unicode("").tag(sync=True)
        index = t.Int(0).tag(sync=True)
        colouring = t.Unicode("").tag(sync=True)

    class AugmentWidget(BrowserExplorer):
        _esm = explorer_module("augment")
        crop_values = t.List().tag(sync=True)  # the crop_scale_min grid
        jitter_values = t.List().tag(sync=True)  # the jitter_strength grid
        seeds = t.List().tag(sync=True)  # re-sample steps through these
        crop_index = t.Int(0).tag(sync=True)
        jitter_index = t.Int(0).tag(sync=True)
        seed_index = t.Int(0).tag(sync=True)
        side = t.Int(32).tag(sync=True)  # the stored tiles' side in pixels
        originals = t.Unicode("").tag(sync=True)  # data URL: the K images, one column of tiles
        points = t.List().tag(sync=True)  # [crop][jitter][seed] -> {views (K x V mosaic), labels, meters, caption}
        fixed = t.Dict().tag(sync=True)  # the other controls' values, which the static explorer holds

        @property
        def caption(self):
            """The caption, read as the live explorer's (``w.caption.value``)."""
            return types.SimpleNamespace(value=self.text)

    return {"temperature": TemperatureWidget, "maps": MapsWidget, "augment": AugmentWidget}

