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

All functions take the similarities as a 1-D tensor ``(1 + K,)``, positive first. They are
the pure functions behind :func:`crl_helpers.widgets.temperature_explorer`.

Example:
    >>> s = torch.tensor([0.8, 0.7, 0.1, 0.0])  # positive, one hard and two easy negatives
    >>> round(info_nce_from_similarities(s, 0.1), 3), round(info_nce_from_similarities(s, 1.0), 3)
    (0.314, 1.048)
    >>> hardness_share(s, 0.05, top=1) > 0.99, hardness_share(s, 10.0, top=1) < 0.4
    (True, True)
"""
from __future__ import annotations

import torch

from crl_helpers.validate import check_int, check_temperature

__all__ = [
    "check_similarities",
    "key_distribution",
    "info_nce_from_similarities",
    "gradient_weights",
    "hardness_share",
    "example_similarities",
    "temperature_sweep",
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
    positive key and negative keys are ``similarities``.

    Raises:
        TypeError, ValueError: as :func:`key_distribution`.

    Example:
        Equal similarities leave the positive one of 1 + K equally likely candidates:

        >>> import math
        >>> round(info_nce_from_similarities([0.3, 0.3, 0.3, 0.3], 0.1), 6) == round(math.log(4), 6)
        True
    """
    s = check_similarities(similarities)
    temperature = check_temperature(temperature)
    logits = s / temperature  # (1 + K,)
    return float(torch.logsumexp(logits, dim=0) - logits[0])


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
