"""Argument checks shared by the package: one rule per quantity, one message per rule.

Public functions validate at the boundary with these helpers, so that the same quantity
(a temperature, a count, a fraction, a batch of embeddings) is held to the same rule and
gets the same one-line message everywhere: the message names the value and the fix.

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

__all__ = ["MIN_TEMPERATURE", "check_int", "check_fraction", "check_positive", "check_temperature",
           "check_embeddings"]

# Below this, cos / temperature can reach 1e38 and a loss (a sum over anchors) overflows to inf in float32.
MIN_TEMPERATURE = 1e-8


def _suffix(hint: str) -> str:
    return f"; {hint}" if hint else ""


def check_int(name: str, value: object, minimum: int, hint: str = "") -> int:
    """``value`` as an ``int`` >= ``minimum`` (numpy integers accepted, bools refused).

    Raises:
        TypeError: not an integer.
        ValueError: below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} must be an int{_suffix(hint)}")
    if value < minimum:
        raise ValueError(f"{name}={value} must be >= {minimum}{_suffix(hint)}")
    return int(value)


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


def check_positive(name: str, value: object, hint: str = "") -> float:
    """``value`` as a finite ``float`` > 0.

    Raises:
        TypeError: not a real number.
        ValueError: not finite, or <= 0.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} must be a number{_suffix(hint)}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a finite number > 0{_suffix(hint)}")
    return float(value)


def check_temperature(temperature: object) -> float:
    """The temperature rule, the same for every loss, explorer and config: a finite number >= 1e-8.

    Below :data:`MIN_TEMPERATURE` the logits of unit vectors overflow float32.

    Raises:
        TypeError: not a real number.
        ValueError: not finite, <= 0, or below :data:`MIN_TEMPERATURE`.
    """
    temperature = check_positive("temperature", temperature, "typical values are 0.05 to 0.5")
    if temperature < MIN_TEMPERATURE:
        raise ValueError(f"temperature={temperature!r} is below {MIN_TEMPERATURE:g}: the logits would overflow; "
                         "typical values are 0.05 to 0.5")
    return temperature


def check_embeddings(name: str, z: object, dim: int | None = None) -> Tensor:
    """``z`` as a 2-D floating-point tensor ``(N, d)``, with ``d == dim`` when given.

    Raises:
        TypeError: not a tensor, or not floating point.
        ValueError: not 2-D, or the wrong width.
    """
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} is a {type(z).__name__}; pass a torch.Tensor (N, d)")
    if not z.is_floating_point():
        raise TypeError(f"{name} has dtype {z.dtype}; pass floating-point embeddings, e.g. {name}.float()")
    if z.ndim != 2:
        raise ValueError(f"{name} has shape {tuple(z.shape)}; it must be 2-D (N, d), one row per sample")
    if dim is not None and z.shape[1] != dim:
        raise ValueError(f"{name} has d={z.shape[1]} but {dim} is expected; embed with the same head")
    return z
