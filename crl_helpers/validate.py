"""Argument checks shared by the package: one rule per quantity, one message per rule.

Public functions validate at the boundary with these helpers, so that the same quantity
(a temperature, a count, a fraction, a batch of embeddings, labels, images) is held to the
same rule and gets the same one-line message everywhere: the message names the value and the fix.

Example:
    >>> check_int("k", 5, minimum=1)
    5
    >>> check_temperature(0.1)
    0.1
    >>> check_fraction("m", 1.5, hint="MoCo uses 0.99")
    Traceback (most recent call last):
    ...
    ValueError: m=1.5 must be in [0, 1]; MoCo uses 0.99
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = ["MIN_TEMPERATURE", "FLOAT16_MIN_TEMPERATURE", "check_int", "check_choice", "check_fraction", "check_positive",
           "check_nonnegative", "check_temperature", "check_embeddings", "check_embedding_pair", "check_labels",
           "check_images", "check_channel_stats"]

# Below this, cos / temperature can reach 1e38 and a loss (a sum over anchors) overflows to inf in float32.
MIN_TEMPERATURE = 1e-8
# float16's largest finite value.
_FLOAT16_MAX = 65504.0
# The gradient of InfoNCE / NT-Xent with respect to a unit-norm embedding row is at most 2 / temperature
# in norm (derived in docs/numerics.md), so float16 embeddings hold it for temperature >= 2 / 65504 ~ 3.05e-5.
FLOAT16_MIN_TEMPERATURE = 2.0 / _FLOAT16_MAX
# Floating images may stray this far outside [0, 1] (resampling round-off) before they are refused.
_RANGE_SLACK = 1e-3


def _suffix(hint: str) -> str:
    return f"; {hint}" if hint else ""


def check_int(name: str, value: object, minimum: int, hint: str = "", maximum: int | None = None) -> int:
    """``value`` as an ``int`` >= ``minimum`` (and <= ``maximum`` if given; numpy integers accepted, bools refused).

    Raises:
        TypeError: not an integer.
        ValueError: below ``minimum`` or above ``maximum``.

    Example:
        >>> check_int("TrainConfig.epochs", 0, 1, maximum=100)
        Traceback (most recent call last):
        ...
        ValueError: TrainConfig.epochs=0 must be an int in [1, 100]
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} must be an int{_suffix(hint)}")
    if maximum is not None and not minimum <= value <= maximum:
        raise ValueError(f"{name}={value} must be an int in [{minimum}, {maximum}]{_suffix(hint)}")
    if value < minimum:
        raise ValueError(f"{name}={value} must be >= {minimum}{_suffix(hint)}")
    return int(value)


def check_choice(name: str, value: object, choices, hint: str = "") -> str:
    """``value`` if it is one of ``choices`` (names such as methods, datasets, encoders).

    Raises:
        ValueError: not one of them.

    Example:
        >>> check_choice("TrainConfig.optimizer", "lars", ("adamw", "sgd"))
        Traceback (most recent call last):
        ...
        ValueError: TrainConfig.optimizer='lars' is unknown; choose one of adamw, sgd
    """
    if value not in choices:
        raise ValueError(f"{name}={value!r} is unknown; choose one of {', '.join(choices)}{_suffix(hint)}")
    return value


def check_fraction(name: str, value: object, hint: str = "") -> float:
    """``value`` as a ``float`` in [0, 1].

    Raises:
        TypeError: not a real number.
        ValueError: outside [0, 1] (NaN included).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} must be a number in [0, 1]{_suffix(hint)}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value!r} must be in [0, 1]{_suffix(hint)}")
    return float(value)


def check_positive(name: str, value: object, hint: str = "", maximum: float | None = None) -> float:
    """``value`` as a finite ``float`` > 0 (and <= ``maximum`` if given).

    Raises:
        TypeError: not a real number.
        ValueError: not finite, <= 0, or above ``maximum``.

    Example:
        >>> check_positive("TrainConfig.lr", 500.0, maximum=100)
        Traceback (most recent call last):
        ...
        ValueError: TrainConfig.lr=500.0 must be <= 100
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} must be a number{_suffix(hint)}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a finite number > 0{_suffix(hint)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}={value!r} must be <= {maximum:g}{_suffix(hint)}")
    return float(value)


def check_nonnegative(name: str, value: object, hint: str = "") -> float:
    """``value`` as a finite ``float`` >= 0.

    Raises:
        TypeError: not a real number.
        ValueError: not finite, or < 0.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} must be a number{_suffix(hint)}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value!r} must be a finite number >= 0{_suffix(hint)}")
    return float(value)


def check_temperature(temperature: object, *embeddings: Tensor, name: str = "temperature") -> float:
    """The temperature rule, the same for every loss, explorer and config: a finite number >= 1e-8.

    Below :data:`MIN_TEMPERATURE` the logits of unit vectors overflow float32.

    Float16 ``embeddings`` (the tensors whose similarities it divides) raise the floor to
    :data:`FLOAT16_MIN_TEMPERATURE` ``= 2 / 65504``: a loss computed in float32 still sends its
    gradient back to a float16 input in float16, whose largest value is 65504, and the gradient of
    InfoNCE / NT-Xent with respect to a unit-norm row reaches ``2 / temperature`` (derived in
    docs/numerics.md), whatever precision the loss is computed in.

    Args:
        temperature: the value to check.
        *embeddings: the tensors the temperature will divide; any float16 one applies the float16 floor.
        name: how the messages name it (``TrainConfig.temperature`` for a config field).

    Raises:
        TypeError: not a real number.
        ValueError: not finite, <= 0, below :data:`MIN_TEMPERATURE`, or below
            :data:`FLOAT16_MIN_TEMPERATURE` with a float16 embedding.

    Example:
        >>> check_temperature(1e-5, torch.ones(2, 3, dtype=torch.float16))
        Traceback (most recent call last):
        ...
        ValueError: temperature=1e-05 is below 3.05e-05, the smallest float16 embeddings allow: the gradient (up to 2 / temperature) would overflow float16; pass float32 or bfloat16 embeddings (z.float()) or raise the temperature
    """
    temperature = check_positive(name, temperature, "typical values are 0.05 to 0.5")
    if temperature < MIN_TEMPERATURE:
        raise ValueError(f"{name}={temperature!r} is below {MIN_TEMPERATURE:g}: the logits would overflow; "
                         "typical values are 0.05 to 0.5")
    if temperature < FLOAT16_MIN_TEMPERATURE and any(z.dtype == torch.float16 for z in embeddings):
        raise ValueError(f"{name}={temperature!r} is below {FLOAT16_MIN_TEMPERATURE:.3g}, the smallest float16 "
                         "embeddings allow: the gradient (up to 2 / temperature) would overflow float16; "
                         "pass float32 or bfloat16 embeddings (z.float()) or raise the temperature")
    return temperature


def check_embeddings(name: str, z: object, dim: int | None = None, *, ndim: int | tuple[int, ...] = 2,
                     min_rows: int = 0, why: str = "", finite: bool = False) -> Tensor:
    """``z`` as a floating-point tensor ``(N, d)`` of embeddings (or features), ``d >= 1``.

    The one rule for a batch of embeddings ``z`` or features ``v``, one row per sample.

    Args:
        name: the argument's name, for the message.
        z: the value to check.
        dim: the width ``d`` it must have, or None.
        ndim: the number of dimensions it may have: 2 (``(N, d)``), or e.g. ``(2, 3)``.
        min_rows: the smallest ``N`` (the first dimension) accepted.
        why: why ``min_rows`` rows are needed, for the message.
        finite: also scan for NaN/inf: a data-dependent check, one host sync on a GPU.

    Raises:
        TypeError: not a tensor, or not floating point.
        ValueError: a meta tensor, the wrong number of dimensions, ``d = 0``, the wrong width, fewer
            than ``min_rows`` rows, or (with ``finite``) NaN/inf.

    Example:
        >>> check_embeddings("z", torch.ones(4, 8), min_rows=2).shape
        torch.Size([4, 8])
        >>> check_embeddings("v_train", torch.ones(8))
        Traceback (most recent call last):
        ...
        ValueError: v_train has shape (8,) (1-D); it must be 2-D (N, d), one row per sample
    """
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} is a {type(z).__name__}; pass a torch.Tensor (N, d)")
    if not z.is_floating_point():
        raise TypeError(f"{name} has dtype {z.dtype}; pass floating-point embeddings, e.g. {name}.float()")
    if z.is_meta:  # shapes without values: every number computed from it would fail or mean nothing
        raise ValueError(f"{name} is on the meta device (a shape without values); pass a tensor with values")
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if z.ndim not in allowed:
        wanted = "2-D (N, d), one row per sample" if allowed == (2,) else " or ".join(f"{n}-D" for n in allowed)
        raise ValueError(f"{name} has shape {tuple(z.shape)} ({z.ndim}-D); it must be {wanted}")
    if z.shape[-1] < 1:
        raise ValueError(f"{name} has shape {tuple(z.shape)} with an empty feature dimension; d must be >= 1")
    if dim is not None and z.shape[-1] != dim:
        raise ValueError(f"{name} has d={z.shape[-1]} but {dim} is expected; embed with the same head")
    if z.shape[0] < min_rows:
        wanted = "one row" if min_rows == 1 else f"{min_rows} rows"
        raise ValueError(f"{name} has N={z.shape[0]} rows; {why or f'pass at least {wanted}'}")
    if finite and not torch.isfinite(z).all():
        raise ValueError(f"{name} contains NaN or inf; check the model's outputs (a diverged run or an fp16 overflow)")
    return z


def check_embedding_pair(name_a: str, a: object, name_b: str, b: object, *, min_rows: int = 0, why: str = "",
                         finite: bool = False) -> tuple[Tensor, Tensor]:
    """Two batches of embeddings of the same shape ``(N, d)``, row ``i`` of each from the same sample.

    Raises:
        TypeError, ValueError: as :func:`check_embeddings` (``min_rows``, ``why`` and ``finite``
            apply to both), or shapes that differ.

    Example:
        >>> check_embedding_pair("z1", torch.ones(4, 3), "z2", torch.ones(4, 2))
        Traceback (most recent call last):
        ...
        ValueError: z1 has shape (4, 3) but z2 has shape (4, 2); they must match, one row per sample
    """
    a = check_embeddings(name_a, a, min_rows=min_rows, why=why, finite=finite)
    b = check_embeddings(name_b, b, min_rows=min_rows, why=why, finite=finite)
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}; "
                         "they must match, one row per sample")
    return a, b


def check_labels(name: str, y: object, n: int) -> Tensor:
    """``y`` as int64 class indices ``(n,)``, any integer dtype accepted (uint8 labels included).

    Raises:
        TypeError: not a tensor, or not an integer dtype (bool, float and complex are refused).
        ValueError: not of shape ``(n,)``, or a negative label.

    Example:
        >>> check_labels("y", torch.tensor([0, 2, 1], dtype=torch.uint8), 3)
        tensor([0, 2, 1])
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices (N,), got {type(y).__name__}")
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise TypeError(f"{name} has dtype {y.dtype}; class labels must be integers (use y.long())")
    if y.shape != (n,):
        raise ValueError(f"{name} has shape {tuple(y.shape)}; expected ({n},), one label per image/feature row")
    y = y.long()
    if n and int(y.min()) < 0:
        raise ValueError(f"{name} has a negative label {int(y.min())}; labels must be class indices 0..C-1")
    return y


def check_images(name: str, x: object, *, channels: int | None = None, min_images: int = 1,
                 unit_range: bool = False) -> Tensor:
    """``x`` as a batch of images ``(N, C, H, W)``, uint8 in [0, 255] or floating point.

    Args:
        name: the argument's name, for the message.
        x: the value to check.
        channels: the ``C`` required (3 for RGB), or None for any.
        min_images: the smallest ``N`` accepted.
        unit_range: floating images are pixels in [0, 1] (what augmentations take), so scan them
            for NaN/inf and values outside [0, 1] (one host sync); False takes floating images as
            already normalised, any range.

    Raises:
        TypeError: not a tensor, or neither uint8 nor floating point.
        ValueError: not 4-D, the wrong number of channels, fewer than ``min_images`` images, or
            (with ``unit_range``) non-finite or out-of-range floating pixels.

    Example:
        >>> check_images("x", torch.zeros(2, 3, 8, 8, dtype=torch.uint8), channels=3).shape
        torch.Size([2, 3, 8, 8])
        >>> check_images("x", torch.zeros(3, 8, 8))
        Traceback (most recent call last):
        ...
        ValueError: x has shape (3, 8, 8); it must be a batch (N, C, H, W); for one image use x.unsqueeze(0)
    """
    layout = "(N, C, H, W)" if channels is None else f"(N, {channels}, H, W)"
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of images {layout}, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} has shape {tuple(x.shape)}; it must be a batch {layout}; "
                         f"for one image use {name}.unsqueeze(0)")
    if channels is not None and x.shape[1] != channels:
        fix = "; for grayscale images use x.expand(-1, 3, -1, -1)" if channels == 3 else ""
        raise ValueError(f"{name} has shape {tuple(x.shape)} with {x.shape[1]} channels but must be {layout}{fix}")
    if x.dtype != torch.uint8 and not x.is_floating_point():
        kind = "in [0, 1]" if unit_range else "already normalised"
        raise TypeError(f"{name} has dtype {x.dtype}; pass uint8 in [0, 255] or floating point {kind}")
    if x.shape[0] < min_images:
        held = "no images" if x.shape[0] == 0 else f"{x.shape[0]} images"
        wanted = "one" if min_images == 1 else str(min_images)
        raise ValueError(f"{name} holds {held} (shape {tuple(x.shape)}); pass at least {wanted}")
    if unit_range and x.is_floating_point() and x.numel():
        # uint8 cannot be out of range; NaN would flow silently into the views, and 0..255 floats
        # (the classic slip) become huge after normalisation.
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or inf; floating images must be finite, in [0, 1]")
        low, high = torch.aminmax(x)
        if low < -_RANGE_SLACK or high > 1 + _RANGE_SLACK:
            raise ValueError(f"{name} has values in [{low.item():.4g}, {high.item():.4g}] but floating images must "
                             "be in [0, 1]; divide by 255 (or pass uint8 in [0, 255])")
    return x


def check_channel_stats(mean: object, std: object, channels: int | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``mean`` and ``std`` as tuples of floats, one per channel: the normalisation ``(x / 255 - mean) / std``.

    Raises:
        TypeError: not a sequence of real numbers (a string such as ``"abc"`` included).
        ValueError: empty, of different lengths (or not ``channels`` long), not finite, or a ``std`` <= 0.

    Example:
        >>> check_channel_stats((0.5, 0.5, 0.5), [0.25] * 3)
        ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
        >>> check_channel_stats((0.5,) * 3, (0.0, 1.0, 1.0))
        Traceback (most recent call last):
        ...
        ValueError: std=(0.0, 1.0, 1.0) must hold finite numbers > 0, one per channel; pass the data's per-channel std
    """
    values = {}
    for name, value in (("mean", mean), ("std", std)):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or not hasattr(value, "__iter__"):
            raise TypeError(f"{name}={value!r} must be a sequence of numbers, one per channel")
        items = list(value.tolist() if isinstance(value, Tensor) else value)
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in items):
            raise TypeError(f"{name}={value!r} must be a sequence of numbers, one per channel")
        values[name] = tuple(float(v) for v in items)
    mean, std = values["mean"], values["std"]
    if not mean or len(mean) != len(std) or (channels is not None and len(mean) != channels):
        wanted = f"{channels} values each" if channels is not None else "one value per channel each"
        raise ValueError(f"mean={mean!r} and std={std!r} need {wanted}")
    if not all(math.isfinite(m) for m in mean):
        raise ValueError(f"mean={mean!r} must hold finite numbers, one per channel")
    if not all(math.isfinite(v) and v > 0 for v in std):
        raise ValueError(f"std={std!r} must hold finite numbers > 0, one per channel; pass the data's per-channel std")
    return mean, std
