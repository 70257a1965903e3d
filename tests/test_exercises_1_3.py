"""The checkers of notebooks 01-03 accept correct answers (written here, independently) and reject
plausible wrong ones, with a hint; none of them crashes on None or on an exception."""
from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crl_helpers.exercises import (
    check_contextualize,
    check_conv_output_size,
    check_count_parameters,
    check_knn_baseline,
    check_normalize,
    check_pair_matrix,
    check_positive_index,
    check_projection_head,
    check_random_resized_crop_box,
    check_same_class_fraction,
)


# --------------------------------------------------------------------------------------- notebook 01
def pair_matrix_loop(batch_size):
    n = 2 * batch_size
    return torch.tensor([[a != b and a % batch_size == b % batch_size for b in range(n)] for a in range(n)])


def crop_box_python(height, width, scale, ratio, swap=False, side=False):
    """RandomResizedCrop in plain Python with the random module (another RNG than the reference)."""
    for _ in range(10):
        fraction = random.uniform(*scale)
        area = height * width * (fraction ** 2 if side else fraction)  # side=True: the wrong answer
        aspect = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if swap:  # the wrong answer that reads ratio as h / w
            w, h = h, w
        if 0 < w <= width and 0 < h <= height:
            return random.randint(0, height - h), random.randint(0, width - w), h, w
    return 0, 0, height, width


def test_pair_matrix_accepts_loop_and_int_masks():
    assert check_pair_matrix(pair_matrix_loop)
    assert check_pair_matrix(lambda n: pair_matrix_loop(n).int())


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
    random.seed(0)
    assert check_random_resized_crop_box(crop_box_python)


@pytest.mark.parametrize("wrong, hint", [
    # scale read as a fraction of the SIDE: the area fraction comes out squared
    (lambda H, W, scale, ratio: crop_box_python(H, W, scale, ratio, side=True), "AREA"),
    # ratio read as h / w: aspect ratios inverted
    (lambda H, W, scale, ratio: crop_box_python(H, W, scale, ratio, swap=True), "width / height"),
    # always the top-left corner
    (lambda H, W, scale, ratio: (0, 0) + tuple(crop_box_python(H, W, scale, ratio)[2:]), "same place"),
    # corner drawn over the whole image: the box leaves it
    (lambda H, W, scale, ratio: _anywhere(crop_box_python(H, W, scale, ratio), H, W), "leaves"),
    # the whole image, always
    (lambda H, W, scale, ratio: (0, 0, H, W), "cover"),
])
def test_crop_box_rejects(wrong, hint):
    random.seed(1)
    result = check_random_resized_crop_box(wrong)
    assert not result and hint in result.message, result.message


def _anywhere(box, height, width):
    _, _, h, w = box
    return random.randint(0, height - 1), random.randint(0, width - 1), h, w


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


# --------------------------------------------------------------------------------------- notebook 03
def test_normalize():
    assert check_normalize(lambda z: z / z.norm(dim=1, keepdim=True).clamp_min(1e-12))
    assert check_normalize(lambda z: z / torch.sqrt((z * z).sum(dim=1, keepdim=True) + 1e-30))
    for wrong, hint in [
        (lambda z: z / z.norm(dim=1, keepdim=True), "NaN"),  # 0 / 0 on a zero row
        (lambda z: z / z.norm(dim=0, keepdim=True).clamp_min(1e-12), "ROW"),
        (lambda z: z / (z.norm(dim=1, keepdim=True) ** 2).clamp_min(1e-12), "squared norm"),
        (lambda z: z / z.abs().sum(dim=1, keepdim=True).clamp_min(1e-12), "L1"),
        (lambda z: z.div_(z.norm(dim=1, keepdim=True).clamp_min(1e-12)), "in place"),
        (lambda z: torch.sign(z) / math.sqrt(z.shape[1]), "direction"),
    ]:
        result = check_normalize(wrong)
        assert not result and hint in result.message, result.message


class MLPHead(nn.Module):
    def __init__(self, in_dim, hidden_dim, out_dim, relu=True, normalize=True, bias=True, order="right"):
        super().__init__()
        self.first = nn.Linear(in_dim, hidden_dim, bias=bias)
        self.second = nn.Linear(hidden_dim, out_dim, bias=bias)
        self.relu, self.normalize, self.order = relu, normalize, order

    def forward(self, v):
        if self.order == "relu first":  # the wrong answer: ReLU on v, none between the layers
            return F.normalize(self.second(self.first(F.relu(v))), dim=1)
        h = self.first(v)
        h = F.relu(h) if self.relu else h
        z = self.second(h)
        if self.order == "relu last":  # the wrong answer: a ReLU after the last layer too
            z = F.relu(z)
        return F.normalize(z, dim=1) if self.normalize else z


def test_projection_head_accepts_plain_and_batchnorm_heads():
    assert check_projection_head(lambda i, h, o: MLPHead(i, h, o))
    assert check_projection_head(lambda i, h, o: MLPHead(i, h, o, bias=False))
    assert check_projection_head(lambda i, h, o: nn.Sequential(
        nn.Linear(i, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, o), _Normalize()))


class _Normalize(nn.Module):
    def forward(self, x):
        return F.normalize(x, dim=1)


class _Detached(MLPHead):
    def forward(self, v):
        return super().forward(v).detach()


@pytest.mark.parametrize("wrong, hint", [
    (lambda i, h, o: MLPHead(i, h, o, normalize=False), "F.normalize"),
    (lambda i, h, o: MLPHead(i, h, o, relu=False), "ReLU"),
    (lambda i, h, o: MLPHead(i, h, o, order="relu last"), "after the last linear layer"),
    (lambda i, h, o: MLPHead(i, h, o, order="relu first"), "in that order"),
    (lambda i, h, o: MLPHead(i, 2 * h, o), "trainable parameters"),
    (lambda i, h, o: nn.Sequential(nn.Linear(i, o), _Normalize()), "trainable parameters"),
    (lambda i, h, o: _Detached(i, h, o), "gradient"),
    (lambda i, h, o: MLPHead(i, h, o + 1), "must be"),
    (lambda i, h, o: None, "nn.Module"),
])
def test_projection_head_rejects(wrong, hint):
    result = check_projection_head(wrong)
    assert not result and hint in result.message, result.message


def context_with_gru(v_seq, cell):
    """The same recurrence with nn.GRU (the whole sequence at once), the cell's weights copied in."""
    gru = nn.GRU(cell.input_size, cell.hidden_size, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(gru, f"{name}_l0").copy_(getattr(cell, name))
    return gru(v_seq)[1][0]  # (N, H): the last hidden state


def context_steps(v_seq, cell, order=None, carry=True, reduce="last"):
    h0 = torch.zeros(v_seq.shape[0], cell.hidden_size)
    states, h = [], h0
    for t in order if order is not None else range(v_seq.shape[1]):
        h = cell(v_seq[:, t], h if carry else h0)
        states.append(h)
    return {"last": states[-1], "first": states[0], "mean": torch.stack(states).mean(0),
            "all": torch.stack(states, dim=1)}[reduce]


def test_contextualize_accepts_a_loop_and_nn_gru():
    assert check_contextualize(context_steps)
    assert check_contextualize(context_with_gru)


@pytest.mark.parametrize("wrong, hint", [
    (lambda v, cell: context_steps(v, cell, order=range(v.shape[1] - 1, -1, -1)), "backwards"),
    (lambda v, cell: context_steps(v, cell, carry=False), "pass the previous state on"),
    (lambda v, cell: context_steps(v, cell, reduce="mean"), "averaged"),
    (lambda v, cell: context_steps(v, cell, reduce="first"), "FIRST step"),
    (lambda v, cell: context_steps(v, cell, reduce="all"), "every state"),
    (lambda v, cell: cell(v[0]), "time is dim 1"),  # stepped over the batch axis
    (lambda v, cell: context_steps(v, cell, order=[0, 2, 1, 3, 4, 5, 6][:v.shape[1]] if v.shape[1] > 2 else [1, 0]),
     "start from h = 0"),
    (lambda v, cell: None, "None"),
])
def test_contextualize_names_the_slip(wrong, hint):
    result = check_contextualize(wrong)
    assert not result and hint in result.message, result.message
