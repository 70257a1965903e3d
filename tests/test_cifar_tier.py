"""The shipped CIFAR-10 encoder (checkpoints/): its file is the one checkpoints/README.md documents, it loads
through crl_helpers.pretrained, and, where a local CIFAR-10 copy is found (CRL_DATA or data/), its kNN accuracy
on test images clearly beats a randomly initialised encoder of the same architecture (the encoder-file round
trip of crl_helpers.pretrained is in test_pretrained.py)."""
from __future__ import annotations

import re

import pytest
import torch

from crl_helpers.course import find_cifar10
from crl_helpers.evaluate import extract_embeddings, knn_accuracy
from crl_helpers.models import build_encoder
from crl_helpers.pretrained import CHECKPOINTS, CIFAR10_CONVNET, CIFAR10_CONVNET_SHA256, load_encoder, sha256

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
