"""Reference runs: the files the notebooks plot are made by the package's own loop and match its code."""
import json
import shlex
from dataclasses import replace

import matplotlib
import pytest

from crl_helpers import reference_runs
from crl_helpers.cli import build_parser, main
from crl_helpers.reference_runs import (EXPERIMENTS, augmentation_arms, curve, differences, final_values,
                                        load_reference, make_reference, plot_reference)
from crl_helpers.train import CPU

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TINY = dict(n_train=64, n_test=32, batch_size=32)  # a run of a second or two


def test_a_reference_file_holds_every_setting_seed_and_epoch_with_probes_where_due(tmp_path):
    out = tmp_path / "t.json"
    ref = make_reference("temperature", epochs=3, seeds=(0, 1), probe_every=2, out=out, command="crl reference x",
                         progress=False, base_changes=TINY)
    assert ref == json.loads(out.read_text()) and ref["command"] == "crl reference x"
    assert sorted(ref["settings"]) == ["tau = 0.05", "tau = 0.2", "tau = 1"]
    for setting, runs in ref["settings"].items():
        assert sorted(runs) == ["0", "1"]
        for rows in runs.values():
            assert [r["epoch"] for r in rows] == [1, 2, 3]
            assert [r["knn_shape"] is not None for r in rows] == [True, True, True]  # epoch 1, every 2nd, the last
            assert all(0 <= r["knn_hue"] <= 1 and r["loss"] > 0 for r in rows)
        assert ref["configs"][setting]["temperature"] == float(setting.split("= ")[1])
    ref5 = make_reference("temperature", epochs=3, seeds=(0,), probe_every=5, out=tmp_path / "u.json",
                          progress=False, base_changes=TINY)
    assert [r["knn_shape"] is not None for r in ref5["settings"]["tau = 0.2"]["0"]] == [True, False, True]


def test_an_interrupted_file_is_continued_and_only_the_missing_runs_train(tmp_path, monkeypatch):
    from crl_helpers import train as train_module

    out = tmp_path / "t.json"
    calls, interrupt = [], [True]
    real_train = train_module.train

    def counted(config, **kw):
        calls.append((config.temperature, config.seed))
        if interrupt[0] and len(calls) == 2:
            raise RuntimeError("interrupted")  # as Ctrl-C or a crash would, in the second run
        return real_train(config, **kw)

    monkeypatch.setattr(train_module, "train", counted)
    with pytest.raises(RuntimeError, match="interrupted"):
        make_reference("temperature", epochs=1, seeds=(0,), out=out, progress=False, base_changes=TINY)
    kept = json.loads(out.read_text())
    assert [s for s, runs in kept["settings"].items() if runs] == ["tau = 0.05"]  # the finished run was written
    with pytest.raises(ValueError, match="unfinished .*tau = 0.2 seed 0"):
        load_reference("temperature", out)
    calls.clear()
    interrupt[0] = False
    ref = make_reference("temperature", epochs=1, seeds=(0,), out=out, progress=False, base_changes=TINY)
    assert calls == [(0.2, 0), (1.0, 0)]  # tau = 0.05 was not trained again
    assert ref["settings"]["tau = 0.05"] == kept["settings"]["tau = 0.05"]


def test_a_file_of_another_budget_or_recipe_is_refused_not_mixed(tmp_path):
    out = tmp_path / "t.json"
    make_reference("temperature", epochs=1, seeds=(0,), out=out, progress=False, base_changes=TINY)
    with pytest.raises(ValueError, match="epochs"):
        make_reference("temperature", epochs=2, seeds=(0,), out=out, progress=False, base_changes=TINY)
    with pytest.raises(ValueError, match="configs"):
        make_reference("temperature", epochs=1, seeds=(0,), out=out, progress=False,
                       base_changes=TINY | dict(batch_size=16))
    with pytest.raises(ValueError, match="holds experiment 'temperature', not 'augmentation'"):
        load_reference("augmentation", out)
    (tmp_path / "notes.json").write_text("half a file {")
    with pytest.raises(ValueError, match="notes.json is not a reference file"):
        make_reference("temperature", epochs=1, seeds=(0,), out=tmp_path / "notes.json", progress=False)
    with pytest.raises(ValueError, match="is not a file"):
        make_reference("temperature", epochs=1, seeds=(0,), out=tmp_path, progress=False)


@pytest.mark.parametrize("bad, match", [(dict(name="nope"), "unknown; choose one of augmentation"),
                                        (dict(seeds=()), "at least one"), (dict(seeds=(1, 1)), "1 1 repeat a seed"),
                                        (dict(epochs=0), "epochs")])
def test_bad_requests_are_refused_in_one_line(tmp_path, bad, match):
    kw = dict(name="temperature", epochs=1, seeds=(0,), out=tmp_path / "t.json", progress=False) | bad
    with pytest.raises(ValueError, match=match):
        make_reference(**kw)


def test_curve_and_final_values_read_the_rows_against_a_hand_made_file():
    rows = lambda a, b: [{"epoch": 1, "knn_shape": a}, {"epoch": 2, "knn_shape": None}, {"epoch": 3, "knn_shape": b}]
    ref = {"seeds": [0, 1], "settings": {"s": {"0": rows(0.1, 0.5), "1": rows(0.2, 0.7)}}}
    assert curve(ref, "s", "knn_shape") == ([1, 3], [[0.1, 0.5], [0.2, 0.7]])
    assert final_values(ref, "s", "knn_shape") == [0.5, 0.7]


def test_the_arms_change_only_what_their_names_say():
    arms = augmentation_arms(CPU.views)
    assert arms["crop + colour"] == CPU.views
    assert replace(arms["crop only"], jitter_p=CPU.views.jitter_p, grayscale_p=CPU.views.grayscale_p) == CPU.views
    assert arms["crop only"].jitter_p == arms["crop only"].grayscale_p == 0
    assert arms["colour only"].crop_scale == arms["colour only"].crop_ratio == (1.0, 1.0)
    assert arms["colour only"].flip_p == 0 and arms["colour only"].jitter_p == CPU.views.jitter_p


# The shipped files: one per experiment, finished, made by the command they record, and trained with exactly the
# settings the package defines today (a changed recipe makes this fail until the file is made again).
@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_the_shipped_file_is_finished_and_matches_the_code_that_made_it(name):
    ref = load_reference(name)
    experiment = EXPERIMENTS[name]
    settings = experiment.settings(replace(experiment.base, epochs=ref["epochs"]))
    assert list(ref["settings"]) == list(settings)
    for setting, config in settings.items():
        assert differences(ref, setting, config) == [], setting
        assert ref["configs"][setting]["epochs"] == ref["epochs"]
    args = build_parser().parse_args(shlex.split(ref["command"])[1:])
    assert (args.command, args.experiment, args.epochs, args.seeds, args.probe_every) == \
        ("reference", name, ref["epochs"], ref["seeds"], ref["probe_every"])
    assert len(ref["seeds"]) >= 3 and ref["date"] and ref["machine"] and ref["seconds"] > 0
    assert (reference_runs.REFERENCE_DIR / f"{name}.json").stat().st_size < 200_000  # small enough to ship


def test_differences_names_the_field_that_differs():
    ref = load_reference("augmentation")
    base = replace(EXPERIMENTS["augmentation"].base, epochs=5, knn_every=5, data_root="../data")
    assert differences(ref, "crop + colour", base) == []
    theirs = ref["configs"]["crop + colour"]["lr"]
    assert differences(ref, "crop + colour", replace(base, lr=1e-3)) == [f"lr: 0.001 vs {theirs}"]
    assert differences(ref, "crop only", base)[0].startswith("views: ")  # crop + colour's views are not crop only's


def test_plot_reference_draws_one_curve_per_setting_and_the_learners_dots():
    ref = load_reference("augmentation")
    fig, ax = plt.subplots()
    plot_reference(ax, ref, "knn_shape", short={"crop only": [0.2, 0.3, 0.25]}, short_epochs=5)
    labels = [line.get_label() for line in ax.get_lines()]
    assert [f"{s} (reference)" for s in ref["settings"]] == [l for l in labels if l.endswith("(reference)")]
    assert "your runs (5 epochs)" in labels
    assert len(ax.containers) == 1  # one error bar: the one short setting passed
    plt.close(fig)


def test_the_cli_refuses_an_unknown_experiment_in_one_line(capsys):
    assert main(["reference", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and "augmentation" in err[0]


def test_the_cli_writes_the_file_and_records_its_own_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reference_runs, "EXPERIMENTS", {**EXPERIMENTS, "temperature": replace(
        EXPERIMENTS["temperature"], base=replace(EXPERIMENTS["temperature"].base, **TINY))})
    out = tmp_path / "t.json"
    argv = ["reference", "temperature", "--epochs", "1", "--seeds", "3", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    ref = json.loads(out.read_text())
    assert ref["command"] == "crl " + " ".join(argv) and ref["seeds"] == [3]
    assert f"written to {out}" in capsys.readouterr().out


def test_the_readme_table_of_reference_runs_is_read_from_the_files():
    from pathlib import Path

    from crl_helpers.reference_runs import reference_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert reference_table() in readme  # the README holds reference_table() as printed
