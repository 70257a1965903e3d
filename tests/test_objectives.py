"""Tests for crl_helpers.objectives: memory bank, MoCo queue and momentum update, SupCon, triplet, the objectives.

Oracles are written from the papers' formulas: loops over anchors in float64, hand-computed
triplets, a Python list as the FIFO queue, the closed form of repeated momentum updates.
"""
from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crl_helpers.objectives import (
    METHODS,
    MemoryBank,
    MoCoQueue,
    ObjectiveConfig,
    build_objective,
    momentum_update,
    Debiased,
    MoCo,
    SimSiam,
    semi_hard_negatives,
    simsiam_loss,
    supcon_loss,
    triplet_loss,
)
from crl_helpers.losses import debiased_nt_xent, nt_xent
from oracles import info_nce_oracle, nt_xent_oracle, supcon_oracle
from oracles import squared_distance as sq_dist
from oracles import dot, unit_rows


# ----------------------------------------------------------------- memory bank
def test_memory_bank_starts_on_the_sphere_and_is_seeded():
    a = MemoryBank(10, 4, generator=torch.Generator().manual_seed(3))
    b = MemoryBank(10, 4, generator=torch.Generator().manual_seed(3))
    assert a.bank.shape == (10, 4)
    torch.testing.assert_close(a.bank.norm(dim=1), torch.ones(10))
    assert torch.equal(a.bank, b.bank)


def test_memory_bank_update_follows_the_instdisc_formula():
    bank = MemoryBank(5, 2, momentum=0.25, generator=torch.Generator().manual_seed(0))
    before = bank.bank.clone()
    z = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    bank.update(torch.tensor([4, 1]), z)
    for row, i in zip(([0.6, 0.8], [0.0, -1.0]), (4, 1)):
        old = before[i].tolist()
        mixed = [0.25 * o + 0.75 * r for o, r in zip(old, row)]
        norm = math.sqrt(sum(m * m for m in mixed))
        assert bank.bank[i].tolist() == pytest.approx([m / norm for m in mixed], abs=1e-6)
    untouched = [0, 2, 3]
    assert torch.equal(bank.bank[untouched], before[untouched])


def test_memory_bank_momentum_zero_replaces_the_entry():
    bank = MemoryBank(3, 2, momentum=0.0)
    bank.update(torch.tensor([2]), torch.tensor([[0.0, 5.0]]))
    assert bank.bank[2].tolist() == pytest.approx([0.0, 1.0])


def test_memory_bank_getitem_returns_a_copy():
    bank = MemoryBank(3, 2)
    key = bank[torch.tensor([0])]
    bank.update(torch.tensor([0]), -key)
    assert not torch.equal(key, bank[torch.tensor([0])])


def test_memory_bank_loss_is_info_nce_against_sampled_entries():
    torch.manual_seed(0)
    bank = MemoryBank(20, 3, generator=torch.Generator().manual_seed(1))
    query, index = torch.randn(4, 3), torch.tensor([0, 5, 7, 19])
    loss = bank.loss(query, index, n_negatives=6, temperature=0.5, generator=torch.Generator().manual_seed(2))
    drawn = torch.randint(20, (6,), generator=torch.Generator().manual_seed(2))
    expected = info_nce_oracle(query, bank.bank[index], bank.bank[drawn], 0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kwargs, error", [
    (dict(size=0, dim=2), ValueError), (dict(size=2, dim=2.0), TypeError),
    (dict(size=2, dim=2, momentum=1.0), ValueError), (dict(size=2, dim=2, momentum=-0.1), ValueError),
])
def test_memory_bank_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        MemoryBank(**kwargs)


def test_memory_bank_update_rejects_bad_inputs():
    bank = MemoryBank(4, 2)
    with pytest.raises(ValueError, match="outside"):
        bank.update(torch.tensor([4]), torch.ones(1, 2))
    with pytest.raises(ValueError, match="repeats"):
        bank.update(torch.tensor([1, 1]), torch.ones(2, 2))
    with pytest.raises(ValueError, match="d=3"):
        bank.update(torch.tensor([1]), torch.ones(1, 3))
    with pytest.raises(TypeError, match="index"):
        bank.update(torch.tensor([1.0]), torch.ones(1, 2))


# ------------------------------------------------------------------- MoCo queue
def test_queue_is_fifo_like_a_list():
    queue = MoCoQueue(size=5, dim=2, generator=torch.Generator().manual_seed(0))
    reference = queue.keys.tolist()  # oldest first at the start: row order
    for step, b in enumerate((2, 3, 1, 4, 2)):
        angles = torch.arange(b, dtype=torch.float32) + 10 * step
        keys = torch.stack([angles.cos(), angles.sin()], dim=1)  # (b, 2) unit rows
        queue.enqueue(keys)
        reference = (reference + keys.tolist())[-5:]  # append newest, drop oldest
        torch.testing.assert_close(queue.ordered(), torch.tensor(reference), atol=1e-6, rtol=0)


def test_queue_normalises_and_detaches():
    queue = MoCoQueue(size=2, dim=2)
    keys = torch.tensor([[3.0, 4.0]], requires_grad=True)
    queue.enqueue(keys)
    assert queue.ordered()[-1].tolist() == pytest.approx([0.6, 0.8])
    assert not queue.keys.requires_grad


def test_queue_rejects_a_batch_larger_than_itself():
    with pytest.raises(ValueError, match="queue of at least"):
        MoCoQueue(size=2, dim=2).enqueue(torch.ones(3, 2))


def test_momentum_update_closed_form_after_k_steps():
    torch.manual_seed(0)
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    t0 = {k: v.clone().double() for k, v in target.state_dict().items()}
    m, k = 0.9, 5
    for _ in range(k):
        momentum_update(online, target, m)
    # A constant online encoder: theta_k = m^k theta_0 + (1 - m^k) theta_q.
    for name, value in target.state_dict().items():
        expected = m ** k * t0[name] + (1 - m ** k) * online.state_dict()[name].double()
        torch.testing.assert_close(value.double(), expected, atol=1e-6, rtol=0)


def test_momentum_update_extremes_and_buffers():
    online = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    target = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    target[1].running_mean.fill_(7.0)
    before = [p.clone() for p in target.parameters()]
    momentum_update(online, target, m=1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, target.parameters()))
    momentum_update(online, target, m=0.0)
    assert all(torch.equal(a, b) for a, b in zip(online.parameters(), target.parameters()))
    assert target[1].running_mean.tolist() == [7.0, 7.0]  # the key encoder keeps its own statistics


def test_momentum_update_rejects_mismatched_modules_and_bad_m():
    with pytest.raises(ValueError, match="deepcopy"):
        momentum_update(nn.Linear(2, 2), nn.Linear(2, 3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        momentum_update(nn.Linear(2, 2), nn.Linear(2, 2), m=1.5)
    with pytest.raises(TypeError):
        momentum_update(nn.Linear(2, 2), "target")


# ----------------------------------------------------------------------- SupCon
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_supcon_matches_a_loop_over_anchors(seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(9, 4, generator=g)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3, 2, 1])  # label 3 has no positive: left out of the mean
    loss = supcon_loss(z, labels, temperature=0.3)
    assert loss.item() == pytest.approx(supcon_oracle(z, labels, 0.3), rel=1e-5)


def test_supcon_with_one_label_per_image_is_nt_xent():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    ids = torch.arange(6)
    loss = supcon_loss(torch.cat([z1, z2]), torch.cat([ids, ids]), temperature=0.2)
    assert loss.item() == pytest.approx(nt_xent_oracle(z1, z2, 0.2), rel=1e-5)
    torch.testing.assert_close(loss, nt_xent(z1, z2, 0.2))


def test_supcon_closed_form_for_identical_embeddings():
    # All similarities equal: each positive has probability 1 / (M - 1).
    z = torch.ones(6, 3)
    loss = supcon_loss(z, torch.tensor([0, 0, 0, 1, 1, 1]), temperature=0.1)
    assert loss.item() == pytest.approx(math.log(5), rel=1e-6)


def test_supcon_gradient_is_finite_in_float64():
    z = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: supcon_loss(t, torch.tensor([0, 0, 1, 1, 2, 2]), 0.5), (z,))


def test_supcon_rejects_bad_inputs():
    with pytest.raises(ValueError, match="no anchor has a positive"):
        supcon_loss(torch.randn(3, 2), torch.arange(3))
    with pytest.raises(ValueError, match="one label per row"):
        supcon_loss(torch.randn(3, 2), torch.arange(2))
    with pytest.raises(TypeError, match="integer"):
        supcon_loss(torch.randn(2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="temperature"):
        supcon_loss(torch.randn(2, 2), torch.zeros(2, dtype=torch.long), temperature=0.0)


# ---------------------------------------------------------------------- triplet
def test_triplet_hand_computed_cases():
    e0, e1 = [1.0, 0.0], [0.0, 1.0]
    diag = [math.sqrt(0.5), math.sqrt(0.5)]
    anchor = torch.tensor([e0, e0, e0])
    positive = torch.tensor([e0, diag, e1])
    negative = torch.tensor([e1, e1, diag])
    # d(e0, e0)=0, d(e0, diag)=2-sqrt(2), d(e0, e1)=2.
    rows = [max(0.0 - 2.0 + 0.5, 0.0), max((2 - math.sqrt(2)) - 2.0 + 0.5, 0.0),
            max(2.0 - (2 - math.sqrt(2)) + 0.5, 0.0)]
    assert rows[0] == 0.0 and rows[1] == 0.0
    loss = triplet_loss(anchor, positive, negative, margin=0.5)
    assert loss.item() == pytest.approx(sum(rows) / 3, rel=1e-6)


def test_triplet_normalises_and_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    a, p, n = (torch.randn(7, 3, generator=g) * 5 for _ in range(3))
    expected = []
    for ai, pi, ni in zip(F.normalize(a, dim=1).tolist(), F.normalize(p, dim=1).tolist(), F.normalize(n, dim=1).tolist()):
        expected.append(max(sq_dist(ai, pi) - sq_dist(ai, ni) + 0.2, 0.0))
    assert triplet_loss(a, p, n).item() == pytest.approx(sum(expected) / 7, rel=1e-5)


def test_triplet_rejects_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        triplet_loss(torch.ones(2, 2), torch.ones(2, 2), torch.ones(3, 2))
    with pytest.raises(ValueError, match="margin"):
        triplet_loss(torch.ones(2, 2), torch.ones(2, 2), torch.ones(2, 2), margin=-1.0)


def test_semi_hard_negatives_match_a_loop():
    g = torch.Generator().manual_seed(4)
    a, p = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    an, pn = F.normalize(a, dim=1).tolist(), F.normalize(p, dim=1).tolist()
    chosen = semi_hard_negatives(a, p).tolist()
    for i in range(8):
        d_ap = sq_dist(an[i], pn[i])
        others = {j: sq_dist(an[i], pn[j]) for j in range(8) if j != i}
        outside = {j: d for j, d in others.items() if d > d_ap}
        want = min(outside, key=outside.get) if outside else max(others, key=others.get)
        assert chosen[i] == want, (i, chosen[i], want)


def test_semi_hard_falls_back_to_the_farthest_when_none_is_farther_than_the_positive():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    p = torch.tensor([[-1.0, 0.0], [0.0, -1.0], [-0.6, -0.8]])  # antipodal positives: nothing is farther
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    # Anchor 0 (e0): d to c1 = 2, to c2 = 0.8 -> farthest is 1.
    assert semi_hard_negatives(a, p, c).tolist()[0] == 1


# ------------------------------------------------------- objectives in the one loop
@pytest.fixture(scope="module")
def tiny():
    from crl_helpers.data import load_dataset
    from crl_helpers.train import CPU

    config = replace(CPU, epochs=1, n_train=32, n_test=16, batch_size=16, progress=False, out_dir=None,
                     head_hidden_dim=32, head_out_dim=16, knn_k=5,
                     objective=ObjectiveConfig(queue_size=16, bank_negatives=8))
    data = (load_dataset("shapes", "train", n=32), load_dataset("shapes", "test", n=16))
    return config, data


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_in_the_one_loop(tiny, method):
    from crl_helpers.train import train

    config, data = tiny
    seen = []
    result = train(replace(config, method=method), data=data, callback=lambda epoch, model, row: seen.append(epoch))
    assert seen == [1] and [row["epoch"] for row in result.history] == [1]
    assert math.isfinite(result.history[0]["loss"])
    objective = result.objective
    expected = {"simclr": 30, "supcon": 30, "triplet": 1, "instdisc": 8, "moco": 16, "debiased": 30,
                "simsiam": 0, "simsiam_no_stopgrad": 0}[method]
    assert objective.negatives_per_query(config.batch_size) == expected
    if method == "instdisc":
        assert objective.n_views == 1 and objective.bank.bank.shape == (32, 16)
        # Every training image was visited once: no entry is still the random initial one.
        fresh = MemoryBank(32, 16, generator=torch.Generator().manual_seed(config.seed + 1))
        assert not torch.isclose(objective.bank.bank, fresh.bank).all(dim=1).any()
    elif method == "moco":
        assert int(objective.queue.ptr) == 0  # 2 batches of 16 filled the 16-key ring twice
        # The key model followed the model, but is not the model: m = 0.99 after 2 steps.
        key = dict(objective.key_model.named_parameters())
        moved = [n for n, p in result.model.named_parameters() if not torch.equal(p, key[n])]
        assert moved and all(not p.requires_grad for p in key.values())
    elif method.startswith("simsiam"):
        # The predictor is trained with the model: it left its initial weights.
        torch.manual_seed(0)
        fresh = SimSiam(16).predictor
        assert any(not torch.equal(p, q) for p, q in zip(objective.predictor.parameters(), fresh.parameters()))
        assert objective.halt_on_collapse == (method == "simsiam")


def test_simclr_objective_is_nt_xent_of_the_model():
    from crl_helpers.models import ProjectionHead, SimCLRModel, SmallConvNet
    from crl_helpers.objectives import SimCLR

    torch.manual_seed(0)
    model = SimCLRModel(SmallConvNet(width=8), ProjectionHead(128, 32, 16)).eval()
    x1, x2 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    loss, z1, z2 = SimCLR(0.3)(model, torch.cat([x1, x2]))
    _, expected_z = model(torch.cat([x1, x2]))
    torch.testing.assert_close(loss, nt_xent(expected_z[:4], expected_z[4:], 0.3))
    torch.testing.assert_close(z1, expected_z[:4].detach())


def test_supcon_objective_uses_the_labels():
    from crl_helpers.models import ProjectionHead, SimCLRModel, SmallConvNet
    from crl_helpers.objectives import SupCon

    torch.manual_seed(0)
    model = SimCLRModel(SmallConvNet(width=8), ProjectionHead(128, 32, 16)).eval()
    views = torch.randn(8, 3, 32, 32)
    y = torch.tensor([0, 0, 1, 1])
    loss, _, _ = SupCon(0.5)(model, views, labels=y)
    _, z = model(views)
    assert loss.item() == pytest.approx(supcon_oracle(z.detach(), torch.cat([y, y]), 0.5), rel=1e-5)


@pytest.mark.parametrize("method", ["moco", "instdisc"])
def test_a_resumed_run_restores_the_objective_state(tmp_path, tiny, method):
    """Queue, key model and memory bank are checkpointed: a resumed run repeats the uninterrupted one."""
    from crl_helpers.train import train

    config, data = tiny
    config = replace(config, method=method, epochs=2, out_dir=str(tmp_path / "run"))
    straight = train(replace(config, out_dir=None), data=data).history
    train(replace(config, epochs=1), data=data)
    resumed = train(config, resume=True, data=data).history
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight]


def test_methods_other_than_simclr_refuse_torchrun_and_bad_options():
    from crl_helpers.models import ProjectionHead, SimCLRModel, SmallConvNet
    from crl_helpers.train import CPU

    model = SimCLRModel(SmallConvNet(width=8), ProjectionHead(128, 32, 16))
    with pytest.raises(ValueError, match="cannot run under torchrun"):
        build_objective("moco", model, n_images=64, batch_size=8, temperature=0.2, distributed=True)
    assert build_objective("simclr", model, 64, 8, 0.2, distributed=True).distributed
    with pytest.raises(ValueError, match="simclr"):
        build_objective("byol", model, 64, 8, 0.2)
    with pytest.raises(ValueError, match="method='byol'"):
        replace(CPU, method="byol")
    with pytest.raises(ValueError, match="moco_momentum"):
        ObjectiveConfig(moco_momentum=2.0)
    with pytest.raises(ValueError, match="bank_momentum=1.0"):
        ObjectiveConfig(bank_momentum=1.0)


def test_cli_trains_with_a_method(tmp_path, capsys):
    from crl_helpers.cli import main

    out = tmp_path / "moco"
    status = main(["train", "--method", "moco", "--epochs", "1", "--n-train", "64", "--n-test", "32",
                   "--batch-size", "32", "--no-umap", "--quiet", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "moco" and metrics["epochs"] == 1
    assert main(["train", "--method", "byol", "--out", str(tmp_path / "x")]) == 2
    assert "--method 'byol' is unknown" in capsys.readouterr().err


# -------------------------------------------------------------------- SimSiam
def simsiam_oracle(p1, p2, z1, z2) -> float:
    """Chen & He 2021, Algorithm 1: D(p1, z2) / 2 + D(p2, z1) / 2 with D = -cosine, one row at a time."""
    def d(p, z):
        rows = [-dot(a, b) for a, b in zip(unit_rows(p), unit_rows(z))]
        return sum(rows) / len(rows)
    return 0.5 * d(p1, z2) + 0.5 * d(p2, z1)


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_simsiam_loss_matches_the_formula(stop_gradient):
    g = torch.Generator().manual_seed(0)
    p1, p2, z1, z2 = (torch.randn(5, 6, generator=g, dtype=torch.float64) for _ in range(4))
    got = simsiam_loss(p1, p2, z1, z2, stop_gradient).item()
    assert got == pytest.approx(simsiam_oracle(p1, p2, z1, z2), rel=1e-12)


def test_simsiam_loss_closed_forms():
    e = torch.eye(3, dtype=torch.float64)
    assert simsiam_loss(e, e, 2 * e, 3 * e).item() == pytest.approx(-1.0)  # predictions on their targets
    assert simsiam_loss(e, e, -e, -e).item() == pytest.approx(1.0)  # predictions opposite their targets
    assert simsiam_loss(e, e, e.roll(1, dims=1), e.roll(1, dims=1)).item() == pytest.approx(0.0)  # orthogonal


def test_stop_gradient_cuts_the_gradient_to_the_target_branch():
    g = torch.Generator().manual_seed(1)
    p1, p2, z1, z2 = (torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(4))
    simsiam_loss(p1, p2, z1, z2, stop_gradient=True).backward()
    assert z1.grad is None and z2.grad is None
    assert p1.grad is not None and p1.grad.abs().sum() > 0
    simsiam_loss(p1, p2, z1, z2, stop_gradient=False).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0


def test_simsiam_objective_gradient_reaches_the_encoder_only_through_the_predicted_branch():
    from crl_helpers.models import ProjectionHead, SimCLRModel, SmallConvNet

    torch.manual_seed(0)
    model = SimCLRModel(SmallConvNet(width=8), ProjectionHead(128, 32, 16))
    views = torch.randn(8, 3, 32, 32)
    grads = {}
    for stop_gradient in (True, False):
        objective = SimSiam(16, stop_gradient=stop_gradient)
        torch.manual_seed(1)
        objective.predictor = SimSiam(16).predictor  # the same predictor for both arms
        model.zero_grad()
        loss, z1, z2 = objective(model, views)
        _, z = model(views)
        p = objective.predictor(z)
        assert loss.item() == pytest.approx(simsiam_oracle(p[:4], p[4:], z[:4], z[4:]), rel=1e-5)
        loss.backward()
        grads[stop_gradient] = model.head.mlp[-1].weight.grad.clone()
    # Without the stop-gradient the targets are differentiated too: the head receives a different gradient.
    assert not torch.allclose(grads[True], grads[False])


def test_simsiam_without_stop_gradient_may_collapse_in_the_loop():
    from crl_helpers.train import check_healthy, CPU

    row = {"epoch": 1, "embedding_std": 0.0}
    model = nn.Linear(2, 2)
    check_healthy(model, row, CPU, halt_on_collapse=SimSiam(8, stop_gradient=False).halt_on_collapse)
    with pytest.raises(Exception, match="collapsed"):
        check_healthy(model, row, CPU, halt_on_collapse=SimSiam(8).halt_on_collapse)


# ----------------------------------------------------------- debiased objective
def test_debiased_objective_uses_the_class_prior():
    from crl_helpers.models import ProjectionHead, SimCLRModel, SmallConvNet

    torch.manual_seed(0)
    model = SimCLRModel(SmallConvNet(width=8), ProjectionHead(128, 32, 16)).eval()
    objective = build_objective("debiased", model, n_images=64, batch_size=8, temperature=0.3, n_classes=4)
    assert isinstance(objective, Debiased) and objective.tau_plus == 0.25
    views = torch.randn(8, 3, 32, 32)
    loss, _, _ = objective(model, views)
    _, z = model(views)
    torch.testing.assert_close(loss, debiased_nt_xent(z[:4], z[4:], 0.3, tau_plus=0.25))


# ------------------------------------------------------------- MoCo queue length
def test_moco_queue_shorter_than_the_batch_keeps_the_newest_keys():
    from crl_helpers.models import ProjectionHead, SimCLRModel, SmallConvNet

    model = SimCLRModel(SmallConvNet(width=8), ProjectionHead(128, 32, 16))
    objective = build_objective("moco", model, n_images=64, batch_size=8, temperature=0.2,
                                config=ObjectiveConfig(queue_size=4))
    assert isinstance(objective, MoCo) and objective.queue.size == 4 and objective.negatives_per_query(8) == 4
    views = torch.randn(16, 3, 32, 32)
    _, _, key = objective(model, views)
    torch.testing.assert_close(objective.queue.ordered(), F.normalize(key[-4:], dim=1))
