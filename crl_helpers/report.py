"""The end of a run: final kNN of the trained and the random-init encoder, a linear probe, files and plots.

:func:`train_and_evaluate` is what ``crl train`` and the course's cache run: :func:`crl_helpers.train.train`,
then :func:`evaluate_run`, which writes ``metrics.json``, ``history.csv``, ``curves.png`` and
``umap.png`` (with ``umap``) into the run's ``out_dir``. ``metrics["stage_seconds"]`` says where the
time went (start-up, data, training, each evaluation step, plots). The UMAP of the test features
runs in a background thread while the other evaluation steps run; its first call in a process
compiles numba code (about 20 s on 2 cores). Compiling it during training instead was measured and
dropped: the compiling thread holds the GIL and slowed the training loop more than it saved.

Example:
    >>> from dataclasses import replace
    >>> from crl_helpers.train import CPU
    >>> cfg = replace(CPU, epochs=1, n_train=64, n_test=32, batch_size=32, out_dir=None, progress=False)
    >>> result = train_and_evaluate(cfg)
    >>> sorted(k for k in result.metrics if k.startswith("knn"))
    ['knn_acc', 'knn_acc_random_init']
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Callable

from crl_helpers import run_dir
from crl_helpers.data import ImageData
from crl_helpers.evaluate import ProbeConfig, knn_accuracy, linear_probe_on_features
from crl_helpers.models import SimCLRModel, build_encoder
from crl_helpers.threads import limit, numba_limit
from crl_helpers.train import TrainConfig, TrainResult, load_data, split_features, train

__all__ = ["train_and_evaluate", "evaluate_run"]


def train_and_evaluate(config: TrainConfig, resume: bool = False, data: tuple[ImageData, ImageData] | None = None,
                       callback: Callable[[int, SimCLRModel, dict], None] | None = None,
                       evaluate: bool = True, threads: int | None = None) -> TrainResult:
    """Train ``config`` (:func:`crl_helpers.train.train`), then evaluate it and write its files.

    Args:
        config, resume, data, callback, threads: as for :func:`crl_helpers.train.train`.
        evaluate: run :func:`evaluate_run` (kNN, random-init kNN, linear probe, plots, ``metrics.json``);
            without it the folder holds what training writes (``checkpoint.pt``, ``history.csv``).

    Returns:
        The :class:`~crl_helpers.train.TrainResult`, with ``metrics`` filled when ``evaluate``.
        Under torchrun only rank 0 evaluates and writes; on the other ranks ``metrics`` is empty.
    """
    import crl_helpers
    from crl_helpers.distributed import is_main_process

    stages = {"startup": time.perf_counter() - crl_helpers.IMPORTED_AT}  # importing torch and the package
    with contextlib.ExitStack() as stack:
        if config.out_dir and is_main_process():
            stack.enter_context(run_dir.hold(config.out_dir))  # training and report: one run, one holder
        t0 = time.perf_counter()
        train_data, test_data = data if data is not None else load_data(config)
        stages["data"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = train(config, resume=resume, data=(train_data, test_data), callback=callback, threads=threads)
        stages["training"] = time.perf_counter() - t0  # model build, epochs, the kNN monitor, checkpoints
        if not is_main_process():
            return result
        if evaluate:
            result.metrics = evaluate_run(result, train_data, test_data, config, stages=stages)
        return result


class _Stages:
    """Times the evaluation's steps into a dict and shows them on one progress line (when ``progress``)."""

    def __init__(self, seconds: dict, names: list[str], progress: bool) -> None:
        self.seconds = seconds
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(names), desc="evaluate", unit="step", dynamic_ncols=True)

    @contextlib.contextmanager
    def __call__(self, name: str):
        if self.bar is not None:
            self.bar.set_postfix_str(name)
        t0 = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - t0
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Background:
    """Runs ``fn()`` in a thread; :meth:`result` waits for it and re-raises its error."""

    def __init__(self, fn: Callable) -> None:
        self.value, self.error = None, None

        def run() -> None:
            try:
                self.value = fn()
            except Exception as err:  # noqa: BLE001 (handed to the caller)
                self.error = err

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self):
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.value


# UMAP's optimisation epochs for the run's plot: the picture of a few thousand points settles by 200.
UMAP_EPOCHS = 200


def evaluate_run(result: TrainResult, train_data: ImageData, test_data: ImageData, config: TrainConfig,
                 stages: dict | None = None) -> dict:
    """kNN of the trained and of the untrained encoder, a linear probe; with ``out_dir``, the files and plots.

    The linear probe trains on the features the kNN read-out extracted (no second pass of the
    encoder); the UMAP of the test features runs in a background thread meanwhile. The final kNN
    accuracy is also added to the last history row, for the curves.

    Args:
        result: what :func:`crl_helpers.train.train` returned.
        train_data, test_data: the run's splits.
        config: the run's config.
        stages: seconds of the stages before evaluation (start-up, data, training), reported with it.

    Returns:
        ``{"knn_acc", "knn_acc_random_init", "linear_acc", "epochs", "train_seconds",
        "images_per_second", "final_loss", "device", "dataset", "encoder", "method",
        "negatives_per_query", "n_train", "n_test", "eval_seconds", "stage_seconds"}``, and ``"threads"``
        (the CPU thread counts training used, :meth:`~crl_helpers.threads.ThreadTuner.summary`) when known:
        the evaluation then runs torch, BLAS and UMAP's numba at the count training ended with.
    """
    t_eval = time.perf_counter()
    stage_seconds = dict(stages or {})
    out = Path(config.out_dir) if config.out_dir else None
    names = ["features", "knn", "random_init_knn", "linear_probe"]
    names += ["curves", "umap"] if out is not None and config.umap else ["curves"] if out is not None else []
    stage = _Stages(stage_seconds, names, config.progress)
    encoder = result.model.encoder
    device = next(encoder.parameters()).device
    knn = dict(k=config.knn_k, temperature=config.knn_temperature)
    threads = result.threads.get("final")  # the count training measured best (None: training did not say)
    pools = contextlib.ExitStack()
    try:
        if threads:
            pools.enter_context(limit(threads))
        with stage("features"):
            v_train, v_test = split_features(encoder, train_data, test_data, result.mean, result.std)  # (N, D), (M, D)
        umap_points = None
        if out is not None and config.umap:
            from crl_helpers.plots import umap_embed

            def embed():
                with numba_limit(threads) if threads else contextlib.nullcontext():  # numba's count is per thread
                    return umap_embed(v_test, seed=config.seed, n_epochs=UMAP_EPOCHS)

            umap_points = _Background(embed)
        with stage("knn"):
            metrics = {"knn_acc": knn_accuracy(v_train, train_data.y, v_test, test_data.y, **knn)}
        with stage("random_init_knn"):
            random_encoder = build_encoder(config.encoder).to(device)
            random_encoder.load_state_dict(result.initial_encoder)
            r_train, r_test = split_features(random_encoder, train_data, test_data, result.mean, result.std)
            metrics["knn_acc_random_init"] = knn_accuracy(r_train, train_data.y, r_test, test_data.y, **knn)
        with stage("linear_probe"):
            probe = linear_probe_on_features(v_train, train_data.y, v_test, test_data.y,
                                             ProbeConfig(epochs=config.linear_epochs), device=device)
        metrics["linear_acc"] = probe["test_acc"]
        history = result.history
        seconds = sum(r["seconds"] for r in history)
        metrics.update(
            epochs=len(history),
            train_seconds=seconds,
            images_per_second=sum(r["images_per_second"] * r["seconds"] for r in history) / max(seconds, 1e-9),
            final_loss=history[-1]["loss"] if history else float("nan"),
            device=str(device),
            dataset=config.dataset, encoder=config.encoder, method=config.method,
            negatives_per_query=(result.objective.negatives_per_query(config.batch_size)
                                 if result.objective is not None else None),
            n_train=len(train_data), n_test=len(test_data),
        )
        if history:  # the final kNN belongs on the curves too
            history[-1]["knn_acc"] = metrics["knn_acc"]
        if out is not None:
            from crl_helpers.plots import plot_curves, plot_umap

            run_dir.write_history(history, out / "history.csv")  # now with the final kNN
            with stage("curves"):
                plot_curves(history, out / "curves.png")
            if umap_points is not None:
                with stage("umap"):  # the part of UMAP that did not overlap with the steps above
                    plot_umap(v_test, test_data.y, test_data.class_names, out / "umap.png",
                              title=f"UMAP of test features v ({config.encoder}, kNN acc {metrics['knn_acc']:.2f})",
                              points=umap_points.result())
    finally:
        stage.close()
        pools.close()
    if result.threads:
        metrics["threads"] = result.threads
    metrics["eval_seconds"] = time.perf_counter() - t_eval
    metrics["stage_seconds"] = {k: round(v, 3) for k, v in stage_seconds.items()}
    if out is not None:
        run_dir.atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics
