"""Exercises of notebook 02 (the encoder): conv arithmetic, parameter counts, a kNN baseline.

The encoder ``v = e(x)`` of SimCLR (Chen et al. 2020) is a ResNet (He et al. 2016); its stem
decides how much a 32x32 image shrinks before the first residual block. A k-nearest-neighbour
classifier on frozen features (Wu et al. 2018) is the cheap yardstick every later result is
compared with.

Every checker compares with a reference written inside it (a loop over kernel positions, counts
worked out by hand, a float64 kNN loop), never with the package function the exercise teaches, and
names the common slips it recognises.

Example:
    >>> result = check_conv_output_size(lambda size, kernel_size, stride=1, padding=0:
    ...                                 (size + 2 * padding - kernel_size) // stride + 1)
    [PASSED] conv output size: matches the count of kernel positions on 9 cases
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


def _kernel_positions(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """The number of places a kernel fits in the padded side, stepping by the stride: counted, not computed."""
    return len(range(0, size + 2 * padding - kernel_size + 1, stride))


_CONV_SLIPS = [  # common wrong formulas f(size, kernel_size, stride, padding), each with its hint
    (lambda n, k, s, p: math.ceil((n + 2 * p - k) / s) + 1,
     "you rounded UP; a position where the kernel would run past the padded edge does not count: round DOWN (//)"),
    (lambda n, k, s, p: (n + p - k) // s + 1, "the padding goes on BOTH sides of the image: use 2 * padding"),
    (lambda n, k, s, p: (n + 2 * p - k) // s, "you left out the first position: the formula ends with + 1"),
    (lambda n, k, s, p: n + 2 * p - k + 1, "you ignored the stride: the kernel moves stride pixels at a time, "
                                           "divide by it"),
]


@exercise_check("conv output size")
def check_conv_output_size(fn) -> str:
    """Check ``fn(size, kernel_size, stride=1, padding=0) -> int``: a convolution's (or max-pool's) output side.

    The reference counts the kernel's positions in the padded side one by one
    (``len(range(0, size + 2p - k + 1, s))``); rounding up, one-sided padding, a missing
    ``+ 1`` and an ignored stride get their own hints (a slip is named when it explains
    every case).

    Example:
        >>> bad = check_conv_output_size(lambda size, kernel_size, stride=1, padding=0:
        ...                              (size + padding - kernel_size) // stride + 1)  # doctest: +ELLIPSIS
        [NOT YET] conv output size: size=32, kernel_size=3, stride=1, padding=1: you returned 31, ... BOTH sides ...
    """
    outputs = []
    for size, kernel_size, stride, padding in _CONV_CASES:
        out = fn(size, kernel_size, stride=stride, padding=padding)
        _expect(out is not None, "your function returned None; return the output side as an int")
        _expect(float(out) == int(float(out)), (
            f"size={size}, kernel_size={kernel_size}, stride={stride}, padding={padding}: you returned {out}, "
            f"not a whole number; a convolution only visits whole positions: round DOWN (//)"))
        outputs.append(int(out))
    for (size, kernel_size, stride, padding), out in zip(_CONV_CASES, outputs):
        expected = _kernel_positions(size, kernel_size, stride, padding)
        if out == expected:
            continue
        hint = next((hint for slip, hint in _CONV_SLIPS if outputs == [slip(*case) for case in _CONV_CASES]),
                    "count the positions where the kernel fits in the padded image, stepping by the stride")
        raise AssertionError(f"size={size}, kernel_size={kernel_size}, stride={stride}, padding={padding}: "
                             f"you returned {out}, expected {expected}: {hint}")
    return f"matches the count of kernel positions on {len(_CONV_CASES)} cases"


def _parameter_cases() -> list[tuple[str, nn.Module, int, dict[int, str]]]:
    """(name, model, the right count, {a wrong count: its hint}); every count worked out by hand."""
    shared = nn.Linear(4, 4)
    frozen = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 2))
    for p in frozen[0].parameters():
        p.requires_grad_(False)
    frozen_hint = "you counted the frozen layer too; count only parameters with p.requires_grad"
    buffer_hint = ("you counted buffers (BatchNorm's running mean, variance and batch counter); "
                   "count model.parameters(), not state_dict()")
    shared_hint = "you counted the shared layer twice; model.parameters() yields each tensor once, use it"
    # Weights (out * in [* k * k]) plus one bias per output; BatchNorm: gamma and beta per channel.
    return [
        ("nn.Linear(3, 4)", nn.Linear(3, 4), 3 * 4 + 4, {}),
        ("nn.Linear(3, 4, bias=False)", nn.Linear(3, 4, bias=False), 3 * 4, {3 * 4 + 4: "this layer has no bias"}),
        ("nn.Conv2d(3, 8, 3)", nn.Conv2d(3, 8, 3), 8 * 3 * 3 * 3 + 8, {}),
        ("nn.BatchNorm2d(8)", nn.BatchNorm2d(8), 8 + 8, {8 * 4 + 1: buffer_hint}),
        ("a Sequential whose first Linear(10, 5) is frozen", frozen, 5 * 2 + 2, {10 * 5 + 5 + 5 * 2 + 2: frozen_hint}),
        ("nn.Sequential(layer, layer) with ONE shared Linear(4, 4)", nn.Sequential(shared, shared), 4 * 4 + 4,
         {2 * (4 * 4 + 4): shared_hint}),
    ]


@exercise_check("count parameters")
def check_count_parameters(fn) -> str:
    """Check ``fn(model) -> int``: the number of TRAINABLE parameters (``requires_grad``), each counted once.

    Expected counts are written out by hand (``out * in + out`` for a Linear, ...), not computed;
    counting frozen parameters, buffers, or a shared layer twice gets its own hint.

    Example:
        >>> ok = check_count_parameters(lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad))
        [PASSED] count parameters: 6 models counted right, frozen and shared parameters included
        >>> bad = check_count_parameters(lambda m: sum(t.numel() for t in m.state_dict().values()))  # doctest: +ELLIPSIS
        [NOT YET] count parameters: nn.BatchNorm2d(8): you counted 33, expected 16; you counted buffers ...
    """
    for name, model, expected, slips in _parameter_cases():
        out = fn(model)
        _expect(out is not None, "your function returned None; return an int")
        _expect(int(out) == expected, f"{name}: you counted {out}, expected {expected}; " + slips.get(int(out), (
            "count only parameters with requires_grad (not buffers), and each tensor once "
            "(model.parameters() already skips repeats)")))
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


def _knn_loop(train_v, train_y, test_v, test_y, k: int, rule: str = "cosine") -> float:
    """Majority-vote kNN accuracy in float64 Python loops; ``rule`` picks the neighbours:
    ``"cosine"`` (the k most similar, the right answer), ``"euclidean"`` (the k closest in distance)
    or ``"farthest"`` (the k LEAST similar: a sort in the wrong direction)."""
    train, labels = train_v.double().tolist(), train_y.tolist()
    correct = 0
    for q, label in zip(test_v.double().tolist(), test_y.tolist()):
        q_norm = math.sqrt(sum(a * a for a in q))
        scored = []
        for t, y in zip(train, labels):
            if rule == "euclidean":
                score = -math.sqrt(sum((a - b) ** 2 for a, b in zip(q, t)))
            else:
                cos = sum(a * b for a, b in zip(q, t)) / (q_norm * math.sqrt(sum(b * b for b in t)))
                score = cos if rule == "cosine" else -cos
            scored.append((score, y))
        scored.sort(key=lambda pair: -pair[0])
        votes: dict[int, int] = {}
        for _, y in scored[:k]:
            votes[y] = votes.get(y, 0) + 1
        best = max(votes.values())
        correct += min(y for y, count in votes.items() if count == best) == label  # ties: the smallest label
    return correct / len(test_y)


_KNN_SLIPS = {
    "euclidean": "your neighbours are the closest in Euclidean distance; use COSINE similarity: normalise the "
                 "features first (F.normalize) so that long vectors do not dominate",
    "farthest": "you took the k LEAST similar training points; take the k LARGEST similarities "
                "(topk(k) is largest by default; sort descending)",
}


@exercise_check("kNN baseline")
def check_knn_baseline(fn) -> str:
    """Check ``fn(train_v, train_y, test_v, test_y, k) -> float``: majority-vote kNN accuracy by COSINE similarity.

    Each test point takes the ``k`` training points most similar in cosine, the most frequent
    label among them is its prediction (ties: the smallest label), and the result is the
    fraction of correct predictions. The reference is a float64 loop written here, on data where
    Euclidean neighbours differ from cosine ones; Euclidean neighbours, the least similar
    neighbours and a count instead of a fraction get their own hints.

    Example:
        >>> import torch.nn.functional as F
        >>> def euclidean(a, b, c, d, k):
        ...     nearest = torch.cdist(c, a).topk(k, largest=False).indices
        ...     return (b[nearest].mode(dim=1).values == d).float().mean().item()
        >>> bad = check_knn_baseline(euclidean)  # doctest: +ELLIPSIS
        [NOT YET] kNN baseline: with k=1 and 3 classes you got accuracy ... Euclidean distance; use COSINE ...
    """
    for seed, n_classes, k in ((0, 3, 1), (1, 2, 7), (2, 2, 15)):
        train_v, train_y, test_v, test_y = _knn_data(seed, n_classes)
        expected = _knn_loop(train_v, train_y, test_v, test_y, k)
        out = fn(train_v.clone(), train_y.clone(), test_v.clone(), test_y.clone(), k)
        _expect(out is not None, "your function returned None; return the accuracy as a float in [0, 1]")
        out = float(out)
        _expect(0.0 <= out <= 1.0, f"an accuracy lies in [0, 1], you returned {out} (divide the number of "
                                   f"correct predictions by the number of test points)")
        if abs(out - expected) < 1e-6:
            continue
        hint = next((hint for rule, hint in _KNN_SLIPS.items()
                     if abs(out - _knn_loop(train_v, train_y, test_v, test_y, k, rule)) < 1e-6),
                    "normalise the features first (cosine, not Euclidean distance), take the k LARGEST "
                    "similarities, vote by majority (ties: the smallest label)")
        raise AssertionError(f"with k={k} and {n_classes} classes you got accuracy {out:.3f}, expected "
                             f"{expected:.3f}: {hint}")
    return "accuracies match for k = 1, 7, 15"
