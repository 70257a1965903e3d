"""Tests for crl_helpers.course: the main run's config (one per tier, one cache key) and train_or_load's callback."""
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import crl_helpers.data as data_module
from crl_helpers.course import TIERS, config_key, main_config, train_or_load
from crl_helpers.data import DatasetUnavailable
from crl_helpers.train import CPU

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


# ----------------------------------------------------------------- main_config
# The cache key of the main run in each tier (and with or without CIFAR-10 for the GPU tier). Notebooks 03, 05
# and 06 find each other's run, and a student's earlier runs, under this key: a change to the main run's
# config or to config_key retrains every cached run. If that is intended, put the new keys here.
MAIN_RUN_KEYS = {
    ("smoke", True): "b4c633e30315", ("smoke", False): "b4c633e30315",
    ("cpu", True): "dd0ede135d30", ("cpu", False): "dd0ede135d30",
    ("gpu", True): "7442bd662253", ("gpu", False): "3593a5808e01",
}


@pytest.fixture(params=[True, False], ids=["cifar10", "no-cifar10"])
def cifar10_available(request, monkeypatch) -> bool:
    """Answer main_config's CIFAR-10 probe without touching the disk or the network."""

    def load_dataset(name, split="train", root="data", n=None, **kwargs):
        assert (name, split, root, n) == ("cifar10", "test", "../data", 16)
        if not request.param:
            raise DatasetUnavailable("no cifar10 in ../data (test)")

    monkeypatch.setattr(data_module, "load_dataset", load_dataset)
    return request.param


@pytest.mark.parametrize("tier", TIERS)
def test_main_config_keeps_its_cache_key(tier, cifar10_available, capsys):
    key = config_key(main_config(tier))
    assert key == MAIN_RUN_KEYS[tier, cifar10_available], (
        f"main_config({tier!r}) now has the cache key {key!r}: every cached {tier} run would be retrained")
    note = capsys.readouterr().out
    assert ("CIFAR-10 is not available" in note) == (tier == "gpu" and not cifar10_available)


def test_main_config_tiers_are_the_documented_runs(cifar10_available):
    smoke, cpu, gpu = (main_config(tier) for tier in TIERS)
    assert (smoke.dataset, smoke.encoder, smoke.epochs) == ("shapes", "convnet", 2)
    assert (smoke.n_train, smoke.n_test) == (256, 128)
    assert (cpu.dataset, cpu.encoder, cpu.n_train) == ("shapes", "convnet", None)  # the whole built-in dataset
    assert (gpu.dataset, gpu.encoder) == ("cifar10" if cifar10_available else "shapes", "resnet18")
    for config in (smoke, cpu, gpu):
        assert config.data_root == "../data" and config.knn_every > 0 and not config.umap


def test_config_key_ignores_where_a_run_is_written_and_its_progress_bar():
    config = main_config("smoke")
    assert config_key(replace(config, out_dir="elsewhere", progress=not config.progress)) == config_key(config)
    assert config_key(replace(config, epochs=3)) != config_key(config)


def test_main_config_tiers_are_different_runs(cifar10_available):
    keys = {tier: config_key(main_config(tier)) for tier in TIERS}
    assert len(set(keys.values())) == len(TIERS), keys


def test_main_config_data_root_is_part_of_the_key():
    assert main_config("cpu", data_root="data").data_root == "data"
    assert config_key(main_config("cpu", data_root="data")) != config_key(main_config("cpu"))


def test_main_config_rejects_an_unknown_tier():
    with pytest.raises(ValueError, match="tier='laptop'.*smoke, cpu, gpu"):
        main_config("laptop")


@pytest.mark.parametrize("name", ["03_projection_head", "05_training", "06_finetuning_and_evaluation"])
def test_notebooks_build_the_main_run_with_main_config_only(name):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    assert "def main_config" not in code, f"{name} defines its own main_config: the copies would drift apart"
    assert "MAIN = main_config(TIER)\n" in code and "from crl_helpers.course import" in code


# --------------------------------------------------------------- train_or_load
TINY = replace(CPU, n_train=64, n_test=16, batch_size=32, epochs=2, device="cpu", knn_every=0, umap=False,
               progress=False)


class StopAfter(Exception):
    pass


def test_train_or_load_calls_back_once_per_epoch_when_training_and_never_when_loading(tmp_path):
    calls = []

    def callback(epoch, model, row):
        calls.append((epoch, row["epoch"], type(model).__name__))

    trained = train_or_load(TINY, cache_dir=tmp_path, evaluate=False, callback=callback)
    assert calls == [(1, 1, "SimCLRModel"), (2, 2, "SimCLRModel")]
    loaded = train_or_load(TINY, cache_dir=tmp_path, evaluate=False, callback=callback)
    assert len(calls) == 2  # from the cache: ignored
    assert [row["loss"] for row in loaded.history] == [row["loss"] for row in trained.history]
    for name, tensor in trained.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name


def test_train_or_load_resumes_an_interrupted_run_calling_back_for_the_remaining_epochs(tmp_path):
    config = replace(TINY, epochs=3)

    def interrupt(epoch, model, row):
        if epoch == 2:  # before epoch 2's checkpoint: the cache holds epoch 1
            raise StopAfter

    with pytest.raises(StopAfter):
        train_or_load(config, cache_dir=tmp_path, evaluate=False, callback=interrupt)
    epochs = []
    result = train_or_load(config, cache_dir=tmp_path, evaluate=False, callback=lambda e, m, r: epochs.append(e))
    assert epochs == [2, 3]
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
