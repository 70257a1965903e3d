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
    fig, (nrows, ncols) = _figure(1, len(present), (3.2 * len(present), 2.8))
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
               metric: str = "cosine") -> np.ndarray:
    """2-D UMAP coordinates of features ``v`` (N, D) -> (N, 2), reproducible from ``seed``.

    Cosine metric by default: contrastive features live on (or are compared on) the sphere.

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
                            init="random" if len(v) < 50 else "spectral")
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
