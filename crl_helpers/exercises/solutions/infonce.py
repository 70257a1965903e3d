"""Solutions of notebook 04's exercises (InfoNCE and temperature, a scoring function)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(query, positive_key, negative_keys, temperature):
    negatives = negative_keys / negative_keys.norm(dim=1, keepdim=True)  # (K, d) unit rows
    losses = []
    for q, k_pos in zip(query, positive_key):
        q, k_pos = q / q.norm(), k_pos / k_pos.norm()  # (d,) each
        positive = torch.exp(q @ k_pos / temperature)  # scalar: e^{s+ / tau}
        negative = torch.exp(negatives @ q / temperature).sum()  # scalar: sum_j e^{s_j / tau}
        losses.append(-torch.log(positive / (positive + negative)))
    return torch.stack(losses).mean()


def nt_xent(z1, z2, temperature):
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, d)
    logits = z @ z.T / temperature  # (2N, 2N)
    self_mask = torch.eye(2 * n, dtype=torch.bool)  # a view is not its own candidate
    logits = logits.masked_fill(self_mask, float("-inf"))
    targets = torch.cat([torch.arange(n) + n, torch.arange(n)])  # (2N,) partner indices
    return F.cross_entropy(logits, targets)


def alignment(z1, z2):
    return (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).pow(2).sum(dim=1).mean()


def logsumexp(logits):
    m = logits.max(dim=-1, keepdim=True).values  # (N, 1) row maxima
    return (logits - m).exp().sum(dim=-1).log() + m.squeeze(-1)  # (N,)


def neg_euclidean_score(query, keys):
    difference = query[:, None, :] - keys[None, :, :]  # (N, M, d) every query minus every key
    return -difference.pow(2).sum(dim=-1)  # (N, M)
