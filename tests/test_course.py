"""Tests for crl_helpers.course: the main run's config (one per tier, one cache key) and train_or_load's callback."""
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import crl_helpers.data as data_module
from crl_helpers.course import TIERS, config_key, main_config, snapshot_encoders, snapshot_epochs, train_or_load
from crl_helpers.data import DatasetUnavailable
from crl_helpers.train import CPU

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


# ----------------------------------------------------------------- main_config
# The cache key of the main run in each tier (and with or without CIFAR-10 for the GPU tier). Notebooks 03, 05
# and 06 find each other's run, and a student's earlier runs, under this key: a change to the main run's
# config or to config_key retrains every cached run. If that is intended, put the new keys here.
MAIN_RUN_KEYS = {
    ("smoke", True): "d73d54182757", ("smoke", False): "d73d54182757",
    ("cpu", True): "46ebbe239bcd", ("cpu", False): "46ebbe239bcd",
    ("gpu", True): "f47beaf28f54", ("gpu", False): "2199ff88a5c9",
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


@pytest.mark.parametrize("name", ["05_training", "06_finetuning_and_evaluation"])
def test_notebooks_build_the_main_run_with_main_config_only(name):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    assert "def main_config" not in code, f"{name} defines its own main_config: the copies would drift apart"
    assert "MAIN = main_config(TIER)\n" in code and "from crl_helpers.course import" in code


@pytest.mark.parametrize("name", ["00_overview", "01_pairs_and_augmentations", "02_encoder", "03_projection_head",
                                  "04_infonce_and_temperature"])
def test_notebooks_before_05_never_build_the_main_run(name):
    # The course reads in order: notebook 05 teaches training and trains the main run, with live curves.
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    assert "main_config" not in code, f"{name} builds the main run before notebook 05 trains it"


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


def test_train_or_load_says_whether_it_trained_resumed_or_loaded(tmp_path, capsys):
    key = config_key(TINY)
    train_or_load(TINY, cache_dir=tmp_path, evaluate=False)
    assert f"train_or_load: training run {key} into" in capsys.readouterr().out
    train_or_load(TINY, cache_dir=tmp_path, evaluate=False)
    out = capsys.readouterr().out
    assert f"train_or_load: loaded run {key} from" in out and "training run" not in out


@pytest.mark.parametrize("epochs, expected", [(1, [1]), (2, [1, 2]), (6, [1, 3, 6]), (40, [1, 4, 10, 20, 40]),
                                              (100, [1, 10, 25, 50, 100])])
def test_snapshot_epochs_are_the_first_a_tenth_a_quarter_a_half_and_the_last(epochs, expected):
    assert snapshot_epochs(epochs) == expected


def test_snapshot_encoders_are_the_weights_the_run_had_after_those_epochs(tmp_path):
    config = replace(TINY, epochs=3)  # snapshot epochs 1 and 3: epoch 1 kept on disk, epoch 3 is the checkpoint
    seen = {}

    def callback(epoch, model, row):  # the weights after each epoch, as training has them
        seen[epoch] = {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}

    result = train_or_load(config, cache_dir=tmp_path, evaluate=False, callback=callback)
    encoders = snapshot_encoders(config, cache_dir=tmp_path)
    assert list(encoders) == [0, 1, 3]
    expected = {0: result.initial_encoder, 1: seen[1], 3: seen[3]}
    for epoch, encoder in encoders.items():
        assert not encoder.training
        for name, tensor in encoder.state_dict().items():
            assert torch.equal(tensor, expected[epoch][name]), (epoch, name)
    assert not torch.equal(encoders[0].state_dict()[name], encoders[3].state_dict()[name])


def test_snapshot_encoders_of_a_run_cached_without_snapshots_are_its_start_and_end(tmp_path):
    config = replace(TINY, epochs=3)
    train_or_load(config, cache_dir=tmp_path, evaluate=False)
    for file in (tmp_path / config_key(config) / "snapshots").iterdir():
        file.unlink()
    assert list(snapshot_encoders(config, cache_dir=tmp_path)) == [0, 3]


def test_snapshot_encoders_never_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="call train_or_load"):
        snapshot_encoders(TINY, cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------- cifar10_root, find_cifar10
import io  # noqa: E402  (this section's imports, kept with it)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from crl_helpers import course  # noqa: E402
from crl_helpers.course import cifar10_root, find_cifar10  # noqa: E402


def _write_cifar10_test_split(folder: Path, images: list) -> None:
    """A cifar10_jpeg.npz holding only a test split of lossless PNGs, so the decoded pixels are known."""
    blobs, offsets = [], [0]
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        blobs.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
        offsets.append(offsets[-1] + len(blobs[-1]))
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "cifar10_jpeg.npz", test_jpeg=np.concatenate(blobs), test_offsets=np.array(offsets),
             y_test=np.arange(len(images)) % 2, class_names=np.array(["airplane", "automobile"]))


@pytest.fixture
def no_repository_copy(tmp_path, monkeypatch) -> Path:
    """The repository's data/ replaced by an empty folder, and CRL_DATA unset: no copy anywhere."""
    empty = tmp_path / "repository_data"
    empty.mkdir()
    monkeypatch.setattr(course, "REPOSITORY_DATA", empty)
    monkeypatch.delenv("CRL_DATA", raising=False)
    return empty


def test_find_cifar10_loads_the_copy_named_by_crl_data(tmp_path, monkeypatch, no_repository_copy):
    images = [np.full((32, 32, 3), value, dtype=np.uint8) for value in (0, 90, 255)]
    images[1][5, 7] = (1, 2, 3)  # one odd pixel, to see it survive
    _write_cifar10_test_split(tmp_path / "offline", images)
    monkeypatch.setenv("CRL_DATA", str(tmp_path / "offline"))
    assert cifar10_root() == tmp_path / "offline"
    cifar = find_cifar10("test")
    assert cifar.x.shape == (3, 3, 32, 32) and cifar.class_names == ("airplane", "automobile")
    np.testing.assert_array_equal(cifar.x.permute(0, 2, 3, 1).numpy(), np.stack(images))
    assert cifar.y.tolist() == [0, 1, 0]
    assert len(find_cifar10("test", n=2)) == 2


def test_find_cifar10_is_none_without_a_copy(tmp_path, monkeypatch, no_repository_copy):
    assert cifar10_root() is None and find_cifar10("test") is None
    monkeypatch.setenv("CRL_DATA", str(tmp_path / "nothing_here"))  # a folder that does not exist
    assert cifar10_root() is None and find_cifar10("train", n=5) is None


def test_cifar10_root_prefers_crl_data_then_the_repository(tmp_path, monkeypatch, no_repository_copy):
    (no_repository_copy / "cifar-10-batches-py").mkdir()  # torchvision's layout counts as a copy
    assert cifar10_root() == no_repository_copy
    monkeypatch.setenv("CRL_DATA", str(tmp_path / "elsewhere"))  # set, but holding nothing: the repository's copy
    assert cifar10_root() == no_repository_copy
    _write_cifar10_test_split(tmp_path / "elsewhere", [np.zeros((32, 32, 3), dtype=np.uint8)])
    assert cifar10_root() == tmp_path / "elsewhere"


def test_the_repository_data_folder_is_the_one_beside_the_notebooks():
    assert course.REPOSITORY_DATA == NOTEBOOK_DIR.parent / "data"
    assert (course.REPOSITORY_DATA / "README.md").is_file()


@pytest.mark.parametrize("kwargs, error, match", [(dict(split="validation"), ValueError, "split='validation'"),
                                                   (dict(n=0), ValueError, "n=0"),
                                                   (dict(n=2.5), TypeError, "n=2.5")])
def test_find_cifar10_rejects_bad_arguments_with_or_without_a_copy(kwargs, error, match, no_repository_copy):
    with pytest.raises(error, match=match):
        find_cifar10(**kwargs)


# --------------------------------------------------- the notebooks call the package
PACKAGE_HELPERS = ("find_cifar10", "cifar10_root", "hue_bins", "embed_2d", "umap_embed", "pca_embed")


@pytest.mark.parametrize("path", sorted(NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_use_the_package_helpers_and_nothing_outside_the_repository(path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        for name in PACKAGE_HELPERS:
            assert f"def {name}(" not in cell.source, f"{path.name}: cell {index} re-implements crl_helpers' {name}"
        assert "STYLE" not in cell.source, f"{path.name}: cell {index} cites a house document learners do not have"
        assert "shared/" not in cell.source, f"{path.name}: cell {index} names a path outside the repository"


def test_train_or_load_seeds_caches_one_run_per_seed_and_refuses_repeated_seeds(tmp_path):
    from crl_helpers.course import train_or_load_seeds

    config = replace(main_config("smoke"), n_train=64, n_test=32, epochs=1, batch_size=32, progress=False)
    runs = train_or_load_seeds(config, seeds=(3, 4), cache_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(config_key(replace(config, seed=s)) for s in (3, 4))
    first = [next(iter(run.initial_encoder.values())) for run in runs]
    assert not torch.equal(*first)  # another seed, another initial encoder
    with pytest.raises(ValueError, match="distinct seeds"):
        train_or_load_seeds(config, seeds=(0, 0), cache_dir=tmp_path)
