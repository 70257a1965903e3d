"""The default ``crl train`` job on the CPU: the training step's fast path against plain float32, and where a run's time goes.

Three measurements on whatever CPU runs it:

1. **The step, side by side.** The default job's SimCLR step (SmallConvNet, 2 x 64 views of 24 pixels) as
   most tutorials run it (float32, NCHW tensors, OpenMP threads that spin while they wait) and as
   ``crl train`` runs it here (``--precision auto``: bf16 autocast and channels_last where the CPU
   has bfloat16 units, float32 and channels_last elsewhere; idle threads spin briefly, then sleep:
   ``GOMP_SPINCOUNT=3000``), plus the layout alone, sleeping at once and forced bf16. Each variant runs in a
   fresh process (the wait policy is read when torch loads), in interleaved rounds, so a change
   in the machine's load hits all of them.
2. **A busy core.** The same variants while another process keeps one core busy at normal
   priority (what a browser with JupyterLab does to a laptop), as a share of the idle figure.
3. **The whole job.** ``crl train`` (the default job, nothing changed) in a fresh process:
   wall-clock time, and the stage times it writes into ``metrics.json``.

Usage (from the repository root)::

    python benchmarks/cpu_main_job.py                 # all three (about 4 minutes on 2 cores)
    python benchmarks/cpu_main_job.py --skip-job      # the step and the busy core only
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

BUSY_LOOP = "while True: pass"


def median(values: list[float]) -> float:
    """The middle value (the mean of the two middle ones for an even count)."""
    s = sorted(values)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


# name -> (precision, channels_last, OpenMP environment: {} is the OpenMP default, long spinning)
VARIANTS = {
    "plain: fp32, NCHW, default OpenMP waiting": ("fp32", False, {}),
    "fp32, channels_last, default OpenMP waiting": ("fp32", True, {}),
    "crl train: auto precision, channels_last, short spin": ("auto", True, {"GOMP_SPINCOUNT": "3000"}),
    "auto precision, channels_last, no spin (PASSIVE)": ("auto", True, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "forced bf16, channels_last, short spin": ("bf16", True, {"GOMP_SPINCOUNT": "3000"}),
}
PLAIN = "plain: fp32, NCHW, default OpenMP waiting"
CHOSEN = "crl train: auto precision, channels_last, short spin"
_OPENMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # cleared, then set per variant


def worker(precision: str, channels_last: bool, steps: int) -> float:
    """Seconds per step of the default job's step in one precision and layout (after one warm-up step)."""
    import torch

    from crl_helpers.device import autocast_dtype
    from crl_helpers.objectives import SimCLR
    from crl_helpers.train import CPU, TrainStep, build_model, build_optimizer

    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model = build_model(CPU)
    step = TrainStep(model, SimCLR(CPU.temperature), build_optimizer(model, CPU, cpu), CPU, cpu,
                     channels_last=channels_last)
    step.objective.amp = autocast_dtype(cpu, precision)
    side = CPU.view_size or 32  # the default job's views
    views = torch.randn(2 * CPU.batch_size, 3, side, side, generator=torch.Generator().manual_seed(1))  # (2B, 3, S, S)
    step(views, lr=1e-3)  # warm-up: allocations, oneDNN's kernel choice
    t0 = time.perf_counter()
    for _ in range(steps):
        step(views, lr=1e-3)
    return (time.perf_counter() - t0) / steps


def time_variant(name: str, steps: int) -> float:
    """One round of ``name`` in a fresh process: seconds per step."""
    precision, channels_last, openmp = VARIANTS[name]
    env = {k: v for k, v in os.environ.items() if k not in _OPENMP_VARS}
    env.update(openmp)  # the worker loads torch before crl_helpers, so exactly these apply
    done = subprocess.run([sys.executable, __file__, "--worker", precision, str(int(channels_last)), str(steps)],
                          cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {name!r} worker failed: {done.stderr.strip()[-500:]}")
    return float(done.stdout.strip().splitlines()[-1])


def time_variants(names: list[str], rounds: int, steps: int) -> dict[str, float]:
    """Median seconds per step of each variant over ``rounds`` interleaved rounds."""
    seconds = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            seconds[name].append(time_variant(name, steps))
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
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant (each a fresh process)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round")
    parser.add_argument("--skip-job", action="store_true", help="skip the whole-job run (step 3)")
    parser.add_argument("--quick", action="store_true", help="1 round of 1 step, no busy core, no whole job: for the tests")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    rounds, steps = (1, 1) if args.quick else (args.rounds, args.steps)
    import torch

    from crl_helpers.device import cpu_has_native_bf16, cpu_name, describe_precision
    from crl_helpers.train import CPU

    cpu = torch.device("cpu")
    print(f"CPU: {cpu_name()}; {os.cpu_count()} cores; native bf16: {cpu_has_native_bf16()}; torch {torch.__version__}")
    print(f"crl train chooses: {describe_precision(cpu, 'auto')}; GOMP_SPINCOUNT=3000 (short spin, then sleep)")
    names = list(VARIANTS)
    idle = time_variants(names, rounds, steps)
    busy: dict[str, float] = {}
    if not args.quick:
        loop = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
        try:
            time.sleep(0.5)
            busy = time_variants([PLAIN, CHOSEN, "auto precision, channels_last, no spin (PASSIVE)"], rounds, steps)
        finally:
            loop.kill()
            loop.wait()
    images = CPU.batch_size  # source images per step of the default job
    results = {"cpu": cpu_name(), "native_bf16": cpu_has_native_bf16(), "step_seconds": idle,
               "busy_core_step_seconds": busy, "speedup_chosen_vs_plain": idle[PLAIN] / idle[CHOSEN],
               "busy_share_of_idle": {k: idle[k] / v for k, v in busy.items()}}
    if not (args.skip_job or args.quick):
        with tempfile.TemporaryDirectory() as tmp:
            results["job"] = run_job(str(Path(tmp) / "run"))
    print("\n| variant | idle: ms per step | source images/s | one core busy: images/s | busy / idle |")
    print("|---|---|---|---|---|")
    for name, s in idle.items():
        b = busy.get(name)
        extra = f"{images / b:.0f} | {s / b:.0%}" if b else "— | —"
        print(f"| {name} | {s * 1000:.0f} | {images / s:.0f} | {extra} |")
    print(f"\ncrl train's step / plain step: {results['speedup_chosen_vs_plain']:.2f}x")
    if "job" in results:
        job = results["job"]
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in job["stage_seconds"].items())
        print(f"whole job: {job['wall_seconds']:.1f} s wall; evaluation {job['eval_seconds']:.1f} s; "
              f"kNN {job['knn_acc']:.3f} (random init {job['knn_acc_random_init']:.3f}); stages: {stages}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":  # one timing round, in the wait policy it was started with
        import torch  # noqa: F401  (loads libgomp with the variant's environment, before crl_helpers sets its own)

        print(worker(sys.argv[2], bool(int(sys.argv[3])), int(sys.argv[4])))
        sys.exit(0)
    sys.exit(main())
