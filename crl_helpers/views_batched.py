"""Batched views on any device: SimCLR's augmentations for a whole (B, 3, H, W) batch, fresh parameters per sample.

The pipeline of :func:`crl_helpers.views.view_transform` (SimCLR, Chen et al. 2020, Appendix A: random
resized crop + flip, colour jitter, grayscale, blur), re-implemented for a whole batch on any device, with
*independent* random parameters for every sample (torchvision's batched transforms draw one set of
parameters per call, which would give every image in a batch the same crop). Its settings are a
:class:`~crl_helpers.views.ViewConfig`.

* :func:`augment_batch` / :func:`make_views`: one view / ``n_views`` views of every image of a batch;
* :func:`sample_view_params` and :func:`apply_view_params` split it into "draw" and "apply" so that the
  parameters (:class:`ViewParams`) can be inspected, forced in tests, or plotted in a notebook;
* :class:`ViewAugmenter`: the training loop's view maker (one draw on the data's device, compilable).

Example:
    >>> x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    >>> x1, x2 = make_views(x, SIMCLR, generator=torch.Generator().manual_seed(0))
    >>> x1.shape, torch.equal(x1, x2)
    (torch.Size([4, 3, 32, 32]), False)
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.profiler import record_function

from crl_helpers.views import SIMCLR, ViewConfig, blur_kernel_size, check_n_views, check_view_config

__all__ = [
    "ViewParams",
    "N_UNIFORMS",
    "sample_view_params",
    "view_params_from_uniforms",
    "apply_view_params",
    "augment_batch",
    "make_views",
    "ViewAugmenter",
]

# ITU-R 601 luma weights exactly as torchvision's rgb_to_grayscale writes them (0.2989, not 0.299), so
# that the batched path and the per-image path agree to float precision.
_LUMA = (0.2989, 0.587, 0.114)
# Float images may stray this far outside [0, 1] (resampling round-off) before they are refused.
_RANGE_SLACK = 1e-3
# How many (scale, ratio) candidates RandomResizedCrop tries before falling back to a centre crop.
_CROP_ATTEMPTS = 10


@dataclass(frozen=True, eq=False)  # eq on tensors would be ambiguous; compare fields explicitly
class ViewParams:
    """Per-sample parameters of one batched augmentation; every field has a leading batch dim ``B``.

    The crop box is in input pixels (``top``/``left`` of the box's corner, ``height``/``width`` of its
    extent; fractional values are allowed and sampled bilinearly). Colour factors follow torchvision's
    ``adjust_*`` conventions; they take effect only where ``jitter`` is True. ``order`` holds a
    permutation of (0 brightness, 1 contrast, 2 saturation, 3 hue) per sample, the order in which the
    jitter ops run, like torchvision's ``ColorJitter``.
    """

    top: torch.Tensor  # (B,) float32, row of the crop's top edge
    left: torch.Tensor  # (B,) float32, column of the crop's left edge
    height: torch.Tensor  # (B,) float32, crop height in input pixels
    width: torch.Tensor  # (B,) float32, crop width in input pixels
    flip: torch.Tensor  # (B,) bool, mirror left-right
    jitter: torch.Tensor  # (B,) bool, apply the colour jitter
    brightness: torch.Tensor  # (B,) float32, factor >= 0, 1 = unchanged
    contrast: torch.Tensor  # (B,) float32, factor >= 0, 1 = unchanged
    saturation: torch.Tensor  # (B,) float32, factor >= 0, 1 = unchanged
    hue: torch.Tensor  # (B,) float32, shift in turns, in [-0.5, 0.5], 0 = unchanged
    order: torch.Tensor  # (B, 4) int64, permutation of 0..3
    grayscale: torch.Tensor  # (B,) bool, convert to 3-channel grayscale
    blur: torch.Tensor  # (B,) bool, apply the Gaussian blur
    sigma: torch.Tensor  # (B,) float32, blur sigma in output pixels

    @property
    def batch_size(self) -> int:
        """Number of samples ``B``."""
        return self.top.shape[0]

    def to(self, device: torch.device | str) -> ViewParams:
        """The same parameters on ``device`` (CPU -> CUDA copies are asynchronous, see ``_to_device``)."""
        return ViewParams(**{f.name: _to_device(getattr(self, f.name), device) for f in dataclasses.fields(self)})

    @classmethod
    def identity(cls, batch_size: int, height: int, width: int) -> ViewParams:
        """Parameters that change nothing: the whole image, no flip, no colour change, no blur.

        A starting point for forcing known parameters with ``dataclasses.replace``.

        Example:
            >>> ViewParams.identity(2, 32, 32).width
            tensor([32., 32.])
        """
        zeros = torch.zeros(batch_size)
        ones = torch.ones(batch_size)
        off = torch.zeros(batch_size, dtype=torch.bool)
        return cls(
            top=zeros.clone(),
            left=zeros.clone(),
            height=torch.full((batch_size,), float(height)),
            width=torch.full((batch_size,), float(width)),
            flip=off.clone(),
            jitter=off.clone(),
            brightness=ones.clone(),
            contrast=ones.clone(),
            saturation=ones.clone(),
            hue=zeros.clone(),
            order=torch.arange(4).expand(batch_size, 4).clone(),
            grayscale=off.clone(),
            blur=off.clone(),
            sigma=ones.clone(),
        )


# The uniform draws behind one view's parameters: the columns of ONE (B, N_UNIFORMS) tensor, so that
# drawing is a single kernel on any device and the rest is a pure function of it (compilable, no host sync).
_U_SCALE = slice(0, _CROP_ATTEMPTS)  # crop area fraction, one per candidate
_U_RATIO = slice(_CROP_ATTEMPTS, 2 * _CROP_ATTEMPTS)  # crop log aspect ratio, one per candidate
_U_TOP, _U_LEFT, _U_FLIP, _U_JITTER, _U_BRIGHTNESS, _U_CONTRAST, _U_SATURATION, _U_HUE = range(
    _U_RATIO.stop, _U_RATIO.stop + 8)
_U_ORDER = slice(_U_HUE + 1, _U_HUE + 5)  # jitter op order: argsort of 4 uniforms
_U_GRAYSCALE, _U_BLUR, _U_SIGMA = range(_U_ORDER.stop, _U_ORDER.stop + 3)
N_UNIFORMS = _U_SIGMA + 1  # 35


def sample_view_params(
    batch_size: int,
    config: ViewConfig = SIMCLR,
    generator: torch.Generator | None = None,
    *,
    height: int | None = None,
    width: int | None = None,
) -> ViewParams:
    """Draw independent augmentation parameters for each of ``batch_size`` samples (SimCLR, Chen et al. 2020).

    One ``torch.rand(batch_size, N_UNIFORMS)`` on the generator's device, turned into parameters by
    :func:`view_params_from_uniforms` (see there for the distributions), so one seed gives the same
    parameters whatever the values.

    Args:
        batch_size: number of samples ``B``.
        config: the augmentation settings.
        generator: source of randomness; None uses torch's global CPU generator.
        height, width: input image size the crop boxes refer to; default ``config.image_size``.

    Returns:
        A :class:`ViewParams` on the generator's device.

    Raises:
        ValueError: ``batch_size``, ``height`` or ``width`` is not a positive int.

    Example:
        >>> params = sample_view_params(4, ViewConfig(), torch.Generator().manual_seed(0))
        >>> params.batch_size, params.order.shape
        (4, torch.Size([4, 4]))
    """
    check_view_config(config)
    height = config.image_size if height is None else height
    width = config.image_size if width is None else width
    for name, value in (("batch_size", batch_size), ("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive int")
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(batch_size, N_UNIFORMS, generator=generator, device=device)  # (B, N_UNIFORMS)
    return view_params_from_uniforms(u, config, height=height, width=width)


def view_params_from_uniforms(u: torch.Tensor, config: ViewConfig = SIMCLR, *, height: int, width: int) -> ViewParams:
    """Per-sample augmentation parameters from uniform draws ``u`` in [0, 1), a pure tensor function.

    The crop follows torchvision's ``RandomResizedCrop.get_params`` per sample: area fraction uniform in
    ``crop_scale``, log aspect ratio uniform in ``log(crop_ratio)``, sides rounded to whole pixels, the
    first of 10 candidates that fits, else a centre crop; the corner is uniform among whole-pixel
    positions. Jitter factors are uniform in torchvision's ``ColorJitter`` ranges with a random op order.
    No host syncs and no data-dependent shapes: it runs inside ``torch.compile`` (see :class:`ViewAugmenter`).

    Args:
        u: ``(B, N_UNIFORMS)`` floating uniforms, e.g. ``torch.rand(B, N_UNIFORMS)``; column meanings are private.
        config: the augmentation settings.
        height, width: input image size the crop boxes refer to.

    Returns:
        A :class:`ViewParams` on ``u``'s device.

    Example:
        >>> u = torch.full((1, N_UNIFORMS), 0.5)
        >>> p = view_params_from_uniforms(u, ViewConfig(crop_scale=(1.0, 1.0)), height=32, width=32)
        >>> float(p.width[0]), float(p.top[0]), bool(p.flip[0])
        (32.0, 0.0, False)
    """
    def uniform(lo: float, hi: float, column) -> torch.Tensor:
        return lo + (hi - lo) * u[:, column]

    # Random resized crop, RandomResizedCrop's retry loop vectorised over candidates.
    area = float(height * width)
    log_lo, log_hi = math.log(config.crop_ratio[0]), math.log(config.crop_ratio[1])
    target_area = area * uniform(*config.crop_scale, _U_SCALE)  # (B, 10)
    aspect = torch.exp(uniform(log_lo, log_hi, _U_RATIO))  # (B, 10)
    cand_w = torch.round(torch.sqrt(target_area * aspect))  # (B, 10)
    cand_h = torch.round(torch.sqrt(target_area / aspect))  # (B, 10)
    fits = (cand_w > 0) & (cand_w <= width) & (cand_h > 0) & (cand_h <= height)  # (B, 10)
    first = fits.to(torch.int8).argmax(dim=1, keepdim=True)  # (B, 1): first fitting candidate, 0 if none
    any_fits = fits.any(dim=1)  # (B,)
    fallback_h, fallback_w = _centre_crop_size(height, width, config.crop_ratio)
    crop_w = torch.where(any_fits, cand_w.gather(1, first).squeeze(1), float(fallback_w))  # (B,)
    crop_h = torch.where(any_fits, cand_h.gather(1, first).squeeze(1), float(fallback_h))  # (B,)
    # torch.randint(0, H - h + 1) per sample: floor of a uniform over the H - h + 1 whole positions.
    top = torch.floor(u[:, _U_TOP] * (height - crop_h + 1)).clamp(max=height - crop_h)
    left = torch.floor(u[:, _U_LEFT] * (width - crop_w + 1)).clamp(max=width - crop_w)
    top = torch.where(any_fits, top, float((height - fallback_h) // 2))
    left = torch.where(any_fits, left, float((width - fallback_w) // 2))

    # ColorJitter's ranges: factors in [max(0, 1 - a), 1 + a], hue shift in [-h, h].
    return ViewParams(
        top=top,
        left=left,
        height=crop_h,
        width=crop_w,
        flip=u[:, _U_FLIP] < config.flip_p,
        jitter=u[:, _U_JITTER] < config.jitter_p,
        brightness=uniform(max(0.0, 1 - config.brightness), 1 + config.brightness, _U_BRIGHTNESS),
        contrast=uniform(max(0.0, 1 - config.contrast), 1 + config.contrast, _U_CONTRAST),
        saturation=uniform(max(0.0, 1 - config.saturation), 1 + config.saturation, _U_SATURATION),
        hue=uniform(-config.hue, config.hue, _U_HUE),
        order=torch.argsort(u[:, _U_ORDER], dim=1),  # (B, 4): a uniform random permutation per row
        grayscale=u[:, _U_GRAYSCALE] < config.grayscale_p,
        blur=u[:, _U_BLUR] < config.blur_p,
        sigma=uniform(*config.blur_sigma, _U_SIGMA),
    )


def apply_view_params(x: torch.Tensor, params: ViewParams, config: ViewConfig = SIMCLR) -> torch.Tensor:
    """Apply per-sample augmentation parameters to a batch, fully vectorised (SimCLR, Chen et al. 2020).

    Pipeline, in the order of :func:`view_transform`: crop + resize + flip as per-sample separable
    resampling (two batched matmuls: bilinear when enlarging, antialiased when shrinking, exactly like
    torchvision's ``resized_crop``); colour jitter with each sample's own op order (each op clamps to
    [0, 1], contrast blends towards the sample's mean gray, hue rotates in HSV like torchvision's
    ``adjust_hue``); grayscale (torchvision's luma weights); Gaussian blur via a grouped separable
    convolution with reflect padding; normalisation. Given the same parameters, every sample equals
    torchvision's functional ops applied to it alone, to float rounding.

    ``config`` supplies ``image_size``, ``mean``/``std`` and the blur kernel size. A stage whose
    probability in ``config`` is 0 (or jitter with strength 0) is skipped whole, so the ablation presets
    pay nothing for the stages they turn off; otherwise ``params`` decide per sample, without host syncs.

    Args:
        x: images ``(B, 3, H, W)``, ``uint8`` in [0, 255] or floating in [0, 1], on any device.
        params: from :func:`sample_view_params` with the same ``B`` (moved to ``x.device`` here).
        config: the augmentation settings.

    Returns:
        Normalised float32 views ``(B, 3, image_size, image_size)`` on ``x.device``.

    Raises:
        TypeError: ``x`` is not a tensor, or its dtype is neither ``uint8`` nor floating.
        ValueError: ``x`` is not 4-D with 3 channels, is floating with NaN/inf or values outside
            [0, 1], or ``params`` has another batch size.

    Example:
        >>> x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
        >>> from crl_helpers.views import NO_AUGMENTATION
        >>> config = dataclasses.replace(NO_AUGMENTATION, mean=(0, 0, 0), std=(1, 1, 1))
        >>> out = apply_view_params(x, ViewParams.identity(2, 32, 32), config)
        >>> torch.allclose(out, x / 255, atol=1e-5)
        True
    """
    x = _check_images(x)
    check_view_config(config)
    if params.batch_size != x.shape[0]:
        raise ValueError(
            f"params has batch_size={params.batch_size} but x has shape {tuple(x.shape)}; "
            "sample the parameters with sample_view_params(x.shape[0], ...)"
        )
    return _apply(x, params.to(x.device), config)


def _apply(x: torch.Tensor, params: ViewParams, config: ViewConfig) -> torch.Tensor:
    """:func:`apply_view_params` without its checks: ``x`` valid, ``params`` on ``x``'s device."""
    x = x.to(torch.float32).div_(255) if x.dtype == torch.uint8 else x.to(torch.float32)  # (B, 3, H, W) in [0, 1]
    x = _crop_and_flip(x, params, config.image_size)  # (B, 3, S, S)
    # From here on x is this function's own buffer (the warp allocated it), so the stages work in place:
    # on the CPU a fresh image-sized tensor costs more than the arithmetic that fills it.
    if config.jitter_p > 0 and (config.jitter_strength > 0 or config.hue > 0):
        _colour_jitter_(x, params)
    if config.grayscale_p > 0:
        # lerp with weight exactly 0 or 1 returns either end exactly, and is much faster than where.
        x.lerp_(_gray(x).expand_as(x), _per_sample(params.grayscale, x))
    if config.blur_p > 0:
        x = _gaussian_blur(x, params, blur_kernel_size(config.image_size))
    mean = _constant(config.mean, x).view(1, 3, 1, 1)
    std = _constant(config.std, x).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def augment_batch(
    x: torch.Tensor, config: ViewConfig = SIMCLR, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One augmented view of every image in a batch, each with its own random parameters (SimCLR).

    Same as ``apply_view_params(x, sample_view_params(B, config, generator, height=H, width=W), config)``.
    Parameters are drawn on the generator's device and moved to ``x.device``, so a CPU generator with a
    fixed seed gives the same views on CPU and GPU (up to kernel rounding).

    Args:
        x: images ``(B, 3, H, W)``, ``uint8`` in [0, 255] or floating in [0, 1], on any device.
        config: the augmentation settings.
        generator: source of randomness; None uses torch's global CPU generator.

    Returns:
        Normalised float32 views ``(B, 3, image_size, image_size)`` on ``x.device``.

    Raises:
        TypeError: ``x`` is not a tensor, or its dtype is neither ``uint8`` nor floating.
        ValueError: ``x`` is not 4-D with 3 channels, or is floating with NaN/inf or values outside [0, 1].

    Example:
        >>> x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
        >>> x1 = augment_batch(x, ViewConfig(), torch.Generator().manual_seed(0))
        >>> x1.shape, x1.dtype
        (torch.Size([8, 3, 32, 32]), torch.float32)
        >>> torch.equal(x1, augment_batch(x, ViewConfig(), torch.Generator().manual_seed(0)))
        True
    """
    x = _check_batch(x)
    check_view_config(config)
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(x.shape[0], N_UNIFORMS, generator=generator, device=device)  # (B, N_UNIFORMS)
    return _augment(x, _to_device(u, x.device), config)


def _augment(x: torch.Tensor, u: torch.Tensor, config: ViewConfig, channels_last: bool = False) -> torch.Tensor:
    """Views of a valid batch ``x`` from uniforms ``u`` on its device: a pure tensor function (compilable)."""
    params = view_params_from_uniforms(u, config, height=x.shape[-2], width=x.shape[-1])
    out = _apply(x, params, config)  # (B, 3, S, S)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def make_views(
    x: torch.Tensor, config: ViewConfig = SIMCLR, n_views: int = 2, generator: torch.Generator | None = None
) -> list[torch.Tensor]:
    """``n_views`` independent augmented views of a batch: ``[x1, x2, ...]`` for SimCLR (Chen et al. 2020).

    Args:
        x: images ``(B, 3, H, W)``, ``uint8`` in [0, 255] or floating in [0, 1], on any device.
        config: the augmentation settings.
        n_views: how many views; 2 for SimCLR's pairs.
        generator: source of randomness; None uses torch's global CPU generator.

    Returns:
        A list of ``n_views`` tensors ``(B, 3, image_size, image_size)``, float32 on ``x.device``.

    Raises:
        ValueError: ``n_views`` is not an int >= 1, or ``x`` is not 4-D with 3 channels, or is floating
            with NaN/inf or values outside [0, 1].
        TypeError: ``x`` is not a uint8 or floating tensor.

    Example:
        >>> x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
        >>> x1, x2 = make_views(x, ViewConfig(), generator=torch.Generator().manual_seed(0))
        >>> x1.shape == x2.shape, torch.equal(x1, x2)
        (True, False)
    """
    check_n_views(n_views)
    return [augment_batch(x, config, generator) for _ in range(n_views)]


class ViewAugmenter:
    """The training loop's view maker: ``n_views`` views of a batch on its device, from one random draw.

    What :func:`augment_batch` does, arranged for speed on a GPU: the uniforms come from a
    generator on the data's device (no upload, no host sync), all views of a batch are made in ONE
    call on the batch repeated ``n_views`` times, and with ``compile=True`` the whole augmentation is
    one ``torch.compile`` graph (a handful of fused kernels instead of a few hundred small ones).
    Should compiling fail, it warns once and runs eagerly: the views are the same either way.

    Args:
        config: the augmentation settings (with the data's ``mean``/``std``).
        device: where the images live and the views are made.
        n_views: views per image; 2 for SimCLR.
        compile: ``torch.compile`` the augmentation (pays off on CUDA; on 2 CPU cores compiling takes ~30 s).
        channels_last: return the views in channels_last memory format (what the model wants on CUDA).
        seed: seed of the device generator; reseed with :meth:`manual_seed`.

    Call it with uint8 (or [0, 1] float) images ``(B, 3, H, W)`` on ``device``; it returns normalised
    float32 views ``(n_views * B, 3, S, S)``: rows ``k * B ... (k + 1) * B - 1`` are view ``k + 1``, each
    row with its own parameters: the layout (and distribution) of ``torch.cat(make_views(x, config, n_views))``.

    Example:
        >>> augment = ViewAugmenter(ViewConfig(), "cpu", seed=0)
        >>> x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
        >>> x12 = augment(x)
        >>> x12.shape, torch.equal(x12[:4], x12[4:])
        (torch.Size([8, 3, 32, 32]), False)
        >>> torch.equal(augment.manual_seed(0)(x), x12)
        True
    """

    def __init__(self, config: ViewConfig, device: torch.device | str, *, n_views: int = 2, compile: bool = False,
                 channels_last: bool = False, seed: int = 0) -> None:
        check_view_config(config)
        check_n_views(n_views)
        self.config, self.device, self.n_views = config, torch.device(device), n_views
        self.channels_last = channels_last
        # Drawn where the views are made on CUDA and the CPU; elsewhere (MPS) on the CPU, then copied.
        generator_device = self.device if self.device.type in ("cpu", "cuda") else torch.device("cpu")
        self.generator = torch.Generator(device=generator_device).manual_seed(seed)
        self.compiled = compile
        self._core = torch.compile(_augment, fullgraph=True, dynamic=False) if compile else _augment

    def manual_seed(self, seed: int) -> ViewAugmenter:
        """Reseed the generator (per epoch in :func:`crl_helpers.train.train`); returns ``self``."""
        self.generator.manual_seed(seed)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and not _same_device(x.device, self.device):  # before any check reads x
            raise ValueError(f"x is on {x.device} but this ViewAugmenter makes views on {self.device}; "
                             f"move x there, e.g. x.to({str(self.device)!r})")
        x = _check_batch(x)
        with record_function("crl.views"):  # names the stage in a torch.profiler trace
            x = x.repeat(self.n_views, 1, 1, 1) if self.n_views > 1 else x  # (n_views * B, 3, H, W)
            u = torch.rand(x.shape[0], N_UNIFORMS, generator=self.generator, device=self.generator.device)
            u = _to_device(u, x.device)  # (n_views * B, N_UNIFORMS); a no-op on CUDA and the CPU
            return self._views(x, u)

    def _views(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        if self._core is _augment:
            return _augment(x, u, self.config, self.channels_last)
        try:
            return self._core(x, u, self.config, self.channels_last)
        except torch.cuda.OutOfMemoryError:
            raise  # not the compiler's fault: eager views would need the memory too
        except Exception as err:  # noqa: BLE001 - any compiler failure: same views, eagerly
            warnings.warn(f"torch.compile of the augmentation failed ({type(err).__name__}: "
                          f"{str(err).splitlines()[0][:200] if str(err) else ''}); running it eagerly", stacklevel=2)
            self._core, self.compiled = _augment, False
            return _augment(x, u, self.config, self.channels_last)


# --------------------------------------------------------------------------------------------------
# Private helpers
# --------------------------------------------------------------------------------------------------


def _check_images(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of images (B, 3, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"x has shape {tuple(x.shape)} but must be a batch (B, 3, H, W); "
            "for one image (3, H, W) use x.unsqueeze(0)"
        )
    if x.shape[1] != 3:
        raise ValueError(_channels_message(tuple(x.shape)))
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise TypeError(f"x has dtype {x.dtype}; pass uint8 in [0, 255] or floating point in [0, 1]")
    if x.is_floating_point() and x.numel():
        # Float pixels only (uint8 cannot be out of range): NaN would flow silently into the views, and
        # 0..255 floats (the classic slip) become huge after normalisation. One host sync per call.
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or inf; floating images must be finite, in [0, 1]")
        low, high = torch.aminmax(x)
        if low < -_RANGE_SLACK or high > 1 + _RANGE_SLACK:
            raise ValueError(f"x has values in [{low.item():.4g}, {high.item():.4g}] but floating images must be "
                             "in [0, 1]; divide by 255 (or pass uint8 in [0, 255])")
    return x


def _channels_message(shape: tuple[int, ...]) -> str:
    """The error for a 4-D batch whose dim 1 is not 3 channels, with the likely fix."""
    channel_counts = (1, 3, 4)  # gray, RGB, RGBA
    if shape[-1] in channel_counts and shape[1] not in channel_counts:
        return (f"x has shape {shape} but must be RGB (B, 3, H, W); it looks like NHWC (channels last): "
                "permute to NCHW with x.permute(0, 3, 1, 2)")
    message = f"x has shape {shape} with {shape[1]} channels but must be RGB (B, 3, H, W)"
    if shape[1] == 1:
        return f"{message}; for grayscale images use x.expand(-1, 3, -1, -1)"
    if shape[1] == 4:
        return f"{message}; for RGBA images drop the alpha channel with x[:, :3]"
    return message


def _check_batch(x) -> torch.Tensor:
    """``_check_images`` plus at least one image: views are drawn per image."""
    x = _check_images(x)
    if x.shape[0] == 0:
        raise ValueError(f"x has shape {tuple(x.shape)}: no images to make views of; pass at least one")
    return x


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Same device, where a missing index ("cuda") matches any index."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def _to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``t`` on ``device``; a CPU -> CUDA copy goes through pinned memory without blocking.

    A plain ``.to("cuda")`` from pageable memory waits for all queued GPU work, a host sync every
    training step; the pinned, non-blocking copy is ordered on the stream instead.
    """
    device = torch.device(device)
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _constant(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    """A small constant tensor with ``like``'s dtype and device, copied without a host sync.

    Inside ``torch.compile`` it is built from fills on the device, ops the compiler traces and folds
    into the graph on any device (a host tensor or a pinned-memory copy is nothing it can trace).
    """
    if torch.compiler.is_compiling():
        return torch.stack([torch.full((), v, dtype=like.dtype, device=like.device) for v in values])
    return _to_device(torch.tensor(values, dtype=like.dtype), like.device)


def _centre_crop_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """RandomResizedCrop's fallback box: the largest centred crop whose ratio is within range."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return h, w


def _resample_weights(
    start: torch.Tensor, extent: torch.Tensor, flip: torch.Tensor | None, size: int, length: int
) -> torch.Tensor:
    """Per-sample matrix ``(B, size, length)`` that resizes the span ``[start, start + extent)`` to ``size``.

    Row k holds the weights of torchvision's (PIL-style) antialiased bilinear resize: a triangle filter
    centred on output pixel k, as wide as the zoom when shrinking and one pixel when enlarging,
    restricted to the input pixels inside the span and normalised. When enlarging this is plain
    bilinear interpolation with edge pixels repeated, i.e. exactly ``resized_crop``.
    """
    step = extent / size  # (B,) input pixels per output pixel
    k = torch.arange(size, device=start.device, dtype=start.dtype)  # (size,)
    k = k.expand(start.shape[0], size)  # (B, size)
    if flip is not None:
        k = torch.where(flip[:, None], size - 1 - k, k)  # a mirrored view reads its columns backwards
    centre = start[:, None] + (k + 0.5) * step[:, None]  # (B, size), in pixel-edge coordinates
    support = step.clamp(min=1.0)[:, None, None]  # (B, 1, 1)
    j = torch.arange(length, device=start.device, dtype=start.dtype) + 0.5  # (length,) input pixel centres
    weights = (1 - (j - centre[..., None]).abs() / support).clamp_(min=0)  # (B, size, length)
    inside = (j >= torch.floor(start)[:, None, None]) & (j <= torch.ceil(start + extent)[:, None, None])
    weights = weights.mul_(inside)
    # Rows whose filter misses every pixel (a box entirely outside the image) fall back to 0, not NaN.
    return weights / weights.sum(dim=-1, keepdim=True).clamp_(min=1e-12)


def _crop_and_flip(x: torch.Tensor, params: ViewParams, size: int) -> torch.Tensor:
    """Resize each sample's crop box to ``size x size``, mirrored where ``flip``, as two batched matmuls.

    A crop-and-resize without rotation is separable: ``out = Wy @ x @ Wx^T`` with one small resampling
    matrix per sample and axis. This is the same bilinear warp that ``affine_grid`` + ``grid_sample``
    would do, but it reads only pixels inside the box and antialiases when shrinking, so it matches
    torchvision's ``resized_crop(..., antialias=True)``, and it is cheaper than building a sampling grid.
    """
    height, width = x.shape[-2:]
    rows = _resample_weights(params.top, params.height, None, size, height)  # (B, S, H)
    cols = _resample_weights(params.left, params.width, params.flip, size, width)  # (B, S, W)
    batch_size, channels = x.shape[:2]
    x = torch.bmm(x.reshape(batch_size, channels * height, width), cols.transpose(1, 2))  # (B, 3H, S)
    return torch.matmul(rows[:, None], x.view(batch_size, channels, height, size))  # (B, 3, S, S)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma of float RGB images ``(B, 3, H, W) -> (B, 1, H, W)``, torchvision's weights and op order."""
    r, g, b = x.unbind(dim=1)
    return r.mul(_LUMA[0]).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2]).unsqueeze(1)  # (B, 1, H, W)


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B,) tensor as float weights (B, 1, 1, 1) that broadcast against ``like``."""
    return values.to(like.dtype).view(-1, 1, 1, 1)


def _colour_jitter_(x: torch.Tensor, params: ViewParams) -> torch.Tensor:
    """ColorJitter with per-sample factors and per-sample op order, vectorised, in place on ``x``.

    Brightness, contrast and saturation are all blends ``f x + (1 - f) y`` (y = 0, the mean gray, the
    gray image), so each of the 4 positions in a sample's order is either one blend or the hue rotation.
    Splitting every order at the hue op gives up to 3 blends before hue, hue once, up to 3 blends after:
    6 batched blends (factor 1, an exact no-op, where a slot is unused) and a single HSV round trip.
    """
    batch_size = x.shape[0]
    order = params.order  # (B, 4)
    is_hue = order == 3  # (B, 4)
    hue_position = is_hue.to(torch.int8).argmax(dim=1)  # (B,)
    # Sort position keys that push the hue op last: the 3 blend ops in the sample's order.
    positions = torch.arange(4, device=x.device).expand(batch_size, 4)
    keys = torch.where(is_hue, 4, positions)
    blend_ops = order.gather(1, torch.argsort(keys, dim=1)[:, :3])  # (B, 3), values in {0, 1, 2}
    factors = torch.stack([params.brightness, params.contrast, params.saturation], dim=1)  # (B, 3)
    blend_factors = factors.gather(1, blend_ops)  # (B, 3)

    for slot in range(3):  # blends that come before the hue op
        active = params.jitter & (slot < hue_position)
        _blend_slot_(x, blend_ops[:, slot], blend_factors[:, slot], active)
    x.lerp_(_adjust_hue(x, params.hue), _per_sample(params.jitter, x))
    for slot in range(3):  # blends that come after it
        active = params.jitter & (slot >= hue_position)
        _blend_slot_(x, blend_ops[:, slot], blend_factors[:, slot], active)
    return x


def _blend_slot_(x: torch.Tensor, op: torch.Tensor, factor: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """One brightness (op 0) / contrast (1) / saturation (2) blend per sample, in place, a no-op where not active.

    All three are torchvision's ``_blend``: ``x * f + y * (1 - f)``, clamped, with ``y`` = 0, the mean
    gray, or the gray image; written as ``x * f + (gray * a + c)`` with per-sample ``a`` and ``c`` so that
    one batched expression serves every op. ``f = 1`` (inactive) gives ``x * 1 + 0``, exactly ``x``.
    """
    f = torch.where(active, factor, 1.0)  # (B,)
    gray = _gray(x)  # (B, 1, H, W)
    mean_gray = gray.mean(dim=(-3, -2, -1))  # (B,)
    gray_weight = torch.where(op == 2, 1 - f, 0.0)  # (B,)
    offset = torch.where(op == 1, (1 - f) * mean_gray, 0.0)  # (B,)
    target = gray.mul_(_per_sample(gray_weight, x)).add_(_per_sample(offset, x))  # (B, 1, H, W)
    return x.mul_(_per_sample(f, x)).add_(target).clamp_(0.0, 1.0)


# Pure hue -> RGB as triangle waves of the hue in sixths of a turn, h6 in [0, 6):
# channel = clamp(slope * |h6 - centre| + offset, 0, 1); red peaks at 0, green at 2, blue at 4.
_HUE_SLOPE = (1.0, -1.0, -1.0)
_HUE_CENTRE = (3.0, 2.0, 4.0)
_HUE_OFFSET = (-1.0, 2.0, 2.0)


def _adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``shift[b]`` turns per sample, torchvision's ``adjust_hue`` (RGB -> HSV -> RGB).

    HSV keeps max (value) and max - min (chroma, = value * saturation) and moves only the hue, so the
    result is ``min + chroma * pure(h)`` with ``pure`` the fully saturated colour of the new hue: the
    same numbers as torchvision's six-sector table, in fewer whole-tensor ops. Masks are multiplied in
    rather than selected with ``torch.where``, which is several times slower on the CPU.
    """
    r, g, b = x.unbind(dim=1)
    maxc = torch.maximum(torch.maximum(r, g), b)  # (B, H, W)
    minc = torch.minimum(torch.minimum(r, g), b)  # (B, H, W)
    chroma = maxc - minc  # (B, H, W)
    # Which channel is the max decides the sector, with torchvision's tie-breaking: red, then green.
    max_is_r = maxc == r
    max_is_g = (maxc == g) & ~max_is_r
    max_is_b = ~(max_is_r | max_is_g)
    # Hue in sixths of a turn times chroma: (g - b), 2 chroma + (b - r) or 4 chroma + (r - g) by sector.
    hue6 = (g - b).mul_(max_is_r)
    hue6 += (b - r).add_(chroma, alpha=2.0).mul_(max_is_g)
    hue6 += (r - g).add_(chroma, alpha=4.0).mul_(max_is_b)
    # Gray pixels (chroma 0) have no hue; dividing by 1 there avoids NaN, and chroma 0 zeroes it out.
    hue6 = hue6.div_(chroma + (chroma == 0))  # (B, H, W), in [-1, 5)
    hue6 = hue6.add_(_per_sample(6.0 * shift, x).view(-1, 1, 1)).remainder_(6.0)  # (B, H, W) in [0, 6)

    def per_channel(values: tuple[float, float, float]) -> torch.Tensor:
        return _constant(values, x).view(1, 3, 1, 1)

    pure = hue6.unsqueeze(1) - per_channel(_HUE_CENTRE)  # (B, 3, H, W)
    pure = pure.abs_().mul_(per_channel(_HUE_SLOPE)).add_(per_channel(_HUE_OFFSET)).clamp_(0.0, 1.0)
    return pure.mul_(chroma.unsqueeze(1)).add_(minc.unsqueeze(1)).clamp_(0.0, 1.0)  # (B, 3, H, W)


def _gaussian_blur(x: torch.Tensor, params: ViewParams, kernel_size: int) -> torch.Tensor:
    """Per-sample Gaussian blur: a separable kernel per sample, applied as a grouped convolution."""
    batch_size, channels, height, width = x.shape
    half = (kernel_size - 1) / 2
    offsets = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - half  # (k,)
    kernel = torch.exp(-0.5 * (offsets / params.sigma[:, None]) ** 2)  # (B, k)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    # A unit impulse leaves unblurred samples exactly unchanged.
    impulse = (offsets == 0).to(x.dtype).expand_as(kernel)
    kernel = torch.where(params.blur[:, None], kernel, impulse)  # (B, k)
    # expand + reshape rather than repeat_interleave, which syncs with the GPU to size its output.
    kernel = kernel[:, None].expand(batch_size, channels, kernel_size).reshape(-1, kernel_size)  # (B*3, k)
    pad = kernel_size // 2
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")  # (B, 3, H + 2p, W + 2p)
    x = x.reshape(1, batch_size * channels, height + 2 * pad, width + 2 * pad)  # (1, B*3, H + 2p, W + 2p)
    groups = batch_size * channels
    x = F.conv2d(x, kernel.view(groups, 1, kernel_size, 1), groups=groups)  # (1, B*3, H, W + 2p)
    x = F.conv2d(x, kernel.view(groups, 1, 1, kernel_size), groups=groups)  # (1, B*3, H, W)
    return x.view(batch_size, channels, height, width)
