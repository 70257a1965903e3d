"""Tests for crl_helpers.plots.embed_2d: the PCA map sees the geometry the metric names (UMAP is not run: its
JIT compilation alone takes a minute)."""
import numpy as np
import pytest
import torch

from crl_helpers.plots import embed_2d, pca_embed


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
