"""crl_helpers.verdicts against a brute-force oracle: a difference only when no pair of runs disagrees."""
from __future__ import annotations

import itertools
import random

import pytest

from crl_helpers.verdicts import (NO_DIFFERENCE, best, compare, compare_accuracies, describe, mean_and_range, spread,
                                  two_standard_errors)


def _oracle(a, b):
    # Every run of a against every run of b: a is higher only if it wins every pairing, lower only if it loses all.
    pairs = list(itertools.product(a, b))
    if all(x > y for x, y in pairs):
        return "higher"
    if all(x < y for x, y in pairs):
        return "lower"
    return NO_DIFFERENCE


def test_compare_agrees_with_every_pairing_on_random_runs():
    rng = random.Random(0)
    seen = set()
    for _ in range(500):
        a = [round(rng.uniform(0, 1), 2) for _ in range(rng.randint(1, 4))]
        b = [round(rng.uniform(0, 1), 2) for _ in range(rng.randint(1, 4))]
        verdict = compare(a, b)
        assert verdict == _oracle(a, b), (a, b)
        assert compare(b, a) == {"higher": "lower", "lower": "higher"}.get(verdict, verdict)  # antisymmetric
        seen.add(verdict)
    assert seen == {"higher", "lower", NO_DIFFERENCE}


def test_touching_ranges_are_no_difference():
    assert compare([0.5, 0.6], [0.6, 0.7]) == NO_DIFFERENCE
    assert compare([0.5, 0.59], [0.6, 0.7]) == "lower"


def test_spread_and_describe():
    s = spread([0.3, 0.1, 0.2])
    assert (s.low, s.high, s.n) == (0.1, 0.3, 3) and abs(s.mean - 0.2) < 1e-12
    assert describe([-1.3, -1.2, -1.25], digits=2) == "-1.25 (-1.30 to -1.20, 3 seeds)"


@pytest.mark.parametrize("bad", [[], [float("nan"), 1.0], [float("inf")]])
def test_spread_refuses_empty_or_diverged_runs(bad):
    with pytest.raises(ValueError, match="runs"):
        spread(bad)


def test_best_names_the_winner_and_the_settings_it_cannot_be_told_from():
    groups = {"a": [0.50, 0.55], "b": [0.70, 0.80], "c": [0.74, 0.90], "d": [0.60, 0.69]}
    winner, ties = best(groups)
    assert winner == "c" and ties == ["b"]  # d's max 0.69 < c's min 0.74
    winner, ties = best(groups, higher_is_better=False)
    assert winner == "a" and ties == []
    with pytest.raises(ValueError):
        best({})


def test_mean_and_range_bars_reach_the_smallest_and_the_largest_run():
    groups = [[0.2, 0.5, 0.3], [0.9], [-1.0, -3.0]]
    means, (below, above) = mean_and_range(groups)
    for group, mean, down, up in zip(groups, means, below, above):
        assert abs(mean - sum(group) / len(group)) < 1e-12
        assert abs((mean - down) - min(group)) < 1e-12 and abs((mean + up) - max(group)) < 1e-12
        assert down >= 0 and up >= 0


def test_two_standard_errors_match_a_simulated_binomial():
    # Oracle: the spread of simulated accuracies of n Bernoulli(p) test points.
    import numpy as np

    rng = np.random.default_rng(0)
    for p, n in ((0.5, 200), (0.9, 1000), (0.1, 50)):
        simulated = rng.binomial(n, p, size=20_000) / n
        assert abs(two_standard_errors(p, n) - 2 * simulated.std()) < 0.05 * two_standard_errors(p, n)
    with pytest.raises(ValueError, match="accuracy"):
        two_standard_errors(1.5, 10)


def test_compare_accuracies_calls_a_difference_only_beyond_the_noise():
    noise = 2 ** 0.5 * two_standard_errors(0.5, 400)  # about 0.0707
    assert compare_accuracies(0.5 + noise / 2 + 0.001, 0.5 - noise / 2, 400) == "higher"
    assert compare_accuracies(0.5 - noise / 2, 0.5 + noise / 2 + 0.001, 400) == "lower"
    assert compare_accuracies(0.5 + noise / 2 - 0.001, 0.5 - noise / 2, 400) == NO_DIFFERENCE
