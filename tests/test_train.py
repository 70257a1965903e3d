import copy
import csv
import json
import math
from dataclasses import replace

import pytest
import torch

from crl_helpers.report import train_and_evaluate
from crl_helpers.train import CPU, PRESETS, config_from_dict, cosine_schedule, train


def test_cosine_schedule_against_closed_form():
    base, epochs, steps, warm = 0.4, 3, 4, 1
    s = cosine_schedule(base, epochs, steps, warmup_epochs=warm)
    assert s.shape == (12,)
    for i in range(4):  # linear warm-up reaching base at the end of the first epoch
        assert s[i] == pytest.approx(base * (i + 1) / 4)
    for j in range(8):  # cosine from base down towards 0 over the remaining 8 steps
        assert s[4 + j] == pytest.approx(0.5 * base * (1 + math.cos(math.pi * j / 8)))


def test_cosine_schedule_without_warmup_starts_at_base():
    s = cosine_schedule(1.0, 2, 5)
    assert s[0] == pytest.approx(1.0) and all(a >= b for a, b in zip(s, s[1:]))


@pytest.mark.parametrize("field, value, fragment", [
    ("epochs", 0, "epochs=0"), ("batch_size", 1, "batch_size=1"), ("temperature", 0.0, "temperature=0.0"),
    ("temperature", float("nan"), "temperature=nan"), ("dataset", "mnist", "dataset='mnist'"),
    ("encoder", "vit", "encoder='vit'"), ("lr", -1.0, "lr=-1.0"), ("optimizer", "lars", "optimizer='lars'"),
    ("view_size", 7, "view_size=7"), ("view_size", 24.0, "view_size=24.0"), ("view_size", True, "view_size=True"),
])
def test_config_validation_names_the_value(field, value, fragment):
    # Python words: the field as TrainConfig spells it (the CLI turns them into flags); a wrong type is a TypeError.
    with pytest.raises((ValueError, TypeError), match="TrainConfig." + fragment.replace("(", r"\(").replace(".", r"\.")):
        replace(CPU, **{field: value})


def test_config_bounds_are_stated_in_python_words():
    with pytest.raises(ValueError, match=r"^TrainConfig\.lr=500\.0 must be <= 100; try 5e-3"):
        replace(CPU, lr=500.0)
    with pytest.raises(ValueError, match=r"^TrainConfig\.epochs=0 must be an int in \[1, 100000\]$"):
        replace(CPU, epochs=0)
    with pytest.raises(ValueError, match=r"TrainConfig\.temperature=1e-09 is below 1e-08"):  # the losses' own rule
        replace(CPU, temperature=1e-9)


def test_views_are_made_at_view_size_and_evaluation_reads_full_images():
    from crl_helpers.distributed import DistributedContext
    from crl_helpers.train import build_run, load_data
    from crl_helpers.views_batched import ViewAugmenter

    config = replace(CPU, view_size=16, n_train=64, n_test=32, batch_size=32, epochs=1, out_dir=None, progress=False)
    train_data, _ = load_data(config)
    run = build_run(config, DistributedContext(), train_data)
    assert run.views.image_size == 16 and train_data.image_size == 32
    views = ViewAugmenter(run.views, "cpu").manual_seed(0)(train_data.x[:4])
    assert views.shape == (8, 3, 16, 16)
    assert build_run(replace(config, view_size=None), DistributedContext(), train_data).views.image_size == 32
    sides = []  # the side of every batch the encoder sees, in training and then in evaluation

    def watch(model, inputs):
        sides.append(inputs[0].shape[-1])

    def hook_once(epoch, model, row):
        if epoch == 1:
            model.encoder.register_forward_pre_hook(watch)

    train_and_evaluate(replace(config, epochs=2), callback=hook_once)  # hooked after epoch 1: epoch 2, evaluation
    assert sides[0] == 16 and set(sides[:2]) == {16}, sides  # epoch 2 trains on 16-pixel views
    assert sides[-1] == 32 and 32 in sides, sides  # the kNN and the probe read whole 32-pixel images


def test_config_roundtrip_through_dict():
    from dataclasses import asdict

    d = json.loads(json.dumps(asdict(PRESETS["cifar10-gpu"])))  # as stored in a checkpoint
    assert config_from_dict(d) == PRESETS["cifar10-gpu"]


def test_tiny_run_writes_every_output(tmp_path):
    cfg = replace(CPU, epochs=2, n_train=96, n_test=40, batch_size=32, knn_k=10, linear_epochs=2,
                  out_dir=str(tmp_path / "run"), progress=False, umap=False, knn_every=1)
    seen = []
    result = train_and_evaluate(cfg, callback=lambda epoch, model, row: seen.append((epoch, row["loss"])))
    out = tmp_path / "run"
    for name in ("checkpoint.pt", "history.csv", "metrics.json", "curves.png"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("knn_acc", "knn_acc_random_init", "linear_acc", "epochs", "train_seconds",
                "images_per_second", "device"):
        assert key in metrics, key
    assert metrics["epochs"] == 2 and metrics["device"] == "cpu"
    assert 0.0 <= metrics["knn_acc"] <= 1.0
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert seen == [(1, result.history[0]["loss"]), (2, result.history[1]["loss"])]
    assert "knn_acc" in result.history[0]  # knn_every=1, not on the last epoch (the final eval covers it)
    # 96 images // 32 = 3 steps per epoch; every loss finite and below the chance level log(2B - 1)
    assert all(math.isfinite(r["loss"]) and r["loss"] < math.log(63) + 0.5 for r in result.history)


def test_training_lowers_the_loss():
    cfg = replace(CPU, epochs=4, n_train=256, n_test=32, batch_size=64, out_dir=None, progress=False)
    result = train(cfg)
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < losses[0] - 0.1, losses


def test_random_init_baseline_uses_the_untrained_weights():
    # Oracle: rebuild the untrained encoder from the seed, embed and classify independently of train().
    from crl_helpers.evaluate import extract_embeddings, knn_accuracy
    from crl_helpers.train import build_model, load_data

    cfg = replace(CPU, epochs=2, n_train=128, n_test=64, batch_size=64, knn_k=5, linear_epochs=1,
                  out_dir=None, progress=False, umap=False)
    metrics = train_and_evaluate(cfg).metrics
    torch.manual_seed(cfg.seed)
    fresh = build_model(cfg).encoder
    train_data, test_data = load_data(cfg)
    mean, std = train_data.channel_stats()
    v_train = extract_embeddings(fresh, train_data.x, mean=mean, std=std)
    v_test = extract_embeddings(fresh, test_data.x, mean=mean, std=std)
    expected = knn_accuracy(v_train, train_data.y, v_test, test_data.y, k=5, temperature=cfg.knn_temperature)
    assert metrics["knn_acc_random_init"] == pytest.approx(expected)


@pytest.mark.slow
def test_main_job_meets_its_target(tmp_path):
    """The default `crl train` job: kNN >= 0.85 and >= 0.40 above random init (seed 0 measured 0.859 and 0.230)."""
    metrics = train_and_evaluate(replace(CPU, out_dir=str(tmp_path / "run"), progress=False)).metrics
    assert metrics["knn_acc"] >= 0.85, metrics
    assert metrics["knn_acc"] - metrics["knn_acc_random_init"] >= 0.40, metrics
    assert (tmp_path / "run" / "curves.png").exists() and not (tmp_path / "run" / "umap.png").exists()


# ------------------------------------------------------------------ the step object
def _sgd_config():
    # fp32: "auto" is bf16 on a CPU with bf16 units, and the oracle step is written in float32.
    return replace(CPU, optimizer="sgd", lr=0.1, weight_decay=5e-4, batch_size=8, precision="fp32")


def test_simclr_step_is_the_textbook_step():
    # Oracle: the step written out by hand (forward, NT-Xent, zero_grad, backward, SGD step) on a twin model.
    from crl_helpers.losses import nt_xent
    from crl_helpers.objectives import SimCLR
    from crl_helpers.train import TrainStep, build_model, build_optimizer

    config, cpu = _sgd_config(), torch.device("cpu")
    torch.manual_seed(0)
    model = build_model(config)
    twin = copy.deepcopy(model).to(memory_format=torch.channels_last)  # the layout TrainStep uses on the CPU
    step = TrainStep(model, SimCLR(config.temperature), build_optimizer(model, config, cpu), config, cpu)
    optimizer = build_optimizer(twin, config, cpu)
    g = torch.Generator().manual_seed(1)
    losses = []
    for lr in (0.1, 0.05):
        x12 = torch.randn(16, 3, 32, 32, generator=g)  # (2B, 3, 32, 32) = [view 1; view 2]
        z1, z2 = step(x12, lr=lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        _, z = twin(x12.contiguous(memory_format=torch.channels_last))
        loss = nt_xent(*z.chunk(2), config.temperature)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        torch.testing.assert_close(torch.cat([z1, z2]), z.detach(), rtol=1e-5, atol=1e-6)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert step.sums[0].item() == pytest.approx(sum(losses), rel=1e-5)
    assert 0.0 <= step.sums[1].item() <= 2.0  # two accuracies in [0, 1]


def test_a_training_step_reads_no_value_back_to_the_host():
    # On a GPU, reading a tensor's value (.item(), float(), bool(), .tolist()) makes the CPU wait for the
    # kernels queued before it. Every such read goes through aten::_local_scalar_dense (or nonzero's sizing),
    # which the profiler records on the CPU too: none may happen in the views + step of the training loop.
    from torch.profiler import ProfilerActivity, profile

    from crl_helpers.objectives import SimCLR
    from crl_helpers.train import TrainStep, build_model, build_optimizer
    from crl_helpers.views_batched import ViewAugmenter

    config, cpu = _sgd_config(), torch.device("cpu")
    model = build_model(config)
    step = TrainStep(model, SimCLR(config.temperature), build_optimizer(model, config, cpu), config, cpu)
    augment = ViewAugmenter(replace(config.views, blur_p=0.5), cpu)
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    step(augment(x), lr=0.1)  # warm-up: the optimizer's state
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for lr in (0.1, 0.09):
            with torch.no_grad():
                x12 = augment(x)
            step(x12, lr=lr)
    names = {event.name for event in prof.events()}
    assert "crl.views" in names and "crl.forward_loss" in names  # the profile saw the step
    reads = names & {"aten::_local_scalar_dense", "aten::item", "aten::is_nonzero", "aten::nonzero"}
    assert not reads, f"host reads in the training step: {sorted(reads)}"


@pytest.mark.parametrize("amp", [None, torch.bfloat16])
def test_the_objective_compiles_as_one_graph_and_computes_the_same(amp):
    # TrainStep compiles model + loss together on CUDA. Tracing is the same on any device, so a full-graph
    # capture here (aot_eager: dynamo + autograd tracing, no code generation) shows there is no graph break;
    # a break would raise. bf16 autocast runs on the CPU too.
    from crl_helpers.objectives import SimCLR
    from crl_helpers.train import TrainStep, build_model, build_optimizer

    config = _sgd_config()
    torch.manual_seed(0)
    model = build_model(config)
    twin = copy.deepcopy(model)
    x12 = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    cpu = torch.device("cpu")

    def step_forward(net):  # what TrainStep compiles on CUDA: the objective's forward and the accuracy
        objective = SimCLR(config.temperature)
        forward = TrainStep(net, objective, build_optimizer(net, config, cpu), config, cpu).forward
        objective.amp = amp
        return forward

    compiled = torch.compile(step_forward(model), backend="aot_eager", fullgraph=True)
    loss, accuracy, z1, z2 = compiled(x12, None, None)
    loss.backward()
    ref_loss, ref_accuracy, _, _ = step_forward(twin)(x12, None, None)
    ref_loss.backward()
    assert loss.dtype == torch.float32 and z1.shape == (8, config.head_out_dim) and not z1.requires_grad
    torch.testing.assert_close(loss, ref_loss, rtol=1e-4, atol=1e-5)
    assert accuracy.item() == pytest.approx(ref_accuracy.item())
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------------ precision and stage times
@pytest.mark.parametrize("flags, native, expected", [
    ("flags : fpu avx2 avx512f", False, None),  # an AVX2/AVX512 CPU without bf16 units: float32
    ("flags : fpu avx2 avx512f avx512_bf16", True, torch.bfloat16),
    ("flags : fpu amx_bf16 amx_tile", True, torch.bfloat16),
])
def test_auto_precision_uses_bf16_only_where_the_cpu_has_bf16_units(tmp_path, monkeypatch, flags, native, expected):
    import builtins

    from crl_helpers import device

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor : 0\n{flags}\n")
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: real_open(cpuinfo if f == "/proc/cpuinfo" else f, *a, **k))
    device.cpu_has_native_bf16.cache_clear()
    try:
        cpu = torch.device("cpu")
        assert device.cpu_has_native_bf16() is native
        assert device.autocast_dtype(cpu, "auto") == expected
        assert device.autocast_dtype(cpu, "fp32") is None and device.autocast_dtype(cpu, "bf16") == torch.bfloat16
        assert device.autocast_dtype(torch.device("cuda"), "auto") == torch.bfloat16  # CUDA: bf16 whatever the CPU
        line = device.describe_precision(cpu, "auto")
        assert ("bf16 autocast" in line) is native and ("no bfloat16 units" in line) is (not native)
        if not native:
            assert "emulated and much slower" in device.describe_precision(cpu, "bf16")
    finally:
        device.cpu_has_native_bf16.cache_clear()


def test_precision_reaches_the_step_and_bf16_trains():
    from crl_helpers.objectives import SimCLR
    from crl_helpers.train import TrainStep, build_model, build_optimizer

    cpu = torch.device("cpu")
    for precision, amp in (("fp32", None), ("bf16", torch.bfloat16)):
        config = replace(CPU, batch_size=4, precision=precision)
        model = build_model(config)
        step = TrainStep(model, SimCLR(0.2), build_optimizer(model, config, cpu), config, cpu)
        assert step.objective.amp == amp and step.channels_last
        z1, _ = step(torch.randn(8, 3, 32, 32), lr=1e-3)
        assert z1.dtype == torch.float32 and torch.isfinite(step.sums).all()
    with pytest.raises(ValueError, match="precision='fp16' is unknown"):
        replace(CPU, precision="fp16")
