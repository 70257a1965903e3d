"""The checkers of crl_helpers.exercises.finetune (notebook 06) accept correct answers (written here independently,
as a learner would) and reject plausible wrong ones with a hint that names the slip; the red-team
table (tests/test_checker_redteam.py) holds the verdicts of many more answers."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crl_helpers.exercises import (
    check_finetune_optimizer,
    check_knn_predict,
    check_linear_probe_frozen,
)


# --------------------------------------------------------------------- kNN
def knn_loop(train_v, train_y, test_v, k, temperature):
    train_v, test_v = F.normalize(train_v, dim=1), F.normalize(test_v, dim=1)
    preds = []
    for q in test_v:
        sims = sorted(((float(q @ v), int(y)) for v, y in zip(train_v, train_y)), reverse=True)[:k]
        votes = {}
        for s, y in sims:
            votes[y] = votes.get(y, 0.0) + math.exp(s / temperature)
        preds.append(max(sorted(votes), key=lambda c: votes[c]))
    return torch.tensor(preds)


def knn_vectorised(train_v, train_y, test_v, k, temperature):
    # Written differently from the solution: a one-hot matrix product instead of scatter_add_.
    similarity = F.normalize(test_v, dim=1) @ F.normalize(train_v, dim=1).T  # (M, N)
    top, index = similarity.topk(k, dim=1)  # (M, k)
    one_hot = F.one_hot(train_y[index], int(train_y.max()) + 1).float()  # (M, k, C)
    return (torch.exp(top / temperature)[:, :, None] * one_hot).sum(1).argmax(1)


def knn_slip(normalise=True, weighted=True, use_k=True, use_temperature=True):
    def knn(train_v, train_y, test_v, k, temperature):
        if normalise:
            train_v, test_v = F.normalize(train_v, dim=1), F.normalize(test_v, dim=1)
        top, index = (test_v @ train_v.T).topk(k if use_k else len(train_v), dim=1)
        top = top - top[:, :1]  # finite exp even for raw dot products
        weights = torch.exp(top / (temperature if use_temperature else 1.0)) if weighted else torch.ones_like(top)
        votes = torch.zeros(len(test_v), int(train_y.max()) + 1).scatter_add_(1, train_y[index], weights)
        return votes.argmax(1)
    return knn


@pytest.mark.parametrize("answer", [knn_loop, knn_vectorised], ids=["loop", "vectorised"])
def test_knn_checker_accepts_correct_answers(answer):
    assert check_knn_predict(answer)


@pytest.mark.parametrize("slip, hint", [
    (dict(weighted=False), "exp(similarity / temperature)"),
    (dict(normalise=False), "cosine similarity, not a raw dot product"),
    (dict(use_k=False), "k most similar"),
    (dict(use_temperature=False), "temperature was left out"),
])
def test_knn_checker_names_the_slip(slip, hint):
    result = check_knn_predict(knn_slip(**slip))
    assert not result and hint in result.message


def test_knn_checker_wants_integer_labels():
    scores = check_knn_predict(lambda tv, ty, q, k, t: knn_vectorised(tv, ty, q, k, t).float())
    assert not scores and "integer" in scores.message


# ------------------------------------------------------------ linear probe
def probe(encoder, x_train, y_train, x_test, y_test, eval_mode=True, train_encoder=False):
    encoder.eval() if eval_mode else encoder.train()
    torch.manual_seed(0)
    classifier = nn.Linear(encoder.feature_dim, 2)
    params = list(classifier.parameters()) + (list(encoder.parameters()) if train_encoder else [])
    optimizer = torch.optim.Adam(params, lr=0.05)
    with torch.no_grad():
        v_train = encoder(x_train)
    for _ in range(100):
        if train_encoder:  # the slip: features recomputed with gradients, encoder in the optimizer
            v_train = encoder(x_train)
        loss = F.cross_entropy(classifier(v_train), y_train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return (classifier(encoder(x_test)).argmax(1) == y_test).float().mean().item()


def test_linear_probe_checker():
    assert check_linear_probe_frozen(probe)
    train_mode = check_linear_probe_frozen(lambda *a: probe(*a, eval_mode=False))
    assert not train_mode and "encoder.eval()" in train_mode.message
    trained = check_linear_probe_frozen(lambda *a: probe(*a, train_encoder=True))
    assert not trained and "weights changed" in trained.message
    chance = check_linear_probe_frozen(lambda *a: 0.5)
    assert not chance and "least-squares probe" in chance.message
    percent = check_linear_probe_frozen(lambda *a: 100 * probe(*a))
    assert not percent and "percentage" in percent.message


def probe_sgd_on_a_copy(encoder, x_train, y_train, x_test, y_test):
    # Written differently from the solution: features of a frozen copy, full-batch SGD on the probe.
    frozen = __import__("copy").deepcopy(encoder).eval()
    with torch.no_grad():
        v_train, v_test = frozen(x_train), frozen(x_test)
    v_train, v_test = (v_train - v_train.mean(0)) / v_train.std(0), (v_test - v_train.mean(0)) / v_train.std(0)
    weight = torch.zeros(v_train.shape[1], 2, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=0.5)
    for _ in range(200):
        loss = F.cross_entropy(v_train @ weight, y_train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return ((v_test @ weight).argmax(1) == y_test).float().mean()


def test_linear_probe_checker_accepts_a_probe_on_a_frozen_copy():
    assert check_linear_probe_frozen(probe_sgd_on_a_copy)


# --------------------------------------------------- fine-tuning optimizer
def two_groups(optimizer=torch.optim.Adam, swap=False, one_group=False, skip_encoder=False, freeze=False, **kw):
    def make(encoder, classifier, lr_head, lr_encoder):
        if freeze:  # the slip: a frozen encoder in the right group never learns
            encoder.requires_grad_(False)
        if one_group:
            return optimizer([*encoder.parameters(), *classifier.parameters()], lr=lr_head, **kw)
        groups = [{"params": list(classifier.parameters()), "lr": lr_encoder if swap else lr_head}]
        if not skip_encoder:
            groups.append({"params": list(encoder.parameters()), "lr": lr_head if swap else lr_encoder})
        return optimizer(groups, **kw)
    return make


@pytest.mark.parametrize("answer", [two_groups(), two_groups(torch.optim.SGD), two_groups(torch.optim.AdamW),
                                    two_groups(torch.optim.SGD, momentum=0.9),
                                    two_groups(torch.optim.SGD, momentum=0.9, nesterov=True),
                                    two_groups(torch.optim.RMSprop)],
                         ids=["adam", "sgd", "adamw", "sgd-momentum", "sgd-nesterov", "rmsprop"])
def test_finetune_optimizer_checker_accepts_two_groups(answer):
    assert check_finetune_optimizer(answer)


@pytest.mark.parametrize("slip, hint", [
    (dict(swap=True), "swapped"),
    (dict(one_group=True), "one parameter group"),
    (dict(skip_encoder=True), "encoder's parameters are not in the optimizer"),
    (dict(freeze=True), "the encoder is frozen"),
])
def test_finetune_optimizer_checker_names_the_slip(slip, hint):
    result = check_finetune_optimizer(two_groups(**slip))
    assert not result and hint in result.message


def test_finetune_optimizer_checker_refuses_what_is_not_an_optimizer():
    result = check_finetune_optimizer(lambda encoder, classifier, lr_head, lr_encoder: [encoder, classifier])
    assert not result and "torch.optim" in result.message
