"""Throughput of SimCLR's input pipeline on one card, in source images per second.

SimCLR (Chen et al. 2020) makes two augmented views ``x1, x2`` of every image ``x``;
a *source image* is one image yielding those two views, so a step of ``batch_size``
source images runs the encoder on ``2 * batch_size`` views. Three pipelines feed the
same SimCLR step (``crl_helpers.train``'s: bf16 autocast on CUDA with the loss in
float32, channels_last, optional ``torch.compile``, fused optimizer):

(a) classic: a torchvision-style Dataset of PIL images with
    ``crl_helpers.views.MultiViewTransform`` in a ``DataLoader`` with one worker per
    CPU core (``pin_memory``, ``persistent_workers``), then the step on the device;
(b) crl_helpers: the dataset on the device as uint8, both views made there by
    ``crl_helpers.views_batched.ViewAugmenter`` (independent parameters per sample, drawn on the
    device, one compiled graph when ``config.compile``), what ``train`` does;
(c) the step alone, on views augmented beforehand and kept on the device: the
    ceiling that (b) approaches when augmentation is free.

Variant (d) is (b) with the views NOT compiled, to show what compiling them buys; ``--profile``
records where the time of a (b) step goes (``torch.profiler``, per-stage and top kernels).

The targets, on one H100/H200: b >= 3.5 a and b >= 0.9 c. ``--quick`` runs
all three on the CPU with a small ConvNet in seconds (for CI): its figures say
nothing about a GPU.

Usage (from the repository root)::

    python benchmarks/throughput.py --data-root .device-data   # GPU, CIFAR-10 from cifar10_jpeg.npz
    python benchmarks/throughput.py --quick                    # CPU smoke run, a few seconds

Example:
    >>> source_images_per_second(steps=10, batch_size=512, seconds=0.5)
    10240.0
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import torch

# Runnable as `python benchmarks/throughput.py` without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crl_helpers.data import DATASETS, DatasetUnavailable, ImageData, load_dataset  # noqa: E402
from crl_helpers.device import autocast_dtype, pick_device  # noqa: E402
from crl_helpers.models import ENCODERS  # noqa: E402
from crl_helpers.objectives import SimCLR  # noqa: E402
from crl_helpers.train import PRESETS, TrainConfig, TrainStep, build_model, build_optimizer  # noqa: E402
from crl_helpers.views import MultiViewTransform, ViewConfig  # noqa: E402
from crl_helpers.views_batched import ViewAugmenter  # noqa: E402

# Reference figures that come with the targets (not measured here): one H200, 16 CPU cores, ResNet-18
# (CIFAR stem), head 512-1024-128, batch 512, bf16.
ANCHORS = {"a": 9_300, "c_eager": 28_000, "c_compiled": 37_000}
TARGET_B_OVER_A = 3.5
TARGET_B_OVER_C = 0.9
# Steps that --profile records (after two untimed ones).
PROFILE_STEPS = 5
# Views augmented ahead for (c): several batches, so (c) does not time one batch sitting in cache.
POOL_BATCHES = 8
# Settings of --quick: CPU, a small ConvNet, a few steps; seconds in all, for CI.
QUICK = dict(dataset="shapes", n_images=128, encoder="convnet", batch_size=16, steps=2, warmup=0, device="cpu",
             compile=False)


def source_images_per_second(steps: int, batch_size: int, seconds: float) -> float:
    """Source images per second of ``steps`` steps of ``batch_size`` images (each yields 2 views)."""
    return steps * batch_size / seconds


# ------------------------------------------------------------------ the step
def make_step(config: TrainConfig) -> TrainStep:
    """``crl_helpers.train``'s step object, built as ``train(config)`` builds it (same seed, model, optimizer).

    Raises:
        ValueError: a bad device name in ``config``.
    """
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    step = TrainStep(model, SimCLR(config.temperature), build_optimizer(model, config, device), config, device)
    for group in step.optimizer.param_groups:
        # A warm-up-sized rate: speed does not depend on it, and a random-init model stays finite.
        group["lr"] = config.lr * 0.1
    return step


def last_loss(step: TrainStep, steps: int) -> float:
    """Mean loss of the last ``steps`` steps (one host sync), then reset the step's sums."""
    mean = float(step.sums[0]) / max(steps, 1)
    step.sums.zero_()
    return mean


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a host clock read after it is honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: TrainStep, batches: Iterator[torch.Tensor], warmup: int, steps: int) -> dict:
    """Run ``warmup`` untimed then ``steps`` timed steps; seconds between two device syncs.

    Returns:
        ``{"steps", "seconds", "images_per_second", "loss"}``; ``loss`` is the timed steps' mean.
    """
    for _ in range(warmup):
        step(next(batches))
    synchronize(step.device)
    step.sums.zero_()
    t0 = time.perf_counter()
    for _ in range(steps):
        step(next(batches))
    synchronize(step.device)
    seconds = time.perf_counter() - t0
    return {"steps": steps, "seconds": seconds, "loss": last_loss(step, steps),
            "images_per_second": source_images_per_second(steps, step.config.batch_size, seconds)}


def first_host_sync(step: TrainStep, batches: Iterator[torch.Tensor]) -> str | None:
    """Where one batch + step first makes the host wait for the GPU; None if nowhere (or not CUDA).

    A step that syncs lets the GPU idle while the CPU draws the next views, which (b) pays and (c)
    hardly does. The step runs under ``torch.cuda.set_sync_debug_mode("error")``, which raises at
    the first synchronizing call; the innermost frame of crl_helpers or benchmarks/ names it.
    """
    if step.device.type != "cuda":
        return None
    torch.cuda.set_sync_debug_mode("error")
    try:
        step(next(batches))
    except RuntimeError as err:
        frames = traceback.extract_tb(err.__traceback__)
        ours = [f for f in frames if "crl_helpers" in f.filename or "benchmarks" in f.filename] or frames
        return f"{Path(ours[-1].filename).name}:{ours[-1].lineno}: {ours[-1].line}"
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return None


def profile_steps(step: TrainStep, batches: Iterator[torch.Tensor], out_dir: str, device: torch.device,
                  top: int = 12) -> dict:
    """Where a (b) step's time goes: ``torch.profiler`` over ``PROFILE_STEPS`` steps, after two untimed ones.

    Writes the profiler's table (sorted by device time on CUDA, CPU time otherwise) to
    ``out_dir/profile_b.txt``; returns its path, the per-step time of the package's labelled
    stages (``crl.views``, ``crl.forward_loss``, ``crl.backward``, ``crl.optimizer``) and the
    ``top`` entries as short lines.
    """
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for _ in range(2):
        step(next(batches))
    synchronize(device)
    with profile(activities=activities) as prof:
        for _ in range(PROFILE_STEPS):
            step(next(batches))
        synchronize(device)
    averages = prof.key_averages()
    on_device = device.type == "cuda"

    def self_us(event) -> float:  # self time in microseconds, on the device when there is one
        if not on_device:
            return event.self_cpu_time_total
        return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0)

    def total_us(event) -> float:
        if not on_device:
            return event.cpu_time_total
        return getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0.0)

    sort = ("self_cuda_time_total" if on_device else "self_cpu_time_total")
    path = Path(out_dir) / "profile_b.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(averages.table(sort_by=sort, row_limit=40) + "\n")
    stages = {e.key: {"cpu_ms": round(e.cpu_time_total / PROFILE_STEPS / 1e3, 3),
                      "device_ms": round(total_us(e) / PROFILE_STEPS / 1e3, 3) if on_device else None}
              for e in averages if e.key.startswith("crl.")}
    ranked = sorted((e for e in averages if not e.key.startswith(("crl.", "ProfilerStep"))), key=self_us,
                    reverse=True)[:top]
    lines = [f"{self_us(e) / PROFILE_STEPS / 1e3:8.3f} ms/step {e.count / PROFILE_STEPS:6.1f} calls/step  {e.key[:70]}"
             for e in ranked]
    return {"table": str(path), "stages_ms_per_step": stages, "top": lines,
            "clock": "device" if on_device else "cpu", "steps": PROFILE_STEPS}


# --------------------------------------------------------------- (a) classic
class PILMultiViewDataset(torch.utils.data.Dataset):
    """Images served as torchvision's ``CIFAR10`` serves them: a PIL image per index, then ``transform``.

    Args:
        x: uint8 images ``(N, 3, H, W)`` on the CPU.
        transform: e.g. ``MultiViewTransform(config, n_views=2)``.
    """

    def __init__(self, x: torch.Tensor, transform: Callable) -> None:
        self.pixels = x.permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, 3), PIL's layout
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.pixels[i]))


def classic_loader(x: torch.Tensor, views: ViewConfig, batch_size: int, workers: int, device: torch.device,
                   seed: int = 0) -> torch.utils.data.DataLoader:
    """(a): the per-image PIL pipeline in a ``DataLoader`` with ``workers`` processes."""
    return torch.utils.data.DataLoader(
        PILMultiViewDataset(x, MultiViewTransform(views, n_views=2)), batch_size=batch_size, shuffle=True,
        drop_last=True, num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


def classic_batches(loader: torch.utils.data.DataLoader, device: torch.device) -> Iterator[torch.Tensor]:
    """Endless ``x12`` batches from the loader, epoch after epoch, copied to ``device``."""
    while True:
        for x1, x2 in loader:
            # Each pinned view is copied on its own: a cat on the host would make one unpinned (blocking) copy.
            yield torch.cat([x1.to(device, non_blocking=True), x2.to(device, non_blocking=True)])  # (2B, 3, S, S)


# ----------------------------------------------------------- (b) crl_helpers
def package_batches(x_device: torch.Tensor, augment: ViewAugmenter, batch_size: int,
                    generator: torch.Generator) -> Iterator[torch.Tensor]:
    """(b): ``x12`` batches made on ``x_device``'s device by ``augment``, as ``train`` makes them.

    ``generator`` (CPU) draws the epoch's permutation; ``augment`` draws the views on the device.
    """
    n = x_device.shape[0]
    while True:
        order = torch.randperm(n, generator=generator).to(x_device.device)
        for i in range(n // batch_size):
            x = x_device[order[i * batch_size:(i + 1) * batch_size]]  # (B, 3, H, W) uint8
            # Never yield inside no_grad: the caller's step would run with gradients off.
            with torch.no_grad():
                x12 = augment(x)  # (2B, 3, S, S)
            yield x12


def make_augmenter(config: TrainConfig, data: ImageData, device: torch.device, compile: bool | None = None,
                   seed: int | None = None) -> ViewAugmenter:
    """The view maker ``train(config)`` uses on ``device``; ``compile`` overrides its choice (variant d)."""
    on_cuda = device.type == "cuda"
    compile = config.compile and on_cuda if compile is None else compile
    return ViewAugmenter(views_for(config, data), device, compile=compile, channels_last=on_cuda,
                         seed=config.seed if seed is None else seed)


def views_for(config: TrainConfig, data: ImageData) -> ViewConfig:
    """The run's view settings with the data's size and channel statistics, as ``train`` sets them."""
    mean, std = data.channel_stats()
    return replace(config.views, image_size=data.image_size, mean=mean, std=std)


def measure_package_pipeline(config: TrainConfig, data: ImageData, steps: int, warmup: int = 3) -> dict:
    """Time pipeline (b) alone: what one epoch of ``train(config)`` will cost, measured ahead.

    Returns:
        ``{"first_step_seconds", "steps", "seconds", "images_per_second", "loss",
        "seconds_per_step"}``; ``first_step_seconds`` holds ``torch.compile``'s work when
        compiling.
    """
    step = make_step(config)
    generator = torch.Generator().manual_seed(config.seed)
    batches = package_batches(data.x.to(step.device), make_augmenter(config, data, step.device), config.batch_size,
                              generator)
    t0 = time.perf_counter()
    step(next(batches))
    synchronize(step.device)
    first = time.perf_counter() - t0
    result = time_steps(step, batches, max(warmup - 1, 0), steps)
    return {"first_step_seconds": first, "seconds_per_step": result["seconds"] / steps, **result}


# --------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Figures: benchmarks/RESULTS.md")
    p.add_argument("--quick", action="store_true", help="CPU smoke run in seconds (CI); figures mean nothing")
    p.add_argument("--preset", default="cifar10-gpu", help=f"TrainConfig to take the step from: {', '.join(PRESETS)}")
    p.add_argument("--dataset", help=f"one of {', '.join(DATASETS)} (default: cifar10; --quick: shapes)")
    p.add_argument("--data-root", default="data", help="folder holding cifar10_jpeg.npz or the torchvision download")
    p.add_argument("--n-images", type=int, help="use only this many training images (default: all)")
    p.add_argument("--encoder", help=f"one of {', '.join(ENCODERS)} (default: the preset's)")
    p.add_argument("--batch-size", type=int, help="source images per step (default: the preset's, 512)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model on CUDA (default: the preset's)")
    p.add_argument("--device", help="auto (default), cuda, cpu")
    p.add_argument("--steps", type=int, help="timed steps per pipeline (default 300)")
    p.add_argument("--warmup", type=int, help="untimed steps before each timing (default 20)")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="DataLoader workers for (a): all CPU cores")
    p.add_argument("--pipelines", default="abc",
                   help="which of a, b, c to run (default abc); d adds the variant of (b) with eager (uncompiled) views")
    p.add_argument("--profile", metavar="DIR",
                   help=f"also profile {PROFILE_STEPS} steps of (b) and write DIR/profile_b.txt (where the time goes)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    return p


def _settings(args: argparse.Namespace) -> tuple[TrainConfig, dict]:
    if args.preset not in PRESETS:
        raise ValueError(f"--preset {args.preset!r} is unknown; choose one of {', '.join(PRESETS)}")
    quick = QUICK if args.quick else {}
    run = {
        "dataset": args.dataset or quick.get("dataset", "cifar10"),
        "n_images": args.n_images or quick.get("n_images"),
        "steps": args.steps or quick.get("steps", 300),
        "warmup": args.warmup if args.warmup is not None else quick.get("warmup", 20),
        "workers": args.workers,
        "pipelines": args.pipelines,
        "profile": args.profile,
    }
    changes = {"dataset": run["dataset"], "data_root": args.data_root, "out_dir": None, "progress": False}
    for field in ("encoder", "batch_size", "compile", "device"):
        value = getattr(args, field)
        if value is None:
            value = quick.get(field)
        if value is not None:
            changes[field] = value
    config = replace(PRESETS[args.preset], **changes)
    if not set(run["pipelines"]) <= set("abcd") or not run["pipelines"]:
        raise ValueError(f"--pipelines {run['pipelines']!r} must use the letters a, b, c, d (e.g. abc)")
    if run["steps"] < 1 or run["warmup"] < 0 or run["workers"] < 0:
        raise ValueError(f"--steps {run['steps']} must be >= 1, --warmup and --workers >= 0")
    return config, run


def _describe(config: TrainConfig, step: TrainStep, augment: ViewAugmenter, data: ImageData,
              run: dict) -> list[str]:
    device = step.device
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    head = f"{step.model.encoder.feature_dim}-{config.head_hidden_dim}-{config.head_out_dim}"
    amp = autocast_dtype(device)
    return [
        f"device: {card} | torch {torch.__version__} | {os.cpu_count()} CPU cores",
        f"model: {config.encoder}, head {head} | batch {config.batch_size} source images (x2 views) | "
        f"autocast {str(amp).replace('torch.', '') if amp else 'off'} | "
        f"channels_last {'on' if device.type == 'cuda' else 'off'} | "
        f"compile {'on' if step.compiled else 'off'} (views: {'on' if augment.compiled else 'off'}) | "
        f"optimizer {config.optimizer}{' (fused)' if device.type == 'cuda' else ''}",
        f"data: {config.dataset}, {len(data):,} images {data.image_size}x{data.image_size} | "
        f"timed {run['steps']} steps per pipeline after {run['warmup']} warm-up steps",
    ]


def run_benchmark(config: TrainConfig, run: dict, out=print) -> dict:
    """Measure the pipelines named in ``run["pipelines"]`` and return the figures (see module docstring)."""
    data = load_dataset(config.dataset, "train", root=config.data_root, n=run["n_images"], seed=config.seed)
    if config.batch_size > len(data):
        raise ValueError(f"--batch-size {config.batch_size} exceeds the {len(data)} images; use a smaller one")
    step = make_step(config)
    device = step.device
    augment = make_augmenter(config, data, device)
    for line in _describe(config, step, augment, data, run):
        out(line)
    generator = torch.Generator().manual_seed(config.seed)
    x_device = data.x.to(device)  # uint8 (N, 3, H, W): the dataset held on the device, as train() holds it
    package = package_batches(x_device, augment, config.batch_size, generator)
    t0 = time.perf_counter()
    pool = [next(package)]  # compiles the views, when compiling
    synchronize(device)
    results = {"first_views_seconds": time.perf_counter() - t0, "rows": {}, "views_compiled": augment.compiled}
    pool += [next(package) for _ in range(POOL_BATCHES - 1)]  # (2B, 3, S, S) each, for (c)
    synchronize(device)

    t0 = time.perf_counter()
    step(pool[0])  # compiles, when compiling: kept out of every timed window
    synchronize(device)
    results["first_step_seconds"] = time.perf_counter() - t0
    out(f"first views (compile): {results['first_views_seconds']:.1f} s | first step (compile, cuDNN set-up): "
        f"{results['first_step_seconds']:.1f} s | views compiled: {augment.compiled}")
    if device.type == "cuda":
        # A batch stream of its own: an error raised inside a generator ends it.
        audit = package_batches(x_device, augment, config.batch_size, torch.Generator().manual_seed(config.seed + 1))
        try:
            results["first_host_sync"] = first_host_sync(step, audit)
        except Exception as err:  # a diagnostic: it must never cost the run its figures
            results["first_host_sync"] = f"(audit failed: {type(err).__name__}: {err})"
        out(f"host sync in a (b) step: {results['first_host_sync'] or 'none'}")
    rows = results["rows"]
    warmup, steps = run["warmup"], run["steps"]
    if "c" in run["pipelines"]:
        rows["c"] = time_steps(step, itertools.cycle(pool), warmup, steps)
    if "b" in run["pipelines"]:
        rows["b"] = time_steps(step, package, warmup, steps)
    if "d" in run["pipelines"]:
        eager = package_batches(x_device, make_augmenter(config, data, device, compile=False), config.batch_size,
                                generator)
        rows["d"] = time_steps(step, eager, warmup, steps)
    if run.get("profile"):
        results["profile"] = profile_steps(step, package, run["profile"], device)
        out(f"profile of {PROFILE_STEPS} (b) steps, written to {results['profile']['table']}; per step: "
            + ", ".join(f"{k} {v['cpu_ms']:.2f} ms CPU" + (f" / {v['device_ms']:.2f} ms device" if v['device_ms']
                                                          is not None else "")
                        for k, v in sorted(results["profile"]["stages_ms_per_step"].items())))
        out(f"top {len(results['profile']['top'])} by self {results['profile']['clock']} time:")
        for line in results["profile"]["top"]:
            out("  " + line)
    if "a" in run["pipelines"]:
        views = views_for(config, data)
        loader = classic_loader(data.x, views, config.batch_size, run["workers"], device, config.seed)
        # The loader fills its queue (workers x prefetch_factor batches) while the step warms up; drain
        # it in the warm-up too, or the timed window would count batches made before it began.
        in_flight = run["workers"] * (loader.prefetch_factor or 0)
        rows["a"] = time_steps(step, classic_batches(loader, device), warmup + in_flight, steps)
        del loader
        if "c" in run["pipelines"]:
            # (c) once more: two runs of one pipeline show the timer's spread on this card.
            rows["c_repeat"] = time_steps(step, itertools.cycle(pool), warmup, steps)
    results.update(ratios(rows))
    return results


def ratios(rows: dict) -> dict:
    """The targets' ratios of the measured pipelines: b/a, and b/c against the faster of (c)'s runs.

    Args:
        rows: pipeline key ("a", "b", "c", "c_repeat", "d") -> a row with ``images_per_second``.

    Returns:
        ``{"b_over_a", "b_over_c"}``, each only when both of its pipelines were measured.

    Example:
        >>> ratios({"a": {"images_per_second": 100.0}, "b": {"images_per_second": 350.0}})
        {'b_over_a': 3.5}
    """
    out = {}
    if "a" in rows and "b" in rows:
        out["b_over_a"] = rows["b"]["images_per_second"] / rows["a"]["images_per_second"]
    if "b" in rows and "c" in rows:
        # The faster of (c)'s runs: b/c is then the smaller, cautious figure.
        best_c = max(rows[k]["images_per_second"] for k in ("c", "c_repeat") if k in rows)
        out["b_over_c"] = rows["b"]["images_per_second"] / best_c
    return out


def format_table(results: dict, workers: int, quick: bool) -> str:
    """The figures as a fixed-width table, ratios last."""
    labels = {
        "a": f"(a) classic DataLoader, {workers} workers, PIL views",
        "b": "(b) crl_helpers: ViewAugmenter on device",
        "c": "(c) model step only, pre-augmented views",
        "c_repeat": "(c) again, after (a): the timer's spread",
        "d": "(d) variant of (b): views NOT compiled",
    }
    lines = [f"{'pipeline':<46} {'steps':>6} {'seconds':>8} {'source img/s':>13} {'loss':>7}"]
    for key in ("a", "b", "d", "c", "c_repeat"):
        row = results["rows"].get(key)
        if row:
            lines.append(f"{labels[key]:<46} {row['steps']:>6} {row['seconds']:>8.2f} "
                         f"{row['images_per_second']:>13,.0f} {row['loss']:>7.3f}")
    where = "not meaningful in --quick (CPU)" if quick else "on one H100/H200"
    if "b_over_a" in results:
        lines.append(f"ratio b/a = {results['b_over_a']:.2f}  (target >= {TARGET_B_OVER_A}, {where})")
    if "b_over_c" in results:
        lines.append(f"ratio b/c = {results['b_over_c']:.2f}  (target >= {TARGET_B_OVER_C}, {where}; "
                     f"c = the faster of its runs)")
    lines.append(f"anchors (H200, 16 cores, reference figures): a {ANCHORS['a']:,}, "
                 f"c eager {ANCHORS['c_eager']:,}, c compiled {ANCHORS['c_compiled']:,} source img/s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        # Tiny tensors on a shared CI machine: handing them to a second thread costs more than it saves.
        torch.set_num_threads(1)
    try:
        config, run = _settings(args)
        results = run_benchmark(config, run)
    except (ValueError, DatasetUnavailable) as err:
        print(f"throughput: error: {err}", file=sys.stderr)
        return 2
    print()
    print(format_table(results, run["workers"], args.quick))
    if args.json:
        device = pick_device(config.device)
        results.update(
            card=torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
            cpu_cores=os.cpu_count(), torch=torch.__version__, workers=run["workers"],
            batch_size=config.batch_size, encoder=config.encoder, compile=config.compile,
        )
        write_json(args.json, results, "throughput.py", argv, args.quick)
    return 0


def write_json(path: str, results: dict, script: str, argv: list[str] | None, quick: bool) -> None:
    """Write a benchmark's ``results`` to ``path`` with the date, ``quick`` and the command that made them."""
    results.update(date=time.strftime("%Y-%m-%d"), quick=quick,
                   command=" ".join([f"python benchmarks/{script}", *(argv if argv is not None else sys.argv[1:])]))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
