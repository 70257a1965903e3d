"""Threads on shared cores: how many CPUs this process may use, and a tuner that measures the best count.

PyTorch's intra-op pool has one thread per core, and every op ends in a barrier. When another
process takes one of the cores, every op waits a scheduler time slice for the thread that lost its
core: on 2 cores at torch's default count (2026-12-05), the default job beside one busy process ran at
0.15 of its speed alone, and two runs at once at 0.05 together. That is the normal state of a
classroom server, a laptop with a browser open, and CI. Three parts:

- :func:`available_cpus`: the CPUs this process may really use, from its affinity and its cgroup
  CPU quota (a container's ``--cpus``, a JupyterHub's per-user limit), which torch ignores.
- :class:`ThreadTuner`: the training loop reports each step to it; it times windows of steps at
  the current count and, now and then, at a neighbouring count, and keeps the faster. The load
  changes while a run trains, so it keeps probing, less often while probes keep losing.
- :func:`limit`: the count the run chose, for torch, BLAS (threadpoolctl) and numba during the
  evaluation and UMAP that follow training.

The user wins: ``OMP_NUM_THREADS``, an earlier ``torch.set_num_threads``, or ``threads=N``
(``crl train --threads N``) fix the count and nothing is tuned (:meth:`ThreadTuner.for_run`).

Floats depend on the thread count (a reduction's order changes), so a tuned run is not
bit-for-bit repeatable under a changing load; fix the count for that.

Example:
    >>> tuner = ThreadTuner(max_threads=2, set_threads=lambda n: None, get_threads=lambda: 2)
    >>> tuner.threads, tuner.counts
    (1, (1, 2))
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

# torch's count when the package loaded: a different count at the start of a run was set by the user.
_TORCH_DEFAULT_THREADS = torch.get_num_threads()


def cgroup_cpu_limit(root: str | os.PathLike = "/sys/fs/cgroup",
                     proc_cgroup: str | os.PathLike = "/proc/self/cgroup") -> float | None:
    """The CPU bandwidth quota of this process's cgroup, in CPUs (quota / period); None if there is none.

    Reads cgroup v2's ``cpu.max`` ("150000 100000", or "max 100000" for no limit) and cgroup v1's
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: no limit), in the process's own cgroup (named in
    ``proc_cgroup``) and every ancestor up to ``root``; the tightest quota wins. Folders that do
    not exist are skipped, so a container that mounts its own cgroup at ``root`` is read there.
    joblib/loky's ``cpu_count`` reads only the files at ``root``, and misses a quota set on a
    cgroup below it (a systemd slice, a per-user limit, ``benchmarks/shared_cores.py``'s own cgroup).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / "cpu.max").write_text("150000 100000\\n")
        >>> cgroup_cpu_limit(root, proc_cgroup=root / "absent")
        1.5
    """
    root = Path(root)
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:  # not Linux, or no /proc: only the files at the root
        lines = []
    v2_paths, v1_dirs = ["/"], [(root / "cpu", "/"), (root / "cpu,cpuacct", "/")]
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # "0::/path": the v2 hierarchy
            v2_paths.append(path)
        elif "cpu" in controllers.split(","):  # "4:cpu,cpuacct:/path": v1's cpu controller
            v1_dirs += [(root / controllers, path), (root / "cpu", path)]
    quotas = []
    for path in v2_paths:
        for folder in _up_to(root, path):
            fields = _read(folder / "cpu.max").split()
            if len(fields) == 2 and fields[0] != "max":
                quotas.append(_ratio(fields[0], fields[1]))
    for mount, path in v1_dirs:
        for folder in _up_to(mount, path):
            quotas.append(_ratio(_read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")))
    quotas = [q for q in quotas if q is not None]
    return min(quotas) if quotas else None


def _up_to(mount: Path, path: str) -> Iterator[Path]:
    """``mount/path`` and each of its parents down to ``mount`` itself."""
    parts = [p for p in path.split("/") if p and p != ".."]
    for n in range(len(parts), -1, -1):
        yield mount.joinpath(*parts[:n])


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cpus(root: str | os.PathLike = "/sys/fs/cgroup", proc_cgroup: str | os.PathLike = "/proc/self/cgroup"
                   ) -> int:
    """The CPUs this process may use: its affinity mask, capped by its cgroup quota (:func:`cgroup_cpu_limit`).

    A fractional quota is rounded up (1.5 CPUs -> 2), as loky does: with 2 threads under a 1.5-CPU
    quota both run for 75% of each period, which beats 1 thread when the model's parallel speed-up is
    above 1.33 and loses below; the count is the tuner's upper bound, and the tuner measures which.

    Example:
        >>> 1 <= available_cpus() <= (os.cpu_count() or 1)
        True
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_limit(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def cpu_snapshot() -> tuple[float, float, float] | None:
    """``(wall seconds, busy CPU-seconds of the whole machine, CPU-seconds of this process)`` now.

    From ``/proc/stat`` (Linux; all CPUs of the machine) and ``os.times``; None where there is no
    ``/proc/stat``. Two snapshots give :func:`busy_elsewhere`.

    Example:
        >>> snapshot = cpu_snapshot()
        >>> snapshot is None or len(snapshot) == 3
        True
    """
    try:
        ticks = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    if len(ticks) < 5:
        return None
    idle = ticks[3] + ticks[4]  # idle and iowait; the rest (user, nice, system, irq, softirq, steal) is busy
    own = os.times()
    return time.monotonic(), (sum(ticks) - idle) / hz, own.user + own.system


def busy_elsewhere(since: tuple[float, float, float] | None, now: tuple[float, float, float] | None = None
                   ) -> float | None:
    """How many CPUs other processes kept busy, on average, between the snapshot ``since`` and ``now``.

    None when a snapshot is missing or less than 0.2 s apart (``/proc/stat`` counts in 10 ms ticks).

    Example:
        >>> busy_elsewhere((0.0, 10.0, 1.0), (2.0, 13.0, 2.0))  # 3 CPU-seconds busy, 1 of them ours, in 2 s
        1.0
    """
    now = cpu_snapshot() if now is None else now
    if since is None or now is None or now[0] - since[0] < 0.2:
        return None
    return max(0.0, ((now[1] - since[1]) - (now[2] - since[2])) / (now[0] - since[0]))


def check_threads(threads: int | None) -> int | None:
    """``threads`` if it is None or an integer >= 1 (a fixed count), else ValueError naming it and the fix."""
    if threads is not None and not (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1):
        raise ValueError(f"threads={threads!r} must be an integer >= 1 (or None to choose by measuring)")
    return threads


class ThreadTuner:
    """Picks torch's intra-op thread count while a run trains, from the measured speed of its steps.

    The loop calls :meth:`begin` at the start of each epoch (the time between epochs, spent on the kNN
    monitor and the checkpoint, is not a step's) and :meth:`step_done` after each step. The counts
    tried form a ladder, ``max_threads`` halved down to 1 (16 -> 1, 2, 4, 8, 16). Where other
    processes left the machine idle while the run loaded its data (:func:`busy_elsewhere`), the run
    starts at the top rung; otherwise at the bottom, and climbs: too many threads on a busy machine
    cost a time slice per op (up to 40x slower on 2 cores), too few on an idle one cost at most the
    parallel speed-up (1.2x to 1.4x on 2 cores).

    Each probe runs ``window`` steps at a neighbouring rung and is compared with the last ``window``
    steps at the current one; the probe's count is kept when its images per second beat the
    current's by more than ``margin``. A probe that can no longer win (its time already exceeds
    what winning allows) stops at once, so a probe of too many threads on busy cores costs about one
    step. After a win the next probe continues in the same direction; after a loss the wait to the
    next probe doubles, from ``period[0]`` to ``period[1]`` steps (randomised by +-``jitter`` so that
    two runs started together do not probe together). A window at the current count slower than
    ``drop`` times the one before means the load changed: the next probe starts at once. The count
    changes at most once per probe, never between probes, and never below 1.

    Args:
        max_threads: the top rung (see :func:`available_cpus`).
        start: the first count, on the ladder (default its bottom, 1).
        source: who chose the counts, for :meth:`summary`: "auto", or the user's setting when fixed.
        window: steps per measured window.
        period: (shortest, longest) wait between probes, in steps.
        margin: how much faster a probe must be to be kept (hysteresis against noise).
        drop: the slow-down of the current count that triggers a probe at once.
        jitter: the relative spread of the waits between probes.
        timer, set_threads, get_threads, rng: the clock, torch's setter and getter, a ``random.Random``;
            tests pass fakes.

    Example:
        >>> clock, counts = [0.0], []
        >>> tuner = ThreadTuner(2, window=2, period=(10, 10), jitter=0, timer=lambda: clock[0],
        ...                     set_threads=counts.append, get_threads=lambda: 2)
        >>> tuner.begin()
        >>> for step in range(12):  # 2 threads take 1 s a step, 1 thread 2 s: the tuner climbs to 2
        ...     clock[0] += 1.0 if counts[-1] == 2 else 2.0  # counts[-1]: the count set last
        ...     tuner.step_done(64)
        >>> counts, tuner.summary()["changes"]
        ([1, 2], 1)
    """

    def __init__(self, max_threads: int, start: int | None = None, source: str = "auto", *, window: int = 4,
                 period: tuple[int, int] = (25, 200), margin: float = 0.05, drop: float = 0.5, jitter: float = 0.5,
                 timer: Callable[[], float] = time.perf_counter,
                 set_threads: Callable[[int], None] = torch.set_num_threads,
                 get_threads: Callable[[], int] = torch.get_num_threads, rng: random.Random | None = None) -> None:
        if not (isinstance(max_threads, int) and max_threads >= 1):
            raise ValueError(f"max_threads={max_threads!r} must be an integer >= 1")
        if window < 1 or not 1 <= period[0] <= period[1]:
            raise ValueError(f"window={window!r} must be >= 1 and period={period!r} must be 1 <= shortest <= longest")
        self.counts = tuple(sorted({max(1, max_threads >> k) for k in range(max_threads.bit_length())}))
        start = self.counts[0] if start is None else start
        if start not in self.counts:
            raise ValueError(f"start={start!r} is not one of the counts tried, {self.counts}")
        self.source, self.window, self.period, self.margin, self.drop = source, window, period, margin, drop
        self.jitter, self.timer, self._set_threads = jitter, timer, set_threads
        self.rng = rng if rng is not None else random.Random()
        self.before = get_threads()  # what restore() puts back
        self.start = self.threads = start
        self.changes = self.probes = 0
        self.steps_at: dict[int, int] = {}
        self._wait = period[0]  # the current wait between probes (doubles after each lost probe)
        # The first probe comes within a few windows, early enough for a short run to gain from it; where the
        # windows start and when the probe comes are drawn, so that runs started together probe apart.
        # A run that starts with all threads (the machine looked idle) probes fewer later: a load that comes
        # afterwards slows its windows, which starts a probe at once.
        self._until_probe = self._draw(2 * window if start == self.counts[0] else period[0])
        self._up = True  # the direction of the next probe, where both rungs exist
        self._reference: float | None = None  # images/s of the last full window at self.threads
        self._trial: int | None = None  # the count being probed, or None
        # The run's first step (allocations, lazy initialisation) is measured by nobody; then 0 to window - 1 more.
        self._skip = 1 + self.rng.randrange(window) if jitter else 1
        self._last: float | None = None
        self._reset_window()
        self._set_threads(start)

    @classmethod
    def for_run(cls, threads: int | None = None, device_type: str = "cpu", world_size: int = 1,
                since: tuple[float, float, float] | None = None, **kwargs) -> "ThreadTuner":
        """The tuner of one training run; the user's choice wins and fixes the count.

        In order: ``threads`` (``crl train --threads N``; source "--threads"), ``OMP_NUM_THREADS``
        in the environment, a torch count that differs from the one torch had when the package
        loaded ("torch.set_num_threads"), then no tuning off the CPU or under torchrun ("untuned":
        a GPU step's time is not the CPU threads', and ranks wait for each other), else "auto".
        ``since``, a :func:`cpu_snapshot` taken when the run began: with "auto", the run starts with
        all its threads when, since then, other processes left at least that many CPUs idle
        (within half a CPU), else with one.

        Example:
            >>> ThreadTuner.for_run(threads=3, set_threads=lambda n: None).summary()["source"]
            '--threads'
        """
        get_threads = kwargs.get("get_threads", torch.get_num_threads)
        if check_threads(threads) is not None:
            return cls._fixed(threads, "--threads", **kwargs)
        if os.environ.get("OMP_NUM_THREADS", "").strip():
            return cls._fixed(get_threads(), "OMP_NUM_THREADS", **kwargs)
        if get_threads() != _TORCH_DEFAULT_THREADS:
            return cls._fixed(get_threads(), "torch.set_num_threads", **kwargs)
        if device_type != "cpu" or world_size > 1:
            return cls._fixed(get_threads(), "untuned", **kwargs)
        cpus = available_cpus()
        elsewhere = busy_elsewhere(since)
        idle = elsewhere is not None and (os.cpu_count() or 1) - elsewhere >= cpus - 0.5
        return cls(cpus, start=cpus if idle else None, source="auto", **kwargs)

    @classmethod
    def _fixed(cls, threads: int, source: str, **kwargs) -> "ThreadTuner":
        tuner = cls(threads, start=threads, source=source, **kwargs)
        tuner.counts = (threads,)  # one rung: nothing to probe
        return tuner

    def begin(self) -> None:
        """Start the clock: the time since the last step (between epochs) is no step's."""
        self._last = self.timer()

    def step_done(self, images: int) -> None:
        """Record one finished step of ``images`` images; may change torch's thread count for the next."""
        now = self.timer()
        seconds, self._last = (now - self._last if self._last is not None else None), now
        ran_at = self._trial if self._trial is not None else self.threads  # the count this step ran at
        self.steps_at[ran_at] = self.steps_at.get(ran_at, 0) + 1
        if len(self.counts) == 1:
            return
        if self._skip or seconds is None:
            self._skip = max(0, self._skip - 1)
            return
        self._seconds += seconds
        self._images += images
        self._steps += 1
        if self._trial is not None:
            self._probe_step(images)
        elif self._steps == self.window:
            rate = self._images / max(self._seconds, 1e-12)
            if self._reference is not None and rate < self.drop * self._reference:
                self._until_probe, self._wait = 0, self.period[0]  # the load changed: look again now
            self._reference = rate
            self._reset_window()
            self._until_probe -= self.window
            if self._until_probe <= 0:
                self._start_probe()

    def _probe_step(self, images: int) -> None:
        # The probe wins if its rate beats the reference by the margin; if its time already exceeds what
        # winning allows over the whole window, the remaining steps cannot change that: stop now.
        allowed = (self._images + (self.window - self._steps) * images) / ((1 + self.margin) * self._reference)
        if self._seconds >= allowed:
            self._end_probe(won=False)
        elif self._steps == self.window:
            self._end_probe(won=True)

    def _start_probe(self) -> None:
        i = self.counts.index(self.threads)
        up = self._up if 0 < i < len(self.counts) - 1 else i == 0
        self._trial = self.counts[i + 1 if up else i - 1]
        self._up = up
        self.probes += 1
        self._reset_window()
        self._set_threads(self._trial)

    def _end_probe(self, won: bool) -> None:
        trial, self._trial = self._trial, None
        if won:
            self._reference = self._images / max(self._seconds, 1e-12)
            self.threads, self.changes = trial, self.changes + 1
            self._wait = self.period[0]
            i = self.counts.index(trial)
            more = (i < len(self.counts) - 1) if self._up else i > 0
            # Keep climbing (or descending) while it pays; past the last rung, wait as after a loss.
            self._until_probe = self.window if more else self._draw(self._wait)
        else:
            self._set_threads(self.threads)
            self._up = not self._up
            self._wait = min(2 * self._wait, self.period[1])
            self._until_probe = self._draw(self._wait)
        self._reset_window()

    def _draw(self, wait: int) -> int:
        return max(1, round(wait * (1 + self.jitter * (2 * self.rng.random() - 1))))

    def _reset_window(self) -> None:
        self._seconds, self._images, self._steps = 0.0, 0, 0

    def restore(self) -> None:
        """Give torch back the count it had before this tuner (a notebook's later cells keep theirs)."""
        self._set_threads(self.before)

    def summary(self) -> dict:
        """What ``metrics.json`` records: ``{"start", "final", "max", "changes", "probes", "source",
        "steps_at_threads"}`` (steps run at each count, keys as strings for JSON)."""
        return {"start": self.start, "final": self.threads, "max": self.counts[-1], "changes": self.changes,
                "probes": self.probes, "source": self.source,
                "steps_at_threads": {str(k): v for k, v in sorted(self.steps_at.items())}}


@contextlib.contextmanager
def limit(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` threads in torch and in BLAS (numpy, scipy, scikit-learn), then restore both.

    For the evaluation after training: the count the run's tuner chose. BLAS is limited through
    threadpoolctl (installed with umap-learn's scikit-learn); without it only torch is.

    Example:
        >>> before = torch.get_num_threads()
        >>> with limit(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            blas = contextlib.nullcontext()
        else:
            blas = threadpool_limits(limits=threads, user_api="blas")
        with blas:
            yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def numba_limit(threads: int) -> Iterator[None]:
    """Run the block with at most ``threads`` numba threads (UMAP's), then restore; numba's count is per thread,
    so enter this in the thread that runs UMAP."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)
