"""The course's interactive explorers: augmentations, temperature, and embedding maps.

Each explorer is a thin layer over tested pure functions: the widget moves a slider, the function
computes, the plot draws. One module per explorer:

* :mod:`~crl_helpers.widgets.augment`: :func:`augmentation_explorer` over :func:`augmentation_grid` and
  :func:`config_from_controls` (SimCLR's pipeline, Chen et al. 2020, from :mod:`crl_helpers.views`) and the
  meters of :mod:`crl_helpers.pairs` (object kept by the crop, colour-histogram shortcut);
* :mod:`~crl_helpers.widgets.temperature`: :func:`temperature_explorer` over :mod:`crl_helpers.temperature`
  (Wang & Liu 2021);
* :mod:`~crl_helpers.widgets.maps`: :func:`umap_explorer` and :func:`run_comparison_explorer` over
  :func:`crl_helpers.plots.align_snapshots` and :func:`crl_helpers.plots.compare_maps` (UMAP, McInnes et al. 2018);

and the frame they share: :mod:`~crl_helpers.widgets.base` (:class:`Explorer`, :func:`figure_png`) and
:mod:`~crl_helpers.widgets.browser`, the bridge to explorers drawn by JavaScript (anywidget).

Every explorer is an :class:`Explorer` with its controls in ``w.controls`` (a dict), the numbers it
shows in ``w.state``, the last ``matplotlib`` figure of them in ``w.figure``, its PNG bytes in
``w.png``, and ``w.update()`` to redraw (changing a control's value redraws by itself; tests and the
smoke run call ``update()`` to be sure). The augmentation explorer is an ``ipywidgets.VBox`` whose
figure (a PNG in ``w.output``) is drawn in Python, so it needs a kernel; where :data:`STATIC_WIDGETS_ENV`
is set (``crl site`` sets it while it executes the notebooks) the same call returns its static version, a
browser explorer holding views, meters and captions drawn ahead for a grid of slider values. The other
three are browser explorers (anywidget): JavaScript in ``widgets_js/`` draws them (SVG) and computes what
they show from numbers Python supplies, so they stay interactive on a static page without a kernel
(``crl site``, ``crl lecture``); their ``w.figure`` is drawn in Python on demand from the same numbers.

Example:
    The browser explorers' JavaScript ships inside the package, one ES module per explorer:

    >>> sorted(path.stem for path in JS_DIR.glob("*.js"))
    ['augment', 'common', 'maps', 'temperature']
"""
from crl_helpers.widgets.augment import (
    CONTROL_FIELDS,
    STATIC_CROP_SCALES,
    STATIC_JITTER_STRENGTHS,
    STATIC_SEEDS,
    STATIC_VIEW_SIDE,
    augmentation_explorer,
    augmentation_grid,
    config_from_controls,
)
from crl_helpers.widgets.base import Explorer, figure_png
from crl_helpers.widgets.browser import JS_DIR, STATIC_WIDGETS_ENV, BrowserControl, explorer_module, static_widgets
from crl_helpers.widgets.maps import run_comparison_explorer, umap_explorer
from crl_helpers.widgets.temperature import CIRCLE_TEMPERATURES, K_CHOICES, negative_draws, temperature_explorer

__all__ = [
    "Explorer",
    "figure_png",
    "CONTROL_FIELDS",
    "config_from_controls",
    "augmentation_grid",
    "augmentation_explorer",
    "STATIC_WIDGETS_ENV",
    "STATIC_CROP_SCALES",
    "STATIC_JITTER_STRENGTHS",
    "STATIC_SEEDS",
    "STATIC_VIEW_SIDE",
    "static_widgets",
    "JS_DIR",
    "explorer_module",
    "BrowserControl",
    "K_CHOICES",
    "CIRCLE_TEMPERATURES",
    "negative_draws",
    "temperature_explorer",
    "umap_explorer",
    "run_comparison_explorer",
]
