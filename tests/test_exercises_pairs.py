"""The checkers of crl_helpers.exercises.pairs (notebook 01) accept correct answers (written here independently,
as a learner would) and reject plausible wrong ones with a hint that names the slip; the red-team
table (tests/test_checker_redteam.py) holds the verdicts of many more answers."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from crl_helpers.exercises import (
    check_pair_matrix,
    check_positive_index,
    check_random_resized_crop_box,
    check_same_class_fraction,
)


# --------------------------------------------------------------------------------------- notebook 01
def pair_matrix_loop(batch_size):
    n = 2 * batch_size
    return torch.tensor([[a != b and a % batch_size == b % batch_size for b in range(n)] for a in range(n)])


def crop_box_torch(height, width, scale, ratio, swap=False, side=False):
    """RandomResizedCrop written independently, with torch's RNG drawn in another order than the reference's."""
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u = torch.rand(2)  # (2,): the aspect first, then the area
        aspect = math.exp(log_lo + (log_hi - log_lo) * float(u[0]))
        fraction = scale[0] + (scale[1] - scale[0]) * float(u[1])
        area = height * width * (fraction ** 2 if side else fraction)  # side=True: the wrong answer
        w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if swap:  # the wrong answer that reads ratio as h / w
            w, h = h, w
        if 0 < w <= width and 0 < h <= height:
            corner = torch.rand(2)
            return int(corner[0] * (height - h + 1)), int(corner[1] * (width - w + 1)), h, w
    return 0, 0, height, width


def test_pair_matrix_accepts_a_loop_and_refuses_int_masks():
    assert check_pair_matrix(pair_matrix_loop)
    result = check_pair_matrix(lambda n: pair_matrix_loop(n).int())  # the cells below need a bool mask
    assert not result and "bool tensor" in result.message


@pytest.mark.parametrize("wrong, hint", [
    (lambda n: pair_matrix_loop(n) | torch.eye(2 * n, dtype=torch.bool), "diagonal"),
    (lambda n: torch.roll(torch.eye(2 * n, dtype=torch.bool), 1, dims=1), "symmetric"),  # neighbours, not partners
    (lambda n: torch.zeros(2 * n, 2 * n, dtype=torch.bool), "entry"),
    (lambda n: torch.ones(n, n, dtype=torch.bool), "must be"),
    (lambda n: None, "None"),
    (lambda n: pair_matrix_loop(n).float() * 0.5, "True/False"),
])
def test_pair_matrix_rejects(wrong, hint):
    result = check_pair_matrix(wrong)
    assert not result and hint in result.message


def test_positive_index():
    assert check_positive_index(lambda n: torch.tensor([(i + n) % (2 * n) for i in range(2 * n)]))
    assert not check_positive_index(lambda n: torch.arange(2 * n))  # itself
    assert not check_positive_index(lambda n: torch.tensor([(i + 1) % (2 * n) for i in range(2 * n)]))  # neighbour
    assert not check_positive_index(lambda n: torch.arange(n, 3 * n))  # forgot to wrap around
    assert not check_positive_index(lambda n: torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).float())


def test_crop_box_accepts_an_independent_implementation():
    assert check_random_resized_crop_box(crop_box_torch)


@pytest.mark.parametrize("wrong, hint", [
    # scale read as a fraction of the SIDE: the area fraction comes out squared
    (lambda H, W, scale, ratio: crop_box_torch(H, W, scale, ratio, side=True), "AREA"),
    # ratio read as h / w: aspect ratios inverted
    (lambda H, W, scale, ratio: crop_box_torch(H, W, scale, ratio, swap=True), "ratios w / h"),
    # always the top-left corner
    (lambda H, W, scale, ratio: (0, 0) + tuple(crop_box_torch(H, W, scale, ratio)[2:]), "uniform over the positions"),
    # corner drawn over the whole image: the box leaves it
    (lambda H, W, scale, ratio: _anywhere(crop_box_torch(H, W, scale, ratio), H, W), "leaves"),
    # the whole image, always
    (lambda H, W, scale, ratio: (0, 0, H, W), "the same box"),
])
def test_crop_box_rejects(wrong, hint):
    result = check_random_resized_crop_box(wrong)
    assert not result and hint in result.message, result.message


def _anywhere(box, height, width):
    _, _, h, w = box
    return int(torch.randint(0, height, (1,))), int(torch.randint(0, width, (1,))), h, w


def test_crop_box_handles_exceptions():
    def broken(height, width, scale, ratio):
        raise RuntimeError("boom")

    result = check_random_resized_crop_box(broken)
    assert not result and "RuntimeError" in result.message


def same_class_fraction_counter(labels):
    """Closed form from the class counts: mean over anchors of (n_c - 1) / (N - 1)."""
    labels = labels.tolist()
    counts = {c: labels.count(c) for c in labels}
    return sum((counts[y] - 1) / (len(labels) - 1) for y in labels) / len(labels)


def test_same_class_fraction_accepts_two_correct_forms():
    assert check_same_class_fraction(same_class_fraction_counter)
    assert check_same_class_fraction(lambda labels: torch.tensor(same_class_fraction_counter(labels)))  # 0-d tensor


@pytest.mark.parametrize("wrong, hint", [
    # the diagonal counted: the anchor is its own negative
    (lambda y: float((y[:, None] == y[None, :]).double().mean()), "not its own negative"),
    # the anchor left out of the count but not out of the denominator
    (lambda y: ((y[:, None] == y[None, :]).sum().item() - len(y)) / len(y) ** 2, "divide by N - 1"),
    # the textbook guess instead of a measurement
    (lambda y: 1 / len(torch.unique(y)), "THIS batch"),
    # one value per anchor
    (lambda y: ((y[:, None] == y[None, :]).sum(1) - 1) / (len(y) - 1), "one number"),
    # the fraction of negatives with ANOTHER class
    (lambda y: 1 - same_class_fraction_counter(y), "per anchor i"),
    (lambda y: None, "None"),
])
def test_same_class_fraction_rejects(wrong, hint):
    result = check_same_class_fraction(wrong)
    assert not result and hint in result.message, result.message


