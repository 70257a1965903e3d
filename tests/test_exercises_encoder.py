"""The checkers of crl_helpers.exercises.encoder (notebook 02) accept correct answers (written here independently,
as a learner would) and reject plausible wrong ones with a hint that names the slip; the red-team
table (tests/test_checker_redteam.py) holds the verdicts of many more answers."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from crl_helpers.exercises import (
    check_conv_output_size,
    check_count_parameters,
    check_knn_baseline,
)


# --------------------------------------------------------------------------------------- notebook 02
def conv_positions(size, kernel_size, stride=1, padding=0):
    """Slide the kernel along the padded side and count where it fits."""
    count, start = 0, 0
    while start + kernel_size <= size + 2 * padding:
        count, start = count + 1, start + stride
    return count


def test_conv_output_size_accepts_a_floor_formula_and_a_sliding_count():
    assert check_conv_output_size(lambda size, kernel_size, stride=1, padding=0:
                                  math.floor((size + 2 * padding - kernel_size) / stride) + 1)
    assert check_conv_output_size(conv_positions)


@pytest.mark.parametrize("wrong, hint", [
    (lambda size, kernel_size, stride=1, padding=0: (size + 2 * padding - kernel_size) / stride + 1, "whole number"),
    (lambda size, kernel_size, stride=1, padding=0: math.ceil((size + 2 * padding - kernel_size) / stride) + 1, "UP"),
    (lambda size, kernel_size, stride=1, padding=0: (size + padding - kernel_size) // stride + 1, "BOTH sides"),
    (lambda size, kernel_size, stride=1, padding=0: (size + 2 * padding - kernel_size) // stride, "+ 1"),
    (lambda size, kernel_size, stride=1, padding=0: size + 2 * padding - kernel_size + 1, "stride"),
    (lambda size, kernel_size, stride=1, padding=0: size // stride, "count the positions"),
    (lambda size, kernel_size, stride=1, padding=0: None, "None"),
])
def test_conv_output_size_names_the_slip(wrong, hint):
    result = check_conv_output_size(wrong)
    assert not result and hint in result.message, result.message


def test_count_parameters():
    def by_hand(model):
        seen, total = set(), 0
        for p in model.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                total += math.prod(p.shape)
        return total

    assert check_count_parameters(by_hand)
    for wrong, hint in [
        (lambda m: sum(p.numel() for p in m.parameters()), "frozen"),
        (lambda m: sum(t.numel() for t in m.state_dict().values()), "buffers"),
        (lambda m: sum(p.numel() for _, p in m.named_parameters(remove_duplicate=False) if p.requires_grad), "twice"),
        (lambda m: sum(p.shape[0] for p in m.parameters() if p.requires_grad), "count only"),
    ]:
        result = check_count_parameters(wrong)
        assert not result and hint in result.message, result.message


def knn_loop(train_v, train_y, test_v, test_y, k):
    """Cosine kNN with majority vote written as loops (ties to the smallest label)."""
    correct = 0
    for q, label in zip(test_v.tolist(), test_y.tolist()):
        qn = math.sqrt(sum(a * a for a in q))
        sims = []
        for t, y in zip(train_v.tolist(), train_y.tolist()):
            tn = math.sqrt(sum(a * a for a in t))
            sims.append((sum(a * b for a, b in zip(q, t)) / (qn * tn), y))
        top = sorted(sims, key=lambda pair: -pair[0])[:k]
        votes = {}
        for _, y in top:
            votes[y] = votes.get(y, 0) + 1
        best = max(votes.values())
        correct += min(y for y, c in votes.items() if c == best) == label
    return correct / len(test_y)


def test_knn_baseline():
    assert check_knn_baseline(knn_loop)

    def vectorised(train_v, train_y, test_v, test_y, k):
        sims = F.normalize(test_v, dim=1) @ F.normalize(train_v, dim=1).T  # (M, N)
        labels = train_y[sims.topk(k, dim=1).indices]  # (M, k)
        votes = F.one_hot(labels, int(train_y.max()) + 1).sum(dim=1)  # (M, C)
        return (votes.argmax(dim=1) == test_y).float().mean().item()

    assert check_knn_baseline(vectorised)

    def euclidean(train_v, train_y, test_v, test_y, k):
        idx = torch.cdist(test_v, train_v).topk(k, largest=False).indices  # (M, k)
        return (train_y[idx].mode(dim=1).values == test_y).float().mean().item()

    def farthest(train_v, train_y, test_v, test_y, k):
        sims = F.normalize(test_v, dim=1) @ F.normalize(train_v, dim=1).T
        idx = sims.topk(k, largest=False).indices
        return (train_y[idx].mode(dim=1).values == test_y).float().mean().item()

    def count_not_fraction(train_v, train_y, test_v, test_y, k):
        return knn_loop(train_v, train_y, test_v, test_y, k) * len(test_y)

    def always_zero(train_v, train_y, test_v, test_y, k):
        return 0.5

    for wrong, hint in ((euclidean, "Euclidean distance; use COSINE"), (farthest, "LEAST similar"),
                        (count_not_fraction, "[0, 1]"), (always_zero, "vote by majority")):
        result = check_knn_baseline(wrong)
        assert not result and hint in result.message, (wrong.__name__, result.message)


