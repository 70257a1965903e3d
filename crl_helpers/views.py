"""Augmentation settings and the per-image view pipeline: ViewConfig, its presets, torchvision's SimCLR transform.

SimCLR (Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020, Appendix A) draws two views ``x1, x2`` of every image ``x`` from the same
stochastic pipeline: random resized crop + horizontal flip, colour jitter (applied with probability 0.8),
random grayscale (0.2) and Gaussian blur (off for CIFAR-sized images). This module holds:

* :class:`ViewConfig` and the named presets (:data:`SIMCLR`, :data:`CROP_ONLY`, :data:`COLOUR_ONLY`,
  :data:`NO_AUGMENTATION`): the settings of that pipeline, the course's ablation arms;
* :func:`view_transform` / :class:`MultiViewTransform`: the classic per-image torchvision v2 pipeline,
  run inside a ``DataLoader`` worker on PIL images or ``uint8`` tensors.

The same pipeline for a whole ``(B, 3, H, W)`` batch on any device, with independent parameters per
sample, is :mod:`crl_helpers.views_batched`.

Example:
    >>> views = MultiViewTransform(SIMCLR, n_views=2)(torch.zeros(3, 32, 32, dtype=torch.uint8))
    >>> len(views), views[0].shape
    (2, torch.Size([3, 32, 32]))
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

__all__ = [
    "ViewConfig",
    "SIMCLR",
    "CROP_ONLY",
    "COLOUR_ONLY",
    "NO_AUGMENTATION",
    "blur_kernel_size",
    "view_transform",
    "MultiViewTransform",
    "check_view_config",
    "check_n_views",
]

# torchvision's ColorJitter bounds the hue shift to half a turn; 0.2 * s <= 0.5 gives s <= 2.5.
_MAX_JITTER_STRENGTH = 2.5


def _pair(value, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}={value!r} must be a pair of numbers, e.g. {name}=(0.2, 1.0)") from err
    return lo, hi


def _triple(value, name: str) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}={value!r} must be three numbers, one per RGB channel") from err
    if len(out) != 3:
        raise ValueError(f"{name}={value!r} has {len(out)} entries; give one per RGB channel (3)")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class ViewConfig:
    """The SimCLR augmentation pipeline (Chen et al. 2020, Appendix A), scaled for 32x32 images.

    Vary it with ``dataclasses.replace``; the named presets :data:`SIMCLR`, :data:`CROP_ONLY`,
    :data:`COLOUR_ONLY` and :data:`NO_AUGMENTATION` are the ablation arms of the course.

    Raises:
        ValueError: a probability outside [0, 1], a crop scale outside (0, 1] or out of order, a negative
            or too large jitter strength, a non-positive std or sigma, blur on a 1-pixel image; the message
            names the field.
        TypeError: a field that should be a pair or triple of numbers is not.

    Example:
        >>> ViewConfig().image_size
        32
        >>> ViewConfig(flip_p=1.5)
        Traceback (most recent call last):
        ...
        ValueError: flip_p=1.5 is a probability; use a value in [0, 1]
    """

    # Side of the square output view; CIFAR-10/100 are 32x32 and SimCLR trains at the data's resolution.
    image_size: int = 32
    # Fraction of the image area a crop covers. SimCLR uses the Inception crop's (0.08, 1) on ImageNet and
    # on CIFAR-10 alike (its Appendix B.9); (0.2, 1) is the MoCo v2 / SupCon convention, common in CIFAR
    # reproductions: on 32x32 images a 0.08 crop is a ~9x9 pixel patch.
    crop_scale: tuple[float, float] = (0.2, 1.0)
    # Aspect-ratio range of the crop, the paper's (and torchvision's) default.
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    # Horizontal flip with even odds: natural images are roughly mirror-symmetric.
    flip_p: float = 0.5
    # Colour-distortion strength s: brightness = contrast = saturation = 0.8 s, hue = 0.2 s. The paper
    # uses s = 1.0 on ImageNet and s = 0.5 on CIFAR-10.
    jitter_strength: float = 0.5
    # Hue shift amplitude as a fraction of a turn; None means the paper's 0.2 s. 0.5 draws the hue
    # uniformly around the whole circle, for data whose colours are random per image (the shapes).
    hue_shift: float | None = None
    # Colour jitter is applied to 80% of views in the paper; the other 20% keep their colours.
    jitter_p: float = 0.8
    # A fifth of views lose colour entirely, so the encoder cannot match views by colour histogram alone.
    grayscale_p: float = 0.2
    # Blur is off: the paper drops it for CIFAR because 32x32 images are already blurry.
    blur_p: float = 0.0
    # Blur sigma range in pixels, the paper's value (used only when blur_p > 0).
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    # Per-channel mean for normalisation; a placeholder, the caller passes the data set's own.
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # Per-channel std for normalisation; a placeholder that maps [0, 1] to roughly [-2, 2].
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    def __post_init__(self) -> None:
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size < 1:
            raise ValueError(f"image_size={self.image_size!r} must be a positive int, e.g. 32")
        # Frozen: normalise lists to tuples through object.__setattr__ so configs stay hashable.
        for name in ("crop_scale", "crop_ratio", "blur_sigma"):
            object.__setattr__(self, name, _pair(getattr(self, name), name))
        for name in ("mean", "std"):
            object.__setattr__(self, name, _triple(getattr(self, name), name))
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(
                f"crop_scale={self.crop_scale!r} must satisfy 0 < low <= high <= 1 (fractions of the image area)"
            )
        lo, hi = self.crop_ratio
        if not 0 < lo <= hi:
            raise ValueError(f"crop_ratio={self.crop_ratio!r} must satisfy 0 < low <= high, e.g. (3/4, 4/3)")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name}={p!r} is a probability; use a value in [0, 1]")
        if not 0.0 <= self.jitter_strength <= _MAX_JITTER_STRENGTH:
            raise ValueError(
                f"jitter_strength={self.jitter_strength!r} must be in [0, {_MAX_JITTER_STRENGTH}] "
                "(hue = 0.2 * strength may not exceed half a turn); the paper uses 0.5 on CIFAR, 1.0 on ImageNet"
            )
        if self.hue_shift is not None and not 0.0 <= self.hue_shift <= 0.5:
            raise ValueError(f"hue_shift={self.hue_shift!r} must be in [0, 0.5] (a fraction of a turn) or None")
        lo, hi = self.blur_sigma
        if not 0 < lo <= hi:
            raise ValueError(f"blur_sigma={self.blur_sigma!r} must satisfy 0 < low <= high, e.g. (0.1, 2.0)")
        if self.blur_p > 0 and self.image_size < 2:
            raise ValueError(f"image_size={self.image_size} is too small to blur (the 3-tap kernel needs a "
                             "neighbour); use blur_p=0 or image_size >= 2")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std={self.std!r} must be positive per channel; pass the data set's std")

    @property
    def brightness(self) -> float:
        """Brightness jitter amplitude, 0.8 s (factor drawn from [max(0, 1 - 0.8 s), 1 + 0.8 s])."""
        return 0.8 * self.jitter_strength

    @property
    def contrast(self) -> float:
        """Contrast jitter amplitude, 0.8 s."""
        return 0.8 * self.jitter_strength

    @property
    def saturation(self) -> float:
        """Saturation jitter amplitude, 0.8 s."""
        return 0.8 * self.jitter_strength

    @property
    def hue(self) -> float:
        """Hue jitter amplitude, 0.2 s (shift drawn from [-0.2 s, 0.2 s] of a full turn), or ``hue_shift``."""
        return 0.2 * self.jitter_strength if self.hue_shift is None else self.hue_shift


#: SimCLR's CIFAR-10 pipeline (crop + flip, colour jitter s = 0.5, grayscale, no blur) with the MoCo v2 /
#: SupCon crop scale (0.2, 1) in place of SimCLR's (0.08, 1).
SIMCLR = ViewConfig()
#: Ablation arm "crop only": random resized crop and flip (the paper counts flip with crop), no colour.
CROP_ONLY = dataclasses.replace(SIMCLR, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)
#: Ablation arm "colour only": jitter and grayscale on the whole, unflipped image.
COLOUR_ONLY = dataclasses.replace(SIMCLR, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, blur_p=0.0)
#: Both views equal the (resized, normalised) input: the "no augmentation" baseline.
NO_AUGMENTATION = dataclasses.replace(COLOUR_ONLY, jitter_p=0.0, grayscale_p=0.0)


def blur_kernel_size(image_size: int) -> int:
    """Gaussian-blur kernel side: 10% of the image side as in SimCLR, the nearest odd number, at least 3.

    Example:
        >>> blur_kernel_size(32), blur_kernel_size(96), blur_kernel_size(224)
        (3, 9, 23)
    """
    k = 2 * int(round((0.1 * image_size - 1) / 2)) + 1  # odd, so the kernel has a centre pixel
    return max(3, k)


# --------------------------------------------------------------------------------------------------
# The classic per-image pipeline (torchvision transforms v2)
# --------------------------------------------------------------------------------------------------


def view_transform(config: ViewConfig = SIMCLR) -> "torchvision.transforms.v2.Compose":
    """The torchvision v2 pipeline that draws ONE view of one image (SimCLR, Chen et al. 2020).

    Args:
        config: the augmentation settings.

    Returns:
        A ``Compose`` that maps a PIL image of any mode (RGBA loses its alpha, grayscale and palette
        images become RGB) or a ``uint8`` ``(3, H, W)`` or ``(1, H, W)`` tensor to a normalised
        float32 tensor ``(3, image_size, image_size)``.

    Raises:
        TypeError: ``config`` is not a :class:`ViewConfig`.

    Example:
        >>> x = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
        >>> view_transform(ViewConfig(image_size=24))(x).shape
        torch.Size([3, 24, 24])
    """
    from torchvision.transforms import v2  # here, not at the top: torchvision takes seconds to import

    check_view_config(config)
    steps: list = [
        # RGBA/palette/grayscale PIL images (and 1-channel tensors) become RGB, which every later step assumes.
        v2.RGB(),
        v2.RandomResizedCrop(config.image_size, scale=config.crop_scale, ratio=config.crop_ratio, antialias=True),
        v2.RandomHorizontalFlip(p=config.flip_p),
        v2.RandomApply(
            [v2.ColorJitter(config.brightness, config.contrast, config.saturation, config.hue)], p=config.jitter_p
        ),
        v2.RandomGrayscale(p=config.grayscale_p),
    ]
    if config.blur_p > 0:
        blur = v2.GaussianBlur(blur_kernel_size(config.image_size), sigma=config.blur_sigma)
        steps.append(v2.RandomApply([blur], p=config.blur_p))
    steps += [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(config.mean), std=list(config.std)),
        # A plain tensor, so default_collate and user code never meet the tv_tensors.Image subclass.
        v2.ToPureTensor(),
    ]
    return v2.Compose(steps)


class MultiViewTransform:
    """Turn one image into ``n_views`` independent augmented views (SimCLR, Chen et al. 2020).

    Use it as a data set's ``transform``; every call draws fresh parameters for every view. Images go
    through :func:`view_transform`, so any PIL mode (RGBA, grayscale, palette) gives RGB views.

    Args:
        config: the augmentation settings.
        n_views: views per image; 2 for SimCLR's pairs.

    Raises:
        ValueError: ``n_views`` is not an int >= 1.
        TypeError: ``config`` is not a :class:`ViewConfig`.

    Example:
        >>> views = MultiViewTransform(ViewConfig(), n_views=2)(torch.zeros(3, 32, 32, dtype=torch.uint8))
        >>> len(views), views[0].shape, views[0].dtype
        (2, torch.Size([3, 32, 32]), torch.float32)
    """

    def __init__(self, config: ViewConfig = SIMCLR, n_views: int = 2) -> None:
        check_n_views(n_views)
        self.config = config
        self.n_views = n_views
        self.transform = view_transform(config)

    def __call__(self, img) -> list[torch.Tensor]:
        return [self.transform(img) for _ in range(self.n_views)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(config={self.config!r}, n_views={self.n_views})"


# --------------------------------------------------------------------------------------------------
# Argument checks, shared with crl_helpers.views_batched
# --------------------------------------------------------------------------------------------------


def check_view_config(config) -> None:
    """Raise ``TypeError`` unless ``config`` is a :class:`ViewConfig`.

    Example:
        >>> check_view_config({"flip_p": 0.5})
        Traceback (most recent call last):
        ...
        TypeError: config={'flip_p': 0.5} must be a ViewConfig; build one with ViewConfig(...)
    """
    if not isinstance(config, ViewConfig):
        raise TypeError(f"config={config!r} must be a ViewConfig; build one with ViewConfig(...)")


def check_n_views(n_views) -> None:
    """Raise ``ValueError`` unless ``n_views`` (views per image) is an int >= 1.

    Example:
        >>> check_n_views(0)
        Traceback (most recent call last):
        ...
        ValueError: n_views=0 must be an int >= 1; SimCLR uses 2
    """
    if isinstance(n_views, bool) or not isinstance(n_views, int) or n_views < 1:
        raise ValueError(f"n_views={n_views!r} must be an int >= 1; SimCLR uses 2")
