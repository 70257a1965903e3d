"""The ``crl`` command: ``crl train`` pretrains with SimCLR and evaluates, end to end.

Bad input exits with status 2 and one line naming the value and the fix; no traceback.

Example:
    >>> build_parser().parse_args(["train", "--epochs", "3"]).epochs
    3
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from crl_helpers.data import DATASETS

# Flag -> TrainConfig field, for the flags that map one to one.
_FLAGS = {
    "dataset": "dataset", "data_root": "data_root", "encoder": "encoder", "epochs": "epochs",
    "batch_size": "batch_size", "temperature": "temperature", "lr": "lr", "device": "device",
    "out": "out_dir", "seed": "seed", "n_train": "n_train", "n_test": "n_test", "optimizer": "optimizer",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crl", description="Contrastive representation learning (SimCLR).")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="pretrain with SimCLR, then kNN, linear probe and plots",
                       description="Pretrain an encoder with SimCLR on a dataset, then evaluate it. "
                                   "Defaults: built-in shapes dataset, small ConvNet, CPU preset.")
    t.add_argument("--preset", default="cpu", help="named config to start from: cpu (default), cifar10-gpu")
    t.add_argument("--dataset", help=f"one of {', '.join(DATASETS)} (folder: --data-root is the image folder)")
    t.add_argument("--data-root", help="where datasets are downloaded and cached (default: data)")
    t.add_argument("--encoder", help="convnet (CPU default), resnet18 (CIFAR stem), resnet18-imagenet")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--temperature", type=float, help="NT-Xent temperature tau > 0")
    t.add_argument("--lr", type=float, help="peak learning rate")
    t.add_argument("--optimizer", help="adamw or sgd")
    t.add_argument("--device", help="auto (default: CUDA, then MPS, then CPU), cpu, cuda, mps")
    t.add_argument("--out", help="output directory (default: runs/<preset>)")
    t.add_argument("--seed", type=int)
    t.add_argument("--n-train", type=int, help="use only this many training images")
    t.add_argument("--n-test", type=int, help="use only this many test images")
    t.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    t.add_argument("--no-umap", action="store_true", help="skip the UMAP plot")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace):
    """The :class:`TrainConfig` that the parsed flags describe (raises ValueError on bad values)."""
    from crl_helpers.train import PRESETS

    if args.preset not in PRESETS:
        raise ValueError(f"--preset {args.preset!r} is unknown; choose one of {', '.join(PRESETS)}")
    changes = {field: getattr(args, flag) for flag, field in _FLAGS.items() if getattr(args, flag) is not None}
    if args.no_umap:
        changes["umap"] = False
    if args.quiet:
        changes["progress"] = False
    return replace(PRESETS[args.preset], **changes)


def _check_writable(out: str) -> None:
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ValueError(f"--out {out!r} is not writable ({err.strerror}); choose a folder you can write to") from err


def _summary(metrics: dict, out: str) -> str:
    rows = [
        ("kNN accuracy (trained encoder)", f"{metrics['knn_acc']:.3f}"),
        ("kNN accuracy (random init)", f"{metrics['knn_acc_random_init']:.3f}"),
        ("linear probe accuracy", f"{metrics['linear_acc']:.3f}"),
        ("epochs", str(metrics["epochs"])),
        ("training time", f"{metrics['train_seconds']:.1f} s"),
        ("throughput", f"{metrics['images_per_second']:.0f} images/s"),
        ("device", metrics["device"]),
        ("outputs", f"{out}/ (checkpoint.pt, history.csv, metrics.json, curves.png, umap.png)"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from crl_helpers.checkpoint import CheckpointError
    from crl_helpers.data import DatasetUnavailable
    from crl_helpers.train import NonFiniteLossError, train

    out = None
    try:
        config = config_from_args(args)
        out = config.out_dir
        _check_writable(out)
        result = train(config, resume=args.resume)
    except (ValueError, DatasetUnavailable, CheckpointError, NonFiniteLossError) as err:
        print(f"crl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ncrl: interrupted; the last finished epoch is saved in {out}/checkpoint.pt. "
              f"Continue with: crl train --resume --out {out} (and the same flags)", file=sys.stderr)
        return 130
    except Exception as err:  # out of GPU memory is the one failure a student can fix by a flag
        if type(err).__name__ == "OutOfMemoryError":
            batch = getattr(args, "batch_size", None) or config.batch_size
            print(f"crl: error: out of GPU memory at --batch-size {batch}; "
                  f"try --batch-size {max(2, batch // 2)}", file=sys.stderr)
            return 2
        raise
    print(_summary(result.metrics, out))
    return 0


if __name__ == "__main__":  # python -m crl_helpers.cli
    sys.exit(main())
