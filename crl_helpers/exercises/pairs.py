"""Exercises of notebook 01 (pairs and augmentations): the pair matrix, the NT-Xent targets, a random crop box,
the fraction of false negatives in a batch.

SimCLR (Chen et al. 2020) stacks the two views of a batch of N images as ``[x1; x2]``: view
``i`` and view ``i + N`` come from the same image (a positive pair), every other pair of
views is a negative pair. The crop box follows torchvision's ``RandomResizedCrop``
(Szegedy et al. 2015, the "Inception" crop). In-batch negatives of the same class as the anchor are
*false negatives* (Chuang et al. 2020, "Debiased Contrastive Learning").

Example:
    >>> result = check_pair_matrix(reference_pair_matrix)
    [PASSED] pair matrix: the (2N, 2N) mask matches for N = 1, 2, 3, 5
"""
from __future__ import annotations

import math

import torch

from crl_helpers.exercises._check import exercise_check


def _expect(condition, message: str) -> None:
    # An explicit raise, not `assert`: the hint must survive `python -O` and pytest's assert rewriting.
    if not condition:
        raise AssertionError(message)

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
    image = torch.arange(2 * batch_size) % batch_size  # (2N,) which image each view came from
    same = image[:, None] == image[None, :]  # (2N, 2N)
    return same & ~torch.eye(2 * batch_size, dtype=torch.bool)


def reference_positive_index(batch_size: int) -> torch.Tensor:
    """Int64 (2N,) targets: the index of each view's positive partner among the 2N stacked views.

    Example:
        >>> reference_positive_index(3)
        tensor([3, 4, 5, 0, 1, 2])
    """
    return (torch.arange(2 * batch_size) + batch_size) % (2 * batch_size)


def reference_random_resized_crop_box(height: int, width: int, scale: tuple[float, float],
                                      ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """One ``(top, left, h, w)`` box of torchvision's RandomResizedCrop, from torch's global RNG.

    Area fraction uniform in ``scale``, log aspect ratio (w / h) uniform in ``log(ratio)``, sides
    rounded; up to 10 tries for a box that fits, then the whole image; the corner uniform
    over the positions where the box fits.
    """
    area = height * width
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect = math.exp(torch.empty(1).uniform_(math.log(ratio[0]), math.log(ratio[1])).item())
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,)).item())
            left = int(torch.randint(0, width - w + 1, (1,)).item())
            return top, left, h, w
    return 0, 0, height, width


def _as_mask(out, n: int, what: str) -> torch.Tensor:
    _expect(out is not None, f"your function returned None for batch_size={n}; return a (2N, 2N) tensor")
    out = torch.as_tensor(out)
    _expect(out.shape == (2 * n, 2 * n), f"for batch_size={n} the {what} must be ({2 * n}, {2 * n}), got {tuple(out.shape)}")
    if out.dtype != torch.bool:
        values = set(torch.unique(out).tolist())
        _expect(values <= {0, 1}, f"the {what} should hold True/False (or 0/1), found values {sorted(values)[:5]}")
        out = out.bool()
    return out


@exercise_check("pair matrix")
def check_pair_matrix(fn) -> str:
    """Check ``fn(batch_size) -> (2N, 2N)`` bool mask of positive pairs for views stacked ``[x1; x2]``.

    Example:
        >>> bad = check_pair_matrix(lambda n: torch.eye(2 * n, dtype=torch.bool))
        [NOT YET] pair matrix: for batch_size=1 the diagonal is True: a view is not its own positive (the loss masks a == b out)
    """
    for n in (1, 2, 3, 5):
        mask = _as_mask(fn(n), n, "pair matrix")
        expected = reference_pair_matrix(n)
        _expect(not mask.diagonal().any(), (
            f"for batch_size={n} the diagonal is True: a view is not its own positive (the loss masks a == b out)"))
        _expect(torch.equal(mask, mask.T), f"for batch_size={n} the mask is not symmetric: if a pairs with b, b pairs with a")
        wrong = (mask != expected).nonzero()
        if len(wrong):
            a, b = wrong[0].tolist()
            raise AssertionError(f"for batch_size={n} entry ({a}, {b}) is {bool(mask[a, b])}; "
                                 f"views i and i + N (= {n}) are the two views of image i")
    return "the (2N, 2N) mask matches for N = 1, 2, 3, 5"


@exercise_check("positive index")
def check_positive_index(fn) -> str:
    """Check ``fn(batch_size) -> (2N,)`` int tensor: the index of each view's positive (NT-Xent's targets).

    Example:
        >>> ok = check_positive_index(lambda n: torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
        [PASSED] positive index: targets match for N = 1, 2, 4, 7
    """
    for n in (1, 2, 4, 7):
        out = fn(n)
        _expect(out is not None, f"your function returned None for batch_size={n}; return a (2N,) tensor")
        out = torch.as_tensor(out)
        _expect(out.shape == (2 * n,), f"for batch_size={n} the targets must have shape ({2 * n},), got {tuple(out.shape)}")
        _expect(not out.is_floating_point(), f"targets must be integers (class indices for cross_entropy), got {out.dtype}")
        expected = reference_positive_index(n)
        wrong = (out != expected).nonzero().flatten()
        if len(wrong):
            a = int(wrong[0])
            raise AssertionError(f"for batch_size={n} view {a} got target {int(out[a])}, expected {int(expected[a])} "
                                 f"(the other view of the same image, {n} positions away, wrapping around)")
    return "targets match for N = 1, 2, 4, 7"


@exercise_check("random resized crop box")
def check_random_resized_crop_box(fn) -> str:
    """Check ``fn(height, width, scale, ratio) -> (top, left, h, w)`` samples RandomResizedCrop boxes.

    Random output cannot be compared value by value; instead, over 400 draws (torch's global RNG
    seeded 0, restored afterwards) every box must lie inside the image with its area fraction
    within ``scale`` and aspect ratio ``w / h`` within ``ratio`` (up to rounding), and the draws
    must spread over the ranges and over positions.

    Example:
        >>> bad = check_random_resized_crop_box(lambda height, width, scale, ratio: (0, 0, height, width))  # doctest: +ELLIPSIS
        [NOT YET] random resized crop box: ...
    """
    cases = [(32, 32, (0.2, 1.0), (3 / 4, 4 / 3)), (40, 64, (0.3, 0.6), (1.2, 2.0))]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for height, width, scale, ratio in cases:
            boxes = []
            for _ in range(400):
                out = fn(height, width, scale, ratio)
                _expect(out is not None, "your function returned None; return (top, left, h, w)")
                _expect(len(out) == 4, f"return four numbers (top, left, h, w), got {out!r}")
                top, left, h, w = (float(v) for v in out)
                _expect(h > 0 and w > 0, f"box {out} has a non-positive side")
                _expect(top >= 0 and left >= 0 and top + h <= height and left + w <= width, (
                    f"box (top={top:g}, left={left:g}, h={h:g}, w={w:g}) leaves the {height}x{width} image; "
                    f"draw top in [0, height - h] and left in [0, width - w]"))
                boxes.append((top, left, h, w))
            t = torch.tensor(boxes, dtype=torch.float64)  # (400, 4)
            area = t[:, 2] * t[:, 3] / (height * width)
            aspect = t[:, 3] / t[:, 2]
            # Rounding each side to whole pixels moves the area and the ratio by a few percent.
            slack = 2.5 / min(height, width)
            _expect((aspect >= ratio[0] * (1 - 2 * slack)).all() and (aspect <= ratio[1] * (1 + 2 * slack)).all(), (
                f"for ratio={ratio} aspect ratios w / h of {aspect.min():.2f}..{aspect.max():.2f} came out; "
                f"ratio is width / height: w = sqrt(area * r), h = sqrt(area / r)"))
            _expect((area >= scale[0] * (1 - 2 * slack)).all() and (area <= scale[1] * (1 + 2 * slack)).all(), (
                f"for scale={scale} an area fraction of {area.min():.2f}..{area.max():.2f} came out; scale bounds the "
                f"fraction of the AREA (h * w / (height * width)), not of the side"))
            spread = scale[1] - scale[0]
            _expect(area.min() < scale[0] + 0.15 * spread and area.max() > scale[1] - 0.15 * spread, (
                f"for scale={scale} the area fractions only cover {area.min():.2f}..{area.max():.2f}; draw the fraction "
                f"uniformly over the whole range"))
            _expect(t[:, 0].std() > 0.5 and t[:, 1].std() > 0.5, (
                "the boxes always start at the same place; draw top and left at random where the box fits"))
    return "400 boxes per case lie inside the image and cover the scale and ratio ranges"


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

    Recognised slips: counting the anchor among its own negatives (denominator N, numerator n_c);
    dividing the same-class count by N instead of N - 1; returning one value per anchor; 1 / C.

    Example:
        >>> bad = check_same_class_fraction(lambda labels: float((labels[:, None] == labels[None, :]).float().mean()))
        [NOT YET] same class fraction: for labels [0, 0, 1, 1, 1] you return 0.5200, the reference is 0.4000: the anchor is not its own negative; exclude j == i (each anchor has N - 1 negatives, n_c - 1 of them with its class)
    """
    cases = [[0, 0, 1, 1, 1], [3, 3], [0, 1], [2, 0, 2, 1, 2, 0, 1, 1]]
    g = torch.Generator().manual_seed(0)
    cases += [torch.randint(0, 10, (64,), generator=g).tolist(), torch.randint(0, 3, (17,), generator=g).tolist()]
    for labels in cases:
        n = len(labels)
        counts = {c: labels.count(c) for c in set(labels)}
        out = fn(torch.tensor(labels))
        shown = labels if n <= 8 else f"({n} labels)"
        _expect(out is not None, f"your function returned None for labels {shown}; return a float")
        if isinstance(out, torch.Tensor):
            _expect(out.numel() == 1, (
                f"for labels {shown} you return {out.numel()} numbers; average the per-anchor fractions "
                f"into one number"))
            out = out.item()
        out = float(out)
        expected = reference_same_class_fraction(labels)
        if math.isclose(out, expected, rel_tol=1e-6, abs_tol=1e-9):
            continue
        with_self = sum(counts[y] / n for y in labels) / n
        over_n = sum((counts[y] - 1) / n for y in labels) / n
        message = f"for labels {shown} you return {out:.4f}, the reference is {expected:.4f}: "
        _expect(not math.isclose(out, with_self, rel_tol=1e-6, abs_tol=1e-9), message + (
            "the anchor is not its own negative; exclude j == i (each anchor has N - 1 negatives, "
            "n_c - 1 of them with its class)"))
        _expect(not math.isclose(out, over_n, rel_tol=1e-6, abs_tol=1e-9), message + (
            "you excluded the anchor from the count but not from the denominator: each anchor has N - 1 "
            "negatives, so divide by N - 1"))
        _expect(not math.isclose(out, 1 / len(counts), rel_tol=1e-6), message + (
            "1 / C is what balanced classes give on average; count the same-class negatives in THIS batch"))
        raise AssertionError(message + "per anchor i, count the j != i with labels[j] == labels[i], divide by "
                                       "N - 1, then average over the anchors")
    return "matches the per-anchor loop on 6 batches (2 to 64 images)"
