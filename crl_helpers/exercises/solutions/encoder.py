"""Solutions of notebook 02's exercises (the encoder)."""
from __future__ import annotations

import torch
from torch import nn


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    # Count the kernel positions that fit, stepping by the stride.
    return (size + 2 * padding - kernel_size) // stride + 1


def count_parameters(model: nn.Module) -> int:
    # model.parameters() yields each parameter tensor once, buffers never.
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def knn_baseline(train_v, train_y, test_v, test_y, k: int) -> float:
    # Normalise, one matrix product for all similarities, top-k, vote with bincount.
    a = torch.nn.functional.normalize(train_v.float(), dim=1)  # (N, d)
    b = torch.nn.functional.normalize(test_v.float(), dim=1)  # (M, d)
    nearest = (b @ a.T).topk(k, dim=1).indices  # (M, k): the k most similar training points
    labels = train_y[nearest]  # (M, k)
    n_classes = int(train_y.max()) + 1
    votes = torch.zeros(len(b), n_classes).scatter_add_(1, labels, torch.ones_like(labels, dtype=torch.float))
    return (votes.argmax(dim=1) == test_y).float().mean().item()  # argmax: ties go to the smallest label
