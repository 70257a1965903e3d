"""Solutions of notebook 03's exercises (the projection head)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def normalize(z: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    # Divide each row by its norm, kept away from zero.
    return z / z.norm(dim=1, keepdim=True).clamp_min(eps)


class MLPHead(nn.Module):
    # SimCLR's head without BatchNorm (the paper's code has it; the idea does not need it).
    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.first = nn.Linear(in_dim, hidden_dim)
        self.second = nn.Linear(hidden_dim, out_dim)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        h = self.second(F.relu(self.first(v)))  # (N, out_dim)
        return F.normalize(h, dim=1)  # (N, out_dim), unit rows


def contextualize(v_seq: torch.Tensor, cell: nn.GRUCell) -> torch.Tensor:
    # One GRU step per position, the state carried along; the context is the last state.
    h = torch.zeros(v_seq.shape[0], cell.hidden_size)  # (N, H): h_0 = 0
    for t in range(v_seq.shape[1]):
        h = cell(v_seq[:, t], h)  # (N, H)
    return h
