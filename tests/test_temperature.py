"""Tests for crl_helpers.temperature: float64 loop oracles, autograd, and losses.info_nce on real embeddings."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from crl_helpers.losses import info_nce
from crl_helpers.temperature import (
    example_similarities,
    gradient_weights,
    hardness_share,
    info_nce_from_similarities,
    key_distribution,
    circle_training,
    similarities_with,
    temperature_sweep,
    train_on_circle,
)


# ------------------------------------------------------------------ oracles: plain Python floats, one term at a time
def softmax_oracle(s: list[float], temperature: float) -> list[float]:
    top = max(s)
    exps = [math.exp((v - top) / temperature) for v in s]
    total = sum(exps)
    return [e / total for e in exps]


def loss_oracle(s: list[float], temperature: float) -> float:
    return -math.log(softmax_oracle(s, temperature)[0])


def embeddings_with_similarities(s: list[float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A query e_0 and unit keys whose cosine with it is s_j: k_j = s_j e_0 + sqrt(1 - s_j^2) e_{j+1}."""
    dim = len(s) + 1
    query = torch.zeros(1, dim, dtype=torch.float64)
    query[0, 0] = 1.0
    keys = torch.zeros(len(s), dim, dtype=torch.float64)
    for j, value in enumerate(s):
        keys[j, 0] = value
        keys[j, j + 1] = math.sqrt(1 - value * value)
    return query, keys[:1], keys[1:]


similarity_lists = st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=2, max_size=12)
temperatures = st.floats(0.02, 5.0)


# ------------------------------------------------------------------------------------------ values
@settings(max_examples=60, deadline=None)
@given(similarity_lists, temperatures)
def test_distribution_and_loss_match_the_loop_oracle(s, temperature):
    p = key_distribution(torch.tensor(s, dtype=torch.float64), temperature)
    assert p.tolist() == pytest.approx(softmax_oracle(s, temperature), rel=1e-9, abs=1e-12)
    assert info_nce_from_similarities(s, temperature) == pytest.approx(loss_oracle(s, temperature), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("temperature", [0.05, 0.2, 1.0])
def test_loss_equals_losses_info_nce_on_equivalent_embeddings(temperature):
    s = [0.6, 0.55, 0.1, -0.3, 0.0, 0.9]
    query, positive_key, negative_keys = embeddings_with_similarities(s)
    expected = info_nce(query, positive_key, negative_keys, temperature=temperature).item()
    assert info_nce_from_similarities(s, temperature) == pytest.approx(expected, rel=1e-10)


def test_closed_forms():
    # All similarities equal: -log(1 / (1 + K)), whatever the temperature.
    assert info_nce_from_similarities([0.2] * 5, 0.07) == pytest.approx(math.log(5))
    # Two candidates: p_pos = sigmoid((s0 - s1) / tau).
    assert float(key_distribution([1.0, 0.0], 0.5)[0]) == pytest.approx(1 / (1 + math.exp(-2.0)))


def test_small_temperature_does_not_overflow():
    loss = info_nce_from_similarities([1.0, 0.99, -1.0], 1e-4)
    assert math.isfinite(loss)
    assert loss == pytest.approx(math.log1p(math.exp(-100.0)) + 0.0, abs=1e-12)  # (0.99 - 1) / 1e-4 = -100


# ---------------------------------------------------------------------------------------- gradient
@settings(max_examples=40, deadline=None)
@given(similarity_lists, temperatures)
def test_gradient_weights_equal_autograd(s, temperature):
    x = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    loss = -torch.log_softmax(x / temperature, dim=0)[0]  # the oracle: autograd of the loss as written
    (expected,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(gradient_weights(torch.tensor(s, dtype=torch.float64), temperature), expected)


def test_gradient_signs_and_balance():
    g = gradient_weights([0.8, 0.7, 0.1, 0.0], 0.2)
    assert g[0] < 0 and (g[1:] > 0).all()  # pull the positive in, push every negative out
    assert float(g.sum()) == pytest.approx(0.0, abs=1e-6)
    assert g[1] > g[2] > g[3]  # harder negatives are pushed harder


def test_gradient_of_embeddings_through_info_nce_matches_chain_rule():
    # dL/dq = sum_j dL/ds_j * k_j for unit q and k (cosine = dot on the sphere, tangent part aside):
    s = [0.5, 0.3, -0.2, 0.1]
    temperature = 0.3
    query, positive_key, negative_keys = embeddings_with_similarities(s)
    query.requires_grad_(True)
    info_nce(query, positive_key, negative_keys, temperature=temperature).backward()
    keys = torch.cat([positive_key, negative_keys])  # (1 + K, d)
    weights = gradient_weights(s, temperature)  # (1 + K,)
    raw = (weights[:, None] * keys).sum(0)  # d L / d q if q were not normalised
    tangent = raw - (raw @ query[0].detach()) * query[0].detach()  # normalisation removes the radial part
    torch.testing.assert_close(query.grad[0], tangent)


# --------------------------------------------------------------------------------------- hardness
def test_hardness_share_matches_loop_oracle_and_limits():
    s = [0.9, 0.6, 0.5, 0.0, -0.5]
    for temperature in (0.05, 0.3, 2.0):
        exps = [math.exp(v / temperature) for v in s[1:]]
        assert hardness_share(s, temperature, top=1) == pytest.approx(max(exps) / sum(exps))
        assert hardness_share(s, temperature, top=2) == pytest.approx(sum(sorted(exps)[-2:]) / sum(exps))
    assert hardness_share(s, 1e4, top=1) == pytest.approx(0.25, abs=1e-3)  # uniform over 4 negatives
    assert hardness_share(s, 1e-3, top=1) == pytest.approx(1.0)
    assert hardness_share(s, 0.1) > hardness_share(s, 0.5) > hardness_share(s, 2.0)


def test_sweep_matches_pointwise_calls():
    s = example_similarities(n_negatives=6, n_hard=2)
    sweep = temperature_sweep(s, [0.1, 1.0])
    assert sweep["loss"][1].item() == pytest.approx(loss_oracle(s.tolist(), 1.0))
    assert sweep["p_positive"][0].item() == pytest.approx(softmax_oracle(s.tolist(), 0.1)[0])
    assert sweep["loss"][0] < sweep["loss"][1]  # the positive is the most similar: sharper is easier


def test_example_similarities_shape_and_order():
    s = example_similarities(n_negatives=10, n_hard=3, positive=0.8)
    assert s.shape == (11,) and s[0] == pytest.approx(0.8)
    assert (s[1:] < s[0]).all() and (s[1:-1] >= s[2:]).all()  # negatives sorted, hardest first
    assert (s[1:4] > 0.4).all() and (s[4:].abs() < 0.7).all()


# --------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("bad, error, match", [
    (torch.zeros(2, 3), ValueError, "1-D"),
    ([0.5], ValueError, "at least one negative"),
    ([0.5, float("nan")], ValueError, "NaN"),
    ("abc", TypeError, "similarities"),
])
def test_bad_similarities_raise(bad, error, match):
    with pytest.raises(error, match=match):
        key_distribution(bad, 0.1)


@pytest.mark.parametrize("temperature, error", [(0.0, ValueError), (-1.0, ValueError), (float("inf"), ValueError),
                                                ("0.1", TypeError), (True, TypeError)])
def test_bad_temperature_raises(temperature, error):
    with pytest.raises(error, match="temperature"):
        info_nce_from_similarities([0.5, 0.1], temperature)


def test_bad_top_raises():
    with pytest.raises(ValueError, match="top"):
        hardness_share([0.5, 0.1, 0.0], 0.1, top=3)


def test_temperature_rule_is_the_losses_rule():
    # One rule everywhere (crl_helpers.validate.check_temperature): finite and >= 1e-8.
    assert info_nce_from_similarities([0.1, 0.5], 1e-8) == pytest.approx(0.4 / 1e-8, rel=1e-6)  # s_1 - s_0 over tau
    with pytest.raises(ValueError, match="below 1e-08"):
        info_nce_from_similarities([0.5, 0.1], 1e-9)
    with pytest.raises(ValueError, match="below 1e-08"):
        temperature_sweep([0.5, 0.1], [0.1, 1e-12])


def test_check_similarities_is_public_and_converts_lists():
    from crl_helpers.temperature import check_similarities

    s = check_similarities([1, 0])
    assert s.dtype == torch.float64 and s.tolist() == [1.0, 0.0]


# ------------------------------------------------------------------------- negatives of chosen hardness
def test_similarities_with_mean_count_and_order():
    s = similarities_with(200, negative_mean=0.3, spread=0.05, seed=1)
    assert s.shape == (201,) and s[0].item() == 0.7
    assert abs(s[1:].mean().item() - 0.3) < 0.02
    assert s[1:].tolist() == sorted(s[1:].tolist(), reverse=True) and s.abs().max() <= 1


def test_harder_negatives_raise_the_loss_and_more_negatives_raise_it_too():
    easy, hard = (info_nce_from_similarities(similarities_with(15, m, spread=0.0), 0.2) for m in (0.0, 0.6))
    assert hard > easy  # closed form: log(1 + K e^{(m - 0.7)/tau}) grows with m
    assert easy == pytest.approx(math.log(1 + 15 * math.exp((0.0 - 0.7) / 0.2)))
    more = info_nce_from_similarities(similarities_with(255, 0.0, spread=0.0), 0.2)
    assert more == pytest.approx(math.log(1 + 255 * math.exp(-0.7 / 0.2)))


@pytest.mark.parametrize("kwargs, match", [(dict(n_negatives=0, negative_mean=0.0), ">= 1"),
                                           (dict(n_negatives=3, negative_mean=1.5), r"\[-1, 1\]"),
                                           (dict(n_negatives=3, negative_mean=0.0, spread=-1.0), "spread")])
def test_similarities_with_refuses_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        similarities_with(**kwargs)


# --------------------------------------------------------------------------------------- the circle toy
def test_circle_training_is_deterministic_and_snapshots_on_schedule():
    a = list(circle_training(0.2, steps=30, n_points=16, seed=3, every=10))
    b = list(circle_training(0.2, steps=30, n_points=16, seed=3, every=10))
    assert [s.step for s in a] == [0, 10, 20, 30]
    for x, y in zip(a, b):
        assert torch.equal(x.z1, y.z1) and torch.equal(x.z2, y.z2)
        assert x.loss == y.loss or (math.isnan(x.loss) and math.isnan(y.loss))
    assert torch.allclose(a[-1].z1.norm(dim=1), torch.ones(16))
    assert a[-1].z1.tolist() != a[0].z1.tolist()


def test_training_on_the_circle_improves_alignment():
    # Two views differ only by nuisance: an encoder that learns to ignore it aligns them.
    untrained, trained = train_on_circle(0.2, steps=0, n_points=32), train_on_circle(0.2, steps=150, n_points=32)
    assert trained.alignment < untrained.alignment
    assert trained.uniformity <= 0 and untrained.uniformity <= 0


def test_circle_training_refuses_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        list(circle_training(0.2, steps=-1))
    with pytest.raises(ValueError, match="temperature"):
        list(circle_training(0.0, steps=1))
