"""Exercises of notebook 01 (pairs and augmentations): the pair matrix, the NT-Xent targets, a random crop box,
the fraction of false negatives in a batch.

SimCLR (Chen et al. 2020) stacks the two views of a batch of N images as ``[x1; x2]``: view
``i`` and view ``i + N`` come from the same image (a positive pair), every other pair of
views is a negative pair. The crop box follows torchvision's ``RandomResizedCrop``
(Szegedy et al. 2015, the "Inception" crop). In-batch negatives of the same class as the anchor are
*false negatives* (Chuang et al. 2020, "Debiased Contrastive Learning").

Every check draws its batch sizes and labels anew on each call.

Example:
    >>> result = check_pair_matrix(reference_pair_matrix)  # doctest: +ELLIPSIS
    [PASSED] pair matrix: the bool (2N, 2N) mask matches for N = 1, ...
"""
from __future__ import annotations

import math
import random

import torch

from crl_helpers.exercises._check import as_number, draw, exercise_check, expect, fresh_generator

__all__ = [
    "check_pair_matrix",
    "check_positive_index",
    "check_random_resized_crop_box",
    "check_same_class_fraction",
    "reference_pair_matrix",
    "reference_positive_index",
    "reference_random_resized_crop_box",
    "reference_same_class_fraction",
]


def reference_pair_matrix(batch_size: int) -> torch.Tensor:
    """Bool (2N, 2N) mask, True where views a and b are two views of the same image (a != b).

    Example:
        >>> reference_pair_matrix(2).int()
        tensor([[0, 0, 1, 0],
                [0, 0, 0, 1],
                [1, 0, 0, 0],
                [0, 1, 0, 0]], dtype=torch.int32)
    """
    n = 2 * batch_size
    return torch.tensor([[a != b and a % batch_size == b % batch_size for b in range(n)] for a in range(n)],
                        dtype=torch.bool)


def reference_positive_index(batch_size: int) -> torch.Tensor:
    """Int64 (2N,) targets: the index of each view's positive partner among the 2N stacked views.

    Example:
        >>> reference_positive_index(3)
        tensor([3, 4, 5, 0, 1, 2])
    """
    return torch.tensor([(a + batch_size) % (2 * batch_size) for a in range(2 * batch_size)], dtype=torch.int64)


def _batch_sizes() -> list[int]:
    g = fresh_generator()
    return [1] + sorted({draw(g, 2, 6), draw(g, 7, 12), draw(g, 13, 20)})


@exercise_check("pair matrix")
def check_pair_matrix(fn) -> str:
    """Check ``fn(batch_size) -> (2N, 2N)`` bool mask of positive pairs for views stacked ``[x1; x2]``.

    N = 1 and three batch sizes drawn anew on each call; the answer must be a bool tensor (the
    cells after it call ``.float()`` and index with it).

    Example:
        >>> bad = check_pair_matrix(lambda n: torch.eye(2 * n, dtype=torch.bool))
        [NOT YET] pair matrix: for batch_size=1 the diagonal is True: a view is not its own positive (the loss masks a == b out)
    """
    sizes = _batch_sizes()
    for n in sizes:
        out = fn(n)
        expect(out is not None, f"your function returned None for batch_size={n}; return a (2N, 2N) bool tensor")
        expect(isinstance(out, torch.Tensor), f"return a torch tensor, got a {type(out).__name__}")
        expect(tuple(out.shape) == (2 * n, 2 * n),
               f"for batch_size={n} the pair matrix must be ({2 * n}, {2 * n}), got {tuple(out.shape)}")
        expected = reference_pair_matrix(n)
        mask = out.detach().cpu() != 0
        expect(not mask.diagonal().any(),
               f"for batch_size={n} the diagonal is True: a view is not its own positive (the loss masks a == b out)")
        expect(torch.equal(mask, mask.T),
               f"for batch_size={n} the mask is not symmetric: if a pairs with b, b pairs with a")
        wrong = (mask != expected).nonzero()
        if len(wrong):
            a, b = wrong[0].tolist()
            raise AssertionError(f"for batch_size={n} entry ({a}, {b}) is {bool(mask[a, b])}; "
                                 f"views i and i + N (= {n}) are the two views of image i")
        expect(out.dtype == torch.bool, f"the True/False pattern is right; return a bool tensor (got {out.dtype}): "
                                        f"a comparison such as a == b gives one, or .bool()")
    return f"the bool (2N, 2N) mask matches for N = {', '.join(map(str, sizes))}"


@exercise_check("positive index")
def check_positive_index(fn) -> str:
    """Check ``fn(batch_size) -> (2N,)`` int64 tensor: the index of each view's positive (NT-Xent's targets).

    Example:
        >>> ok = check_positive_index(lambda n: torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))  # doctest: +ELLIPSIS
        [PASSED] positive index: int64 targets match for N = 1, ...
    """
    sizes = _batch_sizes()
    for n in sizes:
        out = fn(n)
        expect(out is not None, f"your function returned None for batch_size={n}; return a (2N,) int64 tensor")
        expect(isinstance(out, torch.Tensor), f"return a torch tensor (F.cross_entropy takes one), got a "
                                              f"{type(out).__name__}")
        expect(tuple(out.shape) == (2 * n,),
               f"for batch_size={n} the targets must have shape ({2 * n},), got {tuple(out.shape)}")
        expect(not out.is_floating_point() and out.dtype != torch.bool,
               f"targets are class indices for F.cross_entropy: an int64 tensor, got {out.dtype}")
        expected = reference_positive_index(n)
        wrong = (out.cpu().long() != expected).nonzero().flatten()
        if len(wrong):
            a = int(wrong[0])
            raise AssertionError(f"for batch_size={n} view {a} got target {int(out[a])}, expected {int(expected[a])} "
                                 f"(the other view of the same image, {n} positions away, wrapping around)")
        expect(out.dtype == torch.int64, f"the targets are right; F.cross_entropy needs them as int64 (torch.long), "
                                         f"got {out.dtype}: .long()")
    return f"int64 targets match for N = {', '.join(map(str, sizes))}"


# --------------------------------------------------------------------------------------------- crop box
def reference_random_resized_crop_box(height: int, width: int, scale: tuple[float, float],
                                      ratio: tuple[float, float], rng: random.Random | None = None, *,
                                      log_ratio: bool = True, tries: int = 10, rounding=round,
                                      corner: str = "uniform", clamp: bool = False) -> tuple[int, int, int, int]:
    """One ``(top, left, h, w)`` box of torchvision's RandomResizedCrop, from ``rng`` (Python's ``random``).

    Area fraction uniform in ``scale``, log aspect ratio (w / h) uniform in ``log(ratio)``, sides
    rounded; up to 10 tries for a box that fits, then the whole image; the corner uniform
    over the positions where the box fits. The keyword arguments switch on one slip each (the
    checker names a slip when the learner's boxes are distributed as that slip's).

    Example:
        >>> top, left, h, w = reference_random_resized_crop_box(32, 32, (0.2, 1.0), (3 / 4, 4 / 3), random.Random(0))
        >>> 0 <= top <= 32 - h and 0 <= left <= 32 - w
        True
    """
    rng = rng or random.Random()
    area = height * width
    for _ in range(tries):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = (math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]))) if log_ratio
                  else rng.uniform(ratio[0], ratio[1]))
        w = int(rounding(math.sqrt(target_area * aspect)))
        h = int(rounding(math.sqrt(target_area / aspect)))
        if clamp:
            w, h = min(max(w, 1), width), min(max(h, 1), height)
        if 0 < w <= width and 0 < h <= height:
            if corner == "centre":
                return (height - h) // 2, (width - w) // 2, h, w
            if corner == "exclusive":  # randint's upper end taken as exclusive: the last position never drawn
                return rng.randint(0, max(height - h - 1, 0)), rng.randint(0, max(width - w - 1, 0)), h, w
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    return 0, 0, height, width


#: Slips of the crop box, each (keyword arguments of the reference, hint); named when the learner's boxes
#: are distributed as the slip's and not as the reference's.
_CROP_SLIPS = [
    (dict(log_ratio=False), "the aspect ratio is drawn uniformly in ratio; draw its LOG uniformly in "
                            "[log ratio[0], log ratio[1]] and take exp (uniform r gives too many wide boxes)"),
    (dict(tries=1), "after one box that does not fit you return the whole image; try again, up to 10 times, "
                    "and only then return the whole image"),
    (dict(clamp=True), "a box that does not fit is cut down to the image; draw it again instead (the area and "
                       "ratio must stay those drawn)"),
    (dict(corner="centre"), "the box always sits in the centre; draw top uniformly in [0, height - h] and left "
                            "in [0, width - w]"),
    (dict(corner="exclusive"), "top = height - h (and left = width - w) never comes out: the upper end of the "
                               "corner's range is included, torch.randint(0, height - h + 1, (1,))"),
    (dict(rounding=int), "the sides are rounded down (int); round them to the nearest pixel with round()"),
]


def _box_stats(boxes: list, height: int, width: int) -> dict[str, list[float]]:
    """Per-box statistics whose distributions the checker compares: area fraction, log aspect ratio,
    the corner's relative position, and indicators (whole image, a full side, the last corner position)."""
    stats: dict[str, list[float]] = {k: [] for k in ("area", "log ratio", "top", "left", "whole", "full side",
                                                       "last top")}
    for top, left, h, w in boxes:
        stats["area"].append(h * w / (height * width))
        stats["log ratio"].append(math.log(w / h))
        whole = h == height and w == width
        stats["whole"].append(float(whole))
        stats["full side"].append(float((h == height or w == width) and not whole))
        if h < height:
            stats["top"].append(top / (height - h))
            stats["last top"].append(float(top == height - h))
        if w < width:
            stats["left"].append(left / (width - w))
    return stats


def _ks(a: list[float], b: list[float]) -> float:
    """The two-sample Kolmogorov-Smirnov distance: the largest gap between the empirical CDFs."""
    a, b = sorted(a), sorted(b)
    i = j = 0
    gap = 0.0
    while i < len(a) and j < len(b):
        x = min(a[i], b[j])
        while i < len(a) and a[i] <= x:
            i += 1
        while j < len(b) and b[j] <= x:
            j += 1
        gap = max(gap, abs(i / len(a) - j / len(b)))
    return gap


def _differs(mine: dict, other: dict) -> str | None:
    """The first statistic whose distribution differs between two samples of boxes, by a two-sample test at
    a false-alarm rate near 1e-7 per statistic (Kolmogorov-Smirnov, or a two-proportion test)."""
    for key in mine:
        a, b = mine[key], other[key]
        if len(a) < 50 or len(b) < 50:
            continue
        if key in ("whole", "full side", "last top"):
            pa, pb = sum(a) / len(a), sum(b) / len(b)
            pooled = (sum(a) + sum(b)) / (len(a) + len(b))
            spread = math.sqrt(pooled * (1 - pooled) * (1 / len(a) + 1 / len(b)))
            if abs(pa - pb) > 5.5 * spread + 0.01:
                return key
        elif _ks(a, b) > 2.9 * math.sqrt((len(a) + len(b)) / (len(a) * len(b))):
            return key
    return None


_STAT_HINTS = {
    "area": "the area fractions are not distributed as drawn uniformly in scale (with sides rounded); scale bounds "
            "the fraction of the AREA, h * w / (height * width)",
    "log ratio": "the aspect ratios w / h are not distributed as log-uniform in ratio; draw log(r) uniformly, "
                 "w = round(sqrt(A r)), h = round(sqrt(A / r))",
    "top": "top is not uniform over the positions where the box fits, 0 .. height - h",
    "left": "left is not uniform over the positions where the box fits, 0 .. width - w",
    "whole": "the whole image comes out more (or less) often than after 10 failed tries",
    "full side": "boxes with a side as long as the image's come out at the wrong rate; a box that does not fit "
                 "is drawn again",
    "last top": "top = height - h comes out at the wrong rate; draw it uniformly in [0, height - h], both ends "
                "included",
}


def _crop_cases(g: torch.Generator) -> list[tuple[int, int, tuple, tuple]]:
    """Four cases drawn anew: wide ratios that always fit, frequent misfits, a tiny image (rounding shows),
    a wide image with wide boxes (ratio is w / h, not h / w)."""
    side = draw(g, 150, 220)
    small = draw(g, 28, 36)
    tiny = draw(g, 8, 12)
    tall = draw(g, 40, 60)
    return [(side, side, (0.05, 0.15), (1 / 4, 4.0)),
            (small, small, (0.6, 1.0), (1 / 3, 3.0)),
            (tiny, tiny, (0.05, 0.3), (3 / 4, 4 / 3)),
            (tall, 3 * tall // 2, (0.1, 0.3), (1.5, 3.0))]


def _box(out, height: int, width: int) -> tuple[int, int, int, int]:
    expect(out is not None, "your function returned None; return (top, left, h, w)")
    expect(isinstance(out, (tuple, list)) and len(out) == 4, f"return four integers (top, left, h, w), got {out!r:.60}")
    values = [as_number(v, "one of your box's numbers") for v in out]
    expect(all(v == int(v) for v in values), f"box {values} is not in whole pixels; round the sides (round()) and "
                                             f"draw the corner with torch.randint")
    top, left, h, w = (int(v) for v in values)
    expect(h > 0 and w > 0, f"box {tuple(values)} has a side <= 0")
    expect(top >= 0 and left >= 0 and top + h <= height and left + w <= width, (
        f"box (top={top}, left={left}, h={h}, w={w}) leaves the {height}x{width} image; draw top in "
        f"[0, height - h] and left in [0, width - w]"))
    return top, left, h, w


@exercise_check("random resized crop box")
def check_random_resized_crop_box(fn, draws: int = 1200) -> str:
    """Check ``fn(height, width, scale, ratio) -> (top, left, h, w)`` samples RandomResizedCrop boxes.

    Random output cannot be compared value by value. The boxes must be whole pixels inside the image;
    the function must draw from torch's RNG (the same seed gives the same boxes); and on four
    cases drawn anew (wide ratios, frequent misfits, a tiny image, a wide image) the distributions of
    the area fraction, the log aspect ratio, the corner's position, the whole-image and full-side
    rates must match the reference's (two-sample tests, ``draws`` boxes each). A slip (a uniform
    ratio, one try, clamped sides, a centred or never-last corner, sides rounded down) is named when
    the boxes are distributed as its.

    Example:
        >>> bad = check_random_resized_crop_box(lambda height, width, scale, ratio: (0, 0, height, width))  # doctest: +ELLIPSIS
        [NOT YET] random resized crop box: ...
    """
    g = fresh_generator()
    rng = random.Random(int(torch.randint(0, 2 ** 62, (1,), generator=g)))
    cases = _crop_cases(g)
    with torch.random.fork_rng(devices=[]):
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=g))
        runs = []
        for _ in range(2):
            torch.manual_seed(seed)
            runs.append([_box(fn(*cases[0]), cases[0][0], cases[0][1]) for _ in range(20)])
        expect(runs[0] == runs[1], "the same torch seed gave other boxes: draw with torch's random functions "
                                   "(torch.rand, torch.randint, torch.empty(1).uniform_), not Python's random or "
                                   "numpy's, so that torch.manual_seed makes the crops reproducible")
        expect(len(set(runs[0])) > 1, "every call returned the same box; draw a new box on every call")
        torch.manual_seed(seed + 1)
        for height, width, scale, ratio in cases:
            boxes = [_box(fn(height, width, scale, ratio), height, width) for _ in range(draws)]
            mine = _box_stats(boxes, height, width)
            reference = [reference_random_resized_crop_box(height, width, scale, ratio, rng) for _ in range(2 * draws)]
            failed = _differs(mine, _box_stats(reference, height, width))
            if failed is None:
                continue
            where = f"for a {height}x{width} image, scale=({scale[0]:g}, {scale[1]:g}), ratio=({ratio[0]:.3g}, {ratio[1]:.3g}): "
            for kwargs, hint in _CROP_SLIPS:
                slip = [reference_random_resized_crop_box(height, width, scale, ratio, rng, **kwargs)
                        for _ in range(2 * draws)]
                if _differs(mine, _box_stats(slip, height, width)) is None:
                    raise AssertionError(where + hint)
            raise AssertionError(where + _STAT_HINTS[failed])
    return f"{draws} boxes on each of 4 fresh cases are distributed as RandomResizedCrop's, from torch's RNG"


# ---------------------------------------------------------------------------------- same-class fraction
def reference_same_class_fraction(labels) -> float:
    """Mean over anchors of (negatives with the anchor's label) / (negatives), as a float64 loop.

    Each of the N images is an anchor; its negatives are the other N - 1 images of the batch.

    Example:
        >>> reference_same_class_fraction([0, 0, 1, 1])
        0.3333333333333333
    """
    labels = [int(v) for v in labels]
    n = len(labels)
    total = 0.0
    for i in range(n):
        same = sum(1 for j in range(n) if j != i and labels[j] == labels[i])
        total += same / (n - 1)
    return total / n


@exercise_check("same class fraction")
def check_same_class_fraction(fn) -> str:
    """Check ``fn(labels) -> float``: the fraction of in-batch negatives that share the anchor's class.

    Batches drawn anew (2 to 64 images, 2 to 10 classes, unbalanced). Recognised slips: counting the
    anchor among its own negatives (denominator N, numerator n_c); dividing the same-class count by N
    instead of N - 1; 1 / C.

    Example:
        >>> bad = check_same_class_fraction(lambda labels: float((labels[:, None] == labels[None, :]).float().mean()))  # doctest: +ELLIPSIS
        [NOT YET] same class fraction: for labels ... the anchor is not its own negative; exclude j == i ...
    """
    g = fresh_generator()
    cases = [[0, 1]]
    for n, classes in ((draw(g, 3, 8), draw(g, 2, 3)), (draw(g, 9, 20), draw(g, 3, 6)), (draw(g, 40, 64), 10)):
        weights = torch.rand(classes, generator=g) + 0.1  # unbalanced classes
        cases.append(torch.multinomial(weights, n, replacement=True, generator=g).tolist())
    outs = []
    for labels in cases:
        shown = labels if len(labels) <= 8 else f"({len(labels)} labels)"
        out = fn(torch.tensor(labels))
        expect(out is not None, f"your function returned None for labels {shown}; return a float")
        if isinstance(out, torch.Tensor):
            expect(out.numel() == 1, f"for labels {shown} you return {out.numel()} numbers; average the per-anchor "
                                     f"fractions into one number")
        outs.append(as_number(out))

    def explains(slip) -> bool:  # a slip is named only when it gives every one of the answers
        return all(math.isclose(out, slip(labels), rel_tol=1e-6, abs_tol=1e-9) for labels, out in zip(cases, outs))

    def with_self(labels):
        return sum(labels.count(y) / len(labels) for y in labels) / len(labels)

    def over_n(labels):
        return sum((labels.count(y) - 1) / len(labels) for y in labels) / len(labels)

    for labels, out in zip(cases, outs):
        expected = reference_same_class_fraction(labels)
        if math.isclose(out, expected, rel_tol=1e-6, abs_tol=1e-9):
            continue
        shown = labels if len(labels) <= 8 else f"({len(labels)} labels)"
        message = f"for labels {shown} you return {out:.4f}, the reference is {expected:.4f}: "
        expect(not explains(with_self), message + (
            "the anchor is not its own negative; exclude j == i (each anchor has N - 1 negatives, "
            "n_c - 1 of them with its class)"))
        expect(not explains(over_n), message + (
            "you excluded the anchor from the count but not from the denominator: each anchor has N - 1 "
            "negatives, so divide by N - 1"))
        expect(not explains(lambda y: 1 / len(set(y))), message + (
            "1 / C is what balanced classes give on average; count the same-class negatives in THIS batch"))
        raise AssertionError(message + "per anchor i, count the j != i with labels[j] == labels[i], divide by "
                                       "N - 1, then average over the anchors")
    return f"matches the per-anchor loop on {len(cases)} fresh batches (2 to 64 images)"
