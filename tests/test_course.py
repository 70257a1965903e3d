"""Tests for crl_helpers.course: the main run's config (one per tier, one cache key) and train_or_load's callback."""
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import crl_helpers.data as data_module
from crl_helpers.course import TIERS, config_key, main_config, train_or_load
from crl_helpers.data import DatasetUnavailable
from crl_helpers.train import CIFAR10_GPU, CPU

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


# ----------------------------------------------------------------- main_config
def _notebook_main_config(tier: str, cifar10_available: bool):
    """The config that notebooks 03, 05 and 06 wrote out by hand before main_config, literally: the cache keys
    of runs trained then must still be found."""
    root = "../data"
    if tier == "smoke":
        return replace(CPU, data_root=root, n_train=256, n_test=128, epochs=2, batch_size=128,
                       knn_every=1, linear_epochs=5, umap=False)
    if tier == "cpu":
        return replace(CPU, data_root=root, knn_every=5, umap=False)
    if cifar10_available:
        return replace(CIFAR10_GPU, data_root=root, knn_every=10, umap=False)
    return replace(CIFAR10_GPU, dataset="shapes", data_root=root, knn_every=10, umap=False)


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
def test_main_config_is_the_notebooks_config_with_the_same_cache_key(tier, cifar10_available, capsys):
    config = main_config(tier)
    expected = _notebook_main_config(tier, cifar10_available)
    assert config == expected
    assert config_key(config) == config_key(main_config(tier)) == config_key(expected)
    note = capsys.readouterr().out
    assert ("CIFAR-10 is not available" in note) == (tier == "gpu" and not cifar10_available)


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
