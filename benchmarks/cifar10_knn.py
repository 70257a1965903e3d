"""SimCLR on CIFAR-10 against the clock: kNN accuracy of a ResNet-18 after a training-time budget.

Pretrains with SimCLR (Chen et al. 2020) through ``crl_helpers.train.train`` (the
``cifar10-gpu`` preset: ResNet-18 with the CIFAR stem, head 512-1024-128, batch 512,
bf16 autocast, channels_last, ``torch.compile``, fused SGD) on the CIFAR-10 train
split, then classifies the test split by k-nearest neighbours on the frozen
features ``v`` (Wu et al. 2018): k=200 by cosine similarity with votes weighted
``exp(s / 0.1)``, and k=10 by majority. The target, on one H100/H200:
kNN(k=200) >= 85% within 5 minutes of training.

A cosine schedule needs its length up front, so the script first times ~20 steps
of the same pipeline (a probe), then picks the most whole epochs that fit
``--minutes``. kNN is also measured at a few epochs along the way; those rows are
mid-schedule (the learning rate has not decayed yet): only the last row is a
finished run. Training wall time is the sum of the epochs' times as ``train``
records them (the first epoch includes compiling); evaluation time is not in it.

Usage (from the repository root)::

    python benchmarks/cifar10_knn.py --data-root .device-data --minutes 5   # GPU
    python benchmarks/cifar10_knn.py --quick                                # CPU smoke run, seconds

Example:
    >>> plan_epochs(budget_seconds=300, seconds_per_epoch=1.4, overhead_seconds=60)
    171
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

# Runnable as `python benchmarks/cifar10_knn.py` without installing the package; `throughput` is a sibling.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from crl_helpers.data import CIFAR10_NPZ, DATASETS, DatasetUnavailable  # noqa: E402
from crl_helpers.device import pick_device  # noqa: E402
from crl_helpers.evaluate import extract_embeddings, knn_accuracy  # noqa: E402
from crl_helpers.models import ENCODERS  # noqa: E402
from crl_helpers.train import PRESETS, TrainConfig, load_data, train  # noqa: E402
from throughput import measure_package_pipeline, write_json  # noqa: E402

TARGET_ACCURACY = 0.85
TARGET_MINUTES = 5.0
# Epoch times vary by a percent or two; planning against 97% of the budget keeps the run inside it.
BUDGET_MARGIN = 0.97
# Settings of --quick: CPU, small ConvNet, the built-in dataset (or a tiny npz), seconds in all.
QUICK = dict(dataset="shapes", n_train=128, n_test=32, encoder="convnet", batch_size=32, device="cpu",
             compile=False, minutes=0.05, probe_steps=2, max_epochs=2, evals=2)


def plan_epochs(budget_seconds: float, seconds_per_epoch: float, overhead_seconds: float = 0.0,
                max_epochs: int | None = None) -> int:
    """The most whole epochs that fit ``budget_seconds`` of training, at least 1.

    Args:
        budget_seconds: training wall time allowed.
        seconds_per_epoch: measured time of one epoch at full speed (> 0).
        overhead_seconds: one-off cost inside training (compiling in the first epoch).
        max_epochs: upper bound, or None.

    Raises:
        ValueError: a non-positive ``seconds_per_epoch`` or a negative budget.

    Example:
        >>> plan_epochs(10.0, 3.0), plan_epochs(1.0, 3.0), plan_epochs(100.0, 1.0, max_epochs=5)
        (3, 1, 5)
    """
    if not seconds_per_epoch > 0 or budget_seconds < 0 or overhead_seconds < 0:
        raise ValueError(f"seconds_per_epoch={seconds_per_epoch} must be > 0 and budget_seconds={budget_seconds}, "
                         f"overhead_seconds={overhead_seconds} >= 0")
    epochs = max(1, math.floor((budget_seconds - overhead_seconds) / seconds_per_epoch))
    return min(epochs, max_epochs) if max_epochs else epochs


def evaluation_epochs(epochs: int, evals: int) -> list[int]:
    """``evals`` epochs spread evenly up to the last one, which is always included.

    Example:
        >>> evaluation_epochs(200, 4), evaluation_epochs(3, 5)
        ([50, 100, 150, 200], [1, 2, 3])
    """
    evals = max(1, min(evals, epochs))
    return sorted({round(epochs * (i + 1) / evals) for i in range(evals)})


def knn_scores(encoder: torch.nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
               y_test: torch.Tensor, mean, std, config: TrainConfig, device: torch.device) -> dict:
    """kNN test accuracy of ``encoder``'s features, k=``config.knn_k`` weighted and k=10 majority, all on ``device``."""
    kw = dict(batch_size=1024, device=device, mean=mean, std=std, to_cpu=False)
    v_train = extract_embeddings(encoder, x_train, **kw)  # (N, 512), on the device
    v_test = extract_embeddings(encoder, x_test, **kw)  # (M, 512)
    return {
        "knn_k200": knn_accuracy(v_train, y_train, v_test, y_test, k=config.knn_k,
                                 temperature=config.knn_temperature, weighting="exp"),
        "knn_k10_majority": knn_accuracy(v_train, y_train, v_test, y_test, k=10, weighting="majority"),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Figures: benchmarks/RESULTS.md")
    p.add_argument("--quick", action="store_true", help="CPU smoke run in seconds (CI); figures mean nothing")
    p.add_argument("--minutes", type=float, help=f"training wall-time budget (default {TARGET_MINUTES:g})")
    p.add_argument("--dataset", help=f"one of {', '.join(DATASETS)} (default: cifar10; --quick: shapes)")
    p.add_argument("--data-root", default="data", help="folder holding cifar10_jpeg.npz or the torchvision download")
    p.add_argument("--n-train", type=int, help="use only this many training images (default: all)")
    p.add_argument("--n-test", type=int, help="use only this many test images (default: all)")
    p.add_argument("--encoder", help=f"one of {', '.join(ENCODERS)} (default: the preset's, resnet18)")
    p.add_argument("--batch-size", type=int, help="source images per step (default: the preset's, 512)")
    p.add_argument("--optimizer", choices=("sgd", "adamw"), help="(default: the preset's, sgd with Nesterov momentum)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the preset's, 0.6 for batch 512)")
    p.add_argument("--weight-decay", type=float, help="(default: the preset's, 5e-4)")
    p.add_argument("--temperature", type=float, help="NT-Xent temperature (default: the preset's, 0.2)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model on CUDA (default: the preset's, on)")
    p.add_argument("--device", help="auto (default), cuda, cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probe-steps", type=int, help="timed steps of the probe that sizes the run (default 20)")
    p.add_argument("--max-epochs", type=int, help="cap on the planned epochs")
    p.add_argument("--evals", type=int, help="kNN evaluations along the run, the last included (default 5)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    return p


def _settings(args: argparse.Namespace) -> tuple[TrainConfig, dict]:
    quick = QUICK if args.quick else {}

    def pick(name, default=None):
        value = getattr(args, name)
        return quick.get(name, default) if value is None else value

    plan = {"minutes": pick("minutes", TARGET_MINUTES), "probe_steps": pick("probe_steps", 20),
            "max_epochs": pick("max_epochs"), "evals": pick("evals", 5), "quick": args.quick}
    if not plan["minutes"] > 0 or plan["probe_steps"] < 1 or plan["evals"] < 1:
        raise ValueError(f"--minutes {plan['minutes']} must be > 0, --probe-steps and --evals >= 1")
    changes = {"data_root": args.data_root, "out_dir": None, "progress": False, "umap": False, "seed": args.seed,
               "knn_every": 0}
    for name in ("dataset", "n_train", "n_test", "encoder", "batch_size", "compile", "device", "optimizer", "lr",
                 "weight_decay", "temperature"):
        value = pick(name)
        if value is not None:
            changes[name] = value
    return replace(PRESETS["cifar10-gpu"], **changes), plan


def _line(out, text: str = "") -> None:
    out(text)
    sys.stdout.flush()  # rows reach the log as they come, should the run be stopped at its time limit


def run(config: TrainConfig, plan: dict, out=print) -> dict:
    """Probe, plan, train, evaluate; returns the figures (see the module docstring)."""
    device = pick_device(config.device)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    _line(out, f"device: {card} | torch {torch.__version__} | {os.cpu_count()} CPU cores")
    t0 = time.perf_counter()
    train_data, test_data = load_data(config)
    _line(out, f"data: {config.dataset}, {len(train_data):,} train / {len(test_data):,} test images, "
               f"loaded in {time.perf_counter() - t0:.1f} s")
    jpeg = config.dataset == "cifar10" and (Path(config.data_root) / CIFAR10_NPZ).exists()
    if jpeg:
        _line(out, f"note: {Path(config.data_root) / CIFAR10_NPZ} is the offline JPEG copy (quality 75): "
                   "expect accuracies about 2-3 points below the original CIFAR-10 bytes")
    if config.batch_size > len(train_data):
        raise ValueError(f"--batch-size {config.batch_size} exceeds the {len(train_data)} training images")

    probe = measure_package_pipeline(config, train_data, steps=plan["probe_steps"])
    if device.type == "cuda":
        torch.cuda.empty_cache()
    steps_per_epoch = len(train_data) // config.batch_size
    seconds_per_epoch = probe["seconds_per_step"] * steps_per_epoch
    # The probe's first step holds torch.compile's work; train() compiles again, from a warmer cache and so
    # faster: counting the probe's is the cautious choice.
    overhead = max(probe["first_step_seconds"] - probe["seconds_per_step"], 0.0)
    budget = plan["minutes"] * 60
    epochs = plan_epochs(budget * BUDGET_MARGIN, seconds_per_epoch, overhead, plan["max_epochs"])
    _line(out, f"probe: {probe['images_per_second']:,.0f} source img/s over {probe['steps']} steps, first step "
               f"{probe['first_step_seconds']:.1f} s -> {seconds_per_epoch:.2f} s/epoch; "
               f"{epochs} epochs fit {plan['minutes']:g} min")
    config = replace(config, epochs=epochs)

    mean, std = train_data.channel_stats()
    # Held on the device once, so that each evaluation reads no host memory.
    x_train, y_train = train_data.x.to(device), train_data.y.to(device)
    x_test, y_test = test_data.x.to(device), test_data.y.to(device)
    at = set(evaluation_epochs(epochs, plan["evals"]))
    rows: list[dict] = []
    clock = {"train": 0.0}
    header = f"{'epoch':>6} {'train s':>8} {'kNN k=200 (t=0.1)':>18} {'kNN k=10 majority':>18} {'eval s':>7}"

    def callback(epoch: int, model, row: dict) -> None:
        clock["train"] += row["seconds"]
        if epoch not in at:
            return
        t_eval = time.perf_counter()
        scores = knn_scores(model.encoder, x_train, y_train, x_test, y_test, mean, std, config, device)
        rows.append({"epoch": epoch, "train_seconds": clock["train"], **scores,
                     "eval_seconds": time.perf_counter() - t_eval, "loss": row["loss"]})
        if len(rows) == 1:
            _line(out, header)
        r = rows[-1]
        _line(out, f"{epoch:>6} {r['train_seconds']:>8.1f} {r['knn_k200']:>18.4f} {r['knn_k10_majority']:>18.4f} "
                   f"{r['eval_seconds']:>7.1f}")

    t_run = time.perf_counter()
    result = train(config, data=(train_data, test_data), callback=callback)
    run_seconds = time.perf_counter() - t_run
    final = rows[-1]
    history = result.history
    images_per_second = sum(r["images_per_second"] * r["seconds"] for r in history) / max(clock["train"], 1e-9)
    met = final["knn_k200"] >= TARGET_ACCURACY and final["train_seconds"] <= TARGET_MINUTES * 60
    if len(rows) > 1:
        _line(out, "(rows before the last are mid-schedule: the learning rate had not decayed yet)")
    compiling = ", compiling included," if config.compile and device.type == "cuda" else ""
    verdict = "not judged (--quick is no GPU run)" if plan.get("quick") else ("met" if met else "NOT met")
    _line(out, f"final: kNN k=200 {final['knn_k200']:.4f}, k=10 majority {final['knn_k10_majority']:.4f} after "
               f"{epochs} epochs, {final['train_seconds']:.1f} s of training ({images_per_second:,.0f} source img/s "
               f"on average; the first epoch{compiling} took {history[0]['seconds']:.1f} s)")
    _line(out, f"target kNN(k=200) >= {TARGET_ACCURACY} within {TARGET_MINUTES:g} min of training on one "
               f"H100/H200: {verdict}")
    return {"card": card, "torch": torch.__version__, "dataset": config.dataset, "jpeg_copy": jpeg,
            "n_train": len(train_data), "n_test": len(test_data), "encoder": config.encoder,
            "batch_size": config.batch_size, "compile": config.compile, "minutes": plan["minutes"],
            "epochs": epochs, "probe": probe, "rows": rows, "final": final, "target_met": met,
            "images_per_second": images_per_second, "run_seconds": run_seconds, "final_loss": history[-1]["loss"]}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        # Tiny tensors on a shared CI machine: handing them to a second thread costs more than it saves.
        torch.set_num_threads(1)
    try:
        config, plan = _settings(args)
        results = run(config, plan)
    except (ValueError, DatasetUnavailable) as err:
        print(f"cifar10_knn: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        write_json(args.json, results, "cifar10_knn.py", argv, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
