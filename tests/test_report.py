"""Tests for crl_helpers.report: the end of a run (final evaluation, metrics.json, stage times)."""
import json
from dataclasses import replace

from crl_helpers.report import train_and_evaluate
from crl_helpers.train import CPU


def test_metrics_report_the_stage_times(tmp_path):
    cfg = replace(CPU, epochs=1, n_train=64, n_test=32, batch_size=32, knn_k=5, linear_epochs=1,
                  out_dir=str(tmp_path / "run"), progress=False)
    metrics = train_and_evaluate(cfg).metrics
    stages = metrics["stage_seconds"]
    expected = ["startup", "data", "training", "features", "knn", "random_init_knn", "linear_probe", "curves"]
    assert list(stages) == expected and all(v >= 0 for v in stages.values())
    evaluation = sum(stages[k] for k in expected[3:])
    assert evaluation <= metrics["eval_seconds"] + 1e-3  # the steps are inside the evaluation's wall time
    assert stages["training"] >= metrics["train_seconds"] - 1e-3  # epochs are inside the training stage
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["stage_seconds"] == stages
