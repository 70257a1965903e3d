"""Hostile input to the public tensor functions, round two: one rule for non-finite, empty and oddly scaled input.

Every loss and metric refuses NaN/inf or empty input with one ``ValueError`` naming the argument (as
``nt_xent`` does), and gives the same answer for features scaled by 1e20 or 1e-20 where the mathematics is
scale-free (each row is normalised, so only its direction counts): overflow is not mathematics. The oracle
for scale is the function itself on the unscaled input, which the scale cannot change mathematically.
"""
from __future__ import annotations

import pytest
import torch

from crl_helpers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from crl_helpers.evaluate import extract_embeddings, knn_predict
from crl_helpers.metrics import (alignment, contrastive_accuracy, cosine_stats, effective_rank, embedding_std,
                                 uniformity)
from crl_helpers.models import build_encoder
from crl_helpers.objectives import (MemoryBank, MoCoQueue, semi_hard_negatives, simsiam_loss, supcon_loss,
                                    triplet_loss)
from crl_helpers.pretrained import CIFAR10_CONVNET, load_encoder, save_encoder


def _z(n: int = 6, d: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _nan(z: torch.Tensor) -> torch.Tensor:
    z = z.clone()
    z[1, 2] = float("nan")
    return z


_LABELS = torch.tensor([0, 1, 2, 0, 1, 2])
# (name of the argument that carries the NaN, the call)
_CALLS = {
    "contrastive_accuracy": ("z1", lambda z: contrastive_accuracy(z, _z(seed=1))),
    "alignment": ("z1", lambda z: alignment(z, _z(seed=1))),
    "uniformity": ("z", lambda z: uniformity(z)),
    "cosine_stats": ("z1", lambda z: cosine_stats(z, _z(seed=1))),
    "embedding_std": ("z", lambda z: embedding_std(z)),
    "effective_rank": ("z", lambda z: effective_rank(z)),
    "supcon_loss": ("z", lambda z: supcon_loss(z, _LABELS, 0.1)),
    "triplet_loss": ("anchor", lambda z: triplet_loss(z, _z(seed=1), _z(seed=2))),
    "simsiam_loss": ("p1", lambda z: simsiam_loss(z, _z(seed=1), _z(seed=2), _z(seed=3))),
    "semi_hard_negatives": ("anchor", lambda z: semi_hard_negatives(z, z.flip(0) + 1).float().mean()),
}


@pytest.mark.parametrize("name", _CALLS)
def test_nan_input_is_refused_naming_the_argument(name):
    argument, call = _CALLS[name]
    clean = call(_z())
    values = list(clean.values()) if isinstance(clean, dict) else [clean]
    assert torch.isfinite(torch.as_tensor([float(v) for v in values])).all()  # the clean input works
    with pytest.raises(ValueError, match=rf"^{argument} contains NaN or inf"):
        call(_nan(_z()))


@pytest.mark.parametrize("name", _CALLS)
def test_empty_input_is_refused(name):
    _, call = _CALLS[name]
    with pytest.raises(ValueError, match="N=0 rows|has shape|needs N >= 2"):
        call(torch.zeros(0, 4))


@pytest.mark.parametrize("name", _CALLS)
def test_meta_tensors_are_refused_naming_the_argument(name):
    argument, call = _CALLS[name]
    with pytest.raises(ValueError, match=rf"^{argument} is on the meta device"):
        call(torch.empty(6, 4, device="meta"))


def test_contrastive_accuracy_of_nan_is_an_error_not_chance_level():
    # It returned 1/16 = 0.0625 for all-NaN input of N = 8 (argmax of NaN rows picks index 0).
    with pytest.raises(ValueError, match="z1 contains NaN"):
        contrastive_accuracy(torch.full((8, 4), float("nan")), _z(8))


def test_supcon_follows_the_temperature_rule_of_every_loss():
    with pytest.raises(ValueError, match=r"temperature=1e-40 is below 1e-08"):
        supcon_loss(_z(), _LABELS, temperature=1e-40)


@pytest.mark.parametrize("scale", [1e20, 1e-20])
def test_scale_free_functions_do_not_change_with_the_scale_of_the_features(scale):
    z, labels = _z(8, 5), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    torch.testing.assert_close(supcon_loss(z * scale, labels, 0.5), supcon_loss(z, labels, 0.5))
    a, p, n = _z(8, 5, 1), _z(8, 5, 2), _z(8, 5, 3)
    torch.testing.assert_close(triplet_loss(a * scale, p * scale, n * scale), triplet_loss(a, p, n))
    train_v, test_v, train_y = _z(20, 5, 4), _z(6, 5, 5), torch.arange(20) % 3
    assert torch.equal(knn_predict(train_v * scale, train_y, test_v * scale, k=5),
                       knn_predict(train_v, train_y, test_v, k=5))
    assert torch.equal(semi_hard_negatives(a * scale, p * scale), semi_hard_negatives(a, p))


def test_memory_bank_and_queue_refuse_nan_rows_and_stay_as_they_were():
    bank, queue = MemoryBank(size=6, dim=4), MoCoQueue(size=6, dim=4)
    before_bank, before_queue = bank.bank.clone(), queue.keys.clone()
    with pytest.raises(ValueError, match="z contains NaN"):
        bank.update(torch.tensor([0, 1, 2, 3, 4, 5]), _nan(_z()))
    with pytest.raises(ValueError, match="keys contains NaN"):
        queue.enqueue(_nan(_z()))
    assert torch.equal(bank.bank, before_bank) and torch.equal(queue.keys, before_queue)
    bank.update(torch.tensor([0, 1]), _z(2) * 1e25)  # a scale that overflowed F.normalize's norm in float32
    queue.enqueue(_z(2) * 1e25)
    assert torch.allclose(bank.bank.norm(dim=1), torch.ones(6)) and torch.allclose(queue.keys.norm(dim=1), torch.ones(6))


@pytest.mark.parametrize("std, error", [((0.0, 0.0, 0.0), ValueError), ("abc", TypeError),
                                        ((0.2, float("nan"), 0.2), ValueError)])
def test_extract_embeddings_refuses_a_normalisation_that_divides_by_zero(std, error):
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(error, match="std="):
        extract_embeddings(build_encoder("convnet", width=8), x, std=std)


# ---------------------------------------------------------------------- load_encoder
def _encoder_file(path, **fields):
    save_encoder(build_encoder("convnet", width=8), "convnet", path, mean=(0.5,) * 3, std=(0.25,) * 3,
                 encoder_kwargs={"width": 8})
    state = load_checkpoint(path)
    state.update(fields)
    save_checkpoint(state, path)
    return path


@pytest.mark.parametrize("fields, fragment", [
    ({"mean": "abc"}, "bad normalisation"),
    ({"std": [0.25, 0.0, 0.25]}, "bad normalisation"),
    ({"encoder_kwargs": {"width": 8, "depth": 99}}, "does not rebuild encoder 'convnet'"),
    ({"encoder_kwargs": {"width": 16}}, "does not rebuild encoder 'convnet'"),
    ({"name": "vit"}, "does not rebuild encoder 'vit'"),
    ({"name": 7}, "holds name=7"),
])
def test_load_encoder_raises_its_documented_error_on_bad_fields(tmp_path, fields, fragment):
    path = _encoder_file(tmp_path / "encoder.pt", **fields)
    with pytest.raises(CheckpointError, match=fragment):
        load_encoder(path)


def test_a_file_named_like_the_shipped_encoder_must_hold_its_weights(tmp_path):
    shipped = load_checkpoint(CIFAR10_CONVNET)
    shipped["state_dict"] = {k: torch.zeros_like(v) for k, v in shipped["state_dict"].items()}
    fake = tmp_path / CIFAR10_CONVNET.name
    save_checkpoint(shipped, fake)
    with pytest.raises(CheckpointError, match="named like the shipped encoder but does not hold its weights"):
        load_encoder(fake)
    assert load_encoder(CIFAR10_CONVNET).name == "convnet"  # the real one loads
