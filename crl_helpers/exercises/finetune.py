"""Exercises of notebook 06 (fine-tuning and evaluation): a weighted kNN classifier and a truly frozen linear probe.

Example:
    >>> from crl_helpers.evaluate import knn_predict
    >>> ok = check_knn_predict(lambda train_v, train_y, test_v, k, temperature:
    ...                        knn_predict(train_v, train_y, test_v, k=k, temperature=temperature))
    [PASSED] kNN classifier: matches crl_helpers.evaluate.knn_predict on 300 test points
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from crl_helpers.evaluate import knn_predict
from crl_helpers.exercises._check import exercise_check
from crl_helpers.models import SmallConvNet

__all__ = ["check_knn_predict", "check_linear_probe_frozen"]


def _preds(out, n: int) -> torch.Tensor:
    assert out is not None, "your function returned None; return a tensor of predicted labels, one per test point"
    out = torch.as_tensor(out)
    assert out.shape == (n,), f"got shape {tuple(out.shape)}; return one label per test point: ({n},)"
    assert not out.is_floating_point(), "return integer class labels (e.g. votes.argmax(dim=1)), not scores"
    return out.long().cpu()


@exercise_check("kNN classifier")
def check_knn_predict(fn):
    """Check ``fn(train_v, train_y, test_v, k, temperature)`` against :func:`~crl_helpers.evaluate.knn_predict`.

    The reference: cosine similarity on L2-normalised features, the ``k`` most similar training
    points, each voting for its label with weight ``exp(similarity / temperature)``; the class
    with the largest total wins.
    """
    g = torch.Generator().manual_seed(6)
    total = 0
    for n_train, n_test, d, classes, k, temperature in ((60, 100, 5, 3, 10, 0.1), (200, 200, 8, 4, 25, 0.5)):
        centres = torch.randn(classes, d, generator=g)
        train_y = torch.randint(classes, (n_train,), generator=g)
        train_v = (centres[train_y] + 1.2 * torch.randn(n_train, d, generator=g)) * (0.2 + 3 * torch.rand(n_train, 1, generator=g))
        test_v = torch.randn(n_test, d, generator=g) * 2
        want = knn_predict(train_v, train_y, test_v, k=k, temperature=temperature)
        got = _preds(fn(train_v.clone(), train_y.clone(), test_v.clone(), k, temperature), n_test)
        total += n_test
        if torch.equal(got, want):
            continue
        agree = (got == want).float().mean().item()
        slips = {
            "every neighbour votes 1: weight the votes by exp(similarity / temperature)":
                knn_predict(train_v, train_y, test_v, k=k, weighting="majority"),
            "normalise the features first: cosine similarity, not a raw dot product":
                _dot_knn(train_v, train_y, test_v, k, temperature, classes),
            "k was ignored: use only the k most similar training points":
                knn_predict(train_v, train_y, test_v, k=n_train, temperature=temperature),
        }
        for hint, preds in slips.items():
            if torch.equal(got, preds):
                raise AssertionError(hint)
        raise AssertionError(f"{agree:.0%} of your predictions agree with the reference (k={k}, temperature="
                             f"{temperature}); pick the TOP-k similarities, weight each vote by exp(s / temperature)")
    return f"matches crl_helpers.evaluate.knn_predict on {total} test points"


def _dot_knn(train_v, train_y, test_v, k, temperature, classes) -> torch.Tensor:
    sim = test_v @ train_v.T  # (M, N) unnormalised
    top, idx = sim.topk(k, dim=1)
    votes = torch.zeros(len(test_v), classes).scatter_add_(1, train_y[idx], torch.exp((top - top[:, :1]) / temperature))
    return votes.argmax(1)


def _probe_task(seed: int = 7):
    """Two colours of noisy images: linearly separable from a random ConvNet's features."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(96) % 2  # (96,)
    colour = torch.tensor([[1.0, 0.0, -1.0], [-1.0, 0.0, 1.0]])[y]  # (96, 3) red-ish vs blue-ish
    x = colour[:, :, None, None] + 0.8 * torch.randn(96, 3, 16, 16, generator=g)  # (96, 3, 16, 16), normalised
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = SmallConvNet(width=4, feature_dim=16)
    return encoder, x[:64], y[:64], x[64:], y[64:]


@exercise_check("frozen linear probe")
def check_linear_probe_frozen(fn):
    """Check ``fn(encoder, x_train, y_train, x_test, y_test) -> test accuracy`` trains a probe on FROZEN features.

    The encoder (a small ConvNet with BatchNorm, handed over in train mode) must come back
    bit-for-bit unchanged: weights AND BatchNorm running statistics. ``x`` are already
    normalised float images; the two classes are easy, so a working probe scores >= 0.9.
    """
    encoder, x_train, y_train, x_test, y_test = _probe_task()
    encoder.train()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    out = fn(encoder, x_train, y_train, x_test, y_test)
    assert out is not None, "your function returned None; return the test accuracy as a float in [0, 1]"
    accuracy = float(out.detach()) if isinstance(out, torch.Tensor) else float(out)
    after = encoder.state_dict()
    changed_bn = [k for k in before if ("running" in k or "num_batches" in k) and not torch.equal(before[k], after[k])]
    changed_w = [k for k in before if "running" not in k and "num_batches" not in k and not torch.equal(before[k], after[k])]
    assert not changed_w, (f"the encoder's weights changed ({changed_w[:2]}...): optimise only the linear layer's "
                           "parameters, and compute the features under torch.no_grad()")
    assert not changed_bn, ("the encoder's BatchNorm statistics changed: call encoder.eval() before extracting "
                            "features (in train mode BatchNorm updates its running mean and variance)")
    assert math.isfinite(accuracy) and 0.0 <= accuracy <= 1.0, f"return an accuracy in [0, 1], got {accuracy}"
    assert accuracy >= 0.9, (f"test accuracy {accuracy:.2f} on an easy two-colour task; a linear layer on "
                             "the features should reach 0.9 (train it for more steps, or check the labels)")
    return f"encoder untouched, test accuracy {accuracy:.2f}"
