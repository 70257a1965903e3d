"""The course's interactive explorers: augmentations, temperature, and embedding snapshots.

Each explorer is a thin ipywidgets layer over tested pure functions (STYLE rule 8: the
widget moves a slider, the function computes, the plot draws):

* :func:`augmentation_explorer` over :func:`augmentation_grid` and :func:`config_from_controls`
  (SimCLR's pipeline, Chen et al. 2020, from :mod:`crl_helpers.views`) and the meters of
  :mod:`crl_helpers.pairs` (object kept by the crop, colour-histogram shortcut);
* :func:`temperature_explorer` over :mod:`crl_helpers.temperature` (Wang & Liu 2021);
* :func:`umap_explorer` and :func:`run_comparison_explorer` over :func:`crl_helpers.plots.align_snapshots`
  and :func:`compare_maps` (UMAP, McInnes et al. 2018).

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
    >>> import torch
    >>> images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    >>> w = augmentation_explorer(images, n_views=3)
    >>> sorted(w.controls)[:3], w.state["grid_shape"]
    (['blur_p', 'crop_ratio_max', 'crop_scale_min'], (2, 3, 3, 16, 16))
    >>> before = w.png
    >>> w.controls["jitter_strength"].value = 2.0
    >>> w.png != before
    True
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import io
import math
import traceback
import types
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from crl_helpers.views import SIMCLR, ViewConfig
from crl_helpers.views_batched import apply_view_params, sample_view_params

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
    "compare_maps",
    "run_comparison_explorer",
]


# ------------------------------------------------------------------------------------- the shared machinery
def figure_png(fig, dpi: int = 90) -> bytes:
    """PNG bytes of a matplotlib figure.

    Explorers show PNGs rather than live figures: a PNG displays the same in JupyterLab, in
    VS Code and in a saved notebook, whatever matplotlib backend the kernel has.

    Example:
        >>> from matplotlib.figure import Figure
        >>> figure_png(Figure(figsize=(1, 1)))[:4]
        b'\\x89PNG'
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _new_figure(width: float, height: float, layout: str | None = "constrained"):
    # The object API, not pyplot: no global figure list to leak, nothing shown twice.
    # layout=None (fixed margins) where constrained layout's solver would double a redraw's cost.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=layout)


class Explorer:
    """Base of the explorers; built by :func:`_make_explorer` as a subclass of ``ipywidgets.VBox``.

    Attributes:
        controls: name -> ipywidgets control (slider, dropdown, button ...).
        output: the ``ipywidgets.Output`` that shows the figure.
        figure: the last matplotlib ``Figure`` drawn.
        png: that figure as PNG bytes.
        state: the numbers behind the figure (for captions and tests).
    """


def _png_output(png: bytes) -> dict:
    """A display_data output (nbformat) holding a PNG, as an Output widget's ``outputs`` entry."""
    return {"output_type": "display_data", "data": {"image/png": base64.b64encode(png).decode("ascii"),
                                                    "text/plain": "<figure>"}, "metadata": {}}


def _in_kernel() -> bool:
    # Outside a Jupyter kernel (plain Python, doctests, tests) nobody sees the Output widget, so a
    # callback's error is raised instead of being shown under the widget.
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def _make_explorer(controls: dict, render: Callable[[], tuple], rows: list | None = None, caption: bool = True):
    """Build a VBox explorer whose ``update()`` calls ``render() -> (figure, state, caption_html)``."""
    import ipywidgets as widgets

    class _Explorer(widgets.VBox, Explorer):
        def update(self):
            """Redraw from the controls' current values; returns the new Figure (errors raise)."""
            fig, state, text = render()
            self.figure, self.state, self.png = fig, state, figure_png(fig)
            if self.caption is not None:
                self.caption.value = text
            # Replace the Output widget's outputs as one state update instead of capturing display() calls
            # in a `with output:` block: capture routes the cell's own messages through the widget, and under
            # nbclient (CI) that intermittently stalled a cell until its timeout. One synced trait is atomic.
            self.output.outputs = (_png_output(self.png),)
            return fig

        def _on_change(self, _change=None) -> None:
            # A callback's exception would vanish into the browser's log: show it under the widget instead.
            try:
                self.update()
            except Exception:  # noqa: BLE001 - shown to the user, not swallowed
                if not _in_kernel():
                    raise
                self.output.outputs = ({"output_type": "stream", "name": "stderr", "text": traceback.format_exc()},)

    output = widgets.Output(layout=widgets.Layout(min_height="120px"))
    caption_widget = widgets.HTML() if caption else None
    children = list(rows if rows is not None else controls.values())
    children += [w for w in (caption_widget, output) if w is not None]
    explorer = _Explorer(children=children)
    explorer.controls, explorer.output, explorer.caption = controls, output, caption_widget
    explorer.figure, explorer.png, explorer.state = None, b"", {}
    for control in controls.values():
        if isinstance(control, widgets.Button):
            continue  # buttons wire their own on_click
        # Play drives the snapshot slider (jslink) and is not drawn from itself.
        if isinstance(control, widgets.ValueWidget) and not isinstance(control, widgets.Play):
            control.observe(explorer._on_change, names="value")
    return explorer


# ------------------------------------------------------------------------------ 1. augmentation explorer
#: The knobs the augmentation explorer exposes, with their slider ranges (min, max, step): ViewConfig
#: fields (``crop_scale_min`` and ``crop_ratio_max`` set the crop's ranges) and ``perspective``, the
#: distortion of torchvision's RandomPerspective, which SimCLR does not use (see :func:`augmentation_grid`).
CONTROL_FIELDS = {
    "crop_scale_min": (0.05, 1.0, 0.01),
    "crop_ratio_max": (1.0, 4.0, 0.05),
    "flip_p": (0.0, 1.0, 0.05),
    "jitter_strength": (0.0, 2.5, 0.05),
    "hue_shift": (0.0, 0.5, 0.01),
    "jitter_p": (0.0, 1.0, 0.05),
    "grayscale_p": (0.0, 1.0, 0.05),
    "blur_p": (0.0, 1.0, 0.05),
    "perspective": (0.0, 0.9, 0.05),
}


def config_from_controls(base: ViewConfig = SIMCLR, **values) -> ViewConfig:
    """The :class:`~crl_helpers.views.ViewConfig` that the explorer's control values describe.

    ``crop_scale_min`` sets the lower end of ``crop_scale`` (the upper end stays ``base``'s, raised
    to the minimum if needed); ``crop_ratio_max`` = r sets ``crop_ratio`` to (1 / r, r), the aspect
    ratios w / h a crop may take; the other keys are ViewConfig fields of the same name (``hue_shift``
    fixes the hue amplitude, which otherwise follows ``jitter_strength``). Keys left out keep
    ``base``'s values. ``perspective`` is not a ViewConfig field: pass it to :func:`augmentation_grid`.

    Args:
        base: the config to start from (image size, mean/std, blur sigma ...).
        **values: any of :data:`CONTROL_FIELDS` but ``perspective``.

    Raises:
        TypeError: an unknown key (the message lists the known ones), ``perspective``, or ``base`` not a ViewConfig.
        ValueError: a value ViewConfig rejects (a probability outside [0, 1], ...).

    Example:
        >>> config_from_controls(crop_scale_min=0.5, grayscale_p=0.0).crop_scale
        (0.5, 1.0)
        >>> config_from_controls(crop_ratio_max=2.0).crop_ratio
        (0.5, 2.0)
        >>> config_from_controls(hue=0.1)
        Traceback (most recent call last):
        ...
        TypeError: unknown control 'hue'; use crop_scale_min, crop_ratio_max, flip_p, jitter_strength, hue_shift, jitter_p, grayscale_p, blur_p, perspective
    """
    if not isinstance(base, ViewConfig):
        raise TypeError(f"base={base!r} must be a ViewConfig")
    unknown = [k for k in values if k not in CONTROL_FIELDS]
    if unknown:
        raise TypeError(f"unknown control {unknown[0]!r}; use {', '.join(CONTROL_FIELDS)}")
    if "perspective" in values:
        raise TypeError("perspective is not a ViewConfig field; pass it to augmentation_grid(..., perspective=...)")
    changes = {k: float(v) for k, v in values.items() if k not in ("crop_scale_min", "crop_ratio_max")}
    if "crop_scale_min" in values:
        low = float(values["crop_scale_min"])
        changes["crop_scale"] = (low, max(low, base.crop_scale[1]))
    if "crop_ratio_max" in values:
        high = float(values["crop_ratio_max"])
        if not high >= 1:
            raise ValueError(f"crop_ratio_max={high!r} must be >= 1 (the crop's w / h lies in [1 / r, r])")
        changes["crop_ratio"] = (1 / high, high)
    return dataclasses.replace(base, **changes)


def _views_and_params(images: torch.Tensor, config: ViewConfig, n_views: int, seed: int,
                      perspective: float) -> tuple[torch.Tensor, list]:
    """The grid of :func:`augmentation_grid` and the ``ViewParams`` (crop boxes ...) of each of its views."""
    from crl_helpers.views import check_n_views

    if not isinstance(config, ViewConfig):
        raise TypeError(f"config={config!r} must be a ViewConfig")
    check_n_views(n_views)
    if not 0.0 <= float(perspective) < 1.0:
        raise ValueError(f"perspective={perspective!r} is RandomPerspective's distortion scale; use a value in [0, 1)")
    display_config = dataclasses.replace(config, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    generator = torch.Generator().manual_seed(int(seed))
    height, width = images.shape[-2:]
    # The same draws as make_views: one sample_view_params per view, so the crop boxes are known.
    params = [sample_view_params(images.shape[0], display_config, generator, height=int(height), width=int(width))
              for _ in range(n_views)]
    views = [apply_view_params(images, p, display_config) for p in params]  # n_views x (K, 3, S, S)
    grid = torch.stack(views, dim=1).clamp_(0.0, 1.0)  # (K, n_views, 3, S, S)
    if perspective > 0:
        # Per view on the CPU with torchvision (the batched pipeline has no perspective); torch's global RNG
        # is seeded inside fork_rng, so the grid is still a function of the arguments and the caller's RNG is untouched.
        from torchvision.transforms import v2

        warp = v2.RandomPerspective(distortion_scale=float(perspective), p=1.0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            grid = torch.stack([torch.stack([warp(view) for view in row]) for row in grid])  # (K, V, 3, S, S)
    return grid, params


def augmentation_grid(images: torch.Tensor, config: ViewConfig = SIMCLR, n_views: int = 4,
                      seed: int = 0, perspective: float = 0.0) -> torch.Tensor:
    """``n_views`` augmented views of each image, in [0, 1] for display (SimCLR, Chen et al. 2020).

    The views are :func:`crl_helpers.views_batched.make_views` with ``config`` (its ``mean``/``std`` are
    replaced by 0/1 so the output is un-normalised) and a CPU generator seeded with ``seed``:
    the same arguments always give the same grid. ``perspective > 0`` then warps every view with
    torchvision's ``RandomPerspective(distortion_scale=perspective, p=1)`` (not part of SimCLR): the
    corners move inwards, so the whole crop stays in the frame and black fills the rest.

    Args:
        images: ``(K, 3, H, W)``, uint8 in [0, 255] or float in [0, 1].
        config: the augmentation settings (``image_size`` sets the views' side ``S``).
        n_views: views per image.
        seed: seeds the random parameters.
        perspective: distortion scale in [0, 1); 0 leaves the views flat.

    Returns:
        float32 ``(K, n_views, 3, S, S)`` in [0, 1].

    Raises:
        TypeError, ValueError: as :func:`crl_helpers.views_batched.make_views`; ``perspective`` outside [0, 1).

    Example:
        >>> x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
        >>> grid = augmentation_grid(x, dataclasses.replace(SIMCLR, image_size=8), n_views=3, perspective=0.5)
        >>> grid.shape, bool(grid.min() >= 0 and grid.max() <= 1)
        (torch.Size([2, 3, 3, 8, 8]), True)
    """
    return _views_and_params(images, config, n_views, seed, perspective)[0]


def _to_display(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) uint8 or [0, 1] float -> (H, W, 3) float array for imshow."""
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    return x.clamp(0, 1).permute(1, 2, 0).cpu().numpy()  # (H, W, 3)


def _control_values(config: ViewConfig) -> dict[str, float]:
    """The value of each of :data:`CONTROL_FIELDS` that ``config`` (and flat views) stand for."""
    # hue_shift may be None in a config (hue follows the strength): the control shows the amplitude in force.
    return {"crop_scale_min": config.crop_scale[0], "crop_ratio_max": max(config.crop_ratio[1], 1 / config.crop_ratio[0]),
            "flip_p": config.flip_p, "jitter_strength": config.jitter_strength, "hue_shift": config.hue,
            "jitter_p": config.jitter_p, "grayscale_p": config.grayscale_p, "blur_p": config.blur_p, "perspective": 0.0}


def _augmentation_state(images: torch.Tensor, masks: torch.Tensor, config: ViewConfig, n_views: int, seed: int,
                        perspective: float) -> dict:
    """The views of one setting of the augmentation explorer and its two meters (``w.state``)."""
    from crl_helpers.pairs import crop_object_fraction, histogram_shortcut

    grid, params = _views_and_params(images, config, n_views, seed, perspective)  # (K, V, 3, S, S)
    kept = torch.stack([crop_object_fraction(masks, p.top, p.left, p.height, p.width) for p in params], dim=1)  # (K, V)
    shortcut = histogram_shortcut(grid, images)  # (K, V) bool
    return {"config": config, "perspective": float(perspective), "seed": int(seed), "grid": grid,
            "grid_shape": tuple(grid.shape), "object_kept": kept, "shortcut": shortcut,
            "object_kept_mean": float(kept.mean()), "shortcut_rate": float(shortcut.float().mean())}


_MARKS = {True: "\u2713", False: "\u2717"}  # a view matched to its own image by colour histogram, or not


def _augmentation_texts(state: dict, known: torch.Tensor) -> dict:
    """The explorer's words for ``state``: the two meters' lines, the caption, and a label per view (K, V)."""
    current, kept_mean, rate, k = state["config"], state["object_kept_mean"], state["shortcut_rate"], len(known)
    return {
        "object kept": (f"{kept_mean:.0%} of the object inside the crop, mean over views"
                        + ("" if known.all() else " (crop area where no mask is known)")),
        "colour shortcut": f"{rate:.0%} of views matched to their own image by colour histogram alone (chance {1 / k:.0%})",
        "caption": (f"crop scale [{current.crop_scale[0]:.2f}, {current.crop_scale[1]:.2f}] of the area, "
                    f"aspect ratio [{current.crop_ratio[0]:.2f}, {current.crop_ratio[1]:.2f}], "
                    f"flip p={current.flip_p:.2f}, colour jitter s={current.jitter_strength:.2f} "
                    f"(hue shift up to {current.hue:.2f} of a turn) with p={current.jitter_p:.2f}, "
                    f"grayscale p={current.grayscale_p:.2f}, "
                    f"blur p={current.blur_p:.2f}, perspective {state['perspective']:.2f} | seed {state['seed']} | "
                    f"object kept {kept_mean:.0%}, colour shortcut {rate:.0%}"),
        "labels": [[f"{'obj' if known[i] else 'area'} {float(kept):.0%} | hist {_MARKS[hit]}"
                    for kept, hit in zip(state["object_kept"][i].tolist(), state["shortcut"][i].tolist())]
                   for i in range(k)],
    }


def _augmentation_figure(images: torch.Tensor, state: dict, known: torch.Tensor):
    """The augmentation explorer's figure: a row per image, the original then its views, each labelled with its meters."""
    grid, labels = state["grid"], _augmentation_texts(state, known)["labels"]
    k, n_views = grid.shape[:2]
    height = 1.45 * k + 0.45  # inches: a row per image with room for the meters' labels, a title line
    fig = _new_figure(1.25 * (n_views + 1), height, layout=None)
    axes = fig.subplots(k, n_views + 1, squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.17 / height, top=1 - 0.28 / height, wspace=0.06, hspace=0.3)
    for i in range(k):
        axes[i, 0].imshow(_to_display(images[i]), interpolation="nearest")
        for j in range(n_views):
            axes[i, j + 1].imshow(_to_display(grid[i, j]), interpolation="nearest")
            axes[i, j + 1].set_xlabel(labels[i][j], fontsize=7, labelpad=1,
                                      color="tab:red" if state["shortcut"][i, j] else "black")
    for j, ax in enumerate(axes[0]):
        ax.set_title("original x" if j == 0 else f"view {j}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


#: The environment variable that asks for explorers that work on a static page: set (to anything but "" or "0"),
#: :func:`augmentation_explorer` returns its precomputed browser version. ``crl site`` sets it in the kernels
#: that execute the notebooks (:func:`crl_helpers.site.execute_notebooks`).
STATIC_WIDGETS_ENV = "CRL_STATIC_WIDGETS"
#: The static augmentation explorer's grid: crop scales (the slider's minimum, SimCLR's 0.08, whole-image crops ...)
#: and jitter strengths (none to strong), each with the config's own value added, and this many seeds (re-sample).
STATIC_CROP_SCALES = (0.05, 0.08, 0.2, 0.6, 1.0)
STATIC_JITTER_STRENGTHS = (0.0, 1.0, 2.0)
STATIC_SEEDS = 3
#: The side (pixels) of the static explorer's stored views (larger images are scaled down; the browser scales up).
STATIC_VIEW_SIDE = 48


def static_widgets() -> bool:
    """Whether explorers should be the versions that work without a kernel (:data:`STATIC_WIDGETS_ENV` is set).

    Example:
        >>> import os
        >>> static_widgets() == (os.environ.get("CRL_STATIC_WIDGETS", "") not in ("", "0"))
        True
    """
    import os

    return os.environ.get(STATIC_WIDGETS_ENV, "") not in ("", "0")


def augmentation_explorer(images: torch.Tensor, config: ViewConfig = SIMCLR, n_views: int = 4, seed: int = 0,
                          masks: torch.Tensor | None = None, static: bool | None = None):
    """Sliders for SimCLR's augmentations over a grid of views, with two live meters (Chen et al. 2020, Appendix A).

    Rows are the ``K`` images (the original first), columns ``n_views`` random views drawn with
    the current settings. The controls ``crop_scale_min``, ``crop_ratio_max``, ``flip_p``,
    ``jitter_strength``, ``hue_shift``, ``jitter_p``, ``grayscale_p``, ``blur_p`` edit the config
    (:func:`config_from_controls`), ``perspective`` warps the views (:func:`augmentation_grid`);
    ``resample`` draws new random parameters (next seed). Views are made at the images' own side.

    The meters (tested pure functions of :mod:`crl_helpers.pairs`), per view under it and averaged in
    two bars: **object kept**, the fraction of the image's object mask inside the view's crop box
    (:func:`~crl_helpers.pairs.crop_object_fraction`; for an image without a mask, the crop's share of
    the image area, labelled "area"); **colour shortcut**, whether the view's colour histogram alone
    finds its source among the ``K`` images (:func:`~crl_helpers.pairs.histogram_shortcut`, chance 1/K).

    Two versions, one call (``static``; by default :func:`static_widgets`, i.e. the environment variable
    ``CRL_STATIC_WIDGETS``, which ``crl site`` sets while it executes the notebooks):

    * live (``static=False``, JupyterLab): an ``ipywidgets.VBox`` whose callbacks redraw a matplotlib figure
      in the kernel, for any value of all nine controls;
    * static (``static=True``, the site and the lecture page): an anywidget (``widgets_js/augment.js``) that
      holds views drawn ahead, here, for a grid of settings: ``crop_scale_min`` in :data:`STATIC_CROP_SCALES`
      and ``jitter_strength`` in :data:`STATIC_JITTER_STRENGTHS` (each with ``config``'s value added), and
      :data:`STATIC_SEEDS` seeds from ``seed`` (re-sample steps through them); the other seven controls stay
      at ``config``'s values. The browser snaps its two sliders to the grid and only looks up what it shows:
      views (stored at :data:`STATIC_VIEW_SIDE` pixels at most), meters and caption are computed by the same
      functions as the live version's, so a grid point shows the numbers the live explorer shows for it.
      Setting a control from Python to a value off the grid raises ValueError (naming the grid's values).

    Args:
        images: ``(K, 3, H, W)`` uint8 or [0, 1] float; K of 2 to 8 reads best.
        config: the starting settings.
        n_views: views per image.
        seed: the first seed.
        masks: ``(K, H, W)`` object masks in [0, 1] (e.g. :func:`crl_helpers.pairs.object_masks`), an
            all-ones row for an image whose object is unknown; None: all unknown.
        static: the version: True the precomputed browser one, False the live one, None from the environment.

    Returns:
        An :class:`Explorer` (an ``ipywidgets.VBox``, or an ``anywidget.AnyWidget`` when static); ``w.controls``
        holds the nine controls and ``resample``; ``w.state`` holds ``config``, ``perspective``, ``seed``,
        ``grid`` (the views), ``grid_shape``, ``object_kept`` (K, V), ``shortcut`` (K, V) bool, and their means
        ``object_kept_mean`` and ``shortcut_rate``; ``w.caption.value`` the caption; ``w.png`` the figure;
        ``w.resample()`` draws new views (the next seed). The live version has ``w.meters``, the two bars;
        the static one ``w.text`` (the caption, as the other browser explorers) and ``w.grid_points``.

    Raises:
        TypeError, ValueError: bad images, config, n_views or masks.

    Example:
        >>> x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
        >>> w = augmentation_explorer(x, n_views=2, static=True)
        >>> w.controls["crop_scale_min"].options
        [0.05, 0.08, 0.2, 0.6, 1.0]
        >>> w.controls["crop_scale_min"].value = 1.0  # a grid value: the state is the live explorer's for it
        >>> w.state["object_kept_mean"]
        1.0
    """
    from crl_helpers.validate import check_images, check_int

    images = check_images("images", images, channels=3, unit_range=True)
    n_views = check_int("n_views", n_views, 1)
    k = images.shape[0]
    base = dataclasses.replace(config, image_size=int(min(images.shape[-2:])))
    images = images.detach().cpu()
    masks = torch.ones(k, *images.shape[-2:]) if masks is None else torch.as_tensor(masks, dtype=torch.float32).cpu()
    if masks.shape != (k, *images.shape[-2:]):
        raise ValueError(f"masks has shape {tuple(masks.shape)}; pass one (H, W) mask per image: "
                         f"{(k, *images.shape[-2:])} (all ones where the object is unknown)")
    known = ~(masks == 1).flatten(1).all(dim=1)  # (K,) rows with a real object mask
    if static_widgets() if static is None else static:
        return _static_augmentation_explorer(images, masks, known, base, n_views, int(seed))
    import ipywidgets as widgets

    controls = {}
    for name, (low, high, step) in CONTROL_FIELDS.items():
        controls[name] = widgets.FloatSlider(value=_control_values(base)[name], min=low, max=high, step=step,
                                             description=name,
                                             continuous_update=False, readout_format=".2f",
                                             style={"description_width": "105px"},
                                             layout=widgets.Layout(width="320px"))
    controls["resample"] = widgets.Button(description="re-sample", icon="refresh", tooltip="draw new random views")
    # The meters are outputs, not controls: kept out of `controls` so that setting them never triggers a redraw.
    meter_style = {"description_width": "105px"}
    meters = {name: widgets.FloatProgress(value=0.0, min=0.0, max=1.0, description=name, style=meter_style,
                                          layout=widgets.Layout(width="320px"))
              for name in ("object kept", "colour shortcut")}
    # Labels, not HTML: the caption stays the explorer's first HTML widget (the browser test reads it).
    meter_text = {name: widgets.Label() for name in meters}
    seed_box = {"seed": int(seed)}

    def render():
        values = {name: controls[name].value for name in CONTROL_FIELDS if name != "perspective"}
        state = _augmentation_state(images, masks, config_from_controls(base, **values), n_views, seed_box["seed"],
                                    float(controls["perspective"].value))
        texts = _augmentation_texts(state, known)
        meters["object kept"].value, meters["colour shortcut"].value = state["object_kept_mean"], state["shortcut_rate"]
        meter_text["object kept"].value, meter_text["colour shortcut"].value = texts["object kept"], texts["colour shortcut"]
        return _augmentation_figure(images, state, known), state, texts["caption"]

    sliders = [controls[name] for name in CONTROL_FIELDS]
    rows = [widgets.HBox(sliders[:3]), widgets.HBox(sliders[3:6]), widgets.HBox(sliders[6:] + [controls["resample"]]),
            *[widgets.HBox([meters[name], meter_text[name]]) for name in meters]]
    explorer = _make_explorer(controls, render, rows=rows)
    explorer.meters = meters

    def resample(_button=None) -> None:
        seed_box["seed"] += 1
        explorer._on_change()

    controls["resample"].on_click(resample)
    explorer.resample = resample
    explorer.update()
    return explorer


def _tiles_url(tiles: torch.Tensor, side: int, image_format: str = "WEBP") -> str:
    """A ``(R, C, 3, S, S)`` grid of [0, 1] (or uint8) images as one mosaic image (R rows, C columns of
    ``side`` pixels), a base64 data URL: how the static augmentation explorer ships its views."""
    from PIL import Image

    rows, cols = tiles.shape[:2]
    x = tiles.flatten(0, 1)  # (R*C, 3, S, S)
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    if x.shape[-1] != side:
        x = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)  # (R*C, 3, side, side)
    mosaic = x.reshape(rows, cols, 3, side, side).permute(0, 3, 1, 4, 2).reshape(rows * side, cols * side, 3)
    buffer = io.BytesIO()
    options = {"WEBP": {"quality": 80, "method": 6}, "PNG": {"optimize": True}}.get(image_format, {"quality": 85})
    Image.fromarray(mosaic.numpy()).save(buffer, format=image_format, **options)
    return f"data:image/{image_format.lower()};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _static_augmentation_explorer(images: torch.Tensor, masks: torch.Tensor, known: torch.Tensor, base: ViewConfig,
                                  n_views: int, seed: int):
    """The augmentation explorer for a page without a kernel (see :func:`augmentation_explorer`, ``static=True``)."""
    fixed = _control_values(base)
    grid_values = {"crop_scale_min": sorted({*STATIC_CROP_SCALES, round(fixed["crop_scale_min"], 6)}),
                   "jitter_strength": sorted({*STATIC_JITTER_STRENGTHS, round(fixed["jitter_strength"], 6)})}
    crops, jitters = grid_values["crop_scale_min"], grid_values["jitter_strength"]
    seeds = [seed + i for i in range(STATIC_SEEDS)]
    side = min(int(images.shape[-1]), STATIC_VIEW_SIDE)

    def state_at(crop: float, jitter: float, seed_: int) -> dict:
        # The live explorer's config at these slider values, the other sliders at the config's.
        values = {name: v for name, v in fixed.items() if name != "perspective"}
        config = config_from_controls(base, **{**values, "crop_scale_min": crop, "jitter_strength": jitter})
        return _augmentation_state(images, masks, config, n_views, seed_, fixed["perspective"])

    def point(state: dict) -> dict:
        texts = _augmentation_texts(state, known)
        return {"views": _tiles_url(state["grid"], side), "labels": texts["labels"],
                "matched": state["shortcut"].tolist(), "object_kept": state["object_kept_mean"],
                "shortcut_rate": state["shortcut_rate"], "object_kept_text": texts["object kept"],
                "shortcut_text": texts["colour shortcut"], "caption": texts["caption"]}

    threads = torch.get_num_threads()
    # Many small tensors: one thread does them as fast, and threads waiting on a busy machine's cores cost far more.
    torch.set_num_threads(1)
    try:
        points = [[[point(state_at(c, j, s)) for s in seeds] for j in jitters] for c in crops]
    finally:
        torch.set_num_threads(threads)
    widget = _browser_classes()["augment"](
        crop_values=crops, jitter_values=jitters, seeds=seeds, crop_index=crops.index(round(fixed["crop_scale_min"], 6)),
        jitter_index=jitters.index(round(fixed["jitter_strength"], 6)), seed_index=0, side=side,
        originals=_tiles_url(images[:, None], side), points=points,
        fixed={name: float(v) for name, v in fixed.items() if name not in grid_values})

    def on_grid(name: str):
        def put(value) -> int:
            for i, v in enumerate(grid_values[name]):
                if abs(float(value) - v) < 1e-6:
                    return i
            raise ValueError(f"{name}={value!r} is not on the static explorer's grid {grid_values[name]}; "
                             "use one of those (run the notebook in Jupyter for any value)")
        return put

    def keep_fixed(name: str):
        def put(value) -> dict:
            if abs(float(value) - widget.fixed[name]) > 1e-6:
                raise ValueError(f"{name}={value!r}: the static explorer holds {name} at {widget.fixed[name]:.2f} "
                                 "(views drawn ahead for crop_scale_min and jitter_strength only); run the notebook "
                                 "in Jupyter to move it")
            return dict(widget.fixed)
        return put

    def resample(_button=None) -> None:
        widget.seed_index = (widget.seed_index + 1) % len(seeds)

    controls = {}
    for name, (low, high, _step) in CONTROL_FIELDS.items():
        if name in grid_values:
            controls[name] = BrowserControl(widget, "crop_index" if name == "crop_scale_min" else "jitter_index",
                                            get=grid_values[name].__getitem__, put=on_grid(name),
                                            options=grid_values[name], description=name, min=low, max=high)
        else:
            controls[name] = BrowserControl(widget, "fixed", get=lambda d, n=name: d[n], put=keep_fixed(name),
                                            description=name, disabled=True, min=low, max=high)
    controls["resample"] = BrowserControl(widget, "seed_index", get=seeds.__getitem__, options=seeds,
                                          description="re-sample", click=resample)
    widget.controls, widget.resample = controls, resample
    widget.grid_points = len(crops) * len(jitters) * len(seeds)

    def compute() -> dict:
        state = state_at(crops[widget.crop_index], jitters[widget.jitter_index], seeds[widget.seed_index])
        widget.text = _augmentation_texts(state, known)["caption"]
        return state

    widget._start(compute, lambda state: _augmentation_figure(images, state, known),
                  ["crop_index", "jitter_index", "seed_index"])
    return widget


# -------------------------------------------------------------------- the browser explorers' machinery
#: The JavaScript of the browser explorers: ``common.js`` (drawing kit) and one ES module per explorer.
JS_DIR = Path(__file__).resolve().parent / "widgets_js"


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


def _rounded(values, digits: int = 4) -> list[float]:
    # Map coordinates travel in the widget's saved state: 4 decimals are far below a pixel and keep it small.
    return [round(float(v), digits) for v in np.asarray(values, dtype=np.float64).ravel()]


# ------------------------------------------------------------------------------- 2. temperature explorer
#: The K the browser's "K negatives" slider offers (the explorer's starting K is added).
K_CHOICES = (1, 2, 3, 4, 5, 7, 10, 15, 20, 31, 40, 63, 80, 127, 160, 255)
#: The temperatures at which the circle toy is trained ahead: the browser's "train" button replays the nearest.
CIRCLE_TEMPERATURES = (0.05, 0.2, 1.0, 5.0)


def negative_draws(n_negatives: int, seed: int = 0) -> list[float]:
    """The K sorted standard-normal draws ``z`` behind :func:`crl_helpers.temperature.similarities_with`.

    ``similarities_with(K, mean, positive, spread, seed)`` is ``[positive, clip(mean + spread * z, -1, 1)]``
    (clipping keeps the order), so the browser rebuilds it for any mean from these K numbers. They are read
    off ``similarities_with`` itself at a spread of 2^-10 (a power of two: scaling back is exact).

    Example:
        >>> from crl_helpers.temperature import similarities_with
        >>> z = negative_draws(3)
        >>> [0.7] + [min(1, max(-1, 0.2 + 0.1 * v)) for v in z] == similarities_with(3, 0.2).tolist()
        True
    """
    from crl_helpers.temperature import similarities_with

    scale = 2.0 ** -10
    return (similarities_with(n_negatives, 0.0, spread=scale, seed=seed)[1:] / scale).tolist()


def _draw_circle(ax, snapshot, title: str) -> None:
    """The circle toy's embedding: view 1 on the circle, view 2 just outside, coloured by the content's angle."""
    hue = (torch.atan2(snapshot.content[:, 1], snapshot.content[:, 0]) / (2 * math.pi)) % 1  # (n,) in [0, 1)
    theta = np.linspace(0, 2 * math.pi, 200)
    ax.plot(np.cos(theta), np.sin(theta), color="grey", alpha=0.4, linewidth=0.8)
    ax.scatter(*snapshot.z1.T.numpy(), c=hue.numpy(), cmap="hsv", s=12, vmin=0, vmax=1)
    ax.scatter(*(1.15 * snapshot.z2).T.numpy(), c=hue.numpy(), cmap="hsv", s=5, alpha=0.6, vmin=0, vmax=1)
    ax.set_aspect("equal")
    ax.set_xlim(-1.3, 1.3)
    ax.set_ylim(-1.3, 1.3)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def _circle_run(temperature: float, train_steps: int, n_points: int):
    """The circle toy's snapshots while it trains (about 6 of them and the untrained one)."""
    from crl_helpers.temperature import circle_training

    return circle_training(temperature, train_steps, n_points, every=max(1, train_steps // 6))


def _circle_json(temperature: float, snapshots: list) -> dict:
    return {"temperature": float(temperature),
            "snapshots": [{"step": s.step, "z1": _rounded(s.z1, 3), "z2": _rounded(s.z2, 3), "alignment": float(s.alignment),
                           "uniformity": float(s.uniformity)} for s in snapshots]}


def _temperature_figure(state: dict, sweep: dict, snapshot, trained_at: str):
    """The four panels of the temperature explorer as a matplotlib Figure (the PNG of ``w.png``)."""
    s, p, weights, tau, loss = state["similarities"], state["p"], state["weights"], state["temperature"], state["loss"]
    fig = _new_figure(15.0, 3.4, layout=None)
    ax_p, ax_g, ax_l, ax_c = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1.2, 1.2, 1.0, 0.8]})
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.22, top=0.86, wspace=0.25)
    x = np.arange(len(s))
    colours = ["tab:green"] + ["tab:red"] * (len(s) - 1)
    ax_p.bar(x, p.numpy(), color=colours)
    ax_p.set_title(f"(a) key distribution p_j, p_pos = {float(p[0]):.2f}", fontsize=9)
    ax_p.set_ylim(0, 1)
    ax_g.bar(x, weights.numpy(), color=colours)
    ax_g.axhline(0, color="black", linewidth=0.6)
    ax_g.set_title(f"(b) gradient dL/ds_j: hardest negative gets {100 * state['hardness_share']:.0f}% of the push",
                   fontsize=9)
    for ax in (ax_p, ax_g):
        if len(s) <= 24:
            ax.set_xticks(x)
            ax.set_xticklabels(["pos"] + [f"{v:.2f}" for v in s[1:].tolist()], rotation=90, fontsize=7)
        ax.set_xlabel("candidate (similarity s_j)" if len(s) <= 24 else "candidate: 0 = positive, then hardest first",
                      fontsize=8)
    ax_l.plot(sweep["temperature"].numpy(), sweep["loss"].numpy(), color="tab:blue")
    ax_l.axhline(math.log(len(s)), color="grey", linestyle=":", linewidth=0.8)
    ax_l.axvline(tau, color="tab:orange", linestyle="--")
    ax_l.plot([tau], [loss], "o", color="tab:orange")
    ax_l.set_xscale("log")
    ax_l.set_xlabel("temperature (dotted: log(K + 1))", fontsize=8)
    ax_l.set_title(f"(c) InfoNCE loss = {loss:.3f} at temperature {tau:.3f}", fontsize=9)
    ax_l.grid(alpha=0.3)
    _draw_circle(ax_c, snapshot, f"(d) circle toy ({trained_at}), step {snapshot.step}\n"
                                 f"align {snapshot.alignment:.2f}, uniform {snapshot.uniformity:.2f}")
    return fig


def temperature_explorer(similarities: torch.Tensor | None = None, temperature: float = 0.5, n_negatives: int = 15,
                         negative_mean: float = 0.3, train_steps: int = 150, n_points: int = 64):
    """A log-scale temperature slider over one anchor's InfoNCE, and a 2-D encoder trained on a circle (Wang & Liu 2021).

    Drawn by JavaScript in the browser (``widgets_js/temperature.js``, an anywidget), so its sliders work
    in JupyterLab and on a static page without a kernel. Four panels redraw as the controls move: (a) the
    key distribution ``p_j`` (softmax of ``s / temperature`` over the candidate keys, the positive in green);
    (b) the gradient ``dL/ds_j`` per candidate (the pull on the positive, the push on each negative); (c)
    the loss against the temperature, with the current value marked; (d) the circle toy of
    :func:`crl_helpers.temperature.circle_training`. The browser computes (a)-(c) from similarities Python
    supplies (the K sorted draws of :func:`crl_helpers.temperature.similarities_with`, see
    :func:`negative_draws`); tests/test_widgets_js.py checks its softmax, loss and gradient against
    :mod:`crl_helpers.temperature`. The circle toy is trained ahead in Python at
    :data:`CIRCLE_TEMPERATURES` (and the starting temperature): on a static page the "train on the circle"
    button replays the run nearest the slider's temperature, snapshot by snapshot; with a kernel (JupyterLab)
    it trains the toy live at exactly the slider's temperature, as ``w.train()`` does. The ``K`` slider offers :data:`K_CHOICES` (and the starting K); ``negative mean``
    sets how hard the negatives are; passing ``similarities`` fixes them instead (the two sliders are then
    disabled).

    Args:
        similarities: ``(1 + K,)`` cosine similarities, positive first; default: drawn from the sliders.
        temperature: the starting temperature (the slider spans 0.01 to 10, widened if needed).
        n_negatives, negative_mean: the sliders' starting values (K in 1..255, mean in [-0.9, 0.9]).
        train_steps, n_points: the circle toy's training length and number of points.

    Returns:
        An :class:`Explorer` (an ``anywidget.AnyWidget``); ``w.controls`` holds ``temperature``,
        ``n_negatives``, ``negative_mean`` (:class:`BrowserControl`: set ``.value`` to move them) and
        ``train``; ``w.train()`` trains the circle toy at the current temperature; ``w.state`` holds
        ``temperature``, ``loss``, ``p`` (1 + K,), ``weights`` (1 + K,), ``similarities`` (1 + K,),
        ``p_positive``, ``hardness_share`` (of the hardest negative), ``n_negatives``, ``negative_mean`` and
        ``circle`` (the shown snapshot: step, temperature, alignment, uniformity); ``w.text`` the caption;
        ``w.png`` a matplotlib rendering of the same numbers.

    Raises:
        TypeError, ValueError: as :func:`crl_helpers.temperature.key_distribution` and
            :func:`crl_helpers.temperature.similarities_with`.

    Example:
        >>> w = temperature_explorer(temperature=0.2, train_steps=10, n_points=16)
        >>> before = w.state["loss"]
        >>> w.controls["negative_mean"].value = 0.6  # harder negatives
        >>> w.state["loss"] > before
        True
        >>> w.train()["step"]
        10
    """
    from crl_helpers import temperature as tm
    from crl_helpers.validate import check_int, check_temperature

    fixed = None if similarities is None else tm.check_similarities(similarities).detach().cpu().double()
    temperature = check_temperature(temperature)
    n_negatives = check_int("n_negatives", n_negatives, 1)
    if n_negatives > 255:
        raise ValueError(f"n_negatives={n_negatives} must be in 1..255 (the K slider's range)")
    tm.similarities_with(n_negatives, negative_mean)  # validates the starting values
    train_steps, n_points = check_int("train_steps", train_steps, 1), check_int("n_points", n_points, 2)
    low = min(-2.0, math.floor(math.log10(temperature)))
    high = max(1.0, math.ceil(math.log10(temperature)))
    temperatures = torch.logspace(low, high, 61, dtype=torch.float64).tolist()
    k_options = sorted(set(K_CHOICES) | {n_negatives})

    runs = {repr(float(tau)): list(_circle_run(tau, train_steps, n_points)) for tau in sorted({*CIRCLE_TEMPERATURES, temperature})}
    content = next(iter(runs.values()))[0].content
    hue = (torch.atan2(content[:, 1], content[:, 0]) / (2 * math.pi)) % 1  # (n,) in [0, 1)
    widget = _browser_classes()["temperature"](
        temperature=temperature, log_range=[float(low), float(high)], n_negatives=n_negatives,
        negative_mean=float(negative_mean), k_options=k_options, draws={str(k): negative_draws(k) for k in k_options},
        fixed=[] if fixed is None else fixed.tolist(), circle_hue=_rounded(hue),
        circle_runs={key: _circle_json(float(key), snaps) for key, snaps in runs.items()},
        even_uniformity=math.log(math.exp(-4) * float(np.i0(4))))
    widget.layout.width = "100%"

    def shown_snapshot():
        snapshots = runs.get(widget.circle_key) or next(iter(runs.values()))[:1]
        return snapshots[min(widget.circle_index, len(snapshots) - 1)] if widget.circle_key in runs else snapshots[0]

    def compute() -> dict:
        tau = widget.temperature
        s = fixed if fixed is not None else tm.similarities_with(widget.n_negatives, widget.negative_mean)  # (1 + K,)
        p = tm.key_distribution(s, tau)  # (1 + K,)
        weights = tm.gradient_weights(s, tau)  # (1 + K,)
        loss = tm.info_nce_from_similarities(s, tau)
        share = tm.hardness_share(s, tau, top=1)
        snap = shown_snapshot()
        run_temperature = float(widget.circle_key) if widget.circle_key in runs else None
        trained_at = "untrained" if run_temperature is None else f"trained at temperature {run_temperature:.3f}"
        widget.text = (
            f"temperature {tau:.3f}, K = {len(s) - 1} negatives of mean similarity {float(s[1:].mean()):.2f}: "
            f"loss {loss:.3f} (log(K + 1) = {math.log(len(s)):.3f}), p(positive) {float(p[0]):.3f}, "
            f"pull on the positive {float(weights[0]):.2f}, the hardest negative takes {100 * share:.1f}% "
            f"of the push (uniform would be {100 / (len(s) - 1):.1f}%). Circle toy ({trained_at}, step "
            f"{snap.step}): alignment {snap.alignment:.3f}, uniformity {snap.uniformity:.3f} "
            f"(an even spread: {widget.even_uniformity:.3f})")
        return {"temperature": tau, "loss": loss, "p": p, "weights": weights, "similarities": s,
                "p_positive": float(p[0]), "hardness_share": share, "n_negatives": len(s) - 1,
                "negative_mean": float(s[1:].mean()), "trained_at": trained_at,
                "circle": {"step": snap.step, "temperature": run_temperature, "alignment": snap.alignment,
                           "uniformity": snap.uniformity}}

    def draw(state: dict):
        sweep = tm.temperature_sweep(state["similarities"], temperatures)
        return _temperature_figure(state, sweep, shown_snapshot(), state["trained_at"])

    def put_k(k) -> int:
        k = check_int("n_negatives", k, 1)
        if k > 255:
            raise ValueError(f"n_negatives={k} must be in 1..255 (the K slider's range)")
        if k not in widget.k_options:
            widget.draws = {**widget.draws, str(k): negative_draws(k)}
            widget.k_options = sorted([*widget.k_options, k])
        return k

    def put_mean(mean) -> float:
        tm.similarities_with(1, mean)  # validates
        return float(mean)

    def train(_button=None) -> dict:
        """Train the circle toy at the current temperature (``train_steps`` steps), sending each snapshot to the
        browser as it comes (a run trained before is shown at once); returns ``state["circle"]``."""
        tau = widget.temperature
        key = repr(float(tau))
        if key not in runs:
            runs[key] = []
            for snapshot in _circle_run(tau, train_steps, n_points):
                runs[key].append(snapshot)
                widget.circle_runs = {**widget.circle_runs, key: _circle_json(tau, runs[key])}
                widget.circle_key, widget.circle_index = key, len(runs[key]) - 1
        widget.circle_key, widget.circle_index = key, len(runs[key]) - 1
        return widget.state["circle"]

    def on_message(_widget, content, _buffers) -> None:
        # The browser's "train" button: in a kernel the toy trains at exactly the slider's temperature.
        if isinstance(content, dict) and content.get("event") == "train":
            widget.temperature = check_temperature(content.get("temperature"))
            train()

    disabled = fixed is not None
    widget.controls = {
        "temperature": BrowserControl(widget, "temperature", put=check_temperature, description="temperature",
                                      min=low, max=high, base=10),
        "n_negatives": BrowserControl(widget, "n_negatives", put=put_k, description="K negatives", min=1, max=255,
                                      disabled=disabled),
        "negative_mean": BrowserControl(widget, "negative_mean", put=put_mean, description="negative mean", min=-0.9,
                                        max=0.9, disabled=disabled),
        "train": BrowserControl(widget, "circle_key", description="train on the circle", click=train),
    }
    widget.train = train
    widget.on_msg(on_message)
    widget._start(compute, draw, ["temperature", "n_negatives", "negative_mean", "circle_key", "circle_index"])
    return widget


# ---------------------------------------------------------------------------------- 3. map explorers
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


def _neighbours(points: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices of each point's k nearest other points in a 2-D map (stable order on ties)."""
    distances = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)  # (N, N)
    np.fill_diagonal(distances, np.inf)  # a point is not its own neighbour
    return np.argsort(distances, axis=1, kind="stable")[:, :k]  # (N, k)


def _shared_share(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over points of |N_a(i) ∩ N_b(i)| / k for two (N, k) neighbour tables."""
    return float(np.mean([len(set(x) & set(y)) / a.shape[1] for x, y in zip(a, b)]))


def compare_maps(left, right, reference=None, k: int = 10) -> dict:
    """Two 2-D maps of the same N points, made comparable side by side: aligned, on shared axes, and
    the share of each point's ``k`` nearest neighbours that the two maps agree on.

    Both maps are Procrustes-aligned onto ``reference`` (:func:`crl_helpers.plots.align_snapshots`;
    without one, ``right`` is aligned onto ``left``), so that a rotation or mirror image of UMAP's
    does not read as a difference. The agreement is the mean over points ``i`` of
    ``|N_k^left(i) ∩ N_k^right(i)| / k``, with ``N_k(i)`` the ``k`` nearest other points of ``i`` in
    the map: 1 when the maps have the same neighbourhoods, about ``k / (N - 1)`` for unrelated maps.
    Rotations, mirror images, shifts and a common scale leave it unchanged.

    Args:
        left, right: (N, 2) map coordinates of the same N points, in the same order.
        reference: (N, 2) map to align both onto, or None.
        k: neighbours per point, capped at ``N - 1``.

    Returns:
        dict with ``left`` and ``right`` (aligned float64 (N, 2)), ``limits`` (``(low, high)``, each
        (2,), covering both maps with a 5 % margin) and ``shared_neighbours`` (a float in [0, 1]).

    Raises:
        ValueError: as :func:`crl_helpers.plots.align_snapshots`, fewer than 2 points, or k < 1.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a = rng.normal(size=(30, 2))
        >>> turned = a @ np.array([[0.0, -1.0], [1.0, 0.0]]) + 3.0  # a quarter turn, shifted
        >>> same = compare_maps(a, turned, k=5)
        >>> round(same["shared_neighbours"], 6), bool(np.allclose(same["right"], a))
        (1.0, True)
        >>> compare_maps(a, rng.normal(size=(30, 2)), k=5)["shared_neighbours"] < 0.5
        True
    """
    from crl_helpers.plots import align_snapshots

    if not (isinstance(k, (int, np.integer)) and k >= 1):
        raise ValueError(f"k={k!r} must be an int >= 1 (neighbours per point)")
    if reference is None:
        left, right = align_snapshots({"left": left, "right": right}).values()
    else:
        left = align_snapshots({"reference": reference, "map": left})["map"]
        right = align_snapshots({"reference": reference, "map": right})["map"]
    n = len(left)
    if n < 2:
        raise ValueError(f"the maps have {n} point(s); neighbourhoods need at least 2")
    k = min(int(k), n - 1)
    both = np.concatenate([left, right])  # (2N, 2)
    low, high = both.min(axis=0), both.max(axis=0)
    margin = 0.05 * np.maximum(high - low, 1e-9)
    return {"left": left, "right": right, "limits": (low - margin, high + margin),
            "shared_neighbours": _shared_share(_neighbours(left, k), _neighbours(right, k))}


def run_comparison_explorer(maps: dict, colourings: dict, names=None, left=None, right=None, k: int = 10):
    """Two runs side by side, epoch by epoch: the same N points mapped by each run's encoder, on one colouring.

    ``maps`` holds, for every run (the arms of an ablation, the temperatures of a sweep ...), the
    2-D maps of its features after the same epochs. Drawn by JavaScript in the browser (``widgets_js/maps.js``,
    an anywidget), so it works on a static page without a kernel: ``w.controls["left"]`` and
    ``w.controls["right"]`` pick the two runs, ``w.controls["epoch"]`` (a slider, animated by
    ``w.controls["play"]``) the epoch, ``w.controls["colour"]`` the colouring, shared by both panels.
    Every map is aligned onto one reference (the first run's last map) and all panels share their axes;
    the caption gives the share of nearest neighbours the two maps agree on (:func:`compare_maps`),
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
    tables = {run: [_neighbours(aligned[run][epoch], k) for epoch in epochs] for run in runs}
    shared = {f"{a}\t{b}": [_shared_share(x, y) for x, y in zip(tables[a], tables[b])] for a in runs for b in runs}
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
