"""Exercises of notebook 02 (the encoder): conv arithmetic, parameter counts, a kNN baseline.

The encoder ``v = e(x)`` of SimCLR (Chen et al. 2020) is a ResNet (He et al. 2016); its stem
decides how much a 32x32 image shrinks before the first residual block. A k-nearest-neighbour
classifier on frozen features (Wu et al. 2018) is the cheap yardstick every later result is
compared with.

Example:
    >>> result = check_conv_output_size(lambda size, kernel_size, stride=1, padding=0:
    ...                                 (size + 2 * padding - kernel_size) // stride + 1)
    [PASSED] conv output size: matches nn.Conv2d on 9 cases
"""
from __future__ import annotations

import math

import torch
from torch import nn

from crl_helpers.exercises._check import exercise_check

__all__ = ["check_conv_output_size", "check_count_parameters", "check_knn_baseline"]


def _expect(condition, message: str) -> None:
    # An explicit raise, not `assert`: the hint must survive `python -O` and pytest's assert rewriting.
    if not condition:
        raise AssertionError(message)


_CONV_CASES = [  # (size, kernel_size, stride, padding): CIFAR stem, ImageNet stem and max-pool, odd corners
    (32, 3, 1, 1), (32, 3, 1, 0), (32, 7, 2, 3), (16, 3, 2, 1), (224, 7, 2, 3), (112, 3, 2, 1), (5, 3, 2, 0), (6, 3, 2, 1), (7, 4, 3, 0),
]


@exercise_check("conv output size")
def check_conv_output_size(fn) -> str:
    """Check ``fn(size, kernel_size, stride=1, padding=0) -> int``: a convolution's (or max-pool's) output side.

    The oracle is PyTorch itself: ``nn.Conv2d`` run on a zero image of that size.

    Example:
        >>> bad = check_conv_output_size(lambda size, kernel_size, stride=1, padding=0: size // stride)  # doctest: +ELLIPSIS
        [NOT YET] conv output size: size=32, kernel_size=3, stride=1, padding=0: you returned 32, nn.Conv2d gives 30. ...
    """
    for size, kernel_size, stride, padding in _CONV_CASES:
        conv = nn.Conv2d(1, 1, kernel_size, stride=stride, padding=padding, bias=False)
        with torch.no_grad():
            expected = conv(torch.zeros(1, 1, size, size)).shape[-1]
        out = fn(size, kernel_size, stride=stride, padding=padding)
        _expect(out is not None, "your function returned None; return the output side as an int")
        _expect(float(out) == int(float(out)), (
            f"size={size}, kernel_size={kernel_size}, stride={stride}, padding={padding}: you returned {out}, "
            f"not a whole number; a convolution only visits whole positions: round DOWN (//)"))
        _expect(int(out) == expected, (
            f"size={size}, kernel_size={kernel_size}, stride={stride}, padding={padding}: you returned {out}, "
            f"nn.Conv2d gives {expected}. Count the positions where the kernel fits in the padded image, "
            f"stepping by the stride"))
    return f"matches nn.Conv2d on {len(_CONV_CASES)} cases"


def _parameter_cases() -> list[tuple[str, nn.Module, int]]:
    shared = nn.Linear(4, 4)
    frozen = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 2))
    for p in frozen[0].parameters():
        p.requires_grad_(False)
    # Expected counts by hand: weights (out * in [* k * k]) plus one bias per output.
    return [
        ("nn.Linear(3, 4)", nn.Linear(3, 4), 3 * 4 + 4),
        ("nn.Linear(3, 4, bias=False)", nn.Linear(3, 4, bias=False), 3 * 4),
        ("nn.Conv2d(3, 8, 3)", nn.Conv2d(3, 8, 3), 8 * 3 * 3 * 3 + 8),
        ("nn.BatchNorm2d(8) (its running statistics are buffers, not parameters)", nn.BatchNorm2d(8), 8 + 8),
        ("a Sequential whose first Linear(10, 5) is frozen", frozen, 5 * 2 + 2),
        ("nn.Sequential(layer, layer) with ONE shared Linear(4, 4)", nn.Sequential(shared, shared), 4 * 4 + 4),
    ]


@exercise_check("count parameters")
def check_count_parameters(fn) -> str:
    """Check ``fn(model) -> int``: the number of TRAINABLE parameters (``requires_grad``), each counted once.

    Expected counts are written out by hand (``out * in + out`` for a Linear, ...), not computed.

    Example:
        >>> ok = check_count_parameters(lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad))
        [PASSED] count parameters: 6 models counted right, frozen and shared parameters included
    """
    for name, model, expected in _parameter_cases():
        out = fn(model)
        _expect(out is not None, "your function returned None; return an int")
        _expect(int(out) == expected, (
            f"{name}: you counted {out}, expected {expected}. Count only parameters with requires_grad "
            f"(not buffers), and each tensor once (model.parameters() already skips repeats)"))
    return "6 models counted right, frozen and shared parameters included"


def _knn_data(seed: int, n_classes: int) -> tuple[torch.Tensor, ...]:
    """Classes by direction, lengths all over the place: cosine kNN and Euclidean kNN disagree."""
    g = torch.Generator().manual_seed(seed)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, n_classes, (n,), generator=g)
        angle = 2 * math.pi * (y + 0.8 * torch.rand(n, generator=g)) / n_classes  # class sectors, overlapping a bit
        direction = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)  # (n, 2)
        direction = torch.cat([direction, 0.3 * torch.randn(n, 3, generator=g)], dim=1)  # (n, 5)
        length = torch.exp(1.5 * torch.randn(n, 1, generator=g))  # (n, 1): 0.05 to 20
        return direction * length, y

    train_v, train_y = sample(120)
    test_v, test_y = sample(60)
    return train_v, train_y, test_v, test_y


@exercise_check("kNN baseline")
def check_knn_baseline(fn) -> str:
    """Check ``fn(train_v, train_y, test_v, test_y, k) -> float``: majority-vote kNN accuracy by COSINE similarity.

    Each test point takes the ``k`` training points most similar in cosine, the most frequent
    label among them is its prediction (ties: the smallest label), and the result is the
    fraction of correct predictions. Compared with :func:`crl_helpers.evaluate.knn_accuracy`
    (``weighting="majority"``) on data where Euclidean neighbours differ from cosine ones.

    Example:
        >>> from crl_helpers.evaluate import knn_accuracy
        >>> ok = check_knn_baseline(lambda a, b, c, d, k: knn_accuracy(a, b, c, d, k=k, weighting="majority"))
        [PASSED] kNN baseline: accuracies match for k = 1, 7, 15
    """
    from crl_helpers.evaluate import knn_accuracy

    for seed, n_classes, k in ((0, 3, 1), (1, 2, 7), (2, 2, 15)):
        train_v, train_y, test_v, test_y = _knn_data(seed, n_classes)
        expected = knn_accuracy(train_v, train_y, test_v, test_y, k=k, weighting="majority")
        out = fn(train_v.clone(), train_y.clone(), test_v.clone(), test_y.clone(), k)
        _expect(out is not None, "your function returned None; return the accuracy as a float in [0, 1]")
        out = float(out)
        _expect(0.0 <= out <= 1.0, f"an accuracy lies in [0, 1], you returned {out} (divide by the number of test points)")
        _expect(abs(out - expected) < 1e-6, (
            f"with k={k} and {n_classes} classes you got accuracy {out:.3f}, expected {expected:.3f}. Normalise the "
            f"features first (cosine, not Euclidean distance), take the k LARGEST similarities, vote by majority"))
    return "accuracies match for k = 1, 7, 15"
