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
    [PASSED] conv output size: matches the count of kernel positions on 14 cases, 12 of them drawn anew
"""
from __future__ import annotations

import math

import torch
from torch import nn

from crl_helpers.exercises._check import as_number, draw, exercise_check, expect, fresh_generator

__all__ = ["check_conv_output_size", "check_count_parameters", "check_knn_baseline"]
_expect = expect


def _conv_cases() -> list[tuple[int, int, int, int]]:
    """(size, kernel_size, stride, padding): the ImageNet stem and its max-pool, then 12 cases drawn anew,
    strides 2 to 4 on most (where rounding down matters)."""
    g = fresh_generator()
    cases = [(32, 7, 2, 3), (16, 3, 2, 1)]
    while len(cases) < 14:
        kernel, stride, padding = draw(g, 1, 7), draw(g, 1 if len(cases) < 4 else 2, 4), draw(g, 0, 3)
        size = draw(g, max(1, kernel - 2 * padding), 64)
        cases.append((size, kernel, stride, padding))
    return cases


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
        [NOT YET] conv output size: size=32, kernel_size=7, stride=2, padding=3: you returned 15, ... BOTH sides ...
    """
    cases = _conv_cases()
    outputs = []
    for size, kernel_size, stride, padding in cases:
        out = as_number(fn(size, kernel_size, stride=stride, padding=padding))
        _expect(float(out) == int(float(out)), (
            f"size={size}, kernel_size={kernel_size}, stride={stride}, padding={padding}: you returned {out}, "
            f"not a whole number; a convolution only visits whole positions: round DOWN (//)"))
        outputs.append(int(out))
    for (size, kernel_size, stride, padding), out in zip(cases, outputs):
        expected = _kernel_positions(size, kernel_size, stride, padding)
        if out == expected:
            continue
        hint = next((hint for slip, hint in _CONV_SLIPS if outputs == [slip(*case) for case in cases]),
                    "count the positions where the kernel fits in the padded image, stepping by the stride")
        raise AssertionError(f"size={size}, kernel_size={kernel_size}, stride={stride}, padding={padding}: "
                             f"you returned {out}, expected {expected}: {hint}")
    return f"matches the count of kernel positions on {len(cases)} cases, 12 of them drawn anew"


def _parameter_cases() -> list[tuple[str, nn.Module, int, dict[int, str]]]:
    """(name, model, the right count, {a wrong count: its hint}), sizes drawn anew; every count written out by
    hand from the layer's formula (``out * in + out`` for a Linear, ...), never computed from the model."""
    g = fresh_generator()
    a, b, c, o, k = draw(g, 2, 9), draw(g, 2, 9), draw(g, 1, 4), draw(g, 2, 12), draw(g, 1, 5)
    h, s = draw(g, 3, 12), draw(g, 2, 8)
    shared = nn.Linear(s, s)
    frozen = nn.Sequential(nn.Linear(a, h), nn.ReLU(), nn.Linear(h, b))
    for p in frozen[0].parameters():
        p.requires_grad_(False)
    frozen_hint = "you counted the frozen layer too; count only parameters with p.requires_grad"
    buffer_hint = ("you counted buffers (BatchNorm's running mean, variance and batch counter); "
                   "count model.parameters(), not state_dict()")
    shared_hint = "you counted the shared layer twice; model.parameters() yields each tensor once, use it"
    # Weights (out * in [* k * k]) plus one bias per output; BatchNorm: gamma and beta per channel.
    return [
        (f"nn.Linear({a}, {b})", nn.Linear(a, b), a * b + b, {}),
        (f"nn.Linear({a}, {b}, bias=False)", nn.Linear(a, b, bias=False), a * b, {a * b + b: "this layer has no bias"}),
        (f"nn.Conv2d({c}, {o}, {k})", nn.Conv2d(c, o, k), o * c * k * k + o, {}),
        (f"nn.BatchNorm2d({o})", nn.BatchNorm2d(o), 2 * o, {4 * o + 1: buffer_hint}),
        (f"a Sequential Linear({a}, {h}) -> ReLU -> Linear({h}, {b}) whose first layer is frozen", frozen, h * b + b,
         {a * h + h + h * b + b: frozen_hint}),
        (f"nn.Sequential(layer, layer) with ONE shared Linear({s}, {s})", nn.Sequential(shared, shared), s * s + s,
         {2 * (s * s + s): shared_hint}),
    ]


@exercise_check("count parameters")
def check_count_parameters(fn) -> str:
    """Check ``fn(model) -> int``: the number of TRAINABLE parameters (``requires_grad``), each counted once.

    Six models with sizes drawn anew; expected counts are written out by hand (``out * in + out`` for a
    Linear, ...), not computed; counting frozen parameters, buffers, or a shared layer twice gets its own hint.

    Example:
        >>> ok = check_count_parameters(lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad))
        [PASSED] count parameters: 6 fresh models counted right, frozen and shared parameters included
        >>> bad = check_count_parameters(lambda m: sum(t.numel() for t in m.state_dict().values()))  # doctest: +ELLIPSIS
        [NOT YET] count parameters: nn.BatchNorm2d(...): you counted ..., expected ...; you counted buffers ...
    """
    for name, model, expected, slips in _parameter_cases():
        out = as_number(fn(model))
        _expect(out == expected, f"{name}: you counted {out:g}, expected {expected}; " + slips.get(int(out), (
            "count only parameters with requires_grad (not buffers), and each tensor once "
            "(model.parameters() already skips repeats)")))
    return "6 fresh models counted right, frozen and shared parameters included"


def _knn_data(g: torch.Generator, n_classes: int, k: int) -> tuple[torch.Tensor, ...]:
    """Classes by direction (overlapping sectors: accuracy well below 1), lengths all over the place (cosine,
    Euclidean and raw-dot-product neighbours disagree); test points whose k-th and (k+1)-th or (k+1)-th and
    (k+2)-th neighbours are nearly tied are dropped, so float32 rounding cannot change the answer."""

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, n_classes, (n,), generator=g)
        angle = 2 * math.pi * (y + 1.6 * torch.rand(n, generator=g) - 0.3) / n_classes  # overlapping sectors
        direction = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)  # (n, 2)
        direction = torch.cat([direction, 0.4 * torch.randn(n, 3, generator=g)], dim=1)  # (n, 5)
        length = torch.exp(1.5 * torch.randn(n, 1, generator=g))  # (n, 1): 0.05 to 20
        return direction * length, y

    train_v, train_y = sample(draw(g, 80, 140))
    test_v, test_y = sample(200)
    similarity = _cosines(train_v, test_v)  # (M, N) float64
    top = similarity.sort(dim=1, descending=True).values[:, :k + 2]  # (M, k + 2)
    clear = (top[:, k - 1] - top[:, k] > 1e-5) & (top[:, k] - top[:, k + 1] > 1e-5) & (top[:, 0] - top[:, 1] > 1e-5)
    return train_v, train_y, test_v[clear], test_y[clear]


def _cosines(train_v: torch.Tensor, test_v: torch.Tensor, rule: str = "cosine") -> torch.Tensor:
    """(M, N) float64 scores, higher = nearer: cosine, raw dot product, or minus the Euclidean distance."""
    a, b = train_v.double(), test_v.double()
    if rule == "dot":
        return b @ a.T
    if rule == "euclidean":
        return -torch.cdist(b, a)
    return (b / b.norm(dim=1, keepdim=True)) @ (a / a.norm(dim=1, keepdim=True)).T


def _knn_loop(train_v, train_y, test_v, test_y, k: int, rule: str = "cosine", pick: str = "top k",
              vote: str = "majority", tie: str = "smallest") -> float:
    """kNN accuracy in float64, one test point at a time; the keyword arguments switch on one slip each:
    ``rule`` (``"dot"``, ``"euclidean"``), ``pick`` (``"bottom k"``, ``"top k+1"``, ``"skip first"``,
    ``"top 1"``), ``vote`` (``"exp"``: weights exp(s / 0.1); ``"peek"``: right when any neighbour has the
    label), ``tie`` (``"largest"``, ``"nearest"``: the label of the nearest tied neighbour)."""
    scores = _cosines(train_v, test_v, rule)
    labels = train_y.tolist()
    correct = 0
    for row, label in zip(scores.tolist(), test_y.tolist()):
        order = sorted(range(len(row)), key=lambda j: -row[j])
        chosen = {"top k": order[:k], "bottom k": order[::-1][:k], "top k+1": order[:k + 1],
                  "skip first": order[1:k + 1], "top 1": order[:1]}[pick]
        if vote == "peek":
            correct += any(labels[j] == label for j in chosen)
            continue
        votes: dict[int, float] = {}
        for j in chosen:
            votes[labels[j]] = votes.get(labels[j], 0.0) + (math.exp(row[j] / 0.1) if vote == "exp" else 1.0)
        best = max(votes.values())
        tied = [y for y, count in votes.items() if count == best]
        if tie == "smallest":
            predicted = min(tied)
        elif tie == "largest":
            predicted = max(tied)
        else:
            predicted = next(labels[j] for j in chosen if labels[j] in tied)
        correct += predicted == label
    return correct / len(test_y)


_KNN_SLIPS = [
    (dict(rule="euclidean"), "your neighbours are the closest in Euclidean distance; use COSINE similarity: "
                             "normalise the features first (F.normalize) so that long vectors do not dominate"),
    (dict(rule="dot"), "your neighbours have the largest raw dot products; use COSINE similarity: normalise "
                       "both feature sets first (F.normalize), so that long vectors do not dominate"),
    (dict(pick="bottom k"), "you took the k LEAST similar training points; take the k LARGEST similarities "
                            "(topk(k) is largest by default; sort descending)"),
    (dict(pick="top k+1"), "you took k + 1 neighbours; take exactly k (a test point is not in the training set, "
                           "there is no self-match to skip)"),
    (dict(pick="skip first"), "you skipped the nearest neighbour; a test point is not in the training set, so the "
                              "most similar training point counts too"),
    (dict(pick="top 1"), "your accuracy is that of 1-NN: k was ignored; vote among the k most similar points"),
    (dict(vote="exp"), "the votes are weighted by exp(s / 0.1); this exercise is a plain majority vote, one vote "
                       "per neighbour"),
    (dict(vote="peek"), "a test point counts as right when ANY of its neighbours has its label: the prediction "
                        "must not look at test_y; predict the majority label, then compare"),
    (dict(tie="largest"), "tied votes go to the LARGEST label; ties go to the smallest label (argmax of the vote "
                          "counts returns the first maximum)"),
    (dict(tie="nearest"), "tied votes go to the nearest neighbour's label; ties go to the smallest label (argmax "
                          "of the vote counts, by label)"),
]


@exercise_check("kNN baseline")
def check_knn_baseline(fn) -> str:
    """Check ``fn(train_v, train_y, test_v, test_y, k) -> float``: majority-vote kNN accuracy by COSINE similarity.

    Each test point takes the ``k`` training points most similar in cosine, the most frequent
    label among them is its prediction (ties: the smallest label), and the result is the
    fraction of correct predictions. Four data sets drawn anew (2 to 5 classes, expected accuracy
    well below 1, an even k where ties are common); the reference is a float64 loop written here.
    Euclidean or dot-product neighbours, the least similar ones, k + 1 or skipped neighbours, 1-NN,
    weighted votes, peeking at the label and other tie rules get their own hints when they explain
    the answer on every data set.

    Example:
        >>> def euclidean(a, b, c, d, k):
        ...     nearest = torch.cdist(c, a).topk(k, largest=False).indices
        ...     return (b[nearest].mode(dim=1).values == d).float().mean().item()
        >>> bad = check_knn_baseline(euclidean)  # doctest: +ELLIPSIS
        [NOT YET] kNN baseline: with k=... Euclidean distance; use COSINE ...
    """
    g = fresh_generator()
    seen = []  # (data, k, your accuracy, the reference's) for every data set: a slip is named only if it explains all
    for n_classes, k in ((draw(g, 3, 5), 2 * draw(g, 1, 3) + 1), (2, 2 * draw(g, 1, 2)), (draw(g, 3, 4), 2 * draw(g, 2, 4)),
                         (3, draw(g, 11, 15))):
        data = _knn_data(g, n_classes, k)
        out = as_number(fn(*(t.clone() for t in data), k), "your function")
        _expect(0.0 <= out <= 1.0, f"an accuracy lies in [0, 1], you returned {out:g} (divide the number of "
                                   f"correct predictions by the number of test points)")
        seen.append((data, k, out, _knn_loop(*data, k)))
    wrong = [(k, out, expected, int(d[1].max()) + 1) for d, k, out, expected in seen if abs(out - expected) >= 1e-6]
    if wrong:
        k, out, expected, n_classes = wrong[0]
        hint = next((hint for kwargs, hint in _KNN_SLIPS
                     if all(abs(got - _knn_loop(*d, kk, **kwargs)) < 1e-6 for d, kk, got, _ in seen)),
                    "normalise the features first (cosine similarity), take the k LARGEST similarities, vote by "
                    "majority, ties to the smallest label")
        raise AssertionError(f"with k={k} and {n_classes} classes you got accuracy {out:.3f}, expected "
                             f"{expected:.3f}: {hint}")
    return f"accuracies match a float64 loop on 4 fresh data sets (k = {', '.join(str(k) for _, k, _, _ in seen)})"
