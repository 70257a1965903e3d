"""Tests for crl_helpers.losses against loop-based float64 oracles written from the papers' formulas."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from crl_helpers.losses import debiased_nt_xent, info_nce, nt_xent, nt_xent_logits
from oracles import dot as _cos
from oracles import info_nce_oracle, neg_log_softmax, nt_xent_oracle
from oracles import unit_rows as _unit_rows


def _randn(*shape: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


CASES = [(2, 3, 0.5), (4, 8, 0.1), (5, 2, 1.0), (8, 16, 0.07), (3, 5, 0.01)]  # (N, d, temperature)


# ---------------------------------------------------------------- nt_xent
@pytest.mark.parametrize("n, d, temperature", CASES)
def test_nt_xent_matches_loop_oracle(n, d, temperature):
    z1, z2 = _randn(n, d, seed=0), _randn(n, d, seed=1)
    loss = nt_xent(z1, z2, temperature=temperature)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(nt_xent_oracle(z1, z2, temperature), rel=1e-5, abs=1e-5)


def test_nt_xent_matches_loop_oracle_in_float64_to_1e_12():
    z1, z2 = _randn(4, 6, seed=2, dtype=torch.float64), _randn(4, 6, seed=3, dtype=torch.float64)
    loss = nt_xent(z1, z2, temperature=0.2)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(nt_xent_oracle(z1, z2, 0.2), rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 6),
    d=st.integers(1, 6),
    temperature=st.floats(0.05, 2.0),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.1, 100.0),
)
def test_nt_xent_matches_loop_oracle_property(n, d, temperature, seed, scale):
    # Scaling the inputs must not matter: normalisation is part of the loss.
    z1, z2 = scale * _randn(n, d, seed=seed), _randn(n, d, seed=seed + 1)
    expected = nt_xent_oracle(z1, z2, temperature)
    assert nt_xent(z1, z2, temperature).item() == pytest.approx(expected, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("n", [2, 3, 8])
def test_nt_xent_identical_embeddings_is_log_2n_minus_1(n):
    z = torch.full((n, 5), 0.3)
    for temperature in (0.01, 0.5, 3.0):
        assert nt_xent(z, z, temperature).item() == pytest.approx(math.log(2 * n - 1), rel=1e-6)


def test_nt_xent_orthogonal_images_closed_form():
    # Orthogonal images, identical views: the positive logit is 1/tau, the negatives 0.
    z = torch.eye(4)
    temperature = 0.5
    expected = -math.log(math.exp(1 / temperature) / (math.exp(1 / temperature) + 6))
    assert nt_xent(z, z, temperature).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_logits_layout():
    n, d, temperature = 3, 4, 0.3
    z1, z2 = _randn(n, d, seed=4), _randn(n, d, seed=5)
    logits, targets = nt_xent_logits(z1, z2, temperature)
    assert logits.shape == (2 * n, 2 * n) and logits.dtype == torch.float32
    assert targets.tolist() == [3, 4, 5, 0, 1, 2]
    views = _unit_rows(torch.cat([z1, z2]))
    for a in range(2 * n):
        for b in range(2 * n):
            if a == b:
                assert logits[a, b].item() == -math.inf
            else:
                assert logits[a, b].item() == pytest.approx(_cos(views[a], views[b]) / temperature, abs=1e-5)


def test_nt_xent_is_mean_of_info_nce_with_both_sides_as_negatives():
    # NT-Xent is InfoNCE per anchor with the 2N-2 other views, own side included, as per-query negatives.
    n, d = 4, 3
    z1, z2 = _randn(n, d, seed=6, dtype=torch.float64), _randn(n, d, seed=7, dtype=torch.float64)

    def others(i):
        return torch.stack([v for j, v in enumerate(torch.cat([z1, z2])) if j % n != i])  # (2N - 2, d)

    negatives = torch.stack([others(i) for i in range(n)])  # (N, 2N - 2, d)
    both_directions = (info_nce(z1, z2, negatives, 0.5) + info_nce(z2, z1, negatives, 0.5)) / 2
    torch.testing.assert_close(nt_xent(z1, z2, 0.5), both_directions)
    # ...and it is not the CLIP-style symmetric loss, which leaves out the own side.
    clip_style = (info_nce(z1, z2, None, 0.5) + info_nce(z2, z1, None, 0.5)) / 2
    assert abs(nt_xent(z1, z2, 0.5).item() - clip_style.item()) > 1e-3


# ---------------------------------------------------------------- info_nce
@pytest.mark.parametrize("n, d, temperature", CASES)
@pytest.mark.parametrize("mode", ["none", "shared", "per_query"])
def test_info_nce_matches_loop_oracle(n, d, temperature, mode):
    query, positive_key = _randn(n, d, seed=10), _randn(n, d, seed=11)
    negative_keys = {"none": None, "shared": _randn(7, d, seed=12), "per_query": _randn(n, 6, d, seed=13)}[mode]
    loss = info_nce(query, positive_key, negative_keys, temperature=temperature)
    assert loss.shape == () and loss.dtype == torch.float32
    expected = info_nce_oracle(query, positive_key, negative_keys, temperature)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("n", [2, 5])
def test_info_nce_identical_rows_is_log_n(n):
    z = torch.full((n, 4), -2.0)
    assert info_nce(z, z, None, temperature=0.07).item() == pytest.approx(math.log(n), rel=1e-6)
    # With M shared negatives equal to the positive: log(1 + M).
    assert info_nce(z, z, torch.full((9, 4), -1.0), 0.07).item() == pytest.approx(math.log(10), rel=1e-6)


def test_info_nce_single_query_with_explicit_negatives():
    query, positive_key, negative_keys = _randn(1, 3, seed=14), _randn(1, 3, seed=15), _randn(4, 3, seed=16)
    expected = info_nce_oracle(query, positive_key, negative_keys, 0.2)
    assert info_nce(query, positive_key, negative_keys, 0.2).item() == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- gradients
def test_gradcheck_nt_xent():
    z1 = _randn(3, 4, seed=20, dtype=torch.float64).requires_grad_()
    z2 = _randn(3, 4, seed=21, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: nt_xent(a, b, 0.3), (z1, z2))


@pytest.mark.parametrize("mode", ["none", "shared", "per_query"])
def test_gradcheck_info_nce(mode):
    query = _randn(3, 4, seed=22, dtype=torch.float64).requires_grad_()
    positive_key = _randn(3, 4, seed=23, dtype=torch.float64).requires_grad_()
    if mode == "none":
        assert torch.autograd.gradcheck(lambda q, k: info_nce(q, k, None, 0.3), (query, positive_key))
        return
    shape = (5, 4) if mode == "shared" else (3, 5, 4)
    negative_keys = _randn(*shape, seed=24, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda q, k, n: info_nce(q, k, n, 0.3), (query, positive_key, negative_keys))


# ---------------------------------------------------------------- low precision
def _losses(a: torch.Tensor, b: torch.Tensor, temperature: float) -> dict[str, torch.Tensor]:
    return {
        "nt_xent": nt_xent(a, b, temperature),
        "info_nce": info_nce(a, b, None, temperature),
        "info_nce_shared": info_nce(a, b, b.flip(0)[:3], temperature),
        "info_nce_per_query": info_nce(a, b, torch.stack([b.roll(1, 0), b.roll(2, 0)], 1), temperature),
    }


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_give_finite_float32_loss_and_grads_at_low_temperature(dtype):
    z1 = (10 * _randn(6, 8, seed=30)).to(dtype).requires_grad_()
    z2 = (10 * _randn(6, 8, seed=31)).to(dtype).requires_grad_()
    for name, loss in _losses(z1, z2, 0.01).items():
        assert loss.dtype == torch.float32, name
        assert torch.isfinite(loss), name
        z1.grad = z2.grad = None
        loss.backward()
        assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all(), name
        # The upcast happens before any arithmetic: same value as float32 copies of the same numbers.
        reference = _losses(z1.detach().float(), z2.detach().float(), 0.01)[name]
        torch.testing.assert_close(loss, reference, rtol=1e-6, atol=1e-6)


def test_autocast_bf16_keeps_the_loss_in_float32():
    z1, z2 = _randn(6, 32, seed=32), _randn(6, 32, seed=33)
    expected = _losses(z1, z2, 0.01)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _losses(z1, z2, 0.01)
    for name in expected:
        assert got[name].dtype == torch.float32, name
        # A bf16 matmul would be off by ~1 at temperature 0.01; float32 agrees to rounding.
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-5, msg=name)


def test_autocast_bf16_model_outputs_are_fine():
    head = torch.nn.Linear(8, 16)
    x1, x2 = _randn(5, 8, seed=34), _randn(5, 8, seed=35)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z1, z2 = head(x1), head(x2)
        loss = nt_xent(z1, z2, 0.01)
    assert z1.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert loss.item() == pytest.approx(nt_xent_oracle(z1.float(), z2.float(), 0.01), rel=1e-5)
    loss.backward()
    assert torch.isfinite(head.weight.grad).all()


# ---------------------------------------------------------------- errors
Z = torch.ones(4, 3)


@pytest.mark.parametrize("temperature", [0, -0.1, float("nan"), float("inf")])
@pytest.mark.parametrize("loss", ["nt_xent", "info_nce"])
def test_bad_temperature_raises(loss, temperature):
    with pytest.raises(ValueError, match=r"temperature=.*must be a finite number > 0"):
        nt_xent(Z, Z, temperature) if loss == "nt_xent" else info_nce(Z, Z, None, temperature)


@pytest.mark.parametrize("temperature", ["0.1", None, True])
def test_non_numeric_temperature_raises_type_error(temperature):
    with pytest.raises(TypeError, match="temperature="):
        nt_xent(Z, Z, temperature)
    with pytest.raises(TypeError, match="temperature="):
        info_nce(Z, Z, None, temperature)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: nt_xent(Z, torch.ones(4, 2)), ValueError, r"z1 has shape \(4, 3\) but z2 has shape \(4, 2\)"),
        (lambda: nt_xent(Z, torch.ones(5, 3)), ValueError, "z1 has shape .* but z2 has shape"),
        (lambda: nt_xent(torch.ones(4), torch.ones(4)), ValueError, r"z1 has shape \(4,\) \(1-D\); it must be 2-D"),
        (lambda: nt_xent(torch.ones(2, 4, 3), torch.ones(2, 4, 3)), ValueError, "must be 2-D"),
        (lambda: nt_xent(torch.ones(4, 0), torch.ones(4, 0)), ValueError, "empty feature dimension"),
        (lambda: nt_xent(torch.ones(1, 3), torch.ones(1, 3)), ValueError, "N=1 rows; NT-Xent needs N >= 2"),
        (lambda: nt_xent_logits(torch.ones(1, 3), torch.ones(1, 3), 0.5), ValueError, "N >= 2"),
        (lambda: nt_xent(Z.tolist(), Z), TypeError, "z1 is a list; pass a torch.Tensor"),
        (lambda: nt_xent(Z, Z.long()), TypeError, r"z2 has dtype torch.int64; pass floating-point"),
        (lambda: info_nce(Z, torch.ones(4, 2)), ValueError, "query has shape .* but positive_key has shape"),
        (lambda: info_nce(torch.ones(4), torch.ones(4)), ValueError, "query has shape .* it must be 2-D"),
        (lambda: info_nce(torch.ones(1, 3), torch.ones(1, 3)), ValueError, "N=1 rows and negative_keys=None"),
        (lambda: info_nce(Z, Z, torch.ones(5, 2)), ValueError, r"negative_keys .* d=2, but query has d=3"),
        (lambda: info_nce(Z, Z, torch.ones(3, 5, 3)), ValueError, r"per-query, N=3\), but query has N=4"),
        (lambda: info_nce(Z, Z, torch.ones(3)), ValueError, "negative_keys has shape .* must be 2-D or 3-D"),
        (lambda: info_nce(Z, Z, torch.ones(4, 2, 5, 3)), ValueError, "must be 2-D or 3-D"),
        (lambda: info_nce(Z, Z, torch.ones(0, 3)), ValueError, "M=0 negatives"),
        (lambda: info_nce(Z, Z, torch.ones(4, 0, 3)), ValueError, "M=0 negatives"),
        (lambda: info_nce(Z.numpy(), Z), TypeError, "query is a ndarray"),
        (lambda: info_nce(Z, Z.int()), TypeError, "positive_key has dtype torch.int32"),
        (lambda: info_nce(Z, Z, [[1.0, 2.0, 3.0]]), TypeError, "negative_keys is a list"),
        (lambda: info_nce(Z, Z, torch.ones(5, 3, dtype=torch.bool)), TypeError, "negative_keys has dtype"),
    ],
)
def test_bad_inputs_raise(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("position", ["z1", "z2", "query", "positive_key", "negative_keys"])
def test_non_finite_inputs_raise(position, bad):
    tensors = {name: torch.ones(4, 3) for name in ("z1", "z2", "query", "positive_key", "negative_keys")}
    tensors[position][2, 1] = bad
    with pytest.raises(ValueError, match=f"{position} contains NaN or inf"):
        if position in ("z1", "z2"):
            nt_xent(tensors["z1"], tensors["z2"])
        else:
            info_nce(tensors["query"], tensors["positive_key"], tensors["negative_keys"])


def test_validate_false_skips_only_the_finiteness_scan():
    z = torch.ones(4, 3)
    z[0, 0] = float("nan")
    # No raise: the NaN flows into the loss, for the training loop's own non-finite check to catch.
    assert torch.isnan(nt_xent(z, torch.ones(4, 3), validate=False))
    assert torch.isnan(info_nce(z, torch.ones(4, 3), torch.ones(2, 3), validate=False))
    # Shapes and temperature are still checked.
    with pytest.raises(ValueError, match="z1 has shape .* but z2 has shape"):
        nt_xent(z, torch.ones(4, 2), validate=False)
    with pytest.raises(ValueError, match="temperature=0"):
        nt_xent(z, z, temperature=0, validate=False)


@pytest.mark.parametrize("scale", [1e25, 1e-22])
def test_cosine_losses_ignore_the_scale_of_a_row_in_float32(scale):
    # Cosine similarity is scale-invariant, so the loss must be too, even where the sum of squares of a row
    # overflows (1e25 ** 2 > float32 max) or underflows (1e-22 ** 2 < the smallest float32) in float32.
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    expected = nt_xent(z1.double(), z2.double(), temperature=0.2)  # float64: no overflow at these scales
    rows = torch.tensor([1.0, scale, 1.0, scale, 1.0, 1.0])[:, None]  # some rows rescaled
    torch.testing.assert_close(nt_xent(z1 * rows, z2, temperature=0.2).double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(info_nce(z1 * rows, z2 * rows, temperature=0.2).double(),
                               info_nce(z1.double(), z2.double(), temperature=0.2), rtol=1e-5, atol=1e-6)
    # and the gradient through a huge row is the scale-invariant one: d loss / d z scales as 1 / scale
    huge = (z1 * rows).requires_grad_()
    nt_xent(huge, z2, temperature=0.2).backward()
    plain = z1.double().requires_grad_()
    nt_xent(plain, z2.double(), temperature=0.2).backward()
    torch.testing.assert_close(huge.grad.double() * rows.double(), plain.grad, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- hostile inputs: float16 at small temperatures
def _worst_case_query(m: int, dtype: torch.dtype):
    """One query whose positive (+e1) and m negatives (-e1) are all orthogonal to it (e0): every
    candidate has probability 1/(m + 1), and the query's gradient is -2m/((m + 1) temperature) e1,
    the largest InfoNCE / NT-Xent gradient of a unit row (derived in docs/numerics.md)."""
    query = torch.tensor([[1.0, 0.0]], dtype=dtype).requires_grad_()  # (1, 2)
    positive = torch.tensor([[0.0, 1.0]], dtype=dtype)  # (1, 2)
    negatives = torch.tensor([[0.0, -1.0]], dtype=dtype).repeat(m, 1)  # (m, 2)
    return query, positive, negatives


@pytest.mark.parametrize("loss", ["nt_xent", "nt_xent_logits", "info_nce", "info_nce negatives"])
def test_hostile_float16_below_the_float16_floor_is_refused(loss):
    from crl_helpers.validate import FLOAT16_MIN_TEMPERATURE

    z = torch.randn(4, 8).half()
    temperature = 0.9 * FLOAT16_MIN_TEMPERATURE
    calls = {"nt_xent": lambda: nt_xent(z, z.flip(0), temperature),
             "nt_xent_logits": lambda: nt_xent_logits(z, z.flip(0), temperature),
             "info_nce": lambda: info_nce(z, z.flip(0), temperature=temperature),
             "info_nce negatives": lambda: info_nce(z.float(), z.float(), z, temperature=temperature)}
    with pytest.raises(ValueError) as caught:
        calls[loss]()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"temperature={temperature!r} is below 3.05e-05")
    assert "float32 or bfloat16" in message and "raise the temperature" in message
    # float32 and bfloat16 have the range float16 lacks: the same temperature is accepted.
    for dtype in (torch.float32, torch.bfloat16):
        assert torch.isfinite(nt_xent(z.to(dtype), z.flip(0).to(dtype), temperature))


def test_hostile_float16_floor_is_where_the_worst_gradient_overflows():
    from crl_helpers.validate import FLOAT16_MIN_TEMPERATURE

    m = 1000
    assert FLOAT16_MIN_TEMPERATURE == pytest.approx(2 / 65504)
    # Just below the floor, the worst case's gradient (computed in float32) passes float16's largest value:
    # a float16 query would get inf, so the floor cannot be lowered.
    below = 0.95 * FLOAT16_MIN_TEMPERATURE
    query, positive, negatives = _worst_case_query(m, torch.float32)
    info_nce(query, positive, negatives, temperature=below).backward()
    expected = 2 * m / ((m + 1) * below)  # the closed form
    assert query.grad[0, 1].item() == pytest.approx(-expected, rel=1e-5)
    assert expected > 65504 and torch.isinf(query.grad.half()).any()


@pytest.mark.parametrize("factor", [1.0, 1.5, 10.0, 1e4])
def test_hostile_float16_gradients_are_finite_at_and_above_the_floor(factor):
    from crl_helpers.validate import FLOAT16_MIN_TEMPERATURE

    temperature = factor * FLOAT16_MIN_TEMPERATURE
    query, positive, negatives = _worst_case_query(1000, torch.float16)
    info_nce(query, positive, negatives, temperature=temperature).backward()
    assert query.grad.dtype == torch.float16 and torch.isfinite(query.grad).all()
    assert -query.grad[0, 1].item() == pytest.approx(2000 / (1001 * temperature), rel=1e-3)
    # NT-Xent on random unit rows and on near-duplicates (a sharp softmax), float16 in, gradients finite.
    g = torch.Generator().manual_seed(int(factor))
    for z1 in (torch.randn(8, 16, generator=g), torch.randn(1, 16, generator=g).repeat(8, 1)):
        z1 = normalize_rows_f16(z1 + 1e-2 * torch.randn(8, 16, generator=g))
        z2 = normalize_rows_f16(z1.float() + 1e-2 * torch.randn(8, 16, generator=g))
        loss = nt_xent(z1, z2, temperature)
        grads = torch.autograd.grad(loss, (z1, z2))
        assert torch.isfinite(loss) and all(torch.isfinite(grad).all() for grad in grads)


def normalize_rows_f16(x: torch.Tensor) -> torch.Tensor:
    """Unit rows in float16, as a projection head under float16 autocast returns them; a leaf."""
    return (x / x.norm(dim=1, keepdim=True)).half().requires_grad_()


# ------------------------------------------------------- debiased (Chuang et al. 2020)
def debiased_oracle(z1, z2, temperature: float, tau_plus: float) -> float:
    """Chuang et al. 2020, eq. 6 with the authors' floor, anchor by anchor in float64."""
    z = _unit_rows(torch.cat([z1, z2]))
    n2 = len(z)
    n = n2 // 2
    k = n2 - 2
    total = 0.0
    for a in range(n2):
        partner = (a + n) % n2
        pos = math.exp(_cos(z[a], z[partner]) / temperature)
        neg = sum(math.exp(_cos(z[a], z[b]) / temperature) for b in range(n2) if b not in (a, partner))
        n_g = max((neg - tau_plus * k * pos) / (1 - tau_plus), k * math.exp(-1 / temperature))
        total += -math.log(pos / (pos + n_g))
    return total / n2


@pytest.mark.parametrize("n, d, temperature", CASES)
@pytest.mark.parametrize("tau_plus", [0.0, 0.1, 0.5])
def test_debiased_matches_loop_oracle(n, d, temperature, tau_plus):
    z1, z2 = _randn(n, d, seed=n), _randn(n, d, seed=n + 100)
    got = debiased_nt_xent(z1.double(), z2.double(), temperature, tau_plus).item()
    assert got == pytest.approx(debiased_oracle(z1.double(), z2.double(), temperature, tau_plus), rel=1e-10)
    got32 = debiased_nt_xent(z1, z2, temperature, tau_plus).item()
    assert got32 == pytest.approx(debiased_oracle(z1.double(), z2.double(), temperature, tau_plus), rel=1e-4)


def test_debiased_floor_binds_when_the_positive_outweighs_the_negatives():
    # Two images at opposite poles: each anchor's K = 2 negatives are the other image's views (cos -1),
    # its positive is cos 1. The debiased sum is negative for tau_plus = 0.5, so N_g = K e^{-1/t}.
    z1 = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * math.exp(-1 / t)))
    assert debiased_nt_xent(z1, z1.clone(), t, tau_plus=0.5).item() == pytest.approx(expected, rel=1e-12)
    assert debiased_oracle(z1, z1.clone(), t, 0.5) == pytest.approx(expected, rel=1e-12)
    # Without the correction the same batch is plain NT-Xent, whose negatives term is also K e^{-1/t} here.
    assert nt_xent(z1, z1.clone(), t).item() == pytest.approx(expected, rel=1e-12)


def test_debiased_with_no_prior_is_nt_xent_and_the_prior_lowers_the_loss():
    z1, z2 = _randn(6, 4, seed=1), _randn(6, 4, seed=2)
    torch.testing.assert_close(debiased_nt_xent(z1, z2, 0.2, tau_plus=0.0), nt_xent(z1, z2, 0.2))
    assert debiased_nt_xent(z1, z2, 0.2, tau_plus=0.2) < nt_xent(z1, z2, 0.2)


def test_debiased_small_temperature_is_finite_and_gradcheck():
    z1, z2 = _randn(4, 3, seed=3), _randn(4, 3, seed=4)
    assert torch.isfinite(debiased_nt_xent(z1, z2, 1e-3, 0.1))
    a = _randn(3, 4, seed=5, dtype=torch.float64).requires_grad_()
    b = _randn(3, 4, seed=6, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: debiased_nt_xent(x, y, 0.5, 0.1), (a, b))


@pytest.mark.parametrize("tau_plus, error", [(1.0, ValueError), (-0.1, ValueError), ("0.1", TypeError)])
def test_debiased_rejects_a_bad_prior(tau_plus, error):
    with pytest.raises(error, match="tau_plus"):
        debiased_nt_xent(torch.randn(3, 2), torch.randn(3, 2), 0.5, tau_plus)
