"""Tests for crl_helpers.distributed: 2 CPU processes (gloo) against single-process float64 oracles.

The process-group work runs ONCE per module (a fixture spawns 2 ranks that run every scenario and
save what they saw); each test then checks one scenario against an oracle computed here, in one
process, with a per-anchor loop. The models in the equivalence test have no BatchNorm on purpose:
per-rank BN normalises with each rank's own batch statistics, so its forward (and gradient) genuinely
differs from global-batch BN; that is why training converts to SyncBatchNorm on CUDA, and PyTorch's
SyncBatchNorm does not run on the CPU.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from crl_helpers.distributed import (
    all_reduce_mean,
    gather_with_grad,
    is_distributed,
    is_main_process,
    nt_xent_distributed,
    setup_distributed,
)
from crl_helpers.losses import nt_xent, view_logits
from oracles import nt_xent_per_anchor

REPO = Path(__file__).resolve().parents[1]
WORLD_SIZE = 2
N_LOCAL = 3  # images per rank
TEMPERATURE = 0.5


# ---------------------------------------------------------------- shared, deterministic inputs
def _rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _gather_input(rank: int) -> torch.Tensor:
    return _rand(N_LOCAL, 4, seed=100 + rank)  # (n, d)


def _gather_weights(rank: int) -> torch.Tensor:
    return _rand(WORLD_SIZE * N_LOCAL, 4, seed=200 + rank)  # (W*n, d)


def _gather_loss(rank: int, gathered: torch.Tensor) -> torch.Tensor:
    # Nonlinear and different on every rank, so each rank's gradient reaches every slice differently.
    return ((gathered * _gather_weights(rank)).sum(dim=1) ** 2).sum() * (rank + 1)


def _global_views() -> tuple[torch.Tensor, torch.Tensor]:
    n = WORLD_SIZE * N_LOCAL
    return _rand(n, 6, seed=1), _rand(n, 6, seed=2)  # x1, x2: (N_global, 6)


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5)).double()  # no BatchNorm (see module doc)


def _rank_slice(rank: int) -> slice:
    return slice(rank * N_LOCAL, (rank + 1) * N_LOCAL)


# ---------------------------------------------------------------- what each rank runs
def _worker(rank: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ["LOCAL_RANK"] = str(rank)
    # Rendezvous through a file in the test's folder: no port to choose, none to collide with.
    init_method = (Path(out_dir) / "rendezvous").as_uri()
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=WORLD_SIZE)
    seen: dict = {"is_distributed": is_distributed(), "is_main": is_main_process()}
    context = setup_distributed("cpu")  # reuses the group, must not own it
    seen["context"] = (context.rank, context.world_size, context.owns_group)

    # gather_with_grad
    z = _gather_input(rank).requires_grad_()
    gathered = gather_with_grad(z)
    _gather_loss(rank, gathered).backward()
    seen["gathered"], seen["gather_grad"] = gathered.detach(), z.grad

    # nt_xent_distributed inside DDP, one step
    x1, x2 = _global_views()
    model = nn.parallel.DistributedDataParallel(_tiny_model())
    z = model(torch.cat([x1[_rank_slice(rank)], x2[_rank_slice(rank)]]))  # (2n, 5)
    z1, z2 = z.chunk(2)
    loss = nt_xent_distributed(z1, z2, TEMPERATURE)
    loss.backward()
    seen["loss"], seen["loss_mean"] = loss.item(), all_reduce_mean(loss.detach()).item()
    seen["grads"] = {name: p.grad.clone() for name, p in model.module.named_parameters()}
    seen["mean_of_rank"] = all_reduce_mean(float(rank))

    # Bad inputs must raise on EVERY rank (a lone raise would leave the other rank hanging).
    errors = []
    n = N_LOCAL + rank  # ranks disagree on N
    try:
        nt_xent_distributed(_rand(n, 5, seed=3), _rand(n, 5, seed=4), TEMPERATURE)
    except ValueError as err:
        errors.append(str(err))
    z_nan = _rand(N_LOCAL, 5, seed=5)
    if rank == 1:
        z_nan[0, 0] = float("nan")
    try:
        nt_xent_distributed(z_nan, _rand(N_LOCAL, 5, seed=6), TEMPERATURE)
    except ValueError as err:
        errors.append(str(err))
    seen["errors"] = errors

    # train(): every rank trains, rank 0 alone writes.
    import crl_helpers.train as train_module

    writes = []
    real_save = train_module.save_checkpoint
    train_module.save_checkpoint = lambda state, path: (writes.append(state["epoch"]), real_save(state, path))
    config = replace(train_module.CPU, n_train=64, n_test=16, batch_size=32, epochs=2, progress=False,
                     out_dir=str(Path(out_dir) / "run"), device="cpu")
    result = train_module.train(config)
    seen["train_writes"], seen["train_losses"] = writes, [row["loss"] for row in result.history]
    try:
        train_module.train(replace(config, batch_size=31))
    except ValueError as err:
        seen["odd_batch_error"] = str(err)
    torch.save(seen, Path(out_dir) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(out_dir),), nprocs=WORLD_SIZE, join=True)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]


# ---------------------------------------------------------------- tests
def test_single_process_is_the_identity():
    context = setup_distributed("cpu")
    assert (context.world_size, context.rank, context.owns_group, context.enabled) == (1, 0, False, False)
    z = torch.randn(3, 2)
    assert gather_with_grad(z) is z
    assert all_reduce_mean(1.5) == 1.5
    x1, x2 = _global_views()
    torch.testing.assert_close(nt_xent_distributed(x1, x2, TEMPERATURE),
                               nt_xent_per_anchor(x1, x2, TEMPERATURE).mean(), rtol=1e-10, atol=0)


def test_setup_refuses_a_partial_torchrun_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ValueError, match="RANK is not.*torchrun"):
        setup_distributed("cpu")
    monkeypatch.setenv("RANK", "two")
    with pytest.raises(ValueError, match="RANK='two' is not an integer"):
        setup_distributed("cpu")


def test_ranks_see_the_group(ranks):
    for rank, seen in enumerate(ranks):
        assert seen["is_distributed"] is True
        assert seen["is_main"] is (rank == 0)
        assert seen["context"] == (rank, WORLD_SIZE, False)
        assert seen["mean_of_rank"] == pytest.approx(0.5)


def test_gather_with_grad_forward_and_gradient_match_one_process(ranks):
    z = torch.cat([_gather_input(r) for r in range(WORLD_SIZE)]).requires_grad_()  # (W*n, d)
    total = sum(_gather_loss(r, z) for r in range(WORLD_SIZE))  # what all ranks' losses add up to
    total.backward()
    for rank, seen in enumerate(ranks):
        torch.testing.assert_close(seen["gathered"], z.detach(), rtol=0, atol=0)
        # Each rank's slice of d(sum_r L_r)/dz: its own loss's gradient alone would miss the others'.
        torch.testing.assert_close(seen["gather_grad"], z.grad[_rank_slice(rank)], rtol=1e-12, atol=0)


def test_loss_and_ddp_gradients_equal_single_process_global_batch(ranks):
    x1, x2 = _global_views()
    model = _tiny_model()
    z1, z2 = model(torch.cat([x1, x2])).chunk(2)  # (N_global, 5) each
    per_anchor = nt_xent_per_anchor(z1, z2, TEMPERATURE)  # (2 N_global,)
    loss = per_anchor.mean()
    loss.backward()
    n_global = WORLD_SIZE * N_LOCAL
    for rank, seen in enumerate(ranks):
        # Each rank's loss: the mean over ITS anchors (its rows of z1 and of z2) against all keys.
        mine = torch.cat([per_anchor[_rank_slice(rank)], per_anchor[n_global:][_rank_slice(rank)]])
        assert seen["loss"] == pytest.approx(mine.mean().item(), rel=1e-5)
        assert seen["loss_mean"] == pytest.approx(loss.item(), rel=1e-5)
        for name, p in model.named_parameters():
            torch.testing.assert_close(seen["grads"][name], p.grad, rtol=1e-5, atol=1e-12, msg=name)


def test_bad_input_raises_on_every_rank(ranks):
    for seen in ranks:
        shape_error, nan_error = seen["errors"]
        assert "same local batch" in shape_error and "(3, 5), (4, 5)" in shape_error
        assert "NaN or inf on rank(s) [1]" in nan_error


def test_train_splits_batches_and_only_rank_0_writes(ranks):
    assert ranks[0]["train_writes"] == [1, 2]
    assert ranks[1]["train_writes"] == []
    # Metrics are reduced over ranks, so both ranks log the same numbers.
    assert ranks[0]["train_losses"] == pytest.approx(ranks[1]["train_losses"], rel=1e-6)
    for seen in ranks:
        assert "TrainConfig.batch_size=31" in seen["odd_batch_error"]
        assert "use TrainConfig.batch_size=30" in seen["odd_batch_error"]


def test_torchrun_cli_trains_two_epochs(tmp_path):
    out = tmp_path / "run"
    # --standalone: a single-node rendezvous on a port that torchrun picks itself.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "crl_helpers.cli", "train", "--epochs", "2", "--n-train", "64", "--n-test", "16", "--batch-size", "32",
           "--no-umap", "--quiet", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("kNN accuracy (trained encoder)") == 1  # rank 0 alone prints the summary
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "curves.png", "history.csv", "metrics.json"]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and [row["epoch"] for row in state["history"]] == [1, 2]
    with open(out / "history.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [1, 2]


def test_hostile_float16_floor_applies_to_the_distributed_loss():
    z = torch.randn(4, 8).half()
    with pytest.raises(ValueError, match=r"temperature=1e-05 is below 3.05e-05.*float32 or bfloat16"):
        nt_xent_distributed(z, z.flip(0), 1e-5)


# ---------------------------------------------------------------- keys and offset: the lines each rank runs
def test_view_logits_with_gathered_keys_is_each_ranks_share_of_the_global_loss():
    # Two simulated ranks of N=3 images: rank r's keys are every rank's [z1_r; z2_r], in rank order.
    g = torch.Generator().manual_seed(5)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)  # the global batch
    per_anchor = nt_xent_per_anchor(z1, z2, 0.3)  # (2 * 6,)
    blocks = [(z1[3 * r:3 * r + 3], z2[3 * r:3 * r + 3]) for r in range(2)]
    keys = torch.cat([torch.cat(block) for block in blocks])  # (12, 4)
    for r, (a, b) in enumerate(blocks):
        mine = torch.cat([per_anchor[3 * r:3 * r + 3], per_anchor[6 + 3 * r:6 + 3 * r + 3]])  # rank r's anchors
        logits, targets = view_logits(a, b, 0.3, keys=keys, offset=6 * r)
        assert logits.shape == (6, 12) and targets.tolist() == [6 * r + t for t in (3, 4, 5, 0, 1, 2)]
        assert torch.isinf(logits[torch.arange(6), 6 * r + torch.arange(6)]).all()  # self-similarity masked
        loss = torch.nn.functional.cross_entropy(logits, targets)
        assert loss.item() == pytest.approx(mine.mean().item(), rel=1e-5)


def test_view_logits_keys_default_is_the_batch_itself():
    g = torch.Generator().manual_seed(6)
    z1, z2 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    for got, plain in zip(view_logits(z1, z2, 0.2, keys=torch.cat([z1, z2]), offset=0), view_logits(z1, z2, 0.2)):
        assert torch.equal(got, plain)
    assert torch.equal(nt_xent_distributed(z1, z2, 0.2), nt_xent(z1, z2, 0.2))  # one process: the same loss
