"""Images and labels held in memory (:class:`ImageData`), and the error for a dataset that is not there.

Every dataset of the course, built-in (``crl_helpers.shapes``) or read from disk
(``crl_helpers.data``), is an ``ImageData``: ``x`` uint8 (N, 3, H, W), ``y`` int64 (N,).
This module depends on torch only, so both of those modules can import it.

Example:
    >>> import torch
    >>> data = ImageData(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]), ("cat", "dog"))
    >>> len(data), data.image_size, len(data.subset(data.y == 1))
    (4, 8, 2)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


class DatasetUnavailable(RuntimeError):
    """A dataset is not on disk (or holds no usable images) and cannot be downloaded; the message says how to proceed."""


@dataclass
class ImageData:
    """Images and labels held in memory.

    Attributes:
        x: uint8 (N, 3, H, W) pixels.
        y: int64 (N,) labels in ``range(len(class_names))``.
        class_names: one name per class.
        factors: optional per-image nuisance factors, name -> float tensor (N,).
    """

    x: torch.Tensor
    y: torch.Tensor
    class_names: tuple[str, ...]
    factors: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.ndim != 4 or self.x.shape[1] != 3:
            raise ValueError(f"x must be uint8 (N, 3, H, W), got {tuple(self.x.shape)} {self.x.dtype}")
        if self.y.shape != (self.x.shape[0],):
            raise ValueError(f"y must have shape ({self.x.shape[0]},), got {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def image_size(self) -> int:
        return self.x.shape[-1]

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the pixels in [0, 1], for normalisation.

        Example:
            >>> x = torch.tensor([0, 255], dtype=torch.uint8).repeat_interleave(3 * 4).reshape(2, 3, 2, 2)
            >>> ImageData(x, torch.tensor([0, 1]), ("black", "white")).channel_stats()
            ((0.5, 0.5, 0.5), (0.5345, 0.5345, 0.5345))
        """
        x = self.x.float().div_(255)
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3))
        return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)

    def subset(self, index: torch.Tensor | slice) -> "ImageData":
        """The images at ``index`` (a slice, index tensor or bool mask), factors included."""
        return ImageData(self.x[index], self.y[index], self.class_names,
                         {k: v[index] for k, v in self.factors.items()})
