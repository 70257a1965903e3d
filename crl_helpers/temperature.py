r"""What temperature does to InfoNCE, seen from one anchor (Wang & Liu 2021).

Wang and Liu, "Understanding the Behaviour of Contrastive Loss" (CVPR 2021), study the
InfoNCE / NT-Xent loss of ONE anchor as a function of its similarities: the positive's
``s_0`` and the ``K`` negatives' ``s_1 .. s_K`` (cosine similarities, in [-1, 1]). With
temperature :math:`\tau`,

.. math::

    p_j = \frac{\exp(s_j / \tau)}{\sum_{k=0}^{K} \exp(s_k / \tau)}, \qquad
    \mathcal{L} = -\log p_0, \qquad
    \frac{\partial \mathcal{L}}{\partial s_j} = \frac{p_j - [j = 0]}{\tau}.

The softmax ``p`` is the *key distribution*: the model's predicted distribution over the
anchor's 1 + K candidate keys, i.e. how the anchor spreads its belief over them. It is not
Le-Khac et al.'s (2020) *similarity distribution* :math:`p^+(q, k^+)`, the distribution the
positive pairs are drawn from (e.g. two augmentations of one image). The gradient says how
hard the loss pushes each negative away (``p_j / tau`` for ``j >= 1``) and pulls the positive
in (``(p_0 - 1) / tau``, which equals minus the sum of the negatives' weights). A small temperature sharpens ``p`` so that
the hardest negatives (the most similar ones) take nearly all of the push; a large one
spreads it evenly, like a plain mean over negatives. :func:`hardness_share` measures that
concentration.

The one-anchor functions take the similarities as a 1-D tensor ``(1 + K,)``, positive first;
:func:`similarities_with` draws such a vector with K negatives of a chosen mean similarity (how
hard they are). :func:`circle_training` trains the smallest possible encoder, 10 numbers to a
point on the circle, with NT-Xent at a given temperature, and yields snapshots of the embedding
with its alignment and uniformity (Wang & Isola 2020). They are the pure functions behind
:func:`crl_helpers.widgets.temperature_explorer`.

Example:
    >>> s = torch.tensor([0.8, 0.7, 0.1, 0.0])  # positive, one hard and two easy negatives
    >>> round(info_nce_from_similarities(s, 0.1), 3), round(info_nce_from_similarities(s, 1.0), 3)
    (0.314, 1.048)
    >>> hardness_share(s, 0.05, top=1) > 0.99, hardness_share(s, 10.0, top=1) < 0.4
    (True, True)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from crl_helpers.scores import info_nce_form
from crl_helpers.validate import check_int, check_temperature

__all__ = [
    "check_similarities",
    "key_distribution",
    "info_nce_from_similarities",
    "gradient_weights",
    "hardness_share",
    "example_similarities",
    "temperature_sweep",
    "similarities_with",
    "CircleSnapshot",
    "circle_views",
    "circle_training",
    "train_on_circle",
]


def check_similarities(similarities) -> torch.Tensor:
    """One anchor's similarities as a floating 1-D tensor ``(1 + K,)``, positive first, K >= 1, finite.

    Lists and integer tensors are converted (to float64); floating tensors keep their dtype.

    Raises:
        TypeError: not convertible to a tensor of numbers.
        ValueError: not 1-D, fewer than 2 entries, or NaN/inf.

    Example:
        >>> check_similarities([0.5, 0.1])
        tensor([0.5000, 0.1000], dtype=torch.float64)
    """
    if not isinstance(similarities, torch.Tensor):
        try:
            similarities = torch.as_tensor(similarities, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"similarities={similarities!r} must be a 1-D tensor (1 + K,) of numbers, positive first"
            ) from err
    if not similarities.is_floating_point():
        similarities = similarities.double()
    if similarities.ndim != 1:
        raise ValueError(
            f"similarities has shape {tuple(similarities.shape)}; pass one anchor's 1-D tensor (1 + K,), "
            "positive first (for a batch, loop over anchors or use crl_helpers.losses.info_nce)"
        )
    if similarities.shape[0] < 2:
        raise ValueError(
            f"similarities has {similarities.shape[0]} entries; it needs the positive and at least one negative"
        )
    if not torch.isfinite(similarities).all():
        raise ValueError("similarities contains NaN or inf; cosine similarities lie in [-1, 1]")
    return similarities


def key_distribution(similarities, temperature: float) -> torch.Tensor:
    r"""The key distribution :math:`p_j = \exp(s_j/\tau) / \sum_k \exp(s_k/\tau)` over one anchor's candidates.

    The model's predicted distribution over the anchor's 1 + K candidate keys, the positive
    first: InfoNCE is the cross-entropy of this distribution with the positive's index 0.

    Args:
        similarities: ``(1 + K,)`` cosine similarities, the positive's first.
        temperature: :math:`\tau`, a finite number >= 1e-8 (:func:`crl_helpers.validate.check_temperature`).

    Returns:
        ``(1 + K,)`` probabilities summing to 1, in the input's floating dtype (float64 for lists).

    Raises:
        TypeError: non-numeric input or temperature.
        ValueError: not 1-D, fewer than 2 entries, NaN/inf, or a temperature that is not finite and >= 1e-8.

    Example:
        >>> key_distribution(torch.tensor([1.0, 0.0]), temperature=1.0)
        tensor([0.7311, 0.2689])
    """
    s = check_similarities(similarities)
    temperature = check_temperature(temperature)
    return torch.softmax(s / temperature, dim=0)  # (1 + K,); softmax subtracts the max: no overflow at small tau


def info_nce_from_similarities(similarities, temperature: float) -> float:
    r"""InfoNCE of one anchor, :math:`-\log p_0 = \log\sum_k e^{s_k/\tau} - s_0/\tau` (van den Oord et al. 2018).

    Equals :func:`crl_helpers.losses.info_nce` for a query whose cosine similarities to its
    positive key and negative keys are ``similarities``: :func:`crl_helpers.scores.info_nce_form` of one query.

    Raises:
        TypeError, ValueError: as :func:`key_distribution`.

    Example:
        Equal similarities leave the positive one of 1 + K equally likely candidates:

        >>> import math
        >>> round(info_nce_from_similarities([0.3, 0.3, 0.3, 0.3], 0.1), 6) == round(math.log(4), 6)
        True
    """
    s = check_similarities(similarities)  # (1 + K,)
    return float(info_nce_form(s[:1], s[None, 1:], temperature))  # one query: positive (1,), negatives (1, K)


def gradient_weights(similarities, temperature: float) -> torch.Tensor:
    r"""The gradient :math:`\partial\mathcal{L}/\partial s_j = (p_j - [j = 0]) / \tau` of one anchor's InfoNCE.

    Derivation: :math:`\mathcal{L} = -s_0/\tau + \log\sum_k e^{s_k/\tau}`, so
    :math:`\partial\mathcal{L}/\partial s_j = -[j=0]/\tau + e^{s_j/\tau} / (\tau \sum_k e^{s_k/\tau})
    = (p_j - [j=0])/\tau`. A negative ``j >= 1`` is pushed away with weight ``p_j / tau`` (always > 0,
    largest for the most similar, "hardest" negatives); the positive is pulled in with
    ``(p_0 - 1) / tau`` (< 0), exactly minus the sum of the negatives' weights (Wang & Liu 2021, eq. 4).

    Returns:
        ``(1 + K,)`` tensor: entry 0 for the positive, then one per negative.

    Raises:
        TypeError, ValueError: as :func:`key_distribution`.

    Example:
        >>> g = gradient_weights(torch.tensor([1.0, 0.0]), temperature=1.0)
        >>> g
        tensor([-0.2689,  0.2689])
        >>> abs(float(g.sum())) < 1e-6  # the pull on the positive balances the push on the negatives
        True
    """
    p = key_distribution(similarities, temperature)  # (1 + K,)
    onehot = torch.zeros_like(p)
    onehot[0] = 1.0
    return (p - onehot) / temperature  # (1 + K,)


def hardness_share(similarities, temperature: float, top: int = 1) -> float:
    r"""Fraction of the total push on negatives that goes to the ``top`` hardest ones (Wang & Liu 2021).

    The relative penalty on negative ``j`` is :math:`r_j = p_j / \sum_{k \ge 1} p_k
    = e^{s_j/\tau} / \sum_{k\ge1} e^{s_k/\tau}` (the paper's eq. 5); this returns the sum of
    the ``top`` largest :math:`r_j`. It goes to ``top / K`` as the temperature grows (every
    negative pushed equally) and to 1 as it shrinks (only the hardest negatives matter).

    Args:
        similarities: ``(1 + K,)``, positive first.
        temperature: a finite number >= 1e-8.
        top: how many of the hardest negatives to count, ``1 <= top <= K``.

    Raises:
        TypeError, ValueError: as :func:`key_distribution`, or ``top`` not an int in ``[1, K]``.

    Example:
        >>> s = torch.tensor([0.9, 0.5, 0.0, 0.0, 0.0])
        >>> round(hardness_share(s, 1000.0), 3), round(hardness_share(s, 0.01), 3)
        (0.25, 1.0)
    """
    s = check_similarities(similarities)
    temperature = check_temperature(temperature)
    n_negatives = s.shape[0] - 1
    top = check_int("top", top, 1)
    if top > n_negatives:
        raise ValueError(f"top={top} must be in [1, {n_negatives}] (the number of negatives)")
    r = torch.softmax(s[1:] / temperature, dim=0)  # (K,) relative penalties on the negatives
    return float(r.topk(top).values.sum())


def example_similarities(n_negatives: int = 15, n_hard: int = 3, positive: float = 0.7, seed: int = 0) -> torch.Tensor:
    """A plausible ``(1 + K,)`` similarity vector for one anchor: a positive, a few hard negatives, many easy ones.

    Hard negatives (say, other images of the same class) sit just below the positive,
    at ``positive - 0.35 .. positive - 0.1``; easy negatives scatter around 0, as unrelated images do in a
    well-spread embedding. The default of :func:`crl_helpers.widgets.temperature_explorer`.

    Raises:
        TypeError: ``n_negatives`` or ``n_hard`` not an int.
        ValueError: ``n_hard`` not in ``[0, n_negatives]``, ``n_negatives < 1``, or ``positive`` outside [-1, 1].

    Example:
        >>> s = example_similarities(n_negatives=5, n_hard=2)
        >>> s.shape, bool(s[0] > s[1:].max()), bool(s.abs().max() <= 1)
        (torch.Size([6]), True, True)
    """
    n_negatives = check_int("n_negatives", n_negatives, 1)
    n_hard = check_int("n_hard", n_hard, 0)
    if n_hard > n_negatives:
        raise ValueError(f"n_hard={n_hard} must be in [0, n_negatives={n_negatives}]")
    if not -1 <= positive <= 1:
        raise ValueError(f"positive={positive!r} is a cosine similarity; use a value in [-1, 1]")
    g = torch.Generator().manual_seed(seed)
    hard = positive - 0.1 - 0.25 * torch.rand(n_hard, generator=g, dtype=torch.float64)  # (n_hard,)
    easy = 0.15 * torch.randn(n_negatives - n_hard, generator=g, dtype=torch.float64)  # (K - n_hard,)
    negatives = torch.cat([hard, easy]).clamp(-1.0, positive - 0.05)  # (K,), never above the positive
    negatives = negatives.sort(descending=True).values  # hardest first reads well in a bar chart
    return torch.cat([torch.tensor([float(positive)], dtype=torch.float64), negatives])  # (1 + K,)


def temperature_sweep(similarities, temperatures) -> dict[str, torch.Tensor]:
    """Loss, positive probability and hardness share at each temperature (one anchor).

    Returns:
        dict of ``(T,)`` float64 tensors: ``temperature``, ``loss``, ``p_positive``, ``hardness_share``
        (of the single hardest negative).

    Raises:
        TypeError, ValueError: as :func:`key_distribution`; an empty ``temperatures``.

    Example:
        >>> sweep = temperature_sweep([0.8, 0.7, 0.1, 0.0], [0.05, 0.5, 5.0])
        >>> [round(x, 2) for x in sweep["hardness_share"].tolist()]
        [1.0, 0.65, 0.36]
    """
    temperatures = [check_temperature(t) for t in temperatures]
    if not temperatures:
        raise ValueError("temperatures is empty; pass e.g. torch.logspace(-2, 1, 50).tolist()")
    s = check_similarities(similarities)
    rows = [(info_nce_from_similarities(s, t), float(key_distribution(s, t)[0]), hardness_share(s, t))
            for t in temperatures]
    loss, p_positive, share = (torch.tensor(col, dtype=torch.float64) for col in zip(*rows))
    return {"temperature": torch.tensor(temperatures, dtype=torch.float64), "loss": loss,
            "p_positive": p_positive, "hardness_share": share}


def similarities_with(n_negatives: int, negative_mean: float, positive: float = 0.7, spread: float = 0.1,
                      seed: int = 0) -> torch.Tensor:
    """One anchor's ``(1 + K,)`` similarities: the positive, then K negatives around ``negative_mean``.

    ``negative_mean`` says how hard the negatives are: near the positive they compete with it,
    near 0 they are unrelated images, below 0 they point away. Negatives are drawn from
    ``N(negative_mean, spread^2)``, clipped to [-1, 1], sorted hardest first; float64.

    Raises:
        TypeError: ``n_negatives`` not an int.
        ValueError: ``n_negatives < 1``, or ``positive`` / ``negative_mean`` outside [-1, 1], or ``spread < 0``.

    Example:
        >>> s = similarities_with(4, negative_mean=0.5, spread=0.0)
        >>> s.tolist()
        [0.7, 0.5, 0.5, 0.5, 0.5]
    """
    n_negatives = check_int("n_negatives", n_negatives, 1)
    for name, value in (("positive", positive), ("negative_mean", negative_mean)):
        if not -1 <= value <= 1:
            raise ValueError(f"{name}={value!r} is a cosine similarity; use a value in [-1, 1]")
    if not spread >= 0:
        raise ValueError(f"spread={spread!r} must be >= 0 (a standard deviation)")
    g = torch.Generator().manual_seed(seed)
    negatives = negative_mean + spread * torch.randn(n_negatives, generator=g, dtype=torch.float64)  # (K,)
    negatives = negatives.clamp(-1.0, 1.0).sort(descending=True).values  # (K,) hardest first
    return torch.cat([torch.tensor([float(positive)], dtype=torch.float64), negatives])  # (1 + K,)


@dataclass(frozen=True)
class CircleSnapshot:
    """The circle toy's embedding after ``step`` optimiser steps.

    Attributes:
        step: optimiser steps taken so far.
        z1, z2: ``(n, 2)`` unit embeddings of two fixed evaluation views of every point.
        content: ``(n, 2)`` the points' content (what a view keeps); its angle colours a plot.
        alignment: :func:`crl_helpers.metrics.alignment` of ``z1, z2`` (0 best).
        uniformity: :func:`crl_helpers.metrics.uniformity` of ``z1`` (lower is more spread).
        loss: the training NT-Xent of the last step (``nan`` before the first).
    """

    step: int
    z1: torch.Tensor
    z2: torch.Tensor
    content: torch.Tensor
    alignment: float
    uniformity: float
    loss: float


def circle_views(content: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A view of each toy point: its 2 content numbers plus a little noise, then 8 fresh nuisance numbers.

    The toy version of an augmentation: the content is what a view keeps, the nuisance is what
    it redraws (the photographing conditions). ``content (n, 2) -> (n, 10)``.

    Example:
        >>> circle_views(torch.zeros(3, 2), torch.Generator().manual_seed(0)).shape
        torch.Size([3, 10])
    """
    n = content.shape[0]
    keep = content + 0.1 * torch.randn(n, 2, generator=generator)  # (n, 2)
    nuisance = 2.0 * torch.randn(n, 8, generator=generator)  # (n, 8)
    return torch.cat([keep, nuisance], dim=1)  # (n, 10)


def circle_training(temperature: float, steps: int, n_points: int = 64, seed: int = 0,
                    every: int = 25) -> Iterator[CircleSnapshot]:
    """Train a 10 -> 32 -> 2 MLP with NT-Xent on the circle toy; yield a snapshot every ``every`` steps.

    ``n_points`` toy points, each with 2 content numbers; every step draws two views of every
    point (:func:`circle_views`) and takes one Adam step (lr 0.03) on NT-Xent at ``temperature``
    (Chen et al. 2020). A good encoder ignores the nuisance (alignment near 0) and spreads the
    contents around the circle (uniformity near ``log(e^-4 I_0(4))``, the value of an even
    spread). The first snapshot is the untrained encoder (step 0), the last is at ``steps``.
    Deterministic for a given ``seed`` (it uses its own generators and seeds torch's for the weights).

    Raises:
        TypeError, ValueError: a temperature that is not a finite number >= 1e-8, ``steps < 0``,
            ``n_points < 2`` or ``every < 1``.

    Example:
        >>> snaps = list(circle_training(0.2, steps=20, n_points=16, every=10))
        >>> [s.step for s in snaps], snaps[-1].z1.shape
        ([0, 10, 20], torch.Size([16, 2]))
    """
    from crl_helpers.losses import nt_xent
    from crl_helpers.metrics import alignment, uniformity

    temperature = check_temperature(temperature)
    steps, n_points, every = check_int("steps", steps, 0), check_int("n_points", n_points, 2), check_int("every", every, 1)
    generator = torch.Generator().manual_seed(seed)
    content = torch.randn(n_points, 2, generator=generator)  # (n, 2)
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 2))
    optimizer = torch.optim.Adam(encoder.parameters(), lr=0.03)

    def snapshot(step: int, loss: float) -> CircleSnapshot:
        with torch.no_grad():
            eval_generator = torch.Generator().manual_seed(123)  # the same evaluation views at every snapshot
            z1 = torch.nn.functional.normalize(encoder(circle_views(content, eval_generator)), dim=1)  # (n, 2)
            z2 = torch.nn.functional.normalize(encoder(circle_views(content, eval_generator)), dim=1)  # (n, 2)
        return CircleSnapshot(step, z1, z2, content, alignment(z1, z2), uniformity(z1), loss)

    loss = float("nan")
    yield snapshot(0, loss)
    for step in range(1, steps + 1):
        z1 = encoder(circle_views(content, generator))  # (n, 2)
        z2 = encoder(circle_views(content, generator))  # (n, 2)
        batch_loss = nt_xent(z1, z2, temperature, validate=False)
        optimizer.zero_grad()
        batch_loss.backward()
        optimizer.step()
        loss = batch_loss.item()
        if step % every == 0 or step == steps:
            yield snapshot(step, loss)


def train_on_circle(temperature: float, steps: int, n_points: int = 64, seed: int = 0) -> CircleSnapshot:
    """The last snapshot of :func:`circle_training`: the circle toy trained for ``steps`` steps.

    Example:
        >>> import math
        >>> untrained = train_on_circle(0.2, steps=0, n_points=16)
        >>> untrained.step, math.isnan(untrained.loss)
        (0, True)
    """
    *_, last = circle_training(temperature, steps, n_points, seed, every=max(steps, 1))
    return last
