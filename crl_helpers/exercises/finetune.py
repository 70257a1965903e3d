"""Exercises of notebook 06 (fine-tuning and evaluation): a weighted kNN classifier, a truly frozen linear
probe, and a fine-tuning optimizer with a smaller learning rate for the encoder than for the new head.

Every checker compares with a reference written here (float64 loops, a closed-form least-squares probe,
the parameter groups and one real step), never with the package function the exercise teaches, on
inputs drawn anew on every call.

Example:
    >>> import torch
    >>> ok = check_finetune_optimizer(lambda encoder, classifier, lr_head, lr_encoder: torch.optim.SGD(
    ...     [{"params": encoder.parameters(), "lr": lr_encoder}, {"params": classifier.parameters(), "lr": lr_head}]))
    ... # doctest: +ELLIPSIS
    [PASSED] fine-tuning optimizer: two groups (encoder lr ...), every parameter once, all of them trained by a real step
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from crl_helpers.exercises._check import as_number, draw, exercise_check, expect, fresh_generator
from crl_helpers.models import SmallConvNet

__all__ = ["check_finetune_optimizer", "check_knn_predict", "check_linear_probe_frozen"]


# ------------------------------------------------------------------------ kNN
def _knn_loop(train_v, train_y, test_v, k, temperature, *, normalise=True, weighted=True, linear=False):
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
            if linear:  # the slip of weighting by the similarity itself
                votes[int(train_y[j])] += s
            else:
                votes[int(train_y[j])] += math.exp((s - top) / temperature) if weighted else 1.0
        ranked = sorted(votes, reverse=True)
        gap = similarities[k - 1][0] - similarities[k][0] if k < len(similarities) else 1.0
        preds.append(max(range(n_classes), key=lambda c: (votes[c], -c)))
        clear.append((ranked[0] - ranked[1]) > 1e-4 * ranked[0] and gap > 1e-5)
    return torch.tensor(preds), torch.tensor(clear)


def _preds(out, n: int) -> torch.Tensor:
    expect(out is not None, "your function returned None; return a tensor of predicted labels, one per test point")
    expect(isinstance(out, torch.Tensor), f"return a tensor of labels (the cells below compare it with knn_predict's), "
                                          f"got a {type(out).__name__}")
    expect(out.shape == (n,), f"got shape {tuple(out.shape)}; return one label per test point: ({n},)")
    expect(not out.is_floating_point(), "return integer class labels (e.g. votes.argmax(dim=1)), not scores")
    expect(out.dtype == torch.int64, f"return the labels as int64 (what argmax gives), got {out.dtype}")
    return out.cpu()


@exercise_check("kNN classifier")
def check_knn_predict(fn):
    """Check ``fn(train_v, train_y, test_v, k, temperature)`` against a float64 loop.

    The reference: cosine similarity on L2-normalised features, the ``k`` most similar training
    points, each voting for its label with weight ``exp(similarity / temperature)``; the class
    with the largest total wins. Data, k and temperature are drawn anew; points where float32
    rounding could flip the vote are not scored. The labels come back as an int64 tensor.
    """
    g = fresh_generator()
    total = 0
    for n_train, n_test, d, classes, k, temperature in (
            (draw(g, 50, 80), 80, draw(g, 4, 6), 3, draw(g, 6, 12), round(float(torch.empty(1).uniform_(0.05, 0.15, generator=g)), 3)),
            (draw(g, 100, 140), 80, draw(g, 6, 9), draw(g, 4, 5), draw(g, 20, 30), round(float(torch.empty(1).uniform_(0.3, 0.6, generator=g)), 3))):
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
            "each vote is weighted by the similarity s itself; weight it by exp(s / temperature)":
                dict(linear=True),
        }
        matching = []
        for hint, change in slips.items():
            args = dict(k=k, temperature=temperature) | change
            slip, _ = _knn_loop(train_v, train_y, test_v, args.pop("k"), args.pop("temperature"), **args)
            if torch.equal(got[clear], slip[clear]):
                matching.append(hint)
        if len(matching) == 1:  # a slip is named only when it alone explains the predictions
            raise AssertionError(matching[0])
        if matching:
            raise AssertionError("your votes are not weighted by exp(similarity / temperature): with these "
                                 "neighbours the predictions match " + " and ".join(
                                     hint.split(":")[0] for hint in matching) + "; weight each vote by "
                                 "exp(s / temperature)")
        agree = (got[clear] == want[clear]).float().mean().item()
        raise AssertionError(f"{agree:.0%} of your predictions agree with the reference (k={k}, temperature="
                             f"{temperature}); pick the TOP-k similarities, weight each vote by exp(s / temperature)")
    return f"matches a float64 loop on {total} test points"


# --------------------------------------------------------------- linear probe
def _probe_task(g: torch.Generator):
    """Two colours of noisy images, sizes and noise drawn anew: linearly separable from a random ConvNet's features."""
    n_train, n_test = 2 * draw(g, 30, 40), 2 * draw(g, 20, 30)
    y = torch.randperm(n_train + n_test, generator=g) % 2  # (n,) balanced, shuffled
    colour = torch.tensor([[1.0, 0.0, -1.0], [-1.0, 0.0, 1.0]])[y]  # (n, 3) red-ish vs blue-ish
    x = colour[:, :, None, None] + 0.6 * torch.randn(len(y), 3, 16, 16, generator=g)  # (n, 3, 16, 16), normalised
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(draw(g, 0, 2 ** 30))
        encoder = SmallConvNet(width=4, feature_dim=16)
    # BatchNorm's running statistics set to those of the data (as after pre-training), so that eval-mode
    # features are normalised and a probe trained by gradient descent converges in a few hundred steps.
    norms = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the one pass below
    with torch.no_grad():
        encoder.train()(x)
    for m in norms:
        m.momentum = 0.1
    return encoder, x[:n_train], y[:n_train], x[n_train:], y[n_train:]


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


def _run_probe(fn, encoder, x_train, y_train, x_test, y_test, seed: int) -> tuple[float, dict, dict]:
    """One call of the learner's probe on a fresh train-mode copy of ``encoder``, every RNG (torch, Python,
    numpy) seeded with ``seed``: two calls with the same training data draw the same initial weights and
    batches. Returns the accuracy and the encoder's state before and after."""
    import random

    import numpy as np

    encoder = copy.deepcopy(encoder).train()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2 ** 32)
            out = fn(encoder, x_train.clone(), y_train.clone(), x_test.clone(), y_test.clone())
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    expect(out is not None, "your function returned None; return the test accuracy as a float in [0, 1]")
    return as_number(out), before, encoder.state_dict()


@exercise_check("frozen linear probe")
def check_linear_probe_frozen(fn):
    """Check ``fn(encoder, x_train, y_train, x_test, y_test) -> test accuracy`` trains a probe on FROZEN features.

    The encoder (a small ConvNet with BatchNorm, handed over in train mode) must come back
    bit-for-bit unchanged: weights AND BatchNorm running statistics. ``x`` are already
    normalised float images of two classes, drawn anew. The reference is a least-squares linear
    classifier on the frozen features, in float64; the learner's accuracy must come within 0.1 of it
    (and reach 0.9 when the reference does). A second call with the test labels flipped (every RNG
    seeded as in the first) must score the same predictions, so the two accuracies add up to 1: an
    accuracy measured on the training set, a probe fitted on the test set, or a constant fail.

    Example:
        >>> ok = check_linear_probe_frozen(lambda encoder, x_train, y_train, x_test, y_test: 0.5)  # doctest: +ELLIPSIS
        [NOT YET] frozen linear probe: test accuracy 0.50, but a least-squares probe on the frozen features ...
    """
    g = fresh_generator()
    encoder, x_train, y_train, x_test, y_test = _probe_task(g)
    reference = _least_squares_probe_accuracy(encoder, x_train, y_train, x_test, y_test)
    seed = draw(g, 0, 2 ** 30)
    accuracy, before, after = _run_probe(fn, encoder, x_train, y_train, x_test, y_test, seed)
    statistics = [k for k in before if "running" in k or "num_batches" in k]
    changed_bn = [k for k in statistics if not torch.equal(before[k], after[k])]
    changed_w = [k for k in before if k not in statistics and not torch.equal(before[k], after[k])]
    expect(not changed_w, (f"the encoder's weights changed ({changed_w[:2]}...): optimise only the linear layer's "
                           "parameters, and compute the features under torch.no_grad()"))
    expect(not changed_bn, ("the encoder's BatchNorm statistics changed although no weight did: BatchNorm was left "
                            "in train mode; call encoder.eval() before extracting features (in train mode every "
                            "forward pass updates its running mean and variance)"))
    expect(math.isfinite(accuracy), f"your function returned {accuracy}; return the test accuracy as a float in [0, 1]")
    expect(accuracy <= 1.0, (f"you returned {accuracy:g}: a percentage or a count? return the test accuracy as a "
                             f"fraction in [0, 1] (correct / number of test images)"))
    expect(accuracy >= 0.0, f"you returned {accuracy:g}; return the test accuracy as a fraction in [0, 1]")
    target = min(0.9, reference - 0.15)
    expect(accuracy >= target, (f"test accuracy {accuracy:.2f}, but a least-squares probe on the frozen features "
                                f"reaches {reference:.2f}; train the linear layer for more steps (a few hundred), "
                                f"on the training features, and score it on the TEST features"))
    flipped, _, _ = _run_probe(fn, encoder, x_train, y_train, x_test, 1 - y_test, seed)
    if abs(accuracy + flipped - 1) > 1e-6:
        if abs(flipped - accuracy) < 1e-6:
            shuffled = y_train[torch.randperm(len(y_train), generator=g)]
            untrained, _, _ = _run_probe(fn, encoder, x_train, shuffled, x_test, y_test, seed)
            if abs(untrained - accuracy) < 1e-6:
                raise AssertionError(f"your function returns {accuracy:.3f} whether the training labels are shuffled "
                                     f"or the test labels flipped, so the number does not come from a probe trained "
                                     f"on (x_train, y_train) and scored against y_test (a constant, or a probe fitted "
                                     f"on the test set); fit on the training set, return the accuracy on the test set")
            raise AssertionError(f"with every test label flipped your function still returns {accuracy:.3f}: the "
                                 f"number does not depend on y_test, so it is not the test accuracy (the training "
                                 f"accuracy?); score the probe's predictions on x_test against y_test")
        if accuracy + flipped > 1:
            raise AssertionError(f"test accuracy {accuracy:.3f}, and {flipped:.3f} with every test label flipped: the "
                                 f"probe's predictions change with y_test, so it learned from the test labels; fit it "
                                 f"on (x_train, y_train) only, then score it on the test set")
        raise AssertionError(f"test accuracy {accuracy:.3f}, and {flipped:.3f} with every test label flipped (the same "
                             f"predictions should give {1 - accuracy:.3f}); fit on the training set, then return the "
                             f"fraction of test images whose prediction equals y_test")
    return f"encoder untouched, test accuracy {accuracy:.2f} (least-squares reference {reference:.2f})"


# ------------------------------------------------------ fine-tuning optimizer
def _finetune_pair(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = SmallConvNet(width=4, feature_dim=16)
        classifier = nn.Linear(16, 3)
    return encoder, classifier


@exercise_check("fine-tuning optimizer", solution="make_finetune_optimizer")
def check_finetune_optimizer(fn):
    """Check ``fn(encoder, classifier, lr_head, lr_encoder) -> torch.optim.Optimizer`` has two learning rates.

    Every encoder parameter must be optimised with ``lr_encoder`` and every classifier parameter with
    ``lr_head``, each exactly once (param groups); any torch optimizer passes (Adam, SGD with or without
    momentum, RMSprop, ...). Then one real step: a cross-entropy loss on a fresh batch, backward, and
    ``optimizer.step()``: every parameter of both parts must receive a gradient (none frozen) and move.
    The rates are drawn anew on each call.

    Example:
        >>> import torch
        >>> ok = check_finetune_optimizer(lambda encoder, classifier, lr_head, lr_encoder: torch.optim.SGD(
        ...     [{"params": encoder.parameters(), "lr": lr_encoder}, {"params": classifier.parameters(), "lr": lr_head}]))
        ... # doctest: +ELLIPSIS
        [PASSED] fine-tuning optimizer: two groups (encoder lr ..., head lr ...), every parameter once, all of them trained by a real step
    """
    g = fresh_generator()
    lr_encoder = round(10 ** float(torch.empty(1).uniform_(-4.5, -3.0, generator=g)), 7)
    lr_head = lr_encoder * draw(g, 5, 50)
    encoder, classifier = _finetune_pair(draw(g, 0, 2 ** 30))
    optimizer = fn(encoder, classifier, lr_head, lr_encoder)
    expect(optimizer is not None, "your function returned None; return the torch.optim optimizer you built")
    expect(isinstance(optimizer, torch.optim.Optimizer), (
        f"you returned a {type(optimizer).__name__}; return a torch.optim optimizer, e.g. torch.optim.Adam([{{'params'"
        f": encoder.parameters(), 'lr': lr_encoder}}, {{'params': classifier.parameters(), 'lr': lr_head}}])"))
    rate = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            rate[id(p)] = group["lr"]
    encoder_rates = {rate.get(id(p)) for p in encoder.parameters()}
    head_rates = {rate.get(id(p)) for p in classifier.parameters()}
    expect(None not in head_rates, "the classifier's parameters are not in the optimizer: the new head must train")
    expect(None not in encoder_rates, ("some of the encoder's parameters are not in the optimizer: fine-tuning trains "
                                       "the encoder too, only more gently (lr_encoder)"))
    expect(sum(len(group["params"]) for group in optimizer.param_groups) == len(rate)
           == len(list(encoder.parameters())) + len(list(classifier.parameters())),
           "the optimizer holds a parameter twice, or parameters that are neither the encoder's nor the classifier's")
    if encoder_rates == {lr_head} and head_rates == {lr_encoder}:
        raise AssertionError("the two rates are swapped: the encoder gets lr_encoder (the smaller one), the new "
                             "head lr_head")
    if len(optimizer.param_groups) == 1:
        raise AssertionError(f"one parameter group, so one learning rate ({optimizer.param_groups[0]['lr']:g}) for "
                             "everything; pass a list of two dicts, {'params': ..., 'lr': ...}, one per part")
    expect(encoder_rates == {lr_encoder}, (f"encoder parameters have learning rates {sorted(encoder_rates)}; all "
                                           f"should have lr_encoder = {lr_encoder:g}"))
    expect(head_rates == {lr_head}, (f"classifier parameters have learning rates {sorted(head_rates)}; all should "
                                     f"have lr_head = {lr_head:g}"))
    frozen = [name for name, p in encoder.named_parameters() if not p.requires_grad]
    expect(not frozen, (f"the encoder's parameters {frozen[:2]}... do not require grad: the encoder is frozen, so "
                        f"it never learns; fine-tuning trains it too, with the smaller rate (leave requires_grad on)"))
    expect(all(p.requires_grad for p in classifier.parameters()), "the classifier's parameters must require grad")

    # One real step: gradients from a backward pass through both parts, then the update.
    x = torch.randn(8, 3, 16, 16, generator=g)  # (B, 3, H, W)
    y = torch.randint(0, 3, (8,), generator=g)  # (B,)
    before = {name: p.detach().clone() for name, p in (*encoder.named_parameters(), *classifier.named_parameters())}
    encoder.train()
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(classifier(encoder(x)), y).backward()
    optimizer.step()
    still = [name for name, p in (*encoder.named_parameters(), *classifier.named_parameters())
             if p.grad is not None and p.grad.abs().max() > 0 and torch.equal(p.detach(), before[name])]
    expect(not still, f"after one step with real gradients {still[:2]}... did not move; give every group a positive "
                      f"learning rate (and no other option that stops the update)")
    return (f"two groups (encoder lr {lr_encoder:.2g}, head lr {lr_head:.2g}), every parameter once, all of them "
            f"trained by a real step")
