"""Verdicts on experiments run with several seeds: a difference only where the seeds' ranges do not overlap.

The course's notebooks interpret their experiments in words ("alignment is higher at temperature 1"). Every
such sentence comes from here, with one rule: two settings differ only when the range (min to max) of one
setting's seeds lies entirely above the other's; otherwise there is **no difference at this budget**. The
range of 3 seeds is a crude interval, but it is what a short run can afford, and it never calls noise an effect.

Example:
    >>> compare([0.81, 0.83, 0.82], [0.70, 0.74, 0.72])
    'higher'
    >>> compare([0.81, 0.83, 0.82], [0.80, 0.84, 0.82])
    'no difference at this budget'
    >>> describe([0.81, 0.83, 0.82])
    '0.820 (0.810 to 0.830, 3 seeds)'
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["NO_DIFFERENCE", "Spread", "best", "compare", "compare_accuracies", "describe", "mean_and_range", "spread",
           "two_standard_errors"]

NO_DIFFERENCE = "no difference at this budget"


@dataclass(frozen=True)
class Spread:
    """The mean and the range of one setting's runs (one value per seed)."""

    mean: float
    low: float  # the smallest run
    high: float  # the largest run
    n: int  # how many runs (seeds)


def spread(runs: Sequence[float]) -> Spread:
    """Mean, min and max of ``runs`` (one number per seed).

    Raises:
        ValueError: no runs, or a value that is not a finite number (a diverged run must not pass as a result).

    Example:
        >>> spread([1.0, 3.0, 2.0])
        Spread(mean=2.0, low=1.0, high=3.0, n=3)
    """
    values = [float(v) for v in runs]
    if not values:
        raise ValueError("runs is empty: pass one value per seed")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise ValueError(f"runs holds {bad[0]}: a run diverged or was not measured; rerun it before comparing")
    return Spread(mean=sum(values) / len(values), low=min(values), high=max(values), n=len(values))


def compare(a_runs: Sequence[float], b_runs: Sequence[float]) -> str:
    """``"higher"`` when every run of ``a`` is above every run of ``b``, ``"lower"`` when below, else
    :data:`NO_DIFFERENCE`.

    With one run per side the "ranges" are points, so any inequality counts: pass several seeds.

    Example:
        >>> compare([0.2, 0.3], [0.5, 0.6]), compare([0.2, 0.5], [0.4, 0.6])
        ('lower', 'no difference at this budget')
    """
    a, b = spread(a_runs), spread(b_runs)
    if a.low > b.high:
        return "higher"
    if a.high < b.low:
        return "lower"
    return NO_DIFFERENCE


def best(groups: Mapping[object, Sequence[float]], higher_is_better: bool = True) -> tuple[object, list]:
    """The setting with the best mean, and the other settings it cannot be told apart from.

    Args:
        groups: setting -> its runs (one value per seed).
        higher_is_better: ``False`` for a loss or an alignment, where lower wins.

    Returns:
        ``(winner, ties)``: ``ties`` lists, in ``groups``' order, every other setting whose range overlaps
        the winner's (:func:`compare` says :data:`NO_DIFFERENCE`). An empty list means a clear winner.

    Raises:
        ValueError: ``groups`` is empty.

    Example:
        >>> best({"a": [0.5, 0.6], "b": [0.7, 0.8], "c": [0.75, 0.9]})
        ('c', ['b'])
        >>> best({"a": [1.0, 1.1], "b": [2.0, 2.2]}, higher_is_better=False)
        ('a', [])
    """
    if not groups:
        raise ValueError("groups is empty: pass setting -> runs")
    sign = 1 if higher_is_better else -1
    winner = max(groups, key=lambda key: sign * spread(groups[key]).mean)
    ties = [key for key in groups if key != winner and compare(groups[key], groups[winner]) == NO_DIFFERENCE]
    return winner, ties


def describe(runs: Sequence[float], digits: int = 3) -> str:
    """``"mean (min to max, n seeds)"``, the way the notebooks print a result.

    Example:
        >>> describe([0.5], digits=2)
        '0.50 (1 seed)'
    """
    s = spread(runs)
    if s.n == 1:
        return f"{s.mean:.{digits}f} (1 seed)"
    return f"{s.mean:.{digits}f} ({s.low:.{digits}f} to {s.high:.{digits}f}, {s.n} seeds)"


def mean_and_range(groups: Sequence[Sequence[float]]) -> tuple[list[float], list[list[float]]]:
    """What matplotlib draws for groups of runs: their means, and bars from each group's min to its max.

    Args:
        groups: one sequence of runs (a value per seed) per point or bar.

    Returns:
        ``(means, yerr)``: ``yerr = [below, above]``, the distances from each mean down to the smallest run and up
        to the largest, as ``ax.errorbar(x, means, yerr=yerr)`` and ``ax.bar(x, means, yerr=yerr)`` take them.

    Example:
        >>> mean_and_range([[1.0, 3.0], [5.0, 5.0]])
        ([2.0, 5.0], [[1.0, 0.0], [1.0, 0.0]])
    """
    spreads = [spread(g) for g in groups]
    return [s.mean for s in spreads], [[s.mean - s.low for s in spreads], [s.high - s.mean for s in spreads]]


def two_standard_errors(p: float, n: int) -> float:
    """Two standard errors of an accuracy ``p`` measured on ``n`` test points: ``2 sqrt(p (1 - p) / n)``.

    Raises:
        ValueError: ``p`` outside [0, 1] or ``n`` < 1.

    Example:
        >>> round(two_standard_errors(0.5, 100), 3)
        0.1
    """
    if not 0.0 <= p <= 1.0 or n < 1:
        raise ValueError(f"p={p!r} must be an accuracy in [0, 1] and n={n!r} a number of test points >= 1")
    return 2 * math.sqrt(max(p * (1 - p), 1e-12) / n)


def compare_accuracies(a: float, b: float, n: int) -> str:
    """``"higher"``, ``"lower"`` or :data:`NO_DIFFERENCE`: does accuracy ``a`` differ from ``b``, both measured on the
    same ``n`` test points, by more than two standard errors of a difference (``sqrt(2)`` times
    :func:`two_standard_errors` at their mean)?

    Example:
        >>> compare_accuracies(0.65, 0.50, n=100), compare_accuracies(0.60, 0.50, n=100)
        ('higher', 'no difference at this budget')
    """
    noise = math.sqrt(2) * two_standard_errors((a + b) / 2, n)
    if a - b > noise:
        return "higher"
    if b - a > noise:
        return "lower"
    return NO_DIFFERENCE
