"""Figures: training curves and UMAP maps of an embedding space (McInnes et al. 2018).

Each plot is a thin layer over a pure function (:func:`umap_embed` computes, the
plot draws), returns the matplotlib ``Figure``, and saves a PNG when given a path.

Example:
    >>> fig = plot_curves([{"epoch": 1, "loss": 5.0, "contrastive_acc": 0.1},
    ...                    {"epoch": 2, "loss": 4.0, "contrastive_acc": 0.3}])
    >>> len(fig.axes)
    2
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

_CURVES = (
    ("loss", "NT-Xent loss"),
    ("contrastive_acc", "contrastive top-1 accuracy"),
    ("knn_acc", "kNN accuracy (test)"),
    ("alignment", "alignment (lower: positives closer)"),
    ("uniformity", "uniformity (lower: more spread)"),
    ("lr", "learning rate"),
)


def _figure(nrows: int, ncols: int, size: tuple[float, float]):
    # The object-oriented API, not pyplot, so that saving from the CLI needs no display
    # and a notebook shows the returned figure once.
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained"), (nrows, ncols)


def _save(fig, path: str | os.PathLike | None) -> None:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)


def plot_curves(history: list[dict], path: str | os.PathLike | None = None):
    """Per-epoch training curves from ``history`` (a list of dicts with an ``epoch`` key).

    One panel per metric present in the history, among: loss, contrastive accuracy,
    kNN accuracy, alignment, uniformity, learning rate.
    """
    present = [(k, label) for k, label in _CURVES if any(k in row for row in history)]
    if not present:
        raise ValueError("history holds none of the metrics to plot (loss, contrastive_acc, ...)")
    ncols = min(len(present), 3)
    nrows = -(-len(present) // ncols)  # a grid of at most 3 columns stays readable on a laptop screen
    fig, _ = _figure(nrows, ncols, (3.4 * ncols, 2.6 * nrows))
    for i, (key, label) in enumerate(present):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        rows = [r for r in history if key in r]
        ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], marker="o", markersize=3)
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    _save(fig, path)
    return fig


def umap_embed(v: torch.Tensor | np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1,
               metric: str = "cosine", n_epochs: int | None = None) -> np.ndarray:
    """2-D UMAP coordinates of features ``v`` (N, D) -> (N, 2), reproducible from ``seed``.

    Cosine metric by default: contrastive features live on (or are compared on) the sphere.
    ``n_epochs``: UMAP's optimisation epochs (None: UMAP's default, 500 below 10,000 points);
    200 gives the same picture of a few thousand points in about half the time.

    Raises:
        ValueError: fewer than 3 points, or ``v`` not 2-D.
    """
    v = v.detach().cpu().float().numpy() if isinstance(v, torch.Tensor) else np.asarray(v, dtype=np.float32)
    if v.ndim != 2 or len(v) < 3:
        raise ValueError(f"v must be (N, D) with N >= 3 points, got shape {v.shape}")
    import umap

    n_neighbors = min(n_neighbors, len(v) - 1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs.*")  # seeded UMAP is single-threaded, on purpose
        reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, random_state=seed,
                            init="random" if len(v) < 50 else "spectral", n_epochs=n_epochs)
        return reducer.fit_transform(v)


def scatter_2d(ax, points: np.ndarray, labels, names=None, title: str | None = None, cmap: str = "tab10") -> None:
    """Draw 2-D ``points`` (N, 2) coloured by ``labels`` (N,): classes get a legend, a
    continuous factor (float labels, for example a nuisance such as hue) gets a colour bar."""
    labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if np.issubdtype(labels.dtype, np.integer):
        for c in np.unique(labels):
            m = labels == c
            ax.scatter(points[m, 0], points[m, 1], s=4, alpha=0.7, color=_tab_colour(cmap, int(c)),
                       label=names[c] if names is not None else str(c))
        ax.legend(markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    else:
        sc = ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.7, c=labels, cmap="hsv")
        ax.figure.colorbar(sc, ax=ax, shrink=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def _tab_colour(cmap: str, i: int):
    import matplotlib

    return matplotlib.colormaps[cmap](i % 10 if cmap == "tab10" else i)


def plot_umap(v: torch.Tensor | np.ndarray, labels, names=None, path: str | os.PathLike | None = None,
              title: str | None = None, seed: int = 0, points: np.ndarray | None = None):
    """UMAP scatter of features ``v`` (N, D) coloured by ``labels`` (N,); pass precomputed
    ``points`` (N, 2) to skip the embedding."""
    points = umap_embed(v, seed=seed) if points is None else points
    fig, (nrows, ncols) = _figure(1, 1, (5.6, 4.4))
    scatter_2d(fig.add_subplot(nrows, ncols, 1), points, labels, names, title)
    _save(fig, path)
    return fig


def pca_embed(v: torch.Tensor | np.ndarray) -> np.ndarray:
    """2-D PCA coordinates of features ``v`` (N, D) -> (N, 2): the top two principal components.

    A linear, instant stand-in for :func:`umap_embed` where UMAP's one-off JIT compilation
    (about a minute per fresh Python process) does not fit, e.g. in the smoke tier. The sign
    of each axis is fixed (largest loading positive) so the map is deterministic.

    Raises:
        ValueError: fewer than 2 points, or ``v`` not 2-D.

    Example:
        >>> v = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [2.0, 1.0, 0.0]])
        >>> np.round(np.abs(pca_embed(v)), 6).tolist()
        [[1.0, 0.5], [1.0, 0.5], [1.0, 0.5], [1.0, 0.5]]
    """
    v = v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else np.asarray(v, dtype=np.float64)
    if v.ndim != 2 or len(v) < 2:
        raise ValueError(f"v must be (N, D) with N >= 2 points, got shape {v.shape}")
    centred = v - v.mean(axis=0)  # (N, D)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # rows of vt: principal directions
    axes = vt[:2]  # (<=2, D)
    axes = axes * np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]
    points = centred @ axes.T  # (N, <=2)
    if points.shape[1] < 2:  # one feature dimension: pad a zero axis so the result is always (N, 2)
        points = np.concatenate([points, np.zeros((len(points), 2 - points.shape[1]))], axis=1)
    return points.astype(np.float32)


def embed_2d(v: torch.Tensor | np.ndarray, method: str = "umap", seed: int = 0,
             metric: str = "cosine") -> np.ndarray:
    """2-D map of features ``v`` (N, D) -> (N, 2) by ``method``: ``"umap"`` (:func:`umap_embed`) or ``"pca"``.

    Notebooks pick the method per cost tier: UMAP shows clusters better, PCA costs nothing.
    ``metric`` says which geometry both methods map, so that the two tiers show the same thing:

    - ``"cosine"`` (default): directions only, as contrastive features are compared. UMAP uses the
      cosine metric; PCA projects the L2-normalised rows ``v / ||v||``.
    - ``"euclidean"``: the raw vectors, norms included.

    Raises:
        ValueError: an unknown ``method`` or ``metric``, or the method's own errors.

    Example:
        >>> v = np.random.default_rng(0).normal(size=(10, 4))
        >>> embed_2d(v, method="pca").shape
        (10, 2)
        >>> bool(np.allclose(embed_2d(3.0 * v, method="pca"), embed_2d(v, method="pca"), atol=1e-6))  # norms ignored
        True
    """
    if method not in ("umap", "pca"):
        raise ValueError(f"method={method!r} is unknown; use 'umap' or 'pca'")
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric={metric!r} is unknown; use 'cosine' (directions) or 'euclidean' (raw vectors)")
    if method == "umap":
        return umap_embed(v, seed=seed, metric=metric)
    if metric == "cosine":
        v = v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else np.asarray(v, dtype=np.float64)
        if v.ndim == 2:  # other shapes are pca_embed's to refuse
            v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)  # (N, D) unit rows
    return pca_embed(v)


def align_snapshots(snapshots: dict) -> dict:
    """Align each 2-D map to the previous one by orthogonal Procrustes, so an animation does not jump.

    UMAP (and PCA) maps are defined only up to rotation, reflection and translation: two
    runs on similar features can come out mirrored. For snapshots ``A_1, A_2, ...`` (same
    points, same order) each ``A_k`` is centred, multiplied by the orthogonal matrix ``R``
    (rotation or reflection) that minimises ``||(A_k - mean_k) R - (A'_{k-1} - mean'_{k-1})||_F``,
    which is ``R = U V^T`` from the SVD ``U S V^T`` of ``(A_k - mean_k)^T (A'_{k-1} - mean'_{k-1})``
    (Schönemann 1966), and moved onto the previous aligned map's centroid. Scale is kept.
    The first snapshot is returned unchanged.

    Args:
        snapshots: name -> (N, 2) array (or tensor), in display order (dicts keep insertion order).

    Returns:
        A new dict with the same keys in the same order, float64 (N, 2) arrays.

    Raises:
        ValueError: an empty dict, a map that is not (N, 2), maps of different N, NaN/inf.

    Example:
        >>> a = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
        >>> mirrored = a * np.array([-1.0, 1.0]) + 5.0  # flipped left-right and shifted
        >>> aligned = align_snapshots({"epoch 1": a, "epoch 2": mirrored})
        >>> np.allclose(aligned["epoch 2"], a)
        True
    """
    if not isinstance(snapshots, dict) or not snapshots:
        raise ValueError("snapshots must be a non-empty dict: name -> (N, 2) points, e.g. {'epoch 1': points}")
    arrays = {}
    for name, points in snapshots.items():
        points = points.detach().cpu().double().numpy() if isinstance(points, torch.Tensor) \
            else np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"snapshot {name!r} has shape {points.shape}; each must be (N, 2) map coordinates")
        if not np.isfinite(points).all():
            raise ValueError(f"snapshot {name!r} contains NaN or inf")
        arrays[name] = points
    sizes = {name: len(points) for name, points in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"snapshots have different numbers of points {sizes}; embed the same N points each time")
    aligned, previous = {}, None
    for name, points in arrays.items():
        if previous is not None:
            centred = points - points.mean(axis=0)  # (N, 2)
            target = previous - previous.mean(axis=0)  # (N, 2)
            u, _, vt = np.linalg.svd(centred.T @ target)  # (2, 2) cross-covariance
            points = centred @ (u @ vt) + previous.mean(axis=0)  # (N, 2)
        aligned[name] = points
        previous = points
    return aligned


def map_neighbours(points: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices of each point's k nearest other points in a 2-D map (stable order on ties).

    Example:
        >>> map_neighbours(np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]]), 1).ravel().tolist()
        [1, 0, 1]
    """
    distances = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)  # (N, N)
    np.fill_diagonal(distances, np.inf)  # a point is not its own neighbour
    return np.argsort(distances, axis=1, kind="stable")[:, :k]  # (N, k)


def neighbour_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over points of |N_a(i) ∩ N_b(i)| / k for two (N, k) neighbour tables (of :func:`map_neighbours`).

    Example:
        >>> neighbour_agreement(np.array([[1, 2], [0, 2]]), np.array([[2, 3], [0, 2]]))
        0.75
    """
    return float(np.mean([len(set(x) & set(y)) / a.shape[1] for x, y in zip(a, b)]))


def compare_maps(left, right, reference=None, k: int = 10) -> dict:
    """Two 2-D maps of the same N points, made comparable side by side: aligned, on shared axes, and
    the share of each point's ``k`` nearest neighbours that the two maps agree on.

    Both maps are Procrustes-aligned onto ``reference`` (:func:`crl_helpers.plots.align_snapshots`;
    without one, ``right`` is aligned onto ``left``), so that a rotation or mirror image of UMAP's
    does not read as a difference. The agreement is the mean over points ``i`` of
    ``|N_k^left(i) ∩ N_k^right(i)| / k``, with ``N_k(i)`` the ``k`` nearest other points of ``i`` in
    the map: 1 when the maps have the same neighbourhoods, about ``k / (N - 1)`` for unrelated maps.
    Rotations, mirror images, shifts and a common scale leave it unchanged.

    Args:
        left, right: (N, 2) map coordinates of the same N points, in the same order.
        reference: (N, 2) map to align both onto, or None.
        k: neighbours per point, capped at ``N - 1``.

    Returns:
        dict with ``left`` and ``right`` (aligned float64 (N, 2)), ``limits`` (``(low, high)``, each
        (2,), covering both maps with a 5 % margin) and ``shared_neighbours`` (a float in [0, 1]).

    Raises:
        ValueError: as :func:`crl_helpers.plots.align_snapshots`, fewer than 2 points, or k < 1.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a = rng.normal(size=(30, 2))
        >>> turned = a @ np.array([[0.0, -1.0], [1.0, 0.0]]) + 3.0  # a quarter turn, shifted
        >>> same = compare_maps(a, turned, k=5)
        >>> round(same["shared_neighbours"], 6), bool(np.allclose(same["right"], a))
        (1.0, True)
        >>> compare_maps(a, rng.normal(size=(30, 2)), k=5)["shared_neighbours"] < 0.5
        True
    """
    if not (isinstance(k, (int, np.integer)) and k >= 1):
        raise ValueError(f"k={k!r} must be an int >= 1 (neighbours per point)")
    if reference is None:
        left, right = align_snapshots({"left": left, "right": right}).values()
    else:
        left = align_snapshots({"reference": reference, "map": left})["map"]
        right = align_snapshots({"reference": reference, "map": right})["map"]
    n = len(left)
    if n < 2:
        raise ValueError(f"the maps have {n} point(s); neighbourhoods need at least 2")
    k = min(int(k), n - 1)
    both = np.concatenate([left, right])  # (2N, 2)
    low, high = both.min(axis=0), both.max(axis=0)
    margin = 0.05 * np.maximum(high - low, 1e-9)
    return {"left": left, "right": right, "limits": (low - margin, high + margin),
            "shared_neighbours": neighbour_agreement(map_neighbours(left, k), map_neighbours(right, k))}

