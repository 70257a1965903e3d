"""The checkers of crl_helpers.exercises.infonce (notebook 04) accept correct answers (written here independently,
as a learner would) and reject plausible wrong ones with a hint that names the slip; the red-team
table (tests/test_checker_redteam.py) holds the verdicts of many more answers."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from crl_helpers.exercises import (
    check_alignment,
    check_info_nce,
    check_logsumexp,
    check_neg_euclidean_score,
    check_nt_xent,
)


# ------------------------------------------------------------------- InfoNCE
def info_nce_loop(query, positive_key, negative_keys, temperature):
    losses = []
    for q, k in zip(F.normalize(query, dim=1), F.normalize(positive_key, dim=1)):
        pos = torch.exp(q @ k / temperature)
        neg = sum(torch.exp(q @ n / temperature) for n in F.normalize(negative_keys, dim=1))
        losses.append(-torch.log(pos / (pos + neg)))
    return torch.stack(losses).mean()


def info_nce_vectorised(query, positive_key, negative_keys, temperature):
    q, k, n = (F.normalize(t, dim=1) for t in (query, positive_key, negative_keys))
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ n.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))


@pytest.mark.parametrize("answer", [info_nce_loop, info_nce_vectorised])
def test_info_nce_accepts_loop_and_vectorised(answer):
    assert check_info_nce(answer)


@pytest.mark.parametrize("wrong, hint", [
    (lambda q, k, n, t: info_nce_vectorised(q, k, n, 1.0), "temperature is missing"),
    (lambda q, k, n, t: info_nce_vectorised(q, k, n, t) * len(q), "SUM over queries"),
    (lambda q, k, n, t: F.cross_entropy(torch.cat([(q * k).sum(1, keepdim=True), q @ n.T], 1) / t,
                                        torch.zeros(len(q), dtype=torch.long)), "not L2-normalised"),
    (lambda q, k, n, t: (-(F.normalize(q, dim=1) * F.normalize(k, dim=1)).sum(1) / t
                         + torch.logsumexp(F.normalize(q, dim=1) @ F.normalize(n, dim=1).T / t, 1)).mean(),
     "positive is missing from the denominator"),
    (lambda q, k, n, t: info_nce_vectorised(q, k, n, t).expand(3), "a scalar"),
])
def test_info_nce_rejects_slips_with_hints(wrong, hint):
    result = check_info_nce(wrong)
    assert not result and hint in result.message


# ------------------------------------------------------------------- NT-Xent
def nt_xent_loop(z1, z2, temperature):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    total = 0.0
    for a in range(2 * n):
        partner = (a + n) % (2 * n)
        denominator = sum(torch.exp(z[a] @ z[b] / temperature) for b in range(2 * n) if b != a)
        total = total - torch.log(torch.exp(z[a] @ z[partner] / temperature) / denominator)
    return total / (2 * n)


def nt_xent_unmasked(z1, z2, temperature):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    return F.cross_entropy(z @ z.T / temperature, torch.cat([torch.arange(n) + n, torch.arange(n)]))


def nt_xent_cross_only(z1, z2, temperature):
    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    target = torch.arange(len(a))
    return 0.5 * (F.cross_entropy(a @ b.T / temperature, target) + F.cross_entropy(b @ a.T / temperature, target))


def nt_xent_matrix(z1, z2, temperature):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, torch.cat([torch.arange(n) + n, torch.arange(n)]))


def nt_xent_unnormalised(z1, z2, temperature):
    z = torch.cat([z1, z2])
    n = len(z1)
    logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, torch.cat([torch.arange(n) + n, torch.arange(n)]))


@pytest.mark.parametrize("answer", [nt_xent_loop, nt_xent_matrix])
def test_nt_xent_accepts_a_loop_and_a_matrix_form(answer):
    assert check_nt_xent(answer)


@pytest.mark.parametrize("wrong, hint", [
    (nt_xent_unmasked, "mask the diagonal"),
    (nt_xent_cross_only, "all 2N-1 other views"),
    (lambda z1, z2, t: nt_xent_loop(z1, z2, 1.0), "temperature is missing"),
    (nt_xent_unnormalised, "not L2-normalised"),
    (lambda z1, z2, t: nt_xent_loop(z1, z2, t) + 0.01, "follow steps 1-4"),
])
def test_nt_xent_rejects_slips_with_hints(wrong, hint):
    result = check_nt_xent(wrong)
    assert not result and hint in result.message


# --------------------------------------------------------------- logsumexp
def stable_logsumexp(logits):
    m = logits.max(dim=-1, keepdim=True).values
    return (logits - m).exp().sum(-1).log() + m.squeeze(-1)


def test_logsumexp_accepts_the_stable_version_and_rejects_the_naive_one():
    assert check_logsumexp(stable_logsumexp)
    naive = check_logsumexp(lambda x: x.exp().sum(-1).log())
    assert not naive and "subtract each row's max" in naive.message
    whole = check_logsumexp(lambda x: torch.logsumexp(x.flatten(), 0))
    assert not whole and "last dimension" in whole.message
    global_max = check_logsumexp(lambda x: (x - x.max()).exp().sum(-1).log() + x.max())
    assert not global_max  # one max for all rows underflows the row at -1000


# --------------------------------------------------------------- alignment
def test_alignment_checker():
    assert check_alignment(lambda z1, z2: (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).pow(2).sum(1).mean())
    raw = check_alignment(lambda z1, z2: (z1 - z2).pow(2).sum(1).mean())
    assert not raw and "normalise" in raw.message
    no_square = check_alignment(lambda z1, z2: (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).norm(dim=1).mean())
    assert not no_square and "square" in no_square.message


# ------------------------------------------------ negative squared Euclidean score
def neg_euclidean_loop(query, keys):
    return torch.stack([torch.stack([-((q - k) ** 2).sum() for k in keys]) for q in query])


def neg_euclidean_expanded(query, keys):
    # ||q||^2 + ||k||^2 - 2 q.k, a different route to the same matrix
    return -(query.pow(2).sum(1, keepdim=True) + keys.pow(2).sum(1)[None, :] - 2 * query @ keys.T)


@pytest.mark.parametrize("answer", [neg_euclidean_loop, neg_euclidean_expanded])
def test_neg_euclidean_accepts_two_forms(answer):
    assert check_neg_euclidean_score(answer)


@pytest.mark.parametrize("wrong, hint", [
    (lambda q, k: -neg_euclidean_loop(q, k), "negate it"),
    (lambda q, k: -torch.cdist(q, k), "square the distance"),
    (lambda q, k: neg_euclidean_loop(q, k).T, "rows are queries"),
    (lambda q, k: neg_euclidean_loop(F.normalize(q, dim=1), F.normalize(k, dim=1)), "do not normalise"),
])
def test_neg_euclidean_rejects_slips_with_hints(wrong, hint):
    result = check_neg_euclidean_score(wrong)
    assert not result and hint in result.message


