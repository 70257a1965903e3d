"""The default ``crl train`` job on the CPU: the training step's fast path against plain float32, and where a run's time goes.

Three measurements, in one process (except the last), on whatever CPU runs it:

1. **The step, side by side.** The default job's SimCLR step (SmallConvNet, 2 x 128 views) in
   plain float32 with NCHW tensors (the layout of most tutorials) and in the path ``crl train``
   chooses here (``--precision auto``: bf16 autocast and channels_last where the CPU has
   bfloat16 units, float32 and channels_last elsewhere), plus forced bf16 for comparison. The
   variants are timed in interleaved rounds, so a change in the machine's load hits all of them.
2. **A busy core.** The chosen path again while another process keeps one core busy at normal
   priority (what a browser with JupyterLab does to a laptop), as a share of the idle figure.
3. **The whole job.** ``crl train`` (the default job, nothing changed) in a fresh process:
   wall-clock time, and the stage times it writes into ``metrics.json``.

Usage (from the repository root)::

    python benchmarks/cpu_main_job.py                 # all three (about 3 minutes on 2 cores)
    python benchmarks/cpu_main_job.py --skip-job      # the step and the busy core only (under a minute)
    python benchmarks/cpu_main_job.py --quick         # a few seconds, for the tests

Example:
    >>> median([3.0, 1.0, 2.0])
    2.0
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable as `python benchmarks/cpu_main_job.py` without installing

import torch  # noqa: E402

from crl_helpers.device import autocast_dtype, cpu_has_native_bf16, describe_precision  # noqa: E402
from crl_helpers.objectives import SimCLR  # noqa: E402
from crl_helpers.train import CPU, TrainStep, build_model, build_optimizer  # noqa: E402

BUSY_LOOP = "while True: pass"


def median(values: list[float]) -> float:
    """The middle value (the mean of the two middle ones for an even count)."""
    s = sorted(values)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


def make_step(precision: str, channels_last: bool) -> tuple[TrainStep, torch.Tensor]:
    """The default job's step in one precision and layout, and a batch of views for it."""
    cpu = torch.device("cpu")
    config = CPU
    torch.manual_seed(0)
    model = build_model(config)
    step = TrainStep(model, SimCLR(config.temperature), build_optimizer(model, config, cpu), config, cpu,
                     channels_last=channels_last)
    step.objective.amp = autocast_dtype(cpu, precision)
    views = torch.randn(2 * config.batch_size, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return step, views


def time_variants(variants: dict, rounds: int, steps: int) -> dict[str, float]:
    """Median seconds per step of each variant, over ``rounds`` interleaved rounds of ``steps`` steps."""
    built = {name: make_step(*args) for name, args in variants.items()}
    for step, views in built.values():
        step(views, lr=1e-3)  # warm-up: allocations, oneDNN's kernel choice
    seconds = {name: [] for name in built}
    for _ in range(rounds):
        for name, (step, views) in built.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                step(views, lr=1e-3)
            seconds[name].append((time.perf_counter() - t0) / steps)
    return {name: median(v) for name, v in seconds.items()}


def run_job(out: str) -> dict:
    """``crl train`` (the default job) in a fresh process: wall seconds and its metrics.json."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "crl_helpers.cli", "train", "--quiet", "--overwrite", "--out", out],
                          cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"crl train failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return {"wall_seconds": wall, **json.loads((Path(out) / "metrics.json").read_text())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds per variant")
    parser.add_argument("--steps", type=int, default=4, help="steps per round")
    parser.add_argument("--skip-job", action="store_true", help="skip the whole-job run (step 3)")
    parser.add_argument("--quick", action="store_true", help="1 round of 1 step, no whole job: for the tests")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    rounds, steps = (1, 1) if args.quick else (args.rounds, args.steps)
    cpu = torch.device("cpu")
    chosen = "bf16 + channels_last" if autocast_dtype(cpu, "auto") is not None else "fp32 + channels_last"
    print(f"CPU: {_cpu_name()}; {torch.get_num_threads()} threads; native bf16: {cpu_has_native_bf16()}; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; torch {torch.__version__}")
    print(f"crl train chooses: {describe_precision(cpu, 'auto')}")
    variants = {"fp32 NCHW (plain)": ("fp32", False), chosen: ("auto", True)}
    if chosen.startswith("fp32"):
        variants["bf16 + channels_last (forced)"] = ("bf16", True)
    idle = time_variants(variants, rounds, steps)
    images = CPU.batch_size  # source images per step
    rows = [(name, s, images / s) for name, s in idle.items()]
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(0.5)
        busy_s = time_variants({chosen: variants[chosen]}, rounds, steps)[chosen]
    finally:
        busy.kill()
        busy.wait()
    results = {"cpu": _cpu_name(), "native_bf16": cpu_has_native_bf16(), "chosen": chosen,
               "step_seconds": idle, "busy_core_step_seconds": busy_s,
               "speedup_chosen_vs_plain": idle["fp32 NCHW (plain)"] / idle[chosen],
               "busy_share_of_idle": idle[chosen] / busy_s}
    if not (args.skip_job or args.quick):
        with tempfile.TemporaryDirectory() as tmp:
            results["job"] = run_job(str(Path(tmp) / "run"))
    print(f"\n| variant | ms per step | source images/s |\n|---|---|---|")
    for name, s, rate in rows:
        print(f"| {name} | {s * 1000:.0f} | {rate:.0f} |")
    print(f"| {chosen}, one other core busy | {busy_s * 1000:.0f} | {images / busy_s:.0f} |")
    print(f"\nchosen / plain: {results['speedup_chosen_vs_plain']:.2f}x; "
          f"with a busy core: {results['busy_share_of_idle']:.0%} of the idle throughput")
    if "job" in results:
        job = results["job"]
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in job["stage_seconds"].items())
        print(f"whole job: {job['wall_seconds']:.1f} s wall; evaluation {job['eval_seconds']:.1f} s; "
              f"kNN {job['knn_acc']:.3f} (random init {job['knn_acc_random_init']:.3f}); stages: {stages}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform

        return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
