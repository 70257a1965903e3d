"""CUDA tests of the GPU training path (issue 4); every test is skipped on a machine without CUDA.

References are the CPU path, itself tested against independent oracles in test_views_batched.py and
test_evaluate.py: the GPU must compute the same function.
"""
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from crl_helpers.data import load_dataset
from crl_helpers.evaluate import extract_embeddings, knn_accuracy, knn_predict
from crl_helpers.losses import nt_xent
from crl_helpers.models import SmallConvNet
from crl_helpers.train import CIFAR10_GPU, CPU, build_model, build_optimizer, train
from crl_helpers.views_batched import augment_batch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
ROOT = Path(__file__).resolve().parents[1]
TINY = replace(CPU, device="cuda", epochs=1, n_train=256, n_test=64, batch_size=64, out_dir=None, progress=False)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return load_dataset("shapes", "train", n=n, seed=seed).x  # uint8 (n, 3, 32, 32)


def test_augment_batch_on_cuda_equals_cpu_for_the_same_generator_seed():
    x = _images(256)
    views = replace(CIFAR10_GPU.views, mean=(0.5, 0.45, 0.4), std=(0.25, 0.24, 0.26), blur_p=0.5)
    cpu = augment_batch(x, views, torch.Generator().manual_seed(7))
    gpu = augment_batch(x.cuda(), views, torch.Generator().manual_seed(7))  # parameters drawn on the CPU
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-3, rtol=0)


def test_a_bf16_step_on_cuda_gives_a_finite_float32_loss():
    config = replace(CIFAR10_GPU, encoder="convnet")
    model = build_model(config).cuda().to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config, torch.device("cuda"))
    assert optimizer.defaults.get("fused") is True
    x = _images(128).cuda()
    for _ in range(3):
        x12 = torch.cat([augment_batch(x[:64], config.views), augment_batch(x[:64], config.views)])  # (128, 3, 32, 32)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            v, z = model(x12.contiguous(memory_format=torch.channels_last))
        assert v.dtype == torch.bfloat16  # autocast really ran the encoder in bf16
        z1, z2 = z.float().chunk(2)
        loss = nt_xent(z1, z2, config.temperature, validate=False)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("compile", [False, True])
def test_train_on_cuda_runs_channels_last_and_compiled(compile):
    result = train(replace(TINY, epochs=2, compile=compile))
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in result.history)
    conv = result.model.encoder.features[0]
    assert conv.weight.device.type == "cuda" and conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_knn_on_cuda_equals_knn_on_cpu():
    g = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(10, 64, generator=g)
    train_y, test_y = torch.randint(0, 10, (3000,), generator=g), torch.randint(0, 10, (700,), generator=g)
    train_v = centres[train_y] + 2 * torch.randn(3000, 64, generator=g)  # (3000, 64), overlapping clusters
    test_v = centres[test_y] + 2 * torch.randn(700, 64, generator=g)
    for kw in (dict(k=200, temperature=0.1, weighting="exp"), dict(k=10, weighting="majority")):
        cpu = knn_predict(train_v, train_y, test_v, chunk=256, **kw)
        gpu = knn_predict(train_v.cuda(), train_y.cuda(), test_v.cuda(), chunk=256, **kw)
        assert gpu.device.type == "cuda"
        assert torch.equal(gpu.cpu(), cpu)
        accuracy = knn_accuracy(train_v.cuda(), train_y.cuda(), test_v.cuda(), test_y.cuda(), **kw)
        assert accuracy == pytest.approx((cpu == test_y).float().mean().item())


def test_extract_embeddings_can_keep_features_on_cuda():
    encoder = SmallConvNet(width=8)
    x = _images(100)
    on_cpu = extract_embeddings(encoder, x, batch_size=32, device="cpu")
    on_gpu = extract_embeddings(encoder, x.cuda(), batch_size=32, device="cuda", to_cpu=False)
    assert on_gpu.device.type == "cuda" and next(encoder.parameters()).device.type == "cpu"
    # cuDNN may use TF32 for convolutions: agreement to ~1e-3 relative, not bit for bit
    assert (on_gpu.cpu() - on_cpu).norm() / on_cpu.norm() < 5e-3


def test_throughput_benchmark_runs_on_cuda():
    proc = subprocess.run(
        [sys.executable, "benchmarks/throughput.py", "--device", "cuda", "--dataset", "shapes", "--n-images", "512",
         "--encoder", "convnet", "--batch-size", "64", "--steps", "3", "--warmup", "1", "--workers", "2",
         "--no-compile"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "bfloat16" in proc.stdout and "channels_last on" in proc.stdout and "ratio b/a" in proc.stdout


@pytest.mark.parametrize("compile", [False, True])
def test_a_training_step_as_train_takes_it_makes_no_host_sync(compile):
    # train()'s loop body (views drawn and made on the device, bf16 forward, float32 loss, fused step, running
    # sums): a sync per step would let the GPU idle while the CPU queues the next views.
    from crl_helpers.objectives import SimCLR
    from crl_helpers.train import TrainStep
    from crl_helpers.views_batched import ViewAugmenter

    config = replace(CIFAR10_GPU, encoder="convnet", compile=compile)
    device = torch.device("cuda")
    model = build_model(config).to(device)
    step = TrainStep(model, SimCLR(config.temperature), build_optimizer(model, config, device), config, device)
    augment = ViewAugmenter(config.views, device, compile=compile, channels_last=True)
    x = _images(64).cuda()
    for _ in range(2):  # warm-up: compiling, optimizer state, cuDNN plans
        step(augment(x), lr=0.1)
    assert step.compiled is compile and augment.compiled is compile  # no silent fall-back to eager
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for lr in (0.1, 0.09):
            with torch.no_grad():
                x12 = augment(x)
            step(x12, lr=lr)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(step.sums).all()


def test_compiled_views_on_cuda_equal_eager_views():
    from crl_helpers.views_batched import ViewAugmenter

    views = replace(CIFAR10_GPU.views, mean=(0.5, 0.45, 0.4), std=(0.25, 0.24, 0.26), blur_p=0.5)
    x = _images(256).cuda()
    compiled = ViewAugmenter(views, "cuda", seed=3, compile=True, channels_last=True)
    out = compiled(x)
    assert compiled.compiled and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ViewAugmenter(views, "cuda", seed=3)(x), atol=1e-4, rtol=0)


def test_the_benchmark_names_where_a_step_syncs():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import throughput
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    class SyncingStep:
        device = torch.device("cuda")

        def __call__(self, x12):
            return float(x12.sum())  # a host sync

    where = throughput.first_host_sync(SyncingStep(), iter([torch.ones(4, device="cuda")]))
    assert where is not None and "float(x12.sum())" in where
