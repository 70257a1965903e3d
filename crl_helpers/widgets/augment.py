"""The augmentation explorer: sliders for SimCLR's augmentations over a grid of views (Chen et al. 2020).

:func:`augmentation_explorer` is a thin layer over :func:`augmentation_grid` and :func:`config_from_controls`
(the pipeline of :mod:`crl_helpers.views`) and the meters of :mod:`crl_helpers.pairs` (object kept by the crop,
colour-histogram shortcut). Its figure is drawn in Python, so it needs a kernel; where
:data:`~crl_helpers.widgets.browser.STATIC_WIDGETS_ENV` is set the same call returns its static version, a
browser explorer holding views, meters and captions drawn ahead for a grid of slider values.

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
import io

import numpy as np
import torch

from crl_helpers.views import SIMCLR, ViewConfig
from crl_helpers.views_batched import apply_view_params, sample_view_params
from crl_helpers.widgets.base import _make_explorer, _new_figure
from crl_helpers.widgets.browser import BrowserControl, _browser_classes, static_widgets

__all__ = ["CONTROL_FIELDS", "config_from_controls", "augmentation_grid", "augmentation_explorer",
           "STATIC_CROP_SCALES", "STATIC_JITTER_STRENGTHS", "STATIC_SEEDS", "STATIC_VIEW_SIDE"]

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


#: The static augmentation explorer's grid: crop scales (the slider's minimum, SimCLR's 0.08, whole-image crops ...)
#: and jitter strengths (none to strong), each with the config's own value added, and this many seeds (re-sample).
STATIC_CROP_SCALES = (0.05, 0.08, 0.2, 0.6, 1.0)
STATIC_JITTER_STRENGTHS = (0.0, 1.0, 2.0)
STATIC_SEEDS = 3
#: The side (pixels) of the static explorer's stored views (larger images are scaled down; the browser scales up).
STATIC_VIEW_SIDE = 48



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


