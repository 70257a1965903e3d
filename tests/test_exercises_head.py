"""The checkers of crl_helpers.exercises.head (notebook 03) accept correct answers (written here independently,
as a learner would) and reject plausible wrong ones with a hint that names the slip; the red-team
table (tests/test_checker_redteam.py) holds the verdicts of many more answers."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crl_helpers.exercises import (
    check_contextualize,
    check_normalize,
    check_projection_head,
)


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


class FunctionalHead(nn.Module):
    """The same head written another way: clamp instead of F.relu, the norm divided by hand."""

    def __init__(self, in_dim, hidden_dim, out_dim):
        super().__init__()
        self.first, self.second = nn.Linear(in_dim, hidden_dim), nn.Linear(hidden_dim, out_dim)

    def forward(self, v):
        z = self.second(self.first(v).clamp(min=0))
        return z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)


def test_projection_head_accepts_heads_with_the_names_the_next_cell_loads():
    assert check_projection_head(lambda i, h, o: MLPHead(i, h, o))
    assert check_projection_head(FunctionalHead)


@pytest.mark.parametrize("wrong, hint", [
    # the next cell loads first.bias and second.bias, and no BatchNorm or Sequential keys
    (lambda i, h, o: MLPHead(i, h, o, bias=False), "first.bias"),
    (lambda i, h, o: nn.Sequential(nn.Linear(i, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, o),
                                   _Normalize()), "no nn.Sequential"),
])
def test_projection_head_refuses_what_the_next_cell_cannot_load(wrong, hint):
    result = check_projection_head(wrong)
    assert not result and hint in result.message, result.message


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
    (lambda i, h, o: MLPHead(i, 2 * h, o), "self.first must be nn.Linear"),
    (lambda i, h, o: nn.Sequential(nn.Linear(i, o), _Normalize()), "define exactly self.first"),
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
