"""Solutions of notebook 05's exercises (training)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from crl_helpers.losses import nt_xent  # the notebook imports it too


def cosine_schedule(base, epochs, steps_per_epoch, warmup_epochs):
    total, warm = epochs * steps_per_epoch, int(round(warmup_epochs * steps_per_epoch))
    lr = []
    for s in range(total):
        if s < warm:
            lr.append(base * (s + 1) / warm)
        else:
            lr.append(0.5 * base * (1 + math.cos(math.pi * (s - warm) / (total - warm))))
    return np.array(lr)


def uniformity(z):
    z = F.normalize(z, dim=1)
    squared_distances = torch.pdist(z).pow(2)  # (N (N - 1) / 2,) every pair i < j once
    return squared_distances.mul(-2).exp().mean().log()


def simclr_step(model, x1, x2, optimizer, temperature):
    _, z = model(torch.cat([x1, x2]))  # (2B, d): one forward pass over both views
    z1, z2 = z.chunk(2)  # (B, d) each, row i of both from image i
    loss = nt_xent(z1, z2, temperature)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()
