"""Tests for crl_helpers.plots: embed_2d (the PCA map sees the geometry the metric names; UMAP is not run: its
JIT compilation alone takes a minute), align_snapshots, pca_embed and compare_maps."""
import math

import numpy as np
import pytest
import torch

from crl_helpers.plots import align_snapshots, compare_maps, embed_2d, pca_embed


def _pca_oracle(v: np.ndarray) -> np.ndarray:
    """Top-two principal-component scores from the eigenvectors of the float64 covariance matrix."""
    centred = v - v.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)  # ascending
    return centred @ eigenvectors[:, ::-1][:, :2]  # (N, 2)


def _same_up_to_axis_signs(a: np.ndarray, b: np.ndarray) -> None:
    signs = np.sign((a * b).sum(axis=0))  # PCA fixes each axis only up to its sign
    np.testing.assert_allclose(a, b * signs, atol=1e-5)


@pytest.fixture
def v() -> np.ndarray:
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(40, 5)) * np.array([4.0, 2.0, 1.0, 0.5, 0.1])  # distinct variances
    return directions * rng.uniform(0.2, 5.0, size=(40, 1))  # very different norms


def test_pca_map_with_the_cosine_metric_is_pca_of_the_unit_rows(v):
    unit = v / np.sqrt((v ** 2).sum(axis=1, keepdims=True))
    _same_up_to_axis_signs(embed_2d(v, method="pca"), _pca_oracle(unit))
    _same_up_to_axis_signs(embed_2d(torch.from_numpy(v).float(), method="pca", metric="cosine"), _pca_oracle(unit))


def test_pca_map_with_the_euclidean_metric_keeps_the_norms(v):
    _same_up_to_axis_signs(embed_2d(v, method="pca", metric="euclidean"), _pca_oracle(v))
    np.testing.assert_array_equal(embed_2d(v, method="pca", metric="euclidean"), pca_embed(v))


def test_the_cosine_map_ignores_the_length_of_each_row(v):
    scales = np.random.default_rng(1).uniform(0.1, 10.0, size=(len(v), 1))
    np.testing.assert_allclose(embed_2d(v * scales, method="pca"), embed_2d(v, method="pca"), atol=1e-5)
    assert not np.allclose(embed_2d(v * scales, method="pca", metric="euclidean"),
                           embed_2d(v, method="pca", metric="euclidean"), atol=1e-2)


@pytest.mark.parametrize("kwargs, match", [(dict(method="tsne"), "method='tsne'"),
                                           (dict(method="pca", metric="manhattan"), "metric='manhattan'"),
                                           (dict(method="umap", metric="l1"), "metric='l1'")])
def test_embed_2d_rejects_unknown_choices(v, kwargs, match):
    with pytest.raises(ValueError, match=match):
        embed_2d(v, **kwargs)


def test_embed_2d_leaves_bad_shapes_to_the_method():
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        embed_2d(np.zeros(5), method="pca")


# --------------------------------------------------------------------------- plots: align_snapshots, pca_embed
def _brute_force_residual(points: np.ndarray, target: np.ndarray) -> float:
    """Smallest ||(P - mean) R - (T - mean)|| over 7,200 rotations, each with and without a mirror."""
    p, t = points - points.mean(0), target - target.mean(0)
    best = math.inf
    for angle in np.linspace(0, 2 * math.pi, 3600, endpoint=False):
        c, s = math.cos(angle), math.sin(angle)
        for mirror in (1.0, -1.0):
            r = np.array([[c, -s], [s, c]]) @ np.diag([1.0, mirror])
            best = min(best, float(np.linalg.norm(p @ r - t)))
    return best


def test_align_snapshots_is_optimal_against_brute_force():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(30, 2))
    b = rng.normal(size=(30, 2)) + 2 * a[:, ::-1]  # related but not an exact transform
    aligned = align_snapshots({"a": a, "b": b})
    np.testing.assert_array_equal(aligned["a"], a)  # the first map is the reference
    residual = float(np.linalg.norm(aligned["b"] - aligned["b"].mean(0) - (a - a.mean(0))))
    assert residual <= _brute_force_residual(b, a) + 1e-6
    np.testing.assert_allclose(aligned["b"].mean(0), a.mean(0), atol=1e-12)
    # Distances between points are kept: only a rigid motion was applied.
    d = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(d(aligned["b"]), d(b), atol=1e-9)


def test_align_snapshots_chains_and_keeps_order():
    a = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [2.0, 1.0]])
    flipped = a * np.array([1.0, -1.0])
    snapshots = {3: flipped + 1.0, 1: a, 2: flipped}
    aligned = align_snapshots(snapshots)
    assert list(aligned) == [3, 1, 2]
    np.testing.assert_allclose(aligned[1], flipped + 1.0, atol=1e-9)
    np.testing.assert_allclose(aligned[2], flipped + 1.0, atol=1e-9)


@pytest.mark.parametrize("bad, match", [({}, "non-empty"), ({"a": np.zeros((4, 3))}, r"\(N, 2\)"),
                                        ({"a": np.zeros((4, 2)), "b": np.zeros((5, 2))}, "different numbers"),
                                        ({"a": np.full((4, 2), np.nan)}, "NaN")])
def test_align_snapshots_validates(bad, match):
    with pytest.raises(ValueError, match=match):
        align_snapshots(bad)


def test_pca_embed_recovers_a_known_plane():
    rng = np.random.default_rng(2)
    coords = rng.normal(size=(50, 2)) * np.array([5.0, 1.0])  # variance 25 along axis 0, 1 along axis 1
    coords -= coords.mean(0)
    basis, _ = np.linalg.qr(rng.normal(size=(6, 2)))  # (6, 2) orthonormal columns
    v = coords @ basis.T  # (50, 6): the plane inside 6-D
    points = pca_embed(v)
    assert points.shape == (50, 2)
    # Up to a sign per axis (and the tiny rotation within the plane PCA may pick, as the sample
    # axes are not exactly the principal ones), distances are preserved exactly:
    d = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(d(points), d(coords), atol=1e-4)
    assert points[:, 0].var() > points[:, 1].var()
    with pytest.raises(ValueError, match="method"):
        embed_2d(v, method="tsne")


# ------------------------------------------------------------------------------------------- compare_maps
def _shared_neighbours_oracle(left: np.ndarray, right: np.ndarray, k: int) -> float:
    """Share of each point's k nearest others that two maps agree on, point by point with Python loops."""
    def nearest(points, i):
        others = sorted((math.dist(points[i], points[j]), j) for j in range(len(points)) if j != i)
        return {j for _, j in others[:k]}
    return sum(len(nearest(left, i) & nearest(right, i)) / k for i in range(len(left))) / len(left)


def test_compare_maps_agreement_matches_a_loop_oracle_and_ignores_rigid_motions():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(25, 2))
    b = a + 0.3 * rng.normal(size=(25, 2))  # a noisy copy: some neighbourhoods kept, some not
    result = compare_maps(a, b, k=4)
    assert result["shared_neighbours"] == pytest.approx(_shared_neighbours_oracle(a, b, 4), abs=1e-12)
    assert 0.0 < result["shared_neighbours"] < 1.0
    moved = compare_maps(a, (b * np.array([-1.0, 1.0])) @ np.array([[0.0, -1.0], [1.0, 0.0]]) * 2 + 5, k=4)
    assert moved["shared_neighbours"] == pytest.approx(result["shared_neighbours"], abs=1e-12)
    low, high = result["limits"]
    assert (low <= np.minimum(result["left"].min(0), result["right"].min(0))).all()
    assert (high >= np.maximum(result["left"].max(0), result["right"].max(0))).all()
    with pytest.raises(ValueError, match="k=0"):
        compare_maps(a, b, k=0)
