"""Tests for crl_helpers.metrics against plain-Python float64 loops and closed forms."""
from __future__ import annotations

import math
import statistics

import pytest
import torch

from crl_helpers.metrics import alignment, contrastive_accuracy, cosine_stats, effective_rank, embedding_std, uniformity


# ---------------------------------------------------------------- oracles
from oracles import dot as _cos  # noqa: E402  (the shared float64 oracles of tests/oracles.py)
from oracles import squared_distance as _squared_distance  # noqa: E402
from oracles import unit_rows as _unit_rows  # noqa: E402


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- contrastive_accuracy
def test_contrastive_accuracy_matches_loop_oracle():
    n = 16
    # Noisy pairs in d=4: some anchors find their partner, some do not.
    z1 = _randn(n, 4, seed=0)
    z2 = z1 + 1.2 * _randn(n, 4, seed=1)
    views = _unit_rows(torch.cat([z1, z2]))
    hits = 0
    for a in range(2 * n):
        others = [b for b in range(2 * n) if b != a]
        nearest = max(others, key=lambda b: _cos(views[a], views[b]))
        hits += nearest == (a + n) % (2 * n)
    expected = hits / (2 * n)
    assert 0 < expected < 1, "the case should be neither trivial nor hopeless"
    assert contrastive_accuracy(z1, z2) == pytest.approx(expected)


def test_contrastive_accuracy_closed_forms():
    z = _randn(6, 8, seed=2)
    assert contrastive_accuracy(z, z) == 1.0  # every view's nearest other view is its copy
    assert contrastive_accuracy(torch.eye(3), 5 * torch.eye(3)) == 1.0  # scale does not matter
    # Each z2[i] sits on z1[i + 1]: every anchor finds the wrong image.
    assert contrastive_accuracy(torch.eye(4), torch.eye(4).roll(1, dims=0)) == 0.0


def test_contrastive_accuracy_returns_float():
    assert type(contrastive_accuracy(torch.eye(2), torch.eye(2))) is float


# ---------------------------------------------------------------- alignment
@pytest.mark.parametrize("alpha", [1, 2, 3.5])
def test_alignment_matches_loop_oracle(alpha):
    z1, z2 = _randn(7, 5, seed=3), _randn(7, 5, seed=4)
    a, b = _unit_rows(z1), _unit_rows(z2)
    expected = sum(math.sqrt(_squared_distance(x, y)) ** alpha for x, y in zip(a, b)) / len(a)
    assert alignment(z1, z2, alpha=alpha) == pytest.approx(expected, rel=1e-5)


def test_alignment_closed_forms():
    z = _randn(5, 3, seed=5)
    assert alignment(z, 3 * z) == pytest.approx(0.0, abs=1e-6)  # perfectly aligned
    assert alignment(z, -z) == pytest.approx(4.0, rel=1e-6)  # antipodal: ||2 z||^2
    assert alignment(torch.eye(2), torch.eye(2).flip(0)) == pytest.approx(2.0, rel=1e-6)  # orthogonal pairs


# ---------------------------------------------------------------- uniformity
@pytest.mark.parametrize("t", [0.5, 2, 10])
def test_uniformity_matches_loop_oracle(t):
    z = _randn(9, 4, seed=6)
    rows = _unit_rows(z)
    kernel = [math.exp(-t * _squared_distance(rows[i], rows[j])) for i in range(9) for j in range(i + 1, 9)]
    assert uniformity(z, t=t) == pytest.approx(math.log(sum(kernel) / len(kernel)), rel=1e-5)


@pytest.mark.parametrize("t", [1, 2])
def test_uniformity_closed_forms(t):
    assert uniformity(torch.ones(5, 3), t=t) == pytest.approx(0.0, abs=1e-6)  # collapsed: distance 0
    assert uniformity(torch.eye(6), t=t) == pytest.approx(-2 * t, rel=1e-6)  # orthonormal: distance^2 = 2
    assert uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), t=t) == pytest.approx(-4 * t, rel=1e-6)
    # The vertices of a regular simplex (3 points at 120 degrees): ||z_i - z_j||^2 = 3.
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3])
    triangle = torch.stack([angles.cos(), angles.sin()], dim=1)
    assert uniformity(triangle, t=t) == pytest.approx(-3 * t, rel=1e-5)


def test_uniformity_is_finite_for_large_t():
    assert math.isfinite(uniformity(torch.eye(4), t=500))


# ---------------------------------------------------------------- cosine_stats
def test_cosine_stats_matches_loop_oracle():
    n = 5
    z1, z2 = _randn(n, 3, seed=7), _randn(n, 3, seed=8)
    views = _unit_rows(torch.cat([z1, z2]))
    positives = [_cos(views[i], views[i + n]) for i in range(n)]
    negatives = [_cos(views[a], views[b]) for a in range(2 * n) for b in range(a + 1, 2 * n) if a % n != b % n]
    assert len(negatives) == 2 * n * (n - 1)
    stats = cosine_stats(z1, z2)
    assert set(stats) == {"pos_mean", "pos_std", "neg_mean", "neg_std"}
    assert all(type(value) is float for value in stats.values())
    assert stats["pos_mean"] == pytest.approx(statistics.fmean(positives), abs=1e-6)
    assert stats["pos_std"] == pytest.approx(statistics.pstdev(positives), abs=1e-6)
    assert stats["neg_mean"] == pytest.approx(statistics.fmean(negatives), abs=1e-6)
    assert stats["neg_std"] == pytest.approx(statistics.pstdev(negatives), abs=1e-6)


def test_cosine_stats_orthonormal_basis():
    # z1[i] = e_i, z2[i] = (e_i + e_{n+i}) / sqrt(2): positives 1/sqrt(2), all negatives orthogonal.
    n = 3
    basis = torch.eye(2 * n)
    z1, z2 = basis[:n], basis[:n] + basis[n:]
    stats = cosine_stats(z1, z2)
    assert stats["pos_mean"] == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    assert stats["pos_std"] == pytest.approx(0.0, abs=1e-7)
    assert stats["neg_mean"] == pytest.approx(0.0, abs=1e-7)
    assert stats["neg_std"] == pytest.approx(0.0, abs=1e-7)


def test_cosine_stats_collapsed():
    z = torch.ones(4, 3)
    stats = cosine_stats(z, z)
    assert stats["pos_mean"] == pytest.approx(1.0) and stats["neg_mean"] == pytest.approx(1.0)


# ---------------------------------------------------------------- embedding_std
def test_embedding_std_matches_loop_oracle():
    z = _randn(10, 6, seed=9)
    columns = list(zip(*_unit_rows(z)))
    expected = statistics.fmean(statistics.stdev(column) for column in columns)
    assert embedding_std(z) == pytest.approx(expected, rel=1e-5)


def test_embedding_std_collapsed_is_zero_and_spread_is_about_one_over_sqrt_d():
    assert embedding_std(torch.full((8, 16), 3.0)) == pytest.approx(0.0, abs=1e-7)
    d = 64
    spread = embedding_std(_randn(4096, d, seed=10))
    assert spread == pytest.approx(1 / math.sqrt(d), rel=0.05)


# ---------------------------------------------------------------- no graph, low precision
def test_metrics_accept_inputs_that_require_grad_and_bf16():
    z1 = _randn(6, 4, seed=11).requires_grad_()
    z2 = _randn(6, 4, seed=12).requires_grad_()
    values = [
        contrastive_accuracy(z1, z2), alignment(z1, z2), uniformity(z1),
        embedding_std(z1), *cosine_stats(z1, z2).values(),
    ]
    assert all(type(value) is float for value in values)
    assert alignment(z1.bfloat16(), z2.bfloat16()) == pytest.approx(
        alignment(z1.bfloat16().float(), z2.bfloat16().float()), rel=1e-6
    )


def test_autocast_does_not_blur_cosines():
    # Nearly parallel rows: a bf16 matmul would round cos to 1 and the pairs would look perfect.
    z = torch.eye(4) + 0.05 * _randn(4, 4, seed=13)
    expected = cosine_stats(z, z + 0.01 * _randn(4, 4, seed=14))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = cosine_stats(z, z + 0.01 * _randn(4, 4, seed=14))
    assert got == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: contrastive_accuracy(torch.ones(4, 3), torch.ones(4, 2)), r"z1 has shape \(4, 3\) but z2"),
        (lambda: alignment(torch.ones(4, 3), torch.ones(5, 3)), "z1 has shape .* but z2 has shape"),
        (lambda: cosine_stats(torch.ones(4, 3), torch.ones(3, 3)), "must match"),
        (lambda: contrastive_accuracy(torch.ones(1, 3), torch.ones(1, 3)), "N=1 rows; .* N >= 2"),
        (lambda: uniformity(torch.ones(1, 3)), "z has N=1 rows"),
        (lambda: embedding_std(torch.ones(1, 3)), "z has N=1 rows"),
        (lambda: uniformity(torch.ones(3)), r"z has shape \(3,\) \(1-D\); it must be 2-D"),
        (lambda: embedding_std(torch.ones(2, 3, 4)), "must be 2-D"),
        (lambda: cosine_stats(torch.ones(4), torch.ones(4)), "z1 has shape .* must be 2-D"),
        (lambda: embedding_std(torch.ones(3, 0)), "empty feature dimension"),
        (lambda: alignment(torch.ones(2, 3), torch.ones(2, 3), alpha=0), "alpha=0 must be a finite number > 0"),
        (lambda: uniformity(torch.ones(2, 3), t=-1), "t=-1 must be a finite number > 0"),
        (lambda: uniformity(torch.ones(2, 3), t=float("nan")), "t=nan must be"),
    ],
)
def test_bad_inputs_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_non_tensor_raises_type_error():
    with pytest.raises(TypeError, match="z is a list; pass a torch.Tensor"):
        embedding_std([[1.0, 2.0], [3.0, 4.0]])


# ---------------------------------------------------------------- contrastive_accuracy_tensor
def test_contrastive_accuracy_tensor_is_the_same_number_as_a_0d_tensor():
    from crl_helpers.metrics import contrastive_accuracy_tensor

    z1 = _randn(16, 4, seed=20)
    z2 = z1 + 1.2 * _randn(16, 4, seed=21)
    got = contrastive_accuracy_tensor(z1, z2)
    assert got.shape == () and got.dtype == torch.float32 and not got.requires_grad
    assert got.item() == contrastive_accuracy(z1, z2)
    assert contrastive_accuracy_tensor(torch.eye(4), torch.eye(4).roll(1, dims=0)).item() == 0.0


def test_contrastive_accuracy_tensor_traces_into_one_graph():
    # fullgraph=True fails on any graph break: a host sync (.item()) or a data-dependent branch.
    from crl_helpers.metrics import contrastive_accuracy_tensor

    z1, z2 = _randn(8, 4, seed=22), _randn(8, 4, seed=23)
    compiled = torch.compile(contrastive_accuracy_tensor, fullgraph=True, backend="eager")
    assert compiled(z1, z2).item() == contrastive_accuracy(z1, z2)


def test_metrics_refuse_integer_embeddings():
    with pytest.raises(TypeError, match="z1 has dtype torch.int64; pass floating-point"):
        contrastive_accuracy(torch.ones(3, 2, dtype=torch.long), torch.ones(3, 2))


# ---------------------------------------------------------------- effective_rank
def _effective_rank_oracle(z: torch.Tensor) -> float:
    # Eigenvalues of the Gram matrix of the unit rows are the squared singular values (float64).
    u = torch.tensor(_unit_rows(z), dtype=torch.float64)
    eig = torch.linalg.eigvalsh(u.T @ u).clamp_min(0)
    sigma = [math.sqrt(e) for e in eig.tolist() if e > 1e-24]
    total = sum(sigma)
    return math.exp(-sum(s / total * math.log(s / total) for s in sigma))


def test_effective_rank_matches_eigenvalue_oracle():
    z = torch.randn(40, 12, generator=torch.Generator().manual_seed(3))
    assert effective_rank(z) == pytest.approx(_effective_rank_oracle(z), rel=1e-6)


def test_effective_rank_sees_dimensional_collapse_that_embedding_std_misses():
    # Rows spread evenly over 3 of 64 directions: std looks healthy, the rank says 3.
    g = torch.Generator().manual_seed(0)
    z = torch.zeros(300, 64)
    z[:, :3] = torch.randn(300, 3, generator=g)
    assert effective_rank(z) == pytest.approx(3, abs=0.2)
    assert effective_rank(torch.randn(300, 64, generator=g)) > 50
    assert effective_rank(torch.ones(6, 64)) == pytest.approx(1)
    assert effective_rank(10.0 * torch.eye(5)) == pytest.approx(5)  # scale-free: rows are normalised
