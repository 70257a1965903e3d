r"""A contrastive loss is a scoring function times a loss form (Le-Khac, Healy & Smeaton 2020, section on losses).

Le-Khac et al. split every contrastive loss into two parts:

* a **scoring function** :math:`s(q, k)` that says how similar a query and a key are: the dot
  product :math:`q^\top k`, the cosine :math:`q^\top k / (\lVert q\rVert \lVert k\rVert)`, a
  bilinear form :math:`q^\top W k` (CPC, van den Oord et al. 2018) or a negative distance
  :math:`-\lVert q - k\rVert^2`. Each takes ``query (N, d)`` and ``keys (M, d)`` and returns the
  ``(N, M)`` matrix of scores (higher = more similar);
* a **loss form** that turns the positive's score and the negatives' scores into a number:
  InfoNCE's softmax cross-entropy (van den Oord et al. 2018), NCE's binary logistic loss
  (Gutmann & Hyvärinen 2010; Mikolov et al. 2013's negative sampling), the triplet hinge
  (Schroff et al. 2015) and the margin / contrastive loss on distances (Hadsell, Chopra &
  LeCun 2006). Each takes ``positive (N,)`` and ``negatives (N, K)`` scores (``K`` negatives per
  query) and returns the mean over the N queries.

:func:`pair_scores` splits a score matrix of queries against their own keys into those two
arguments. The module also holds a toy with a known answer for InfoNCE's mutual-information
bound :math:`I(q; k^+) \ge \log(K + 1) - \mathcal{L}`: correlated Gaussians
(:func:`correlated_gaussians`, :func:`gaussian_mutual_information`) scored by the optimal
critic in closed form (:func:`gaussian_critic`, :func:`infonce_bound`).

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> q, k = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    >>> positive, negatives = pair_scores(cosine_score(q, k))  # (4,), (4, 3)
    >>> loss = info_nce_form(positive, negatives, temperature=0.5)
    >>> bool(0 < loss < 10), negatives.shape
    (True, torch.Size([4, 3]))
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from crl_helpers.validate import check_fraction, check_int, check_nonnegative, check_temperature

__all__ = [
    "dot_score",
    "cosine_score",
    "bilinear_score",
    "neg_euclidean_score",
    "SCORES",
    "pair_scores",
    "info_nce_form",
    "nce_form",
    "triplet_form",
    "margin_form",
    "FORMS",
    "correlated_gaussians",
    "gaussian_mutual_information",
    "gaussian_critic",
    "infonce_bound",
]


# ------------------------------------------------------------------------------------------- scoring functions
def _check_pair(query: object, keys: object) -> tuple[Tensor, Tensor]:
    for name, x in (("query", query), ("keys", keys)):
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 2:
            raise ValueError(f"{name} must be a floating (rows, d) tensor, got "
                             f"{getattr(x, 'shape', type(x).__name__)}; stack the vectors as rows")
    if query.shape[1] != keys.shape[1]:
        raise ValueError(f"query has d={query.shape[1]} but keys have d={keys.shape[1]}; embed both with one head")
    return query, keys


def dot_score(query: Tensor, keys: Tensor) -> Tensor:
    r"""Dot-product scores :math:`s_{ij} = q_i^\top k_j`: unbounded, they grow with the vectors' norms.

    Args:
        query: ``(N, d)``; keys: ``(M, d)``.

    Returns:
        ``(N, M)`` scores.

    Raises:
        ValueError: a non-floating or non-2-D input, or different ``d``.

    Example:
        >>> dot_score(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0], [0.0, 1.0]]))
        tensor([[11.,  2.]])
    """
    query, keys = _check_pair(query, keys)
    return query @ keys.T  # (N, M)


def cosine_score(query: Tensor, keys: Tensor) -> Tensor:
    r"""Cosine scores :math:`s_{ij} = q_i^\top k_j / (\lVert q_i\rVert \lVert k_j\rVert) \in [-1, 1]` (SimCLR, InstDisc).

    Example:
        >>> cosine_score(torch.tensor([[2.0, 0.0]]), torch.tensor([[3.0, 0.0], [0.0, 5.0], [-1.0, 0.0]]))
        tensor([[ 1.,  0., -1.]])
    """
    query, keys = _check_pair(query, keys)
    return F.normalize(query, dim=1) @ F.normalize(keys, dim=1).T  # (N, M)


def bilinear_score(query: Tensor, keys: Tensor, weight: Tensor) -> Tensor:
    r"""Bilinear scores :math:`s_{ij} = q_i^\top W k_j` (CPC's :math:`z^\top W c`, van den Oord et al. 2018).

    ``W = I`` gives the dot product; a learnt ``W`` lets the query and key live in different
    spaces (``W`` may be rectangular: ``(d_q, d_k)``).

    Args:
        query: ``(N, d_q)``; keys: ``(M, d_k)``; weight: ``(d_q, d_k)``.

    Example:
        >>> q, k = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0]])
        >>> bilinear_score(q, k, torch.eye(2)), bilinear_score(q, k, torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
        (tensor([[11.]]), tensor([[4.]]))
    """
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise ValueError(f"weight must be a (d_q, d_k) tensor, got {getattr(weight, 'shape', type(weight).__name__)}")
    if not (isinstance(query, Tensor) and isinstance(keys, Tensor) and query.ndim == keys.ndim == 2):
        raise ValueError("query and keys must be 2-D tensors (rows, d)")
    if (query.shape[1], keys.shape[1]) != tuple(weight.shape):
        raise ValueError(f"weight has shape {tuple(weight.shape)} but query and keys have d_q={query.shape[1]}, "
                         f"d_k={keys.shape[1]}; use a ({query.shape[1]}, {keys.shape[1]}) weight")
    return query @ weight @ keys.T  # (N, d_q) (d_q, d_k) (d_k, M) -> (N, M)


def neg_euclidean_score(query: Tensor, keys: Tensor, squared: bool = True) -> Tensor:
    r"""Negative (squared) Euclidean distance :math:`s_{ij} = -\lVert q_i - k_j\rVert^2` (or without the square).

    A distance is a dissimilarity; negated, it is a score like the others (0 for identical
    vectors, more negative further away). On unit vectors :math:`-\lVert q - k\rVert^2 = 2\cos - 2`:
    the cosine score shifted and scaled, so the two rank keys identically.

    Example:
        >>> neg_euclidean_score(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
        tensor([[-25.,  -0.]])
        >>> neg_euclidean_score(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]]), squared=False)
        tensor([[-5.]])
    """
    query, keys = _check_pair(query, keys)
    difference = query[:, None, :] - keys[None, :, :]  # (N, M, d); exact, unlike the |q|^2 + |k|^2 - 2 q.k expansion
    squared_distance = difference.pow(2).sum(-1)  # (N, M)
    return -(squared_distance if squared else squared_distance.sqrt())


#: The scoring functions by name; bilinear with ``W = I`` (pass your own ``weight`` to :func:`bilinear_score`).
SCORES = {
    "dot": dot_score,
    "cosine": cosine_score,
    "bilinear (W = I)": lambda q, k: bilinear_score(q, k, torch.eye(q.shape[1], k.shape[1], dtype=q.dtype)),
    "neg. squared Euclidean": neg_euclidean_score,
}


def pair_scores(scores: Tensor) -> tuple[Tensor, Tensor]:
    """Split an ``(N, N)`` score matrix of queries against their own keys into positives and negatives.

    Row ``i`` scores query ``i`` against every key; its positive is key ``i`` (the diagonal),
    the other ``K = N - 1`` keys are its negatives (the in-batch negatives of SimCLR and CLIP).

    Returns:
        ``positive (N,)`` and ``negatives (N, N - 1)``, each row's off-diagonal entries in order.

    Example:
        >>> pair_scores(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]))
        (tensor([1., 5., 9.]), tensor([[2., 3.],
                [4., 6.],
                [7., 8.]]))
    """
    if not isinstance(scores, Tensor) or scores.ndim != 2 or scores.shape[0] != scores.shape[1] or len(scores) < 2:
        raise ValueError(f"scores must be a square (N, N) tensor with N >= 2, got "
                         f"{getattr(scores, 'shape', type(scores).__name__)}; score the queries against their own keys")
    n = scores.shape[0]
    # Row i's negatives are the columns 0..N-1 but i: column j of the result is key j, or j + 1 from j = i on.
    # An index gather, not a boolean mask: no host sync, so a training step on a GPU never waits for it.
    columns = torch.arange(n - 1, device=scores.device)[None, :]  # (1, N - 1)
    columns = columns + (columns >= torch.arange(n, device=scores.device)[:, None])  # (N, N - 1)
    return scores.diagonal(), scores.gather(1, columns)  # (N,), (N, K = N - 1)


# ------------------------------------------------------------------------------------------------- loss forms
def _check_scores(positive: object, negatives: object) -> tuple[Tensor, Tensor]:
    if not isinstance(positive, Tensor) or positive.ndim != 1:
        raise ValueError(f"positive must be a 1-D tensor (N,) of scores, got "
                         f"{getattr(positive, 'shape', type(positive).__name__)}")
    if not isinstance(negatives, Tensor) or negatives.ndim != 2 or negatives.shape[0] != positive.shape[0] \
            or negatives.shape[1] < 1:
        raise ValueError(f"negatives must be (N={positive.shape[0]}, K >= 1) scores, got "
                         f"{getattr(negatives, 'shape', type(negatives).__name__)}; pair_scores(...) splits a score matrix")
    return positive, negatives


def info_nce_form(positive: Tensor, negatives: Tensor, temperature: float = 1.0) -> Tensor:
    r"""InfoNCE's softmax cross-entropy: mean of :math:`-\log \frac{e^{s^+/\tau}}{e^{s^+/\tau} + \sum_j e^{s^-_j/\tau}}`.

    van den Oord et al. (2018). The positive competes with all K negatives at once; the value is
    at least 0 (a cross-entropy) and :math:`\log(K + 1)` when every score is equal. The one
    InfoNCE on scores of the package: :func:`crl_helpers.losses.info_nce` (on cosines) and
    :func:`crl_helpers.temperature.info_nce_from_similarities` (one anchor) call it.

    Args:
        positive: ``(N,)`` scores; negatives: ``(N, K)`` scores; temperature: :math:`\tau > 0`.

    Example:
        >>> import math
        >>> loss = info_nce_form(torch.zeros(2), torch.zeros(2, 3))
        >>> abs(float(loss) - math.log(4)) < 1e-6
        True
    """
    positive, negatives = _check_scores(positive, negatives)
    temperature = check_temperature(temperature)
    logits = torch.cat([positive[:, None], negatives], dim=1) / temperature  # (N, 1 + K), positive first
    # -log softmax(logits)[0] = logsumexp(logits) - logits[0], averaged over the N queries.
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


def nce_form(positive: Tensor, negatives: Tensor, temperature: float = 1.0) -> Tensor:
    r"""NCE's binary form: the positive against each negative separately, with a logistic loss.

    :math:`-\log\sigma(s^+/\tau) - \sum_{j=1}^{K}\log\big(1 - \sigma(s^-_j/\tau)\big)`, averaged over the
    N queries (Gutmann & Hyvärinen 2010 with a uniform noise ratio; Mikolov et al. 2013's negative
    sampling). Every pair is a yes/no question ("is this the positive?"), not a K+1-way choice.

    Example:
        >>> import math
        >>> loss = nce_form(torch.zeros(1), torch.zeros(1, 2))  # three coin flips of log 2 each
        >>> abs(float(loss) - 3 * math.log(2)) < 1e-6
        True
    """
    positive, negatives = _check_scores(positive, negatives)
    temperature = check_temperature(temperature)
    # -log sigma(x) = softplus(-x) and -log(1 - sigma(x)) = softplus(x): stable for large |x|.
    return (F.softplus(-positive / temperature) + F.softplus(negatives / temperature).sum(dim=1)).mean()


def triplet_form(positive: Tensor, negatives: Tensor, margin: float = 0.2) -> Tensor:
    r"""The triplet hinge :math:`\max(0, m + s^-_j - s^+)`, averaged over the N queries and their K negatives.

    Schroff et al. (2015, FaceNet) with the score in place of the negative squared distance.
    A negative costs nothing once it scores at least ``margin`` below the positive.

    Example:
        >>> triplet_form(torch.tensor([1.0]), torch.tensor([[0.0, 0.95]]), margin=0.2)  # 0 and 0.15, averaged
        tensor(0.0750)
    """
    positive, negatives = _check_scores(positive, negatives)
    margin = check_nonnegative("margin", margin, "FaceNet uses 0.2 on unit vectors")
    return (margin + negatives - positive[:, None]).clamp_min(0).mean()  # (N, K) hinges -> scalar


def margin_form(positive: Tensor, negatives: Tensor, margin: float = 1.0) -> Tensor:
    r"""The margin (contrastive) loss of Hadsell, Chopra & LeCun (2006) on distances :math:`D = -s`.

    Per query: :math:`\tfrac12 D_+^2 + \tfrac12 \cdot \tfrac1K\sum_j \max(0, m - D^-_j)^2`: positive pairs
    are pulled to distance 0, negatives pushed out to at least the margin ``m``, then left alone.
    The form is defined on a distance, so pass scores that are negative distances
    (:func:`neg_euclidean_score` with ``squared=False``); a negative ``D`` (a score above 0) is refused.

    Example:
        >>> margin_form(torch.tensor([-0.5]), torch.tensor([[-0.2, -3.0]]), margin=1.0)  # 0.125 + (0.32 + 0) / 2
        tensor(0.2850)
    """
    positive, negatives = _check_scores(positive, negatives)
    margin = check_nonnegative("margin", margin, "a distance the negatives should keep")
    if (positive > 0).any() or (negatives > 0).any():
        raise ValueError("margin_form works on distances D = -score >= 0, but a score is > 0; use "
                         "neg_euclidean_score(query, keys, squared=False)")
    pull = 0.5 * positive.pow(2)  # (N,) D+^2 / 2
    push = 0.5 * (margin + negatives).clamp_min(0).pow(2).mean(dim=1)  # (N,) max(0, m - D-)^2 / 2, mean over K
    return (pull + push).mean()


#: The loss forms by name, each ``form(positive (N,), negatives (N, K)) -> scalar`` with its default knob.
FORMS = {
    "InfoNCE": info_nce_form,
    "NCE (binary)": nce_form,
    "triplet": triplet_form,
}


# -------------------------------------------------------------------------- the bound on a toy with known I
def correlated_gaussians(n: int, d: int, rho: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    r"""``n`` pairs ``(x, y)`` of ``d`` independent standard-normal coordinates, ``corr(x_c, y_c) = rho``.

    :math:`y = \rho x + \sqrt{1 - \rho^2}\,\varepsilon`: the positive pair of a toy whose mutual
    information is known (:func:`gaussian_mutual_information`). Float64.

    Example:
        >>> x, y = correlated_gaussians(20000, 1, 0.8, seed=0)
        >>> abs(float(torch.corrcoef(torch.stack([x[:, 0], y[:, 0]]))[0, 1]) - 0.8) < 0.02
        True
    """
    n, d = check_int("n", n, 2), check_int("d", d, 1)
    rho = check_fraction("rho", rho, "a correlation in [0, 1)")
    if rho >= 1:
        raise ValueError(f"rho={rho} makes y a copy of x (infinite mutual information); use rho < 1")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)  # (n, d)
    noise = torch.randn(n, d, generator=g, dtype=torch.float64)  # (n, d)
    return x, rho * x + math.sqrt(1 - rho**2) * noise  # (n, d) each


def gaussian_mutual_information(d: int, rho: float) -> float:
    r""":math:`I(x; y) = -\tfrac{d}{2}\log(1 - \rho^2)` nats for ``d`` independent pairs with correlation ``rho``.

    Example:
        >>> gaussian_mutual_information(2, 0.0) == 0, round(gaussian_mutual_information(1, 0.5), 4)
        (True, 0.1438)
    """
    return -0.5 * check_int("d", d, 1) * math.log(1 - rho**2)


def gaussian_critic(x: Tensor, y: Tensor, rho: float) -> Tensor:
    r"""The optimal critic :math:`f(x_i, y_j) = \log p(y_j \mid x_i) / p(y_j)` for every pair, ``(N, M)``.

    Per coordinate: :math:`-\tfrac12\log(1-\rho^2) - \frac{(y - \rho x)^2}{2(1 - \rho^2)} + \frac{y^2}{2}`,
    summed over the ``d`` coordinates. Poole et al. (2019) show this critic makes InfoNCE's bound
    as tight as it can be for a given K. Its mean over positive pairs is the mutual information.

    Example:
        >>> x, y = correlated_gaussians(50000, 2, 0.6, seed=1)
        >>> f = gaussian_critic(x[:2000], y[:2000], 0.6).diagonal()  # positive pairs only
        >>> abs(float(f.mean()) - gaussian_mutual_information(2, 0.6)) < 0.05
        True
    """
    return _log_ratio(x[:, None, :], y[None, :, :], rho)  # (N, 1, d) against (1, M, d) -> (N, M)


def _log_ratio(x: Tensor, y: Tensor, rho: float) -> Tensor:
    # log p(y | x) / p(y) for broadcastable (..., d) x and y, summed over the d coordinates -> (...)
    per_coordinate = -0.5 * math.log(1 - rho**2) - (y - rho * x).pow(2) / (2 * (1 - rho**2)) + y.pow(2) / 2
    return per_coordinate.sum(-1)


def infonce_bound(d: int, rho: float, n_negatives: int, n_queries: int = 2048, seed: int = 0) -> dict[str, float]:
    r"""InfoNCE's estimate :math:`\log(K + 1) - \mathcal{L}` of :math:`I(x; y)` on correlated Gaussians.

    Draws ``n_queries`` batches of ``K + 1`` pairs; in each, one query ``x`` scores its own ``y`` and
    the K other ``y`` with :func:`gaussian_critic`; :math:`\mathcal{L}` is the mean InfoNCE. Because
    :math:`\mathcal{L} \ge 0` (a cross-entropy), the estimate can never exceed :math:`\log(K + 1)`,
    however large the true :math:`I`; with enough negatives it approaches :math:`I` from below
    (in expectation; one run scatters around it by sampling noise).

    Returns:
        ``{"K", "loss", "estimate", "cap" = log(K + 1), "true_mi"}``.

    Example:
        >>> r = infonce_bound(d=4, rho=0.9, n_negatives=1, n_queries=512)
        >>> r["estimate"] <= r["cap"] < r["true_mi"]
        True
    """
    k = check_int("n_negatives", n_negatives, 1)
    n_queries = check_int("n_queries", n_queries, 1)
    x, y = correlated_gaussians(n_queries * (k + 1), d, rho, seed)  # (B (K + 1), d)
    x, y = x.reshape(n_queries, k + 1, d)[:, 0], y.reshape(n_queries, k + 1, d)  # (B, d), (B, K + 1, d)
    scores = _log_ratio(x[:, None, :], y, rho)  # (B, K + 1): candidate 0 is the positive
    loss = float(info_nce_form(scores[:, 0], scores[:, 1:]))
    cap = math.log(k + 1)
    return {"K": k, "loss": loss, "estimate": cap - loss, "cap": cap, "true_mi": gaussian_mutual_information(d, rho)}
