"""Tests for crl_helpers.pretrained: an encoder as a small file, saved, loaded and cut out of a training checkpoint
(the shipped CIFAR-10 encoder is checked in test_cifar_tier.py)."""
from __future__ import annotations

import pytest
import torch

from crl_helpers.checkpoint import CheckpointError, save_checkpoint
from crl_helpers.models import ProjectionHead, SimCLRModel, build_encoder
from crl_helpers.pretrained import encoder_from_run, load_encoder, save_encoder


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
