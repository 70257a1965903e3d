"""The shipped CIFAR-10 encoder (checkpoints/): its file is the one checkpoints/README.md documents, it loads
through crl_helpers.pretrained, and, where a local CIFAR-10 copy is found (CRL_DATA or data/), its kNN accuracy
on test images clearly beats a randomly initialised encoder of the same architecture. Also the encoder-file
round trip of crl_helpers.pretrained on a small ConvNet."""
from __future__ import annotations

import re

import pytest
import torch

from crl_helpers.checkpoint import CheckpointError, save_checkpoint
from crl_helpers.course import find_cifar10
from crl_helpers.evaluate import extract_embeddings, knn_accuracy
from crl_helpers.models import SimCLRModel, ProjectionHead, build_encoder
from crl_helpers.pretrained import (CHECKPOINTS, CIFAR10_CONVNET, CIFAR10_CONVNET_SHA256, encoder_from_run,
                                    load_encoder, save_encoder, sha256)

README = CHECKPOINTS / "README.md"
# The kNN accuracy the shipped encoder must beat the random-init encoder by, on 1,000 queries (the measured gap is
# in checkpoints/README.md; the binomial standard error of one accuracy here is about 0.016).
MARGIN = 0.08


def test_the_shipped_encoder_is_the_documented_file_and_loads():
    assert CIFAR10_CONVNET.is_file(), f"{CIFAR10_CONVNET} is missing"
    digest = sha256(CIFAR10_CONVNET)
    documented = re.findall(r"\b[0-9a-f]{64}\b", README.read_text())
    assert documented == [digest], f"checkpoints/README.md documents {documented}, the file's SHA-256 is {digest}"
    assert digest == CIFAR10_CONVNET_SHA256
    assert CIFAR10_CONVNET.stat().st_size < 4 * 2**20, "a shipped encoder stays a few MB at most"
    pretrained = load_encoder(CIFAR10_CONVNET)
    assert pretrained.name == "convnet" and not pretrained.encoder.training
    assert len(pretrained.mean) == len(pretrained.std) == 3
    assert pretrained.config["dataset"] == "cifar10"
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    v = extract_embeddings(pretrained.encoder, x, mean=pretrained.mean, std=pretrained.std)
    assert v.shape == (4, pretrained.encoder.feature_dim) and torch.isfinite(v).all()


def test_the_shipped_encoder_beats_random_init_on_cifar10_test_images():
    cifar = find_cifar10("test")
    if cifar is None:
        pytest.skip("no local CIFAR-10 copy (set CRL_DATA to a folder holding cifar10_jpeg.npz, or put one in data/)")
    pretrained = load_encoder(CIFAR10_CONVNET)
    torch.manual_seed(0)
    random_init = build_encoder(pretrained.name).eval()
    order = torch.randperm(len(cifar), generator=torch.Generator().manual_seed(0))
    bank, queries = order[:4000], order[4000:5000]  # disjoint: the encoder never saw any test image
    accuracy = {}
    for name, encoder in (("pretrained", pretrained.encoder), ("random", random_init)):
        v = extract_embeddings(encoder, cifar.x[torch.cat([bank, queries])], mean=pretrained.mean, std=pretrained.std)
        accuracy[name] = knn_accuracy(v[:4000], cifar.y[bank], v[4000:], cifar.y[queries], k=200, temperature=0.1)
    assert accuracy["pretrained"] >= accuracy["random"] + MARGIN, accuracy


def test_save_and_load_encoder_round_trip(tmp_path):
    torch.manual_seed(1)
    encoder = build_encoder("convnet", width=8, feature_dim=32)
    save_encoder(encoder, "convnet", tmp_path / "e.pt", mean=[0.1, 0.2, 0.3], std=[1, 2, 3],
                 config={"epochs": 2}, encoder_kwargs={"width": 8, "feature_dim": 32})
    loaded = load_encoder(tmp_path / "e.pt")
    assert (loaded.mean, loaded.std, loaded.config) == ((0.1, 0.2, 0.3), (1.0, 2.0, 3.0), {"epochs": 2})
    x = torch.randn(5, 3, 16, 16)
    torch.testing.assert_close(loaded.encoder(x), encoder.eval()(x), rtol=0, atol=0)


def test_encoder_from_run_keeps_the_encoder_of_a_training_checkpoint(tmp_path):
    torch.manual_seed(2)
    model = SimCLRModel(build_encoder("convnet"), ProjectionHead(128, 32, 16))
    save_checkpoint({"model": model.state_dict(), "optimizer": {}, "config": {"encoder": "convnet"},
                     "mean": [0.5] * 3, "std": [0.25] * 3}, tmp_path / "checkpoint.pt")
    encoder_from_run(tmp_path / "checkpoint.pt", tmp_path / "encoder.pt")
    loaded = load_encoder(tmp_path / "encoder.pt")
    for name, tensor in model.encoder.state_dict().items():
        assert torch.equal(loaded.encoder.state_dict()[name], tensor), name
    assert (tmp_path / "encoder.pt").stat().st_size < (tmp_path / "checkpoint.pt").stat().st_size


def test_load_encoder_refuses_other_files(tmp_path):
    save_checkpoint({"epoch": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an encoder file"):
        load_encoder(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        encoder_from_run(tmp_path / "other.pt", tmp_path / "encoder.pt")
    with pytest.raises(ValueError, match="one value per channel"):
        save_encoder(build_encoder("convnet"), "convnet", tmp_path / "e.pt", mean=[0.5], std=[0.2, 0.2])
