"""Loss oracles shared by the tests: plain Python floats, one anchor at a time, straight from the papers.

Nothing here calls the package: each oracle restates its paper's formula as a loop over anchors
(Python floats, or float64 torch scalars where a test needs gradients), so a vectorised implementation
is checked against an independent computation. Tests import them as ``from oracles import nt_xent_oracle`` (pytest puts ``tests/`` on
``sys.path``).
"""
from __future__ import annotations

import math

import torch


def unit_rows(x) -> list[list[float]]:
    """The rows of a (N, d) tensor scaled to unit length, as lists of Python floats.

    >>> unit_rows(torch.tensor([[3.0, 4.0]]))
    [[0.6, 0.8]]
    """
    rows = x.detach().double().tolist()
    return [[value / math.sqrt(sum(v * v for v in row)) for value in row] for row in rows]


def dot(a: list[float], b: list[float]) -> float:
    """The inner product of two vectors; of two unit rows, their cosine similarity."""
    return sum(x * y for x, y in zip(a, b))


def squared_distance(a: list[float], b: list[float]) -> float:
    """``||a - b||^2``, the distance of FaceNet's triplet loss (Schroff et al. 2015)."""
    return sum((x - y) ** 2 for x, y in zip(a, b))


def neg_log_softmax(positive: float, negatives: list[float], temperature: float) -> float:
    """-log( exp(s+/tau) / (exp(s+/tau) + sum_j exp(s_j/tau)) ), straight from the formula.

    >>> round(neg_log_softmax(0.0, [0.0, 0.0], temperature=1.0), 6) == round(math.log(3), 6)
    True
    """
    numerator = math.exp(positive / temperature)
    denominator = numerator + sum(math.exp(s / temperature) for s in negatives)
    return -math.log(numerator / denominator)


def nt_xent_per_anchor(z1, z2, temperature: float) -> torch.Tensor:
    """SimCLR, Chen et al. 2020, Algorithm 1: l(i, j) for each of the 2N anchors of z1, z2 (N, d), [z1; z2] order.

    One anchor at a time in float64, with torch scalars so that gradients flow back to z1 and z2 (the
    data-parallel tests compare gradients with it): ``l(a) = logsumexp_{b != a} s(a, b) / tau - s(a, p(a)) / tau``.

    >>> z = torch.ones(3, 2)
    >>> [round(float(v), 6) for v in nt_xent_per_anchor(z, z, 0.5)] == [round(math.log(5), 6)] * 6
    True
    """
    views = torch.cat([z1, z2]).double()  # (2N, d): [z1; z2]
    views = views / views.norm(dim=1, keepdim=True)
    n = len(z1)
    losses = []
    for a in range(2 * n):
        partner = (a + n) % (2 * n)
        others = torch.stack([views[a] @ views[b] for b in range(2 * n) if b != a]) / temperature  # (2N - 1,)
        losses.append(torch.logsumexp(others, dim=0) - views[a] @ views[partner] / temperature)
    return torch.stack(losses)  # (2N,)


def nt_xent_oracle(z1, z2, temperature: float) -> float:
    """The mean of :func:`nt_xent_per_anchor` over the 2N anchors, a Python float.

    Identical embeddings make every logit equal, so the loss is log(2N - 1):

    >>> z = torch.ones(3, 2)
    >>> round(nt_xent_oracle(z, z, temperature=0.5), 6) == round(math.log(5), 6)
    True
    """
    return float(nt_xent_per_anchor(z1.detach(), z2.detach(), temperature).mean())


def info_nce_oracle(query, positive_key, negative_keys, temperature: float) -> float:
    """InfoNCE, van den Oord et al. 2018, eq. 4, one query at a time, averaged over the N queries.

    ``negative_keys`` is None (the other queries' positive keys are the negatives), (M, d) shared by
    every query, or (N, M, d), one set per query.

    >>> q, k = torch.eye(2), torch.eye(2)
    >>> round(info_nce_oracle(q, k, None, temperature=1.0), 6) == round(-math.log(math.e / (math.e + 1)), 6)
    True
    """
    q, k = unit_rows(query), unit_rows(positive_key)
    n = len(q)
    total = 0.0
    for i in range(n):
        if negative_keys is None:
            negatives = [k[j] for j in range(n) if j != i]
        elif negative_keys.ndim == 2:
            negatives = unit_rows(negative_keys)
        else:
            negatives = unit_rows(negative_keys[i])
        total += neg_log_softmax(dot(q[i], k[i]), [dot(q[i], key) for key in negatives], temperature)
    return total / n


def supcon_oracle(z, labels, temperature: float) -> float:
    """SupCon, Khosla et al. 2020, eq. 2 (L_out), one anchor at a time; anchors without a positive are skipped.

    >>> z, labels = torch.eye(2).repeat(2, 1), torch.tensor([0, 1, 0, 1])  # two copies of two points
    >>> expected = -math.log(math.e / (math.e + 2))  # 1 positive at cosine 1, 2 negatives at cosine 0
    >>> round(supcon_oracle(z, labels, temperature=1.0), 6) == round(expected, 6)
    True
    """
    z, labels = unit_rows(z), labels.tolist()
    losses = []
    for i in range(len(z)):
        logits = [dot(z[i], z[j]) / temperature for j in range(len(z))]
        denominator = sum(math.exp(logits[a]) for a in range(len(z)) if a != i)
        positives = [p for p in range(len(z)) if p != i and labels[p] == labels[i]]
        if positives:
            losses.append(-sum(math.log(math.exp(logits[p]) / denominator) for p in positives) / len(positives))
    return sum(losses) / len(losses)

