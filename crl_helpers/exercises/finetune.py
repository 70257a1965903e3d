"""Exercises of notebook 06 (fine-tuning and evaluation): a weighted kNN classifier, a truly frozen linear
probe, and a fine-tuning optimizer with a smaller learning rate for the encoder than for the new head.

Every checker compares with a reference written here (float64 loops, a closed-form least-squares probe,
the first step of SGD and Adam), never with the package function the exercise teaches.

Example:
    >>> import torch
    >>> ok = check_finetune_optimizer(lambda encoder, classifier, lr_head, lr_encoder: torch.optim.SGD(
    ...     [{"params": encoder.parameters(), "lr": lr_encoder}, {"params": classifier.parameters(), "lr": lr_head}]))
    [PASSED] fine-tuning optimizer: encoder steps 0.0001, head steps 0.01 (ratio 0.01), every parameter once
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from crl_helpers.exercises._check import exercise_check
from crl_helpers.models import SmallConvNet

__all__ = ["check_finetune_optimizer", "check_knn_predict", "check_linear_probe_frozen"]


# ------------------------------------------------------------------------ kNN
def _knn_loop(train_v, train_y, test_v, k, temperature, *, normalise=True, weighted=True):
    """Weighted kNN written out in float64 loops; also returns each prediction's vote margin and top-k gap.

    The margin (best minus second-best class total, relative to the best) and the gap between the k-th
    and (k+1)-th similarity say where float32 rounding could legitimately change the answer.
    """
    train_v, test_v = train_v.double(), test_v.double()
    if normalise:
        train_v = train_v / train_v.norm(dim=1, keepdim=True)
        test_v = test_v / test_v.norm(dim=1, keepdim=True)
    n_classes = int(train_y.max()) + 1
    preds, clear = [], []
    for query in test_v:
        similarities = sorted(((float(query @ row), j) for j, row in enumerate(train_v)), reverse=True)
        votes = [0.0] * n_classes
        top = similarities[0][0]  # exp((s - top) / temperature): the same argmax, and finite for raw dot products
        for s, j in similarities[:k]:
            votes[int(train_y[j])] += math.exp((s - top) / temperature) if weighted else 1.0
        ranked = sorted(votes, reverse=True)
        gap = similarities[k - 1][0] - similarities[k][0] if k < len(similarities) else 1.0
        preds.append(max(range(n_classes), key=lambda c: (votes[c], -c)))
        clear.append((ranked[0] - ranked[1]) > 1e-4 * ranked[0] and gap > 1e-5)
    return torch.tensor(preds), torch.tensor(clear)


def _preds(out, n: int) -> torch.Tensor:
    assert out is not None, "your function returned None; return a tensor of predicted labels, one per test point"
    out = torch.as_tensor(out)
    assert out.shape == (n,), f"got shape {tuple(out.shape)}; return one label per test point: ({n},)"
    assert not out.is_floating_point(), "return integer class labels (e.g. votes.argmax(dim=1)), not scores"
    return out.long().cpu()


@exercise_check("kNN classifier")
def check_knn_predict(fn):
    """Check ``fn(train_v, train_y, test_v, k, temperature)`` against a float64 loop.

    The reference: cosine similarity on L2-normalised features, the ``k`` most similar training
    points, each voting for its label with weight ``exp(similarity / temperature)``; the class
    with the largest total wins. Points where float32 rounding could flip the vote are not scored.
    """
    g = torch.Generator().manual_seed(6)
    total = 0
    for n_train, n_test, d, classes, k, temperature in ((60, 80, 5, 3, 10, 0.1), (120, 80, 8, 4, 25, 0.5)):
        centres = torch.randn(classes, d, generator=g)
        train_y = torch.randint(classes, (n_train,), generator=g)
        # Features of very different lengths: a raw dot product then picks other neighbours than cosine does.
        train_v = (centres[train_y] + 1.2 * torch.randn(n_train, d, generator=g)) * (0.2 + 3 * torch.rand(n_train, 1, generator=g))
        test_v = torch.randn(n_test, d, generator=g) * 2
        want, clear = _knn_loop(train_v, train_y, test_v, k, temperature)
        got = _preds(fn(train_v.clone(), train_y.clone(), test_v.clone(), k, temperature), n_test)
        total += int(clear.sum())
        if torch.equal(got[clear], want[clear]):
            continue
        slips = {
            "every neighbour votes 1: weight the votes by exp(similarity / temperature)":
                dict(weighted=False),
            "normalise the features first: cosine similarity, not a raw dot product":
                dict(normalise=False),
            "k was ignored: use only the k most similar training points":
                dict(k=n_train),
            "the temperature was left out: weight each vote by exp(similarity / temperature), not exp(similarity)":
                dict(temperature=1.0),
        }
        for hint, change in slips.items():
            args = dict(k=k, temperature=temperature) | change
            slip, _ = _knn_loop(train_v, train_y, test_v, args.pop("k"), args.pop("temperature"), **args)
            if torch.equal(got[clear], slip[clear]):
                raise AssertionError(hint)
        agree = (got[clear] == want[clear]).float().mean().item()
        raise AssertionError(f"{agree:.0%} of your predictions agree with the reference (k={k}, temperature="
                             f"{temperature}); pick the TOP-k similarities, weight each vote by exp(s / temperature)")
    return f"matches a float64 loop on {total} test points"


# --------------------------------------------------------------- linear probe
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


def _least_squares_probe_accuracy(encoder, x_train, y_train, x_test, y_test) -> float:
    """The reference probe: frozen eval-mode features, a float64 least-squares fit to one-hot targets."""
    frozen = copy.deepcopy(encoder).eval()
    with torch.no_grad():
        v_train, v_test = frozen(x_train).double(), frozen(x_test).double()  # (N, d), (M, d)
    mu, sigma = v_train.mean(0), v_train.std(0).clamp_min(1e-6)
    ones = lambda v: torch.cat([(v - mu) / sigma, torch.ones(len(v), 1, dtype=v.dtype)], dim=1)  # noqa: E731
    targets = torch.eye(int(y_train.max()) + 1, dtype=torch.float64)[y_train]  # (N, C)
    weights = torch.linalg.lstsq(ones(v_train), targets, driver="gelsd").solution  # (d + 1, C)
    return (ones(v_test) @ weights).argmax(1).eq(y_test).double().mean().item()


@exercise_check("frozen linear probe")
def check_linear_probe_frozen(fn):
    """Check ``fn(encoder, x_train, y_train, x_test, y_test) -> test accuracy`` trains a probe on FROZEN features.

    The encoder (a small ConvNet with BatchNorm, handed over in train mode) must come back
    bit-for-bit unchanged: weights AND BatchNorm running statistics. ``x`` are already
    normalised float images. The reference is a least-squares linear classifier on the frozen
    features, in float64; the learner's probe must come within 0.1 of it (and reach 0.9 when the
    reference does).

    Example:
        >>> ok = check_linear_probe_frozen(lambda encoder, x_train, y_train, x_test, y_test: 0.5)  # doctest: +ELLIPSIS
        [NOT YET] frozen linear probe: test accuracy 0.50, but a least-squares probe on the frozen features ...
    """
    encoder, x_train, y_train, x_test, y_test = _probe_task()
    reference = _least_squares_probe_accuracy(encoder, x_train, y_train, x_test, y_test)
    encoder.train()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    out = fn(encoder, x_train, y_train, x_test, y_test)
    assert out is not None, "your function returned None; return the test accuracy as a float in [0, 1]"
    accuracy = float(out.detach()) if isinstance(out, torch.Tensor) else float(out)
    after = encoder.state_dict()
    statistics = [k for k in before if "running" in k or "num_batches" in k]
    changed_bn = [k for k in statistics if not torch.equal(before[k], after[k])]
    changed_w = [k for k in before if k not in statistics and not torch.equal(before[k], after[k])]
    assert not changed_w, (f"the encoder's weights changed ({changed_w[:2]}...): optimise only the linear layer's "
                           "parameters, and compute the features under torch.no_grad()")
    assert not changed_bn, ("the encoder's BatchNorm statistics changed although no weight did: BatchNorm was left "
                            "in train mode; call encoder.eval() before extracting features (in train mode every "
                            "forward pass updates its running mean and variance)")
    assert math.isfinite(accuracy), f"your function returned {accuracy}; return the test accuracy as a float in [0, 1]"
    assert accuracy <= 1.0, (f"you returned {accuracy:g}: a percentage or a count? return the test accuracy as a "
                             f"fraction in [0, 1] (correct / number of test images)")
    assert accuracy >= 0.0, f"you returned {accuracy:g}; return the test accuracy as a fraction in [0, 1]"
    target = min(0.9, reference - 0.1)
    assert accuracy >= target, (f"test accuracy {accuracy:.2f}, but a least-squares probe on the frozen features "
                                f"reaches {reference:.2f}; train the linear layer for more steps (a few hundred), "
                                f"on the training features, and score it on the TEST features")
    return f"encoder untouched, test accuracy {accuracy:.2f} (least-squares reference {reference:.2f})"


# ------------------------------------------------------ fine-tuning optimizer
def _finetune_pair(seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = SmallConvNet(width=4, feature_dim=16)
        classifier = nn.Linear(16, 3)
    return encoder, classifier


@exercise_check("fine-tuning optimizer", solution="make_finetune_optimizer")
def check_finetune_optimizer(fn):
    """Check ``fn(encoder, classifier, lr_head, lr_encoder) -> torch.optim.Optimizer`` has two learning rates.

    Every encoder parameter must be optimised with ``lr_encoder`` and every classifier parameter with
    ``lr_head``, each exactly once (param groups). The reference is the first step of SGD and Adam:
    with every gradient 1, each weight moves by its learning rate (SGD: ``lr * grad``; Adam's first
    step: ``lr * grad / |grad|``), so the measured step of each parameter is compared with the rate it
    should have; any optimizer whose first step has that size passes.
    """
    lr_head, lr_encoder = 1e-2, 1e-4
    encoder, classifier = _finetune_pair()
    optimizer = fn(encoder, classifier, lr_head, lr_encoder)
    assert optimizer is not None, "your function returned None; return the torch.optim optimizer you built"
    assert isinstance(optimizer, torch.optim.Optimizer), (
        f"you returned a {type(optimizer).__name__}; return a torch.optim optimizer, e.g. torch.optim.Adam([{{'params'"
        f": encoder.parameters(), 'lr': lr_encoder}}, {{'params': classifier.parameters(), 'lr': lr_head}}])")
    rate = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            rate[id(p)] = group["lr"]
    encoder_rates = {rate.get(id(p)) for p in encoder.parameters()}
    head_rates = {rate.get(id(p)) for p in classifier.parameters()}
    assert None not in head_rates, "the classifier's parameters are not in the optimizer: the new head must train"
    assert None not in encoder_rates, ("some of the encoder's parameters are not in the optimizer: fine-tuning trains "
                                       "the encoder too, only more gently (lr_encoder)")
    assert len(rate) == len(list(encoder.parameters())) + len(list(classifier.parameters())), (
        "the optimizer holds parameters that are neither the encoder's nor the classifier's")
    if encoder_rates == {lr_head} and head_rates == {lr_encoder}:
        raise AssertionError("the two rates are swapped: the encoder gets lr_encoder (the smaller one), the new "
                             "head lr_head")
    if len(optimizer.param_groups) == 1:
        raise AssertionError(f"one parameter group, so one learning rate ({optimizer.param_groups[0]['lr']:g}) for "
                             "everything; pass a list of two dicts, {'params': ..., 'lr': ...}, one per part")
    assert encoder_rates == {lr_encoder}, (f"encoder parameters have learning rates {sorted(encoder_rates)}; all "
                                           f"should have lr_encoder = {lr_encoder:g}")
    assert head_rates == {lr_head}, (f"classifier parameters have learning rates {sorted(head_rates)}; all should "
                                     f"have lr_head = {lr_head:g}")

    # The first step, measured: with every gradient 1, SGD moves each weight by lr, Adam by lr (up to eps).
    before = [p.detach().clone() for p in (*encoder.parameters(), *classifier.parameters())]
    for p in (*encoder.parameters(), *classifier.parameters()):
        p.grad = torch.ones_like(p)
    optimizer.step()
    steps = [(p.detach() - b).abs().double().median().item()
             for p, b in zip((*encoder.parameters(), *classifier.parameters()), before)]
    n_encoder = len(list(encoder.parameters()))
    encoder_step, head_step = max(steps[:n_encoder]), max(steps[n_encoder:])
    assert math.isclose(head_step, lr_head, rel_tol=0.2) and math.isclose(encoder_step, lr_encoder, rel_tol=0.2), (
        f"after one step with gradient 1 the head's weights moved by {head_step:.3g} and the encoder's by "
        f"{encoder_step:.3g}, expected {lr_head:g} and {lr_encoder:g}: use plain SGD or Adam(W) without extra "
        f"scaling (a large weight decay or momentum tricks change the step)")
    return (f"encoder steps {encoder_step:.2g}, head steps {head_step:.2g} (ratio {encoder_step / head_step:.2g}), "
            f"every parameter once")
