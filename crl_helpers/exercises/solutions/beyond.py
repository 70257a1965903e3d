"""Solutions of notebook 07's exercises (beyond SimCLR)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def momentum_update(online, target, m):
    for p_online, p_target in zip(online.parameters(), target.parameters()):
        p_target.mul_(m).add_(p_online, alpha=1 - m)  # theta_k <- m theta_k + (1 - m) theta_q


@torch.no_grad()
def enqueue(queue, ptr, keys):
    size, batch = queue.shape[0], keys.shape[0]
    rows = (ptr + torch.arange(batch)) % size  # (B,) the oldest B rows, wrapping around the end
    queue[rows] = keys
    return (ptr + batch) % size


@torch.no_grad()
def memory_bank_update(bank, index, v, m):
    mixed = m * bank[index] + (1 - m) * v  # (B, d)
    bank[index] = F.normalize(mixed, dim=1)  # back on the unit sphere


def supcon_positive_mask(labels):
    view_labels = torch.cat([labels, labels])  # (2N,) labels of [view 1; view 2]
    same = view_labels[:, None] == view_labels[None, :]  # (2N, 2N)
    not_self = ~torch.eye(len(view_labels), dtype=torch.bool)  # (2N, 2N)
    return same & not_self
