"""Tests for benchmarks/: both scripts in --quick CPU mode, their planning helpers, the device script's flags.

cifar10_knn.py runs as the device check runs it (``python benchmarks/cifar10_knn.py``) with
tqdm, matplotlib and umap made unimportable: the GPU box may lack them, and nothing it
imports (throughput.py, crl_helpers.train, crl_helpers.evaluate) may need them.
"""
import importlib.util
import io
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def _load(name: str):
    """Import a benchmark script as a module (benchmarks/ is no package)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def _run(script: str, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a script in a subprocess where tqdm, matplotlib and umap cannot be imported."""
    blocked = tmp_path / "blocked"
    blocked.mkdir(exist_ok=True)
    for name in ("tqdm", "matplotlib", "umap"):
        (blocked / f"{name}.py").write_text(f"raise ImportError('{name} is blocked: the benchmark path must not need it')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


# ----------------------------------------------------------------- throughput
@pytest.fixture
def keep_threads():
    """main(["--quick"]) runs single-threaded; give the rest of the session its threads back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_throughput_quick_prints_the_three_pipelines_and_both_ratios(tmp_path, keep_threads, capsys):
    # In this process, to import torch once (the kNN test below runs its script in a clean subprocess).
    out = tmp_path / "throughput.json"
    assert _load("throughput").main(["--quick", "--pipelines", "abcd", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for label in ("(a) classic DataLoader", "(b) crl_helpers: ViewAugmenter", "(c) model step only", "(d) variant"):
        assert label in text
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert set(rows) == {"a", "b", "c", "c_repeat", "d"} and result["quick"] and result["card"] == "CPU"
    for row in rows.values():
        assert row["steps"] == 2 and row["seconds"] > 0 and row["images_per_second"] > 0  # --quick: 2 timed steps
        assert math.isfinite(row["loss"]) and row["loss"] > 0
    assert f"ratio b/a = {result['b_over_a']:.2f}" in text and f"ratio b/c = {result['b_over_c']:.2f}" in text
    # the table comes last, the ratios and anchors at its foot
    assert text.rstrip().splitlines()[-1].startswith("anchors")


def _row(images_per_second: float) -> dict:
    return {"steps": 10, "seconds": 2.0, "images_per_second": images_per_second, "loss": 1.5}


def test_ratios_and_table_of_known_rows():
    throughput = _load("throughput")
    rows = {"a": _row(100.0), "b": _row(350.0), "c": _row(500.0), "c_repeat": _row(400.0)}
    assert throughput.ratios(rows) == {"b_over_a": 3.5, "b_over_c": 0.7}  # b/c against the faster (c) run
    assert throughput.ratios({"b": _row(350.0), "c_repeat": _row(400.0)}) == {}  # no (a), no first (c)
    table = throughput.format_table({"rows": rows, **throughput.ratios(rows)}, workers=4, quick=False).splitlines()
    assert table[1:5] == [
        "(a) classic DataLoader, 4 workers, PIL views       10     2.00           100   1.500",
        "(b) crl_helpers: ViewAugmenter on device           10     2.00           350   1.500",
        "(c) model step only, pre-augmented views           10     2.00           500   1.500",
        "(c) again, after (a): the timer's spread           10     2.00           400   1.500",
    ]
    assert table[5:7] == ["ratio b/a = 3.50  (target >= 3.5, on one H100/H200)",
                          "ratio b/c = 0.70  (target >= 0.9, on one H100/H200; c = the faster of its runs)"]
    assert table[-1].startswith("anchors")


def test_throughput_rejects_bad_flags_with_a_message(keep_threads, capsys):
    throughput = _load("throughput")
    assert throughput.main(["--quick", "--pipelines", "xyz"]) == 2
    assert "--pipelines 'xyz'" in capsys.readouterr().err
    assert throughput.main(["--quick", "--preset", "nope"]) == 2
    assert "--preset 'nope' is unknown" in capsys.readouterr().err


# ---------------------------------------------------------------- cifar10_knn
def _tiny_cifar10_npz(path: Path, n_train: int = 96, n_test: int = 32) -> None:
    """A small file in the offline copy's format: JPEG bytes, offsets, labels, class names."""
    from PIL import Image

    from crl_helpers.shapes import make_shapes

    arrays = {"class_names": np.array([f"class{i}" for i in range(10)])}
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        data = make_shapes(n, seed=seed)
        blobs = []
        for img in data.x.permute(0, 2, 3, 1).numpy():
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=75)
            blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
        arrays[f"{split}_jpeg"] = np.concatenate(blobs)
        arrays[f"{split}_offsets"] = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        arrays[f"y_{split}"] = data.y.numpy().astype(np.int64)
    np.savez(path, **arrays)


def test_cifar10_knn_quick_from_a_small_local_npz(tmp_path):
    _tiny_cifar10_npz(tmp_path / "cifar10_jpeg.npz")
    out = tmp_path / "knn.json"
    # --minutes 60: a budget that fits --quick's cap of 2 epochs on any machine, so the plan is always 2 epochs.
    proc = _run("cifar10_knn.py", ["--quick", "--minutes", "60", "--dataset", "cifar10", "--data-root", str(tmp_path),
                                   "--json", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "JPEG copy" in text and "kNN k=200 (t=0.1)" in text and "kNN k=10 majority" in text
    result = json.loads(out.read_text())
    assert result["jpeg_copy"] and (result["n_train"], result["n_test"]) == (96, 32)
    assert result["epochs"] == 2 and [row["epoch"] for row in result["rows"]] == [1, 2]  # --quick: 2 evaluations
    # Two epochs on 96 images leave the features at chance level (kNN 0.06-0.19 against 0.09-0.16 at random
    # init), so these figures are checked for form; test_knn_scores_known_answers checks their computation.
    for row in result["rows"]:
        for key in ("knn_k200", "knn_k10_majority"):
            # an accuracy over 32 test images is a whole number of them
            assert 0.0 <= row[key] <= 1.0 and row[key] * 32 == pytest.approx(round(row[key] * 32), abs=1e-4)
    assert result["final"] == result["rows"][-1]
    assert re.search(r"final: kNN k=200 \d\.\d{4}, k=10 majority \d\.\d{4}", text)
    assert "not judged" in text  # a CPU smoke run makes no claim about the GPU target


class _LabelReader(torch.nn.Module):
    """An encoder whose features are the one-hot label that _label_images wrote into every pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 3, H, W) in [0, 1] (mean 0, std 1)
        return torch.nn.functional.one_hot((x[:, 0, 0, 0] * 255 / 25).round().long(), 10).float()  # (B, 10)


def _label_images(shown: torch.Tensor) -> torch.Tensor:
    return (25 * shown).to(torch.uint8)[:, None, None, None].expand(-1, 3, 8, 8).contiguous()  # (N, 3, 8, 8)


def test_knn_scores_known_answers():
    cifar10_knn = _load("cifar10_knn")
    config = cifar10_knn.PRESETS["cifar10-gpu"]  # k=200 (more than the 100 training points) with t=0.1
    y_train, y_test = torch.arange(100) % 10, torch.arange(30) % 10  # 10 training images per class

    def scores(shown_train: torch.Tensor) -> dict:
        return cifar10_knn.knn_scores(_LabelReader(), _label_images(shown_train), y_train, _label_images(y_test),
                                      y_test, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), config, torch.device("cpu"))

    # Each test image's nearest neighbours (cosine 1, every other 0) are the training images of its class.
    assert scores(y_train) == {"knn_k200": 1.0, "knn_k10_majority": 1.0}
    # Training images that show the next class: every nearest neighbour carries the wrong label.
    assert scores((y_train + 1) % 10) == {"knn_k200": 0.0, "knn_k10_majority": 0.0}


def test_cifar10_knn_without_data_says_how_to_get_it(tmp_path, monkeypatch, keep_threads, capsys):
    from crl_helpers import data

    def offline(root, split, download):
        raise data._offline_error("CIFAR-10", root, OSError("no network"))

    monkeypatch.setattr(data, "_load_cifar10", offline)
    assert _load("cifar10_knn").main(["--quick", "--dataset", "cifar10", "--data-root", str(tmp_path)]) == 2
    assert "cifar10_knn: error: CIFAR-10 is not in" in capsys.readouterr().err


@pytest.mark.parametrize(
    "budget, per_epoch, overhead, max_epochs, expected",
    [
        (300.0, 1.4, 60.0, None, 171),  # floor(240 / 1.4)
        (300.0, 1.5, 0.0, None, 200),  # exactly 200 epochs fit
        (10.0, 3.0, 0.0, None, 3),
        (1.0, 3.0, 0.0, None, 1),  # never fewer than one epoch
        (10.0, 3.0, 20.0, None, 1),  # overhead beyond the budget
        (100.0, 1.0, 0.0, 5, 5),
    ],
)
def test_plan_epochs_is_the_floor_of_what_fits(budget, per_epoch, overhead, max_epochs, expected):
    cifar10_knn = _load("cifar10_knn")
    assert cifar10_knn.plan_epochs(budget, per_epoch, overhead, max_epochs) == expected


def test_plan_epochs_rejects_a_zero_epoch_time():
    with pytest.raises(ValueError, match="seconds_per_epoch"):
        _load("cifar10_knn").plan_epochs(10.0, 0.0)


def test_evaluation_epochs_are_spread_and_end_at_the_last():
    evaluation_epochs = _load("cifar10_knn").evaluation_epochs
    assert evaluation_epochs(10, 5) == [2, 4, 6, 8, 10]
    assert evaluation_epochs(7, 1) == [7]
    assert evaluation_epochs(2, 5) == [1, 2]


# --------------------------------------------------------------- device check
def _flags_passed(script: str) -> list[list[str]]:
    """The argument lists device_check.sh builds for ``script`` (both modes), with shell variables filled."""
    text = (BENCHMARKS / "device_check.sh").read_text()
    prefix = "throughput" if script == "throughput" else "knn"
    args = re.findall(rf"{prefix}_args\+?=\((.*?)\)", text)
    words = [w.replace('"', "") for part in args for w in shlex.split(part, posix=False)]
    values = {"$DATA": ".device-data", "$OUT/throughput.json": "x.json", "$OUT/cifar10_knn.json": "x.json",
              "$STEPS": "300", "$minutes": "4.5"}
    # ${THROUGHPUT_ARGS:-} / ${KNN_ARGS:-}: extra flags from the environment, empty by default
    words = [values.get(w, w) for w in words if not w.startswith("${")]
    return words


def test_device_check_is_valid_bash_and_passes_flags_the_scripts_accept():
    subprocess.run(["bash", "-n", str(BENCHMARKS / "device_check.sh")], check=True)
    for script in ("throughput", "cifar10_knn"):
        words = _flags_passed(script)
        assert "--json" in words and "--data-root" in words
        _load(script).build_parser().parse_args(words)  # argparse exits on an unknown flag


@pytest.mark.parametrize("script", ["throughput", "cifar10_knn"])
def test_docstring_examples_of_the_scripts_run(script):
    # pytest collects doctests only under its testpaths (tests/, crl_helpers/), so run these here.
    import doctest

    result = doctest.testmod(_load(script), verbose=False)
    assert result.attempted >= 1 and result.failed == 0


def test_throughput_profile_names_the_stages_of_a_step(tmp_path, keep_threads, capsys):
    out = tmp_path / "throughput.json"
    assert _load("throughput").main(["--quick", "--pipelines", "b", "--profile", str(tmp_path / "prof"),
                                     "--json", str(out)]) == 0
    text = capsys.readouterr().out
    profile = json.loads(out.read_text())["profile"]
    # the package's labels: the views, the forward + loss, the backward, the optimizer step
    assert set(profile["stages_ms_per_step"]) == {"crl.views", "crl.forward_loss", "crl.backward", "crl.optimizer"}
    assert all(stage["cpu_ms"] > 0 for stage in profile["stages_ms_per_step"].values())
    table = (tmp_path / "prof" / "profile_b.txt").read_text()
    assert "convolution" in table and "crl.views" in table
    assert len(profile["top"]) == 12 and "ms/step" in text


def test_cifar10_knn_recipe_flags_reach_the_config():
    module = _load("cifar10_knn")
    args = module.build_parser().parse_args(["--lr", "0.3", "--temperature", "0.1", "--optimizer", "adamw",
                                             "--weight-decay", "1e-4"])
    config, _ = module._settings(args)
    assert (config.lr, config.temperature, config.optimizer, config.weight_decay) == (0.3, 0.1, "adamw", 1e-4)
    default, _ = module._settings(module.build_parser().parse_args([]))
    assert (default.lr, default.temperature) == (module.PRESETS["cifar10-gpu"].lr, module.PRESETS["cifar10-gpu"].temperature)


def test_device_check_passes_extra_flags_and_can_skip_step_one(tmp_path):
    env = {**os.environ, "QUICK": "1", "PYTHON": sys.executable, "OUT": str(tmp_path), "SKIP_THROUGHPUT": "1",
           "KNN_ARGS": "--temperature 0.3 --lr 0.01", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(BENCHMARKS / "device_check.sh")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "throughput: skipped" in proc.stdout and not (tmp_path / "throughput.json").exists()
    result = json.loads((tmp_path / "cifar10_knn.json").read_text())
    assert "--temperature 0.3 --lr 0.01" in result["command"]


def test_cpu_main_job_quick_times_every_variant_in_its_own_process(tmp_path):
    import json

    out = tmp_path / "cpu.json"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "cpu_main_job.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert set(results["step_seconds"]) == {
        "plain: fp32, NCHW, default OpenMP waiting", "fp32, channels_last, default OpenMP waiting",
        "crl train: auto precision, channels_last, short spin", "auto precision, channels_last, no spin (PASSIVE)",
        "forced bf16, channels_last, short spin"}
    assert all(0 < s < 60 for s in results["step_seconds"].values())
    assert "crl train's step / plain step" in done.stdout and "| variant |" in done.stdout


def test_crl_helpers_sets_a_short_openmp_spin_unless_the_user_chose():
    # The package sets GOMP_SPINCOUNT when it loads (before torch, in the CLI and notebooks), never over a choice.
    code = ("import os; "
            "import torch, crl_helpers; print(os.environ.get('GOMP_SPINCOUNT'))")
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.stdout.strip() == "3000"  # crl_helpers sets it when nobody did
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.stdout.strip() == "None"  # a user's OMP_WAIT_POLICY wins: nothing is added


# ----------------------------------------------------------------- shared_cores
def test_shared_cores_targets_are_the_issue_ratios():
    shared = _load("shared_cores")
    # The issue's table (2 cores, before the tuner): ratios by hand, 3263 images/s alone.
    rows = {shared.ALONE: 3263, shared.ONE: 2623, shared.ALL: 1936, shared.TWO: 79 + 79, shared.BUSY: 499,
            shared.QUOTA: 1790}
    got = {c["target"]: (round(c["ratio"], 3), c["met"]) for c in shared.check_targets(rows)}
    assert got == {"default alone >= 0.9 x the better fixed count": (round(3263 / 2623, 3), True),
                   "two runs at once >= 0.8 x alone": (round(158 / 3263, 3), False),
                   "beside a busy process >= 0.45 x alone": (round(499 / 3263, 3), False),
                   "under a 1-CPU quota >= 0.45 x alone": (round(1790 / 3263, 3), True)}
    del rows[shared.QUOTA]  # a skipped situation: its target is left out, not failed
    assert len(shared.check_targets(rows)) == 3
    assert doctest_failures(shared) == 0


def doctest_failures(module) -> int:
    import doctest

    result = doctest.testmod(module, verbose=False)
    assert result.attempted >= 1
    return result.failed


def test_shared_cores_dry_run_prints_the_plan_and_runs_nothing(capsys, monkeypatch):
    shared = _load("shared_cores")
    monkeypatch.setattr(shared, "measure", lambda *a, **k: pytest.fail("--dry-run ran the jobs"))
    assert shared.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    for name in (shared.ALONE, shared.ONE, shared.ALL, shared.TWO, shared.BUSY, shared.QUOTA):
        assert f"  {name}: " in out
    assert "OMP_NUM_THREADS=1 crl train --epochs 2 --n-train 2000 --n-test 500 --no-umap" in out


def test_shared_cores_measures_every_situation_with_a_stand_in_job(tmp_path, monkeypatch, capsys):
    # The orchestration end to end, with a job that writes a metrics.json at once instead of training:
    # it reports OMP_NUM_THREADS and whether it ran inside the quota's cgroup.
    shared = _load("shared_cores")
    stand_in = ("import json, os, sys; out = sys.argv[sys.argv.index('--out') + 1]; os.makedirs(out, exist_ok=True); "
                "n = int(os.environ.get('OMP_NUM_THREADS', '0')); "
                "json.dump({'images_per_second': 1000.0 + n, 'threads': {'final': n, 'changes': 0, "
                "'steps_at_threads': {}, 'source': 'stand-in'}}, open(os.path.join(out, 'metrics.json'), 'w'))")
    monkeypatch.setattr(shared, "job_command", lambda job, out: [sys.executable, "-c", stand_in, "--out", str(out)])
    joined = []
    monkeypatch.setattr(shared.CpuQuota, "create", lambda self: None)
    monkeypatch.setattr(shared.CpuQuota, "join", lambda self: joined.append(os.getpid()))  # in the child: no effect here
    speed, threads, skipped = shared.measure(shared.QUICK_JOB, 2, tmp_path)
    assert speed == {shared.ALONE: 1000.0, shared.ONE: 1001.0, shared.ALL: 1002.0, shared.TWO: 2000.0,
                     shared.BUSY: 1000.0, shared.QUOTA: 1000.0} and skipped == {}
    assert [t["final"] for t in threads[shared.TWO]] == [0, 0]
    table = shared.report(speed, threads, skipped)
    assert "| two runs at once (together) | 2,000 | 2.00 |" in table and "meets: beside a busy process" in table


def test_shared_cores_quota_cgroup_on_fake_v1_and_v2_trees(tmp_path):
    shared = _load("shared_cores")
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpuset cpu io memory\n")
    (v2 / "cgroup.subtree_control").write_text("memory\n")
    quota = shared.CpuQuota(1.0, root=str(v2))
    assert quota.create() is None
    assert (quota.folder / "cpu.max").read_text() == "100000 100000"
    assert (v2 / "cgroup.subtree_control").read_text() == "+cpu"  # the cpu controller switched on for children
    assert quota.procs == str(quota.folder / "cgroup.procs")  # where join() writes the child's pid
    v1 = tmp_path / "v1"
    (v1 / "cpu,cpuacct").mkdir(parents=True)
    quota = shared.CpuQuota(1.5, root=str(v1))
    assert quota.create() is None
    assert ((quota.folder / "cpu.cfs_quota_us").read_text(), (quota.folder / "cpu.cfs_period_us").read_text()) == (
        "150000", "100000")
    reason = shared.CpuQuota(1.0, root=str(tmp_path / "none")).create()
    assert reason.startswith("no cgroup v2 and no v1 cpu hierarchy under")


def test_the_readme_course_table_is_the_measured_course_times():
    # One source: README's smoke and CPU columns are course_times_{smoke,cpu}.json (benchmarks/course_times.py --readme).
    course_times = _load("course_times")
    text = course_times.README.read_text(encoding="utf-8")
    assert course_times.readme_table(text, course_times.read_times()) == text
