"""Solutions of notebook 01's exercises (pairs and augmentations)."""
from __future__ import annotations

import math

import torch


def pair_matrix(batch_size: int) -> torch.Tensor:
    # View a shows image a % N; positives share the image but are not the same view.
    image = torch.arange(2 * batch_size) % batch_size  # (2N,)
    same_image = image[:, None] == image[None, :]  # (2N, 2N)
    return same_image & ~torch.eye(2 * batch_size, dtype=torch.bool)


def positive_index(batch_size: int) -> torch.Tensor:
    # The partner is N positions further on, wrapping around at 2N.
    return (torch.arange(2 * batch_size) + batch_size) % (2 * batch_size)


def random_resized_crop_box(height: int, width: int, scale: tuple, ratio: tuple) -> tuple:
    # torchvision's RandomResizedCrop.get_params, one box at a time.
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(1).item())
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * torch.rand(1).item())
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,)))
            left = int(torch.randint(0, width - w + 1, (1,)))
            return top, left, h, w
    return 0, 0, height, width


def same_class_fraction(labels: torch.Tensor) -> float:
    # Ordered pairs (i, j), i != j, with equal labels, over all N (N - 1) ordered pairs:
    # every anchor has N - 1 negatives, so this is the mean over anchors of the per-anchor fraction.
    n = labels.shape[0]
    same = labels[:, None] == labels[None, :]  # (N, N), the diagonal included
    return (same.sum().item() - n) / (n * (n - 1))
