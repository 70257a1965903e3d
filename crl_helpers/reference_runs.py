"""Reference runs: three of the course's experiments at a longer budget, made by this package and shipped as files.

A notebook's CPU tier gives each experiment a few epochs. Some effects the course teaches need more than that
(crop + colour overtaking colour only, the number of negatives), so the course ships *reference
runs* of the same experiments: every setting at every seed, trained with :func:`crl_helpers.train.train` exactly as
the notebooks train it, for more epochs, probed every few epochs. Each experiment is one small JSON file in
``crl_helpers/reference/`` holding the per-epoch metrics of each run together with the command, the date, the
machine and the seeds that made it; a notebook loads it with :func:`load_reference` and plots it beside the
learner's own short run with :func:`plot_reference`.

The experiments (:data:`EXPERIMENTS`):

* ``augmentation``: crop only, colour only, crop + colour (notebook 05, section 8);
* ``temperature``: tau 0.05, 0.2, 1.0 (notebook 05, section 7);
* ``negatives``: MoCo with queues of K = 16, 256, 1024 keys (notebook 07, section 8).

Every probe asks two kNN questions of the encoder's features ``v`` on the same images for every run (seed 0's
draw of the data, as in notebook 05): the shape (the label, ``knn_shape``) and the object's hue bin (a nuisance,
``knn_hue``). ``crl reference NAME`` makes a file; it writes after every finished run and continues an
interrupted file where it stopped.

Example:
    >>> ref = load_reference("augmentation")
    >>> sorted(ref["settings"]) == sorted(AUGMENTATION_ARMS)
    True
    >>> len(final_values(ref, "crop + colour", "knn_shape")) == len(ref["seeds"])
    True
"""
from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from crl_helpers.objectives import ObjectiveConfig
from crl_helpers.train import CPU, TrainConfig
from crl_helpers.views import ViewConfig

__all__ = ["AUGMENTATION_ARMS", "EXPERIMENTS", "Experiment", "REFERENCE_DIR", "augmentation_arms", "curve",
           "differences", "final_values", "load_reference", "make_reference", "plot_reference", "reference_table"]

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"  # the shipped files, one per experiment
HUE_BINS = 6  # the nuisance question: the object's hue in 6 bins (chance 1/6)
METRICS = ("loss", "alignment", "uniformity", "knn_shape", "knn_hue")  # per-epoch columns of a run

# The views of the augmentation ablation, as changes to the course's views: crop only drops the colour changes,
# colour only drops the crop and the flip, crop + colour is the course's recipe.
AUGMENTATION_ARMS = {
    "crop only": dict(jitter_p=0.0, grayscale_p=0.0),
    "colour only": dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0),
    "crop + colour": {},
}


def augmentation_arms(views: ViewConfig) -> dict[str, ViewConfig]:
    """The three arms of the augmentation ablation built from ``views`` (name -> ViewConfig).

    Example:
        >>> arms = augmentation_arms(CPU.views)
        >>> arms["crop only"].jitter_p, arms["colour only"].crop_scale, arms["crop + colour"] == CPU.views
        (0.0, (1.0, 1.0), True)
    """
    return {name: replace(views, **changes) for name, changes in AUGMENTATION_ARMS.items()}


@dataclass(frozen=True)
class Experiment:
    """One experiment: a base config and the settings it compares (name -> config)."""

    name: str
    question: str  # what it asks, in one line
    notebook: str  # where the course plots it
    base: TrainConfig  # every setting is this config with one change
    settings: Callable[[TrainConfig], dict[str, TrainConfig]]


# Notebook 05's experiment runs (5,000 shapes, batch 128) and notebook 07's comparison runs (2,500 shapes,
# batch 64), in memory, no UMAP, no kNN inside train (the probes below replace it).
SHAPES_05 = replace(CPU, n_train=5000, n_test=1000, batch_size=128, linear_epochs=30, umap=False, knn_every=0,
                    out_dir=None, progress=False)
SHAPES_07 = replace(CPU, n_train=2500, n_test=1000, umap=False, knn_every=0, out_dir=None, progress=False,
                    objective=ObjectiveConfig(queue_size=1024, bank_negatives=1024))

EXPERIMENTS = {e.name: e for e in (
    Experiment("augmentation", "which views teach the shape: crop only, colour only, or both?", "05 §8", SHAPES_05,
               lambda base: {arm: replace(base, views=views) for arm, views in augmentation_arms(base.views).items()}),
    Experiment("temperature", "what the temperature does to alignment, uniformity and accuracy", "05 §7", SHAPES_05,
               lambda base: {f"tau = {t:g}": replace(base, temperature=t) for t in (0.05, 0.2, 1.0)}),
    Experiment("negatives", "does MoCo learn better with more negatives (a longer queue)?", "07 §8", SHAPES_07,
               lambda base: {f"K = {k}": replace(base, method="moco", objective=replace(base.objective, queue_size=k))
                             for k in (16, 256, 1024)}),
)}


def _experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment {name!r} is unknown; choose one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def load_reference(name: str, path: str | os.PathLike | None = None) -> dict:
    """The reference runs of experiment ``name``: the shipped file, or ``path``.

    Returns:
        dict with ``command``, ``date``, ``machine``, ``torch``, ``epochs``, ``seeds``, ``probe_every``,
        ``seconds``, ``configs`` (setting -> its TrainConfig as a dict) and ``settings``: setting -> seed (str)
        -> list of per-epoch rows (``epoch`` and the :data:`METRICS`; ``knn_*`` only at probed epochs, else None).

    Raises:
        ValueError: an unknown experiment, or a file that is not a finished reference run of it.
    """
    experiment = _experiment(name)
    file = Path(path) if path is not None else REFERENCE_DIR / f"{name}.json"
    if not file.is_file():
        raise ValueError(f"no reference file {file}; make it with: crl reference {name}")
    ref = json.loads(file.read_text())
    if ref.get("experiment") != experiment.name:
        raise ValueError(f"{file} holds experiment {ref.get('experiment')!r}, not {name!r}")
    missing = [f"{s} seed {seed}" for s in ref["settings"] for seed in ref["seeds"]
               if len(ref["settings"][s].get(str(seed), [])) != ref["epochs"]]
    if missing:
        raise ValueError(f"{file} is unfinished ({', '.join(missing[:3])} missing); finish it with its command: "
                         f"{ref['command']}")
    return ref


def curve(ref: dict, setting: str, metric: str) -> tuple[list[int], list[list[float]]]:
    """The epochs at which ``metric`` was recorded, and its values there: one list per seed.

    Example:
        >>> epochs, runs = curve(load_reference("augmentation"), "crop only", "knn_hue")
        >>> epochs[-1] == load_reference("augmentation")["epochs"] and len(runs[0]) == len(epochs)
        True
    """
    per_seed = [ref["settings"][setting][str(seed)] for seed in ref["seeds"]]
    epochs = [row["epoch"] for row in per_seed[0] if row.get(metric) is not None]
    return epochs, [[row[metric] for row in rows if row.get(metric) is not None] for rows in per_seed]


def final_values(ref: dict, setting: str, metric: str) -> list[float]:
    """``metric`` at the last epoch of each seed's run of ``setting`` (one value per seed)."""
    return [values[-1] for values in curve(ref, setting, metric)[1]]


# Fields that change how long or where a run goes, or what it reports, but not what one epoch of it trains.
NOT_THE_RECIPE = ("epochs", "seed", "data_root", "out_dir", "progress", "umap", "knn_every", "linear_epochs")


def differences(ref: dict, setting: str, config: TrainConfig) -> list[str]:
    """The fields in which ``config`` trains differently from the reference runs of ``setting``, as
    ``"field: yours vs reference"``; the budget and the bookkeeping (:data:`NOT_THE_RECIPE`) are left out.

    Example:
        >>> ref = load_reference("augmentation")
        >>> differences(ref, "crop + colour", replace(EXPERIMENTS["augmentation"].base, epochs=5))
        []
        >>> differences(ref, "crop + colour", replace(EXPERIMENTS["augmentation"].base, batch_size=64))
        ['batch_size: 64 vs 128']
    """
    yours, theirs = _as_json(config), ref["configs"][setting]
    return [f"{field}: {yours[field]} vs {theirs.get(field)}" for field in yours
            if field not in NOT_THE_RECIPE and yours[field] != theirs.get(field)]


def _as_json(config: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(config), default=str))


def plot_reference(ax, ref: dict, metric: str, short: dict[str, Sequence[float]] | None = None,
                   short_epochs: int | None = None, label: str | None = None) -> None:
    """Draw each setting's ``metric`` over the epochs of the reference runs (mean line, band: the seeds' range),
    and, with ``short``, the learner's own short runs (setting -> one value per seed) at ``short_epochs``.

    Example:
        >>> import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
        >>> fig, ax = plt.subplots()
        >>> plot_reference(ax, load_reference("augmentation"), "knn_shape", short={"crop only": [0.2, 0.3]},
        ...                short_epochs=5)
        >>> plt.close(fig)
    """
    from crl_helpers.verdicts import spread

    for i, setting in enumerate(ref["settings"]):
        colour = f"C{i}"
        epochs, runs = curve(ref, setting, metric)
        by_epoch = [spread(values) for values in zip(*runs)]
        ax.plot(epochs, [s.mean for s in by_epoch], color=colour, label=f"{setting} (reference)")
        ax.fill_between(epochs, [s.low for s in by_epoch], [s.high for s in by_epoch], color=colour, alpha=0.2)
        if short and setting in short:
            s = spread(short[setting])
            ax.errorbar([short_epochs], [s.mean], yerr=[[s.mean - s.low], [s.high - s.mean]], color=colour,
                        marker="o", markersize=7, markeredgecolor="black", capsize=3, linestyle="none")
    if short:
        ax.plot([], [], marker="o", color="grey", markeredgecolor="black", linestyle="none",
                label=f"your runs ({short_epochs} epochs)")
    ax.set_xlabel("epoch")
    ax.set_ylabel(label or metric)
    ax.set_title(f"lines: reference runs, mean and range of {len(ref['seeds'])} seeds", fontsize=8)


def reference_table() -> str:
    """The shipped reference runs as a Markdown table (the README's), one row per experiment, read from the files.

    Example:
        >>> reference_table().splitlines()[0]
        '| experiment | notebook | command | runs | training | made on |'
    """
    rows = ["| experiment | notebook | command | runs | training | made on |", "|---|---|---|---|---|---|"]
    for name in EXPERIMENTS:
        ref = load_reference(name)
        runs = len(ref["settings"]) * len(ref["seeds"])
        rows.append(f"| {name} | {EXPERIMENTS[name].notebook} | `{ref['command']}` | {len(ref['settings'])} settings x "
                    f"{len(ref['seeds'])} seeds = {runs} | {ref['seconds'] / 60:.0f} min | "
                    f"{ref['machine']}, {ref['date']} |")
    return "\n".join(rows)


def _machine() -> str:
    from crl_helpers.device import cpu_name, pick_device
    from crl_helpers.threads import available_cpus

    device = pick_device("auto")
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {available_cpus()} cores"


def _probe_data(base: TrainConfig):
    from crl_helpers.shapes import hue_bins
    from crl_helpers.train import load_data

    train_data, test_data = load_data(replace(base, seed=0))
    return train_data, test_data, hue_bins(train_data.factors["object_hue"], HUE_BINS), \
        hue_bins(test_data.factors["object_hue"], HUE_BINS)


def make_reference(name: str, epochs: int, seeds: Sequence[int] = (0, 1, 2), probe_every: int = 5,
                   out: str | os.PathLike | None = None, command: str = "", progress: bool = True,
                   base_changes: dict | None = None) -> dict:
    """Train every setting of experiment ``name`` at every seed for ``epochs`` epochs and write the file ``out``.

    The file is rewritten (atomically) after each finished run; called again with the same arguments it keeps
    the finished runs and trains the rest. Probes (kNN on the shape and on the hue bin) run after epoch 1,
    every ``probe_every`` epochs and after the last.

    Args:
        name: one of :data:`EXPERIMENTS`.
        epochs, seeds, probe_every: the budget.
        out: the JSON file to write; default ``reference/<name>.json``.
        command: the command line that made the file, recorded in it.
        progress: a progress bar over the runs.
        base_changes: changes to the experiment's base config (e.g. fewer images for a quick check); recorded.

    Returns:
        the finished reference (as :func:`load_reference` reads it).

    Raises:
        ValueError: an unknown experiment, bad numbers, or an ``out`` holding another experiment or budget.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "t.json")
        >>> ref = make_reference("temperature", epochs=1, seeds=(0,), out=path, progress=False,
        ...                      base_changes=dict(n_train=64, n_test=32, batch_size=32))
        >>> sorted(ref["settings"]), len(ref["settings"]["tau = 0.2"]["0"])
        (['tau = 0.05', 'tau = 0.2', 'tau = 1'], 1)
    """
    from tqdm.auto import tqdm

    from crl_helpers.evaluate import extract_embeddings, knn_accuracy
    from crl_helpers.run_dir import atomic_write_text
    from crl_helpers.train import train
    from crl_helpers.validate import check_int

    experiment = _experiment(name)
    check_int("epochs", epochs, 1)
    check_int("probe_every", probe_every, 1)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty: give at least one, e.g. 0 1 2")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {' '.join(map(str, seeds))} repeat a seed (its run would count twice in the spread); "
                         f"give each once, e.g. 0 1 2")
    base = replace(experiment.base, epochs=epochs, **(base_changes or {}))
    settings = experiment.settings(base)
    out = Path(out) if out is not None else Path("reference") / f"{name}.json"
    header = {"experiment": name, "question": experiment.question, "epochs": epochs, "seeds": seeds,
              "probe_every": probe_every, "configs": {s: _as_json(c) for s, c in settings.items()}}
    ref = {**header, "command": command, "date": time.strftime("%Y-%m-%d"), "machine": _machine(),
           "torch": torch.__version__, "python": platform.python_version(), "seconds": 0.0,
           "settings": {s: {} for s in settings}}
    if out.exists() and not out.is_file():
        raise ValueError(f"{out} is not a file; give the JSON file to write, e.g. reference/{name}.json")
    if out.is_file():
        try:
            old = json.loads(out.read_text())
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"{out} is not a reference file ({err}); choose another output file or "
                             f"delete it") from None
        differs = [k for k, v in header.items() if old.get(k) != v]
        if differs:
            raise ValueError(f"{out} holds other reference runs ({', '.join(differs)} differ); choose another "
                             f"output file or delete it")
        ref["settings"] = {s: old["settings"].get(s, {}) for s in settings}
        ref["seconds"] = old.get("seconds", 0.0)
    train_data, test_data, hue_train, hue_test = _probe_data(base)
    mean, std = train_data.channel_stats()

    def probe(encoder) -> dict:
        v_train = extract_embeddings(encoder, train_data.x, mean=mean, std=std)  # (N, d)
        v_test = extract_embeddings(encoder, test_data.x, mean=mean, std=std)  # (M, d)
        knn = dict(k=base.knn_k, temperature=base.knn_temperature)  # as the notebooks' kNN
        return {"knn_shape": knn_accuracy(v_train, train_data.y, v_test, test_data.y, **knn),
                "knn_hue": knn_accuracy(v_train, hue_train, v_test, hue_test, **knn)}

    todo = [(s, seed) for s in settings for seed in seeds if str(seed) not in ref["settings"][s]]
    bar = tqdm(todo, desc=f"reference {name}", unit="run", disable=not progress)
    for setting, seed in bar:
        bar.set_postfix_str(f"{setting}, seed {seed}")
        rows = []

        def keep(epoch: int, model, row: dict) -> None:
            probed = probe(model.encoder) if epoch == 1 or epoch % probe_every == 0 or epoch == epochs else {}
            rows.append({"epoch": epoch, **{m: row.get(m) for m in METRICS[:3]},
                         **{m: probed.get(m) for m in METRICS[3:]}})

        began = time.perf_counter()
        train(replace(settings[setting], seed=seed), callback=keep)
        ref["settings"][setting][str(seed)] = rows
        ref["seconds"] = round(ref["seconds"] + time.perf_counter() - began, 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(ref, indent=1) + "\n")
    return load_reference(name, out)
