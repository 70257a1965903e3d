"""Tests for crl_helpers.scores: every scoring function and loss form against a float64 loop written from its paper."""
from __future__ import annotations

import math

import pytest
import torch

from crl_helpers.scores import (
    FORMS,
    SCORES,
    bilinear_score,
    correlated_gaussians,
    cosine_score,
    dot_score,
    gaussian_critic,
    gaussian_mutual_information,
    infonce_bound,
    info_nce_form,
    margin_form,
    nce_form,
    neg_euclidean_score,
    pair_scores,
    triplet_form,
)


def rows(n, d, seed):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------ oracles: Python floats, one pair at a time
def score_oracle(name, q, k, w=None):
    q, k = q.tolist(), k.tolist()
    out = []
    for a in q:
        row = []
        for b in k:
            dot = sum(x * y for x, y in zip(a, b))
            if name == "dot":
                row.append(dot)
            elif name == "cosine":
                row.append(dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b)))
            elif name == "bilinear":
                row.append(sum(a[i] * w[i][j] * b[j] for i in range(len(a)) for j in range(len(b))))
            else:
                row.append(-sum((x - y) ** 2 for x, y in zip(a, b)))
        out.append(row)
    return torch.tensor(out, dtype=torch.float64)


def form_oracle(name, positive, negatives, knob):
    total = 0.0
    for sp, row in zip(positive.tolist(), negatives.tolist()):
        if name == "infonce":
            total += -math.log(math.exp(sp / knob) / (math.exp(sp / knob) + sum(math.exp(s / knob) for s in row)))
        elif name == "nce":
            sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
            total += -math.log(sigmoid(sp / knob)) - sum(math.log(1 - sigmoid(s / knob)) for s in row)
        elif name == "triplet":
            total += sum(max(0.0, knob + s - sp) for s in row) / len(row)
        else:  # Hadsell et al. 2006 on distances D = -score
            total += 0.5 * sp**2 + sum(0.5 * max(0.0, knob - (-s)) ** 2 for s in row) / len(row)
    return total / len(positive)


@pytest.mark.parametrize("name, fn", [("dot", dot_score), ("cosine", cosine_score), ("euclid", neg_euclidean_score)])
def test_scores_match_loops(name, fn):
    q, k = rows(4, 3, 0), rows(5, 3, 1)
    torch.testing.assert_close(fn(q, k), score_oracle(name, q, k))


def test_bilinear_matches_loop_and_reduces_to_dot():
    q, k, w = rows(3, 4, 0), rows(2, 5, 1), rows(4, 5, 2)
    torch.testing.assert_close(bilinear_score(q, k, w), score_oracle("bilinear", q, k, w.tolist()))
    torch.testing.assert_close(SCORES["bilinear (W = I)"](q, rows(2, 4, 3)), dot_score(q, rows(2, 4, 3)))


def test_euclidean_on_unit_vectors_is_shifted_cosine():
    q, k = (torch.nn.functional.normalize(rows(4, 6, s), dim=1) for s in (0, 1))
    torch.testing.assert_close(neg_euclidean_score(q, k), 2 * cosine_score(q, k) - 2)
    torch.testing.assert_close(neg_euclidean_score(q, k, squared=False), -(2 - 2 * cosine_score(q, k)).sqrt())


def test_pair_scores_splits_diagonal():
    s = rows(4, 4, 0)
    positive, negatives = pair_scores(s)
    assert positive.tolist() == [s[i, i].item() for i in range(4)]
    assert negatives.tolist() == [[s[i, j].item() for j in range(4) if j != i] for i in range(4)]


@pytest.mark.parametrize("name, fn, knob", [("infonce", info_nce_form, 0.3), ("nce", nce_form, 0.5),
                                             ("triplet", triplet_form, 0.4)])
def test_forms_match_loops(name, fn, knob):
    positive, negatives = pair_scores(cosine_score(rows(6, 3, 0), rows(6, 3, 1)))
    torch.testing.assert_close(fn(positive, negatives, knob), torch.tensor(form_oracle(name, positive, negatives, knob),
                                                                           dtype=torch.float64))


def test_margin_form_matches_loop_and_refuses_similarities():
    positive, negatives = pair_scores(neg_euclidean_score(rows(5, 2, 0), rows(5, 2, 1), squared=False))
    torch.testing.assert_close(margin_form(positive, negatives, 1.5),
                               torch.tensor(form_oracle("margin", positive, negatives, 1.5), dtype=torch.float64))
    with pytest.raises(ValueError, match="squared=False"):
        margin_form(torch.tensor([0.5]), torch.tensor([[0.1]]))


def test_closed_forms_at_equal_scores():
    zeros, k = torch.zeros(3, dtype=torch.float64), 4
    assert math.isclose(info_nce_form(zeros, torch.zeros(3, k, dtype=torch.float64)).item(), math.log(k + 1))
    assert math.isclose(nce_form(zeros, torch.zeros(3, k, dtype=torch.float64)).item(), (k + 1) * math.log(2))
    assert math.isclose(triplet_form(zeros, torch.zeros(3, k, dtype=torch.float64), 0.3).item(), 0.3)


def test_forms_are_stable_at_huge_scores():
    positive, negatives = torch.tensor([1000.0]), torch.tensor([[-1000.0, 999.0]])
    for form in FORMS.values():
        assert torch.isfinite(form(positive, negatives))


@pytest.mark.parametrize("bad", [torch.zeros(3), torch.zeros(2, 3, 4)])
def test_scores_refuse_bad_shapes(bad):
    with pytest.raises(ValueError, match="rows, d"):
        dot_score(bad, torch.zeros(2, 3))


def test_forms_refuse_mismatched_rows():
    with pytest.raises(ValueError, match="pair_scores"):
        info_nce_form(torch.zeros(3), torch.zeros(2, 4))


# ------------------------------------------------------------------------------------------- the bound toy
def test_gaussian_mutual_information_closed_form_and_critic_mean():
    assert math.isclose(gaussian_mutual_information(3, 0.6), -1.5 * math.log(0.64))
    x, y = correlated_gaussians(40000, 3, 0.6, seed=3)
    critic = gaussian_critic(x[:3000], y[:3000], 0.6)  # (3000, 3000)
    assert abs(critic.diagonal().mean().item() - gaussian_mutual_information(3, 0.6)) < 0.05
    # E over independent pairs of p(y|x)/p(y) is 1
    assert abs(critic.exp().masked_fill(torch.eye(3000, dtype=torch.bool), 0).sum().item() / (3000 * 2999) - 1) < 0.1


def test_infonce_bound_is_capped_and_approaches_the_truth():
    small = infonce_bound(4, 0.9, n_negatives=1, n_queries=512)
    assert small["estimate"] <= small["cap"] < small["true_mi"]
    large = infonce_bound(4, 0.9, n_negatives=511, n_queries=256)
    assert large["estimate"] > small["estimate"] and abs(large["estimate"] - large["true_mi"]) < 0.4
    assert infonce_bound(4, 0.9, 7, 64, seed=5) == infonce_bound(4, 0.9, 7, 64, seed=5)


def test_correlated_gaussians_refuses_rho_one():
    with pytest.raises(ValueError, match="rho < 1"):
        correlated_gaussians(4, 1, 1.0)
