"""crl_helpers.threads: the CPUs a process may use (faked affinity and cgroup files), the user's count
winning, and the tuner's decisions on a fake clock (no timing is measured here: benchmarks/shared_cores.py does).
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import replace

import pytest
import torch

from crl_helpers import cli, threads
from crl_helpers.threads import ThreadTuner, available_cpus, busy_elsewhere, cgroup_cpu_limit, cpu_snapshot, limit
from crl_helpers.train import CPU, train


# ----------------------------------------------------------------- CPUs from affinity and cgroup quota
def _cgroup(tmp_path, files: dict[str, str], proc: str = "0::/\n"):
    """A fake cgroup tree under tmp_path/cg and a fake /proc/self/cgroup naming the process's cgroup."""
    root = tmp_path / "cg"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    root.mkdir(exist_ok=True)
    (tmp_path / "proc_cgroup").write_text(proc)
    return root, tmp_path / "proc_cgroup"


@pytest.mark.parametrize("files, proc, expected", [
    ({"cpu.max": "100000 100000\n"}, "0::/\n", 1.0),  # v2, 1 CPU
    ({"cpu.max": "max 100000\n"}, "0::/\n", None),  # v2, no quota
    ({"cpu.max": "150000 100000\n"}, "0::/\n", 1.5),  # v2, fractional
    # v2: the process's own cgroup below the root holds the quota (what loky's root-only read misses)
    ({"user.slice/job/cpu.max": "50000 100000\n", "user.slice/cpu.max": "max 100000\n"}, "0::/user.slice/job\n", 0.5),
    # v2: the tightest of the cgroup and its ancestors wins
    ({"a/b/cpu.max": "400000 100000\n", "a/cpu.max": "200000 100000\n"}, "0::/a/b\n", 2.0),
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, "3:cpu:/\n", 2.0),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "3:cpu:/\n", None),  # v1, no quota
    ({"cpu,cpuacct/docker/x/cpu.cfs_quota_us": "150000\n", "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n"},
     "5:cpu,cpuacct:/docker/x\n", 1.5),  # v1, fractional, in a nested cgroup of a joint mount
    ({}, "0::/\n", None),  # no cgroup files at all (not Linux, or no controller)
    ({"cpu.max": "garbage\n"}, "0::/\n", None),
])
def test_cgroup_cpu_limit_reads_v1_and_v2_quotas(tmp_path, files, proc, expected):
    root, proc_cgroup = _cgroup(tmp_path, files, proc)
    assert cgroup_cpu_limit(root, proc_cgroup) == expected


@pytest.mark.parametrize("cpu_max, affinity, expected", [
    ("max 100000", 4, 4),  # no quota: the affinity mask
    ("100000 100000", 4, 1),  # a 1-CPU quota
    ("150000 100000", 4, 2),  # fractional: rounded up, the tuner measures whether the part pays
    ("50000 100000", 4, 1),  # half a CPU: still one thread, never zero
    ("800000 100000", 2, 2),  # a quota above the affinity mask: the mask
    ("100001 100000", 4, 2),  # a hair above 1 CPU: rounded up too
])
def test_available_cpus_is_the_affinity_capped_by_the_quota(tmp_path, monkeypatch, cpu_max, affinity, expected):
    root, proc_cgroup = _cgroup(tmp_path, {"cpu.max": cpu_max + "\n"})
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(affinity)), raising=False)
    assert available_cpus(root, proc_cgroup) == expected


# ----------------------------------------------------------------- the user wins
def _for_run(**kwargs) -> tuple[ThreadTuner, list[int]]:
    calls = []
    tuner = ThreadTuner.for_run(**kwargs, set_threads=calls.append, get_threads=lambda: 2)
    return tuner, calls


def test_omp_num_threads_in_the_environment_fixes_the_count(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    tuner, calls = _for_run()
    assert tuner.summary()["source"] == "OMP_NUM_THREADS" and tuner.counts == (2,)
    tuner.begin()
    for _ in range(500):
        tuner.step_done(64)
    assert calls == [2] and tuner.summary()["probes"] == 0  # set once, to the count it already had


def test_an_earlier_torch_set_num_threads_fixes_the_count(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_TORCH_DEFAULT_THREADS", 4)  # torch had 4 at import; the user set 2
    tuner, _ = _for_run()
    assert (tuner.summary()["source"], tuner.counts) == ("torch.set_num_threads", (2,))


def test_the_threads_argument_fixes_the_count_and_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    tuner, calls = _for_run(threads=3)
    assert (tuner.summary()["source"], tuner.counts, calls) == ("--threads", (3,), [3])
    with pytest.raises(ValueError, match=r"threads=0 must be an integer >= 1"):
        _for_run(threads=0)


def test_off_the_cpu_or_under_torchrun_nothing_is_tuned(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_TORCH_DEFAULT_THREADS", 2)
    assert _for_run(device_type="cuda")[0].summary()["source"] == "untuned"
    assert _for_run(world_size=2)[0].summary()["source"] == "untuned"


def test_auto_climbs_a_ladder_from_one_to_the_available_cpus(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_TORCH_DEFAULT_THREADS", 2)
    monkeypatch.setattr(threads, "available_cpus", lambda: 12)
    tuner, calls = _for_run()
    assert (tuner.summary()["source"], tuner.counts, tuner.threads, calls) == ("auto", (1, 3, 6, 12), 1, [1])


@pytest.mark.parametrize("busy, cpus, expected", [
    (0.1, 2, 2),  # others idle while the data loaded: all threads at once
    (1.0, 2, 1),  # one CPU kept busy by another process (a second run, a browser): start at one and climb
    (None, 2, 1),  # unknown (no /proc/stat, or too short to tell): start at one
    (3.0, 64, 1),  # a big machine whose other processes leave fewer than 64 CPUs idle
    (3.0, 16, 16),  # ... but 61 idle CPUs are enough for 16
])
def test_auto_starts_with_all_threads_only_where_the_others_left_them_idle(monkeypatch, busy, cpus, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_TORCH_DEFAULT_THREADS", 2)
    monkeypatch.setattr(threads, "available_cpus", lambda: cpus)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda since: busy)
    monkeypatch.setattr(os, "cpu_count", lambda: 64 if cpus > 2 else 2)
    tuner, calls = _for_run(since=(0.0, 0.0, 0.0))
    assert tuner.threads == tuner.start == expected and calls == [expected]


def test_busy_elsewhere_subtracts_this_process_and_needs_a_measurable_interval():
    # (wall s, machine busy CPU-s, own CPU-s): 1.5 s of wall time, 2.4 CPU-s busy, 0.9 of them ours.
    assert busy_elsewhere((10.0, 100.0, 5.0), (11.5, 102.4, 5.9)) == pytest.approx(1.0)
    assert busy_elsewhere((10.0, 100.0, 5.0), (10.1, 100.2, 5.0)) is None  # 0.1 s: ticks too coarse to tell
    assert busy_elsewhere(None, (1.0, 1.0, 1.0)) is None
    assert busy_elsewhere((0.0, 0.0, 0.0), (1.0, 0.5, 0.9)) == 0.0  # never below 0 (tick rounding)
    snapshot = cpu_snapshot()
    if snapshot is not None:  # Linux: the machine's busy time includes ours
        wall, machine, own = snapshot
        assert machine >= 0 and own >= 0 and wall > 0


# ----------------------------------------------------------------- the tuner on a fake clock
def _simulate(step_seconds, steps: int, max_threads: int = 2, seed: int = 0, **kwargs):
    """Run a tuner for ``steps`` steps whose duration is ``step_seconds(threads, step)``; returns the
    tuner, the count each step ran at, and the count the tuner kept after each step."""
    clock, state = [0.0], {}

    def set_threads(n: int) -> None:
        assert isinstance(n, int) and n >= 1, n
        state["threads"] = n

    tuner = ThreadTuner(max_threads, timer=lambda: clock[0], set_threads=set_threads, get_threads=lambda: max_threads,
                        rng=random.Random(seed), **kwargs)
    ran, kept = [], []
    tuner.begin()
    for step in range(steps):
        ran.append(state["threads"])
        clock[0] += step_seconds(state["threads"], step)
        tuner.step_done(64)
        kept.append(tuner.threads)
    return tuner, ran, kept


ALONE = {1: 1.24, 2: 1.0}  # seconds a step: 2 threads 1.24x faster on idle cores (the measurement)
BUSY = {1: 1.0, 2: 5.0}  # beside a busy process, 2 threads wait a time slice per op: 5x slower


def test_alone_it_climbs_to_all_threads_and_stays():
    tuner, ran, _ = _simulate(lambda n, step: ALONE[n], 400)
    assert tuner.threads == 2 and tuner.changes == 1
    assert ran.index(2) < 20  # the first probe comes within a few windows
    assert ran.count(1) / len(ran) < 0.1  # the later probes of 1 thread cost little: the waits double


def test_beside_a_busy_process_it_stays_at_one_thread_and_a_probe_of_two_costs_one_step():
    tuner, ran, _ = _simulate(lambda n, step: BUSY[n], 400)
    assert tuner.threads == 1 and tuner.changes == 0 and tuner.probes >= 2
    # Every probe of 2 threads stopped after its first step: 5 s is more than winning allowed.
    assert ran.count(2) == tuner.probes
    assert not any(a == b == 2 for a, b in zip(ran, ran[1:]))


def test_starting_at_all_threads_on_busy_cores_it_comes_down():
    # All threads at the start means the machine looked idle; a load there from the first step is found by the
    # first probe, within the shortest wait (25 steps, +-50%).
    tuner, ran, _ = _simulate(lambda n, step: BUSY[n], 100, start=2)
    assert tuner.threads == 1 and ran[40:].count(2) <= 2


def test_it_follows_the_load_as_it_comes_and_goes():
    def seconds(n, step):  # idle, then a busy neighbour for steps 150-599, then idle again
        return (BUSY if 150 <= step < 600 else ALONE)[n]

    tuner, ran, _ = _simulate(seconds, 1000)
    assert ran[100:150].count(2) >= 45  # idle: all threads
    # Busy: down within a few windows (a slowed window starts a probe at once), then single-step probes of 2.
    assert 1 in ran[150:170] and ran[170:600].count(2) <= 10
    assert ran[950:].count(2) >= 40 and tuner.threads == 2  # idle again: back up within the longest wait


def test_never_zero_threads_and_always_a_count_of_the_ladder():
    rng = random.Random(1)
    for trial in range(20):
        max_threads = rng.randint(1, 32)
        speed = {n: rng.uniform(0.5, 5.0) for n in range(1, max_threads + 1)}
        tuner, ran, kept = _simulate(lambda n, step: speed[n] * rng.uniform(0.7, 1.3), 300, max_threads, seed=trial)
        assert set(ran) | set(kept) <= set(tuner.counts) and min(ran) >= 1
        assert tuner.counts[0] == 1 and tuner.counts[-1] == max_threads


def test_never_flapping_even_when_every_probe_wins():
    # An adversarial clock: the first 4 steps after any change are fast, the rest slow, so every probe wins.
    last = {"threads": None, "steps": 0}

    def seconds(n, step):
        if n != last["threads"]:
            last.update(threads=n, steps=0)
        last["steps"] += 1
        return 0.5 if last["steps"] <= 4 else 1.0

    period, jitter = (25, 200), 0.5
    tuner, _, kept = _simulate(seconds, 2000, period=period, jitter=jitter)
    changes = [i for i, (a, b) in enumerate(zip(kept, kept[1:])) if a != b]
    assert len(changes) == tuner.changes >= 10  # the clock did make it switch, every probe...
    gaps = [b - a for a, b in zip(changes, changes[1:])]
    assert min(gaps) >= period[0] * (1 - jitter)  # ...but at most once per shortest wait


def test_equal_speeds_with_noise_rarely_change_the_count():
    rng = random.Random(2)
    tuner, _, _ = _simulate(lambda n, step: rng.uniform(0.97, 1.03), 2000)
    assert tuner.changes <= 3  # the 5% margin keeps noise from moving it
    assert tuner.probes <= 2000 // 25


def test_a_fixed_count_never_probes():
    fixed = ThreadTuner._fixed(2, "--threads", set_threads=lambda n: None, get_threads=lambda: 2)
    fixed.begin()
    for _ in range(300):
        fixed.step_done(64)
    assert fixed.summary() == {"start": 2, "final": 2, "max": 2, "changes": 0, "probes": 0, "source": "--threads",
                               "steps_at_threads": {"2": 300}}


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="max_threads=0 must be an integer >= 1"):
        ThreadTuner(0, set_threads=lambda n: None)
    with pytest.raises(ValueError, match=r"start=3 is not one of the counts tried, \(1, 2, 4\)"):
        ThreadTuner(4, start=3, set_threads=lambda n: None)


# ----------------------------------------------------------------- the loop, the evaluation and the CLI
TINY = replace(CPU, epochs=2, n_train=128, n_test=32, batch_size=32, out_dir=None, progress=False, knn_every=0)


def test_train_records_the_counts_and_gives_torch_its_count_back(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_TORCH_DEFAULT_THREADS", before)
    result = train(TINY)
    assert torch.get_num_threads() == before
    summary = result.threads
    assert summary["source"] == "auto" and summary["start"] in (1, summary["max"]) and summary["max"] == available_cpus()
    assert sum(summary["steps_at_threads"].values()) == 2 * (128 // 32)  # every step was counted


def test_train_with_threads_uses_that_count_in_every_step(monkeypatch):
    seen = []
    real_step_done = ThreadTuner.step_done
    monkeypatch.setattr(ThreadTuner, "step_done", lambda self, images: (seen.append(torch.get_num_threads()),
                                                                         real_step_done(self, images)))
    result = train(TINY, threads=1)
    assert seen == [1] * 8 and result.threads["source"] == "--threads"


def test_metrics_json_records_the_threads_and_the_user_count_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    status = cli.main(["train", "--n-train", "64", "--n-test", "16", "--batch-size", "32", "--epochs", "1",
                       "--device", "cpu", "--no-umap", "--quiet", "--out", str(tmp_path / "run")])
    assert status == 0
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())["threads"]
    assert recorded["source"] == "OMP_NUM_THREADS" and recorded["changes"] == 0
    assert torch.get_num_threads() == before


def test_cli_threads_must_be_at_least_one(capsys):
    assert cli.main(["train", "--threads", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["crl: error: argument --threads: 0 must be >= 1; e.g. 1 (see: crl train --help)"]


def test_limit_sets_torch_and_blas_and_restores_both():
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    blas_before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    with limit(1):
        assert torch.get_num_threads() == 1
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
    assert torch.get_num_threads() == before
    assert [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"] == blas_before


def test_the_evaluation_runs_at_the_count_training_ended_with(monkeypatch):
    from crl_helpers import report
    from crl_helpers.train import load_data

    data = load_data(TINY)
    result = train(TINY, data=data, threads=1)
    seen = []
    real_knn = report.knn_accuracy
    monkeypatch.setattr(report, "knn_accuracy", lambda *a, **k: (seen.append(torch.get_num_threads()), real_knn(*a, **k))[1])
    before = torch.get_num_threads()
    metrics = report.evaluate_run(result, *data, TINY)
    assert seen == [1, 1] and metrics["threads"] == result.threads  # trained and random-init kNN
    assert torch.get_num_threads() == before


def test_numba_limit_sets_numbas_count_in_this_thread_and_restores_it():
    numba = pytest.importorskip("numba")
    before = numba.get_num_threads()
    with threads.numba_limit(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
