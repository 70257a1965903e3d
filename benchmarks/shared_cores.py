"""Training speed on shared cores: one short ``crl train`` job alone, beside others, and under a CPU quota.

The same job in six situations, in one go, each in fresh processes (images/s from each run's
``metrics.json``, which also says which thread counts the run used):

1. alone, default (``crl train`` choosing its thread count, :mod:`crl_helpers.threads`);
2. alone, ``OMP_NUM_THREADS=1``;
3. alone, ``OMP_NUM_THREADS=<all the CPUs this process may use>``;
4. two default runs at once (their images/s added up);
5. one default run beside a busy process (``python -c "while True: pass"``, what a browser tab or
   another student's kernel does);
6. one default run under a 1-CPU cgroup quota (``docker --cpus 1``, a JupyterHub limit), where this
   process may create a cgroup (root on Linux, cgroup v2 or v1, not read-only); skipped otherwise,
   with the reason.

It prints images/s and each situation's ratio to the default run alone, and checks the targets:
default alone >= 0.9 x the better fixed count; two at once >= 0.8 x alone (together); beside a busy
process >= 0.45 x alone; under a 1-CPU quota >= 0.45 x alone. The figures mean something only on
an otherwise idle machine: the load average before and after is printed and stored with them.

Usage (from the repository root)::

    python benchmarks/shared_cores.py                   # the issue's job: 2 epochs of 2,000 images (~3 min on 2 cores)
    python benchmarks/shared_cores.py --json out.json   # also write the figures, the machine and the date
    python benchmarks/shared_cores.py --rounds 3        # three interleaved rounds, medians and ranges
    python benchmarks/shared_cores.py --quick           # a tiny job, to check the script end to end
    python benchmarks/shared_cores.py --dry-run         # print the plan (commands and environments) only

Example:
    >>> rows = {"alone, default": 3263, "alone, 1 thread": 2623, "alone, all threads": 1936,
    ...         "two runs at once (together)": 158, "beside a busy process": 499, "under a 1-CPU quota": 1790}
    >>> [(t["target"], round(t["ratio"], 2), t["met"]) for t in check_targets(rows)][:2]
    [('default alone >= 0.9 x the better fixed count', 1.24, True), ('two runs at once >= 0.8 x alone', 0.05, False)]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable as `python benchmarks/shared_cores.py` without installing

BUSY_LOOP = "while True: pass"
JOB = ["--epochs", "2", "--n-train", "2000", "--n-test", "500", "--no-umap"]  # the job
QUICK_JOB = ["--epochs", "1", "--n-train", "128", "--n-test", "32", "--batch-size", "32", "--no-umap"]
# Cleared in every child: the job runs as a user's plain `crl train` does (the package's own OpenMP defaults).
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

ALONE, ONE, ALL = "alone, default", "alone, 1 thread", "alone, all threads"
TWO, BUSY, QUOTA = "two runs at once (together)", "beside a busy process", "under a 1-CPU quota"
# (name, situation, target ratio, against): the targets, ratios of images/s.
TARGETS = [
    ("default alone >= 0.9 x the better fixed count", ALONE, 0.9, (ONE, ALL)),
    ("two runs at once >= 0.8 x alone", TWO, 0.8, (ALONE,)),
    ("beside a busy process >= 0.45 x alone", BUSY, 0.45, (ALONE,)),
    ("under a 1-CPU quota >= 0.45 x alone", QUOTA, 0.45, (ALONE,)),
]


def check_targets(images_per_second: dict[str, float]) -> list[dict]:
    """Each target's ratio (the situation's images/s over the best of the ones it is compared with)
    and whether it is met; a target whose situations were not measured is left out."""
    checks = []
    for name, situation, target, against in TARGETS:
        if situation not in images_per_second or not all(a in images_per_second for a in against):
            continue
        ratio = images_per_second[situation] / max(images_per_second[a] for a in against)
        checks.append({"target": name, "ratio": ratio, "needed": target, "met": ratio >= target})
    return checks


def child_env(threads: int | None = None) -> dict[str, str]:
    """The environment of one job: this one without thread settings, plus ``OMP_NUM_THREADS`` when fixed."""
    env = {k: v for k, v in os.environ.items() if k not in _THREAD_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def job_command(job: list[str], out: Path) -> list[str]:
    return [sys.executable, "-m", "crl_helpers.cli", "train", *job, "--quiet", "--overwrite", "--out", str(out)]


def start_job(job: list[str], out: Path, threads: int | None = None, preexec=None) -> subprocess.Popen:
    return subprocess.Popen(job_command(job, out), cwd=REPO, env=child_env(threads), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=preexec)


def finish_job(proc: subprocess.Popen, out: Path) -> dict:
    """Wait for a job; its ``metrics.json`` (images/s, thread counts), or SystemExit with its error."""
    _, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"shared_cores: a job failed (status {proc.returncode}): {stderr.strip()[-500:]}")
    return json.loads((out / "metrics.json").read_text())


class CpuQuota:
    """A cgroup with a CPU quota of ``cpus`` CPUs that a child process joins before it runs (cgroup v2, else v1).

    :meth:`create` returns None on success, else why it cannot (not Linux, not root, read-only);
    :meth:`join` is a ``preexec_fn`` (runs in the child, before exec); :meth:`remove` deletes it.
    """

    def __init__(self, cpus: float = 1.0, root: str = "/sys/fs/cgroup") -> None:
        self.cpus, self.root, self.folder, self.procs = cpus, Path(root), None, None

    def create(self) -> str | None:
        if sys.platform != "linux":
            return f"cgroups are Linux's; this is {sys.platform}"
        name = f"crl-shared-cores-{os.getpid()}"
        period = 100_000
        quota = int(self.cpus * period)
        try:
            if (self.root / "cgroup.controllers").exists():  # v2: the cpu controller must be on for children
                if "cpu" not in (self.root / "cgroup.controllers").read_text().split():
                    return f"cgroup v2 at {self.root} has no cpu controller"
                subtree = self.root / "cgroup.subtree_control"
                if "cpu" not in subtree.read_text().split():
                    subtree.write_text("+cpu")
                self.folder = self.root / name
                self.folder.mkdir()
                (self.folder / "cpu.max").write_text(f"{quota} {period}")
            else:  # v1: the cpu hierarchy's own mount
                mount = next((self.root / d for d in ("cpu", "cpu,cpuacct") if (self.root / d).is_dir()), None)
                if mount is None:
                    return f"no cgroup v2 and no v1 cpu hierarchy under {self.root}"
                self.folder = mount / name
                self.folder.mkdir()
                (self.folder / "cpu.cfs_period_us").write_text(str(period))
                (self.folder / "cpu.cfs_quota_us").write_text(str(quota))
        except OSError as err:
            self.remove()
            return f"cannot create a cgroup under {self.root}: {err.strerror or err}"
        self.procs = str(self.folder / "cgroup.procs")
        return None

    def join(self) -> None:
        with open(self.procs, "w") as f:
            f.write(str(os.getpid()))

    def remove(self) -> None:
        if self.folder is not None and self.folder.exists():
            try:
                self.folder.rmdir()
            except OSError:
                pass  # a process still inside: the kernel keeps it until it ends
        self.folder = None


def plan(job: list[str], cpus: int) -> list[tuple[str, str]]:
    """(situation, how it runs) for each measured situation, in order."""
    command = " ".join(["crl train", *job])
    return [(ALONE, f"{command}"), (ONE, f"OMP_NUM_THREADS=1 {command}"), (ALL, f"OMP_NUM_THREADS={cpus} {command}"),
            (TWO, f"two of `{command}` started together"), (BUSY, f"{command} beside `python -c \"{BUSY_LOOP}\"`"),
            (QUOTA, f"{command} in a cgroup with cpu quota 1 CPU (100000 us per 100000 us)")]


def measure(job: list[str], cpus: int, work: Path) -> tuple[dict[str, float], dict[str, list], dict[str, str]]:
    """Run every situation once; returns images/s, the runs' thread summaries, and skipped situations' reasons."""
    speed, threads, skipped = {}, {}, {}

    def one(name: str, fixed: int | None = None, preexec=None) -> None:
        out = work / name.replace(" ", "_").replace(",", "")
        metrics = finish_job(start_job(job, out, fixed, preexec), out)
        speed[name], threads[name] = metrics["images_per_second"], [metrics.get("threads")]

    one(ALONE)
    one(ONE, fixed=1)
    one(ALL, fixed=cpus)
    outs = [work / f"two_{i}" for i in range(2)]
    procs = [start_job(job, out) for out in outs]
    runs = [finish_job(p, out) for p, out in zip(procs, outs)]
    speed[TWO] = sum(m["images_per_second"] for m in runs)
    threads[TWO] = [m.get("threads") for m in runs]
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(0.5)  # the busy process is running before the job starts
        one(BUSY)
    finally:
        busy.kill()
        busy.wait()
    quota = CpuQuota(1.0)
    reason = quota.create()
    if reason is None:
        try:
            one(QUOTA, preexec=quota.join)
        finally:
            quota.remove()
    else:
        skipped[QUOTA] = reason
    return speed, threads, skipped


def measure_rounds(job: list[str], cpus: int, work: Path, rounds: int
                   ) -> tuple[dict[str, float], dict[str, list[float]], dict[str, list], dict[str, str]]:
    """:func:`measure` ``rounds`` times, the situations interleaved; the median images/s per situation, every
    round's images/s, the last round's thread summaries and the skipped situations."""
    every: dict[str, list[float]] = {}
    for i in range(rounds):
        speed, threads, skipped = measure(job, cpus, work / f"round_{i}")
        for name, value in speed.items():
            every.setdefault(name, []).append(value)
    return {name: statistics.median(values) for name, values in every.items()}, every, threads, skipped


def report(speed: dict[str, float], threads: dict[str, list], skipped: dict[str, str],
           every: dict[str, list[float]] | None = None) -> str:
    """The table (the median of the rounds, and their range where there are several) and the targets."""
    alone = speed.get(ALONE)
    lines = ["| situation | images/s | vs alone | thread counts (final, changes, steps at each) |", "|---|---|---|---|"]
    for name in (ALONE, ONE, ALL, TWO, BUSY, QUOTA):
        if name in skipped:
            lines.append(f"| {name} | skipped: {skipped[name]} | | |")
            continue
        if name not in speed:
            continue
        counts = "; ".join(f"{t['final']}, {t['changes']}, {t['steps_at_threads']} ({t['source']})"
                           for t in threads.get(name, []) if t)
        spread = (f" ({min(every[name]):,.0f}-{max(every[name]):,.0f})"
                  if every and len(every.get(name, [])) > 1 else "")
        lines.append(f"| {name} | {speed[name]:,.0f}{spread} | {speed[name] / alone:.2f} | {counts} |")
    lines.append("")
    for check in check_targets(speed):
        lines.append(f"{'meets' if check['met'] else 'MISSES'}: {check['target']} (ratio {check['ratio']:.2f})")
    return "\n".join(lines)


def machine() -> dict:
    from crl_helpers.threads import available_cpus, cgroup_cpu_limit

    from crl_helpers.device import cpu_name

    return {"cpu": cpu_name(), "os_cpu_count": os.cpu_count(), "available_cpus": available_cpus(),
            "cgroup_quota_cpus": cgroup_cpu_limit(), "python": platform.python_version(),
            "platform": platform.platform()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny job (seconds each), to check the script")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the machine, run nothing")
    parser.add_argument("--json", help="write the figures, the machine, the load and the date here")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every situation this many times, interleaved; report the medians (default 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    job = QUICK_JOB if args.quick else JOB
    info = machine()
    cpus = info["available_cpus"]
    print(f"shared_cores: {info['cpu']}, {cpus} CPUs available (of {info['os_cpu_count']}); "
          f"job: crl train {' '.join(job)}")
    for name, how in plan(job, cpus):
        print(f"  {name}: {how}")
    if args.dry_run:
        return 0
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(f"shared_cores: warning: load average {load_before[0]:.1f} before starting; the figures need an "
              f"idle machine", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="crl-shared-cores-") as tmp:
        speed, every, threads, skipped = measure_rounds(job, cpus, Path(tmp), max(1, args.rounds))
    load_after = os.getloadavg()
    print(report(speed, threads, skipped, every))
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "job": ["crl", "train", *job], "machine": info, "load_average_before": load_before,
            "load_average_after": load_after, "rounds": max(1, args.rounds), "images_per_second": speed,
            "images_per_second_every_round": every, "threads": threads,
            "skipped": skipped, "targets": check_targets(speed)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
