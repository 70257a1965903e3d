"""Run in course order, notebooks 05 and 06 share one main run: 05 trains it, once, and 06 loads it; 03, which
comes before them, trains a short run of its own and never touches the main run.

The notebooks execute in the smoke tier (nbclient, ``CRL_SMOKE=1``) with one ``CRL_CACHE`` folder, as
a student's runs would. Trainings are counted two ways: the line :func:`crl_helpers.course.train_or_load`
prints when it trains (against the one it prints when it loads), and the main run's ``checkpoint.pt``,
which any training rewrites, must keep the bytes and the modification time it had after notebook 05.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
BEFORE_THE_MAIN_RUN = "03_projection_head"  # uses a short run of its own
SHARING_THE_MAIN_RUN = ("05_training", "06_finetuning_and_evaluation")
TIMEOUT_SECONDS = 300  # per cell


def _printed(nb) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                     if o.get("output_type") == "stream")


def _fingerprint(path: Path) -> tuple[int, str]:
    return os.stat(path).st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.notebooks
def test_the_main_run_is_trained_once_in_course_order(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    from crl_helpers.course import config_key, main_config

    monkeypatch.setenv("CRL_SMOKE", "1")
    monkeypatch.setenv("CRL_CACHE", str(tmp_path))  # the kernels inherit the environment
    key = config_key(main_config("smoke"))
    checkpoint = tmp_path / key / "checkpoint.pt"
    trainings, fingerprint = {}, None
    for name in (BEFORE_THE_MAIN_RUN, *SHARING_THE_MAIN_RUN):
        nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
        client = nbclient.NotebookClient(nb, timeout=TIMEOUT_SECONDS, kernel_name="python3",
                                         resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
        client.execute()
        printed = _printed(nb)
        if name == "05_training":
            printed_05 = printed
        trainings[name] = printed.count(f"training run {key}") + printed.count(f"resuming run {key}")
        if name == BEFORE_THE_MAIN_RUN:
            assert key not in printed and not checkpoint.exists(), f"{name} trained or loaded the main run {key}"
            continue
        assert checkpoint.exists(), f"{name} ran, yet the main run {key} is not in the cache"
        if fingerprint is None:
            fingerprint = _fingerprint(checkpoint)
        else:
            assert _fingerprint(checkpoint) == fingerprint, f"{name} wrote the main run's checkpoint again: it retrained it"
    assert sum(trainings.values()) == 1, f"the main run {key} was trained {trainings} times per notebook; once in all"
    assert trainings[SHARING_THE_MAIN_RUN[0]] == 1, trainings
    assert "trained in" in printed_05, "notebook 05 trained the main run without its live curves' report"
