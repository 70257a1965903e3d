"""The checkers of notebooks 04-06 accept correct answers (written here independently, as a student
would) and reject plausible wrong ones with a hint that names the slip."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crl_helpers.exercises import (
    check_alignment,
    check_cosine_schedule,
    check_finetune_optimizer,
    check_info_nce,
    check_knn_predict,
    check_linear_probe_frozen,
    check_logsumexp,
    check_neg_euclidean_score,
    check_nt_xent,
    check_simclr_step,
    check_uniformity,
)


# ------------------------------------------------------------------- InfoNCE
def info_nce_loop(query, positive_key, negative_keys, temperature):
    losses = []
    for q, k in zip(F.normalize(query, dim=1), F.normalize(positive_key, dim=1)):
        pos = torch.exp(q @ k / temperature)
        neg = sum(torch.exp(q @ n / temperature) for n in F.normalize(negative_keys, dim=1))
        losses.append(-torch.log(pos / (pos + neg)))
    return torch.stack(losses).mean()


def info_nce_vectorised(query, positive_key, negative_keys, temperature):
    q, k, n = (F.normalize(t, dim=1) for t in (query, positive_key, negative_keys))
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ n.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))


@pytest.mark.parametrize("answer", [info_nce_loop, info_nce_vectorised])
def test_info_nce_accepts_loop_and_vectorised(answer):
    assert check_info_nce(answer)


@pytest.mark.parametrize("wrong, hint", [
    (lambda q, k, n, t: info_nce_vectorised(q, k, n, 1.0), "temperature is missing"),
    (lambda q, k, n, t: info_nce_vectorised(q, k, n, t) * len(q), "SUM over queries"),
    (lambda q, k, n, t: F.cross_entropy(torch.cat([(q * k).sum(1, keepdim=True), q @ n.T], 1) / t,
                                        torch.zeros(len(q), dtype=torch.long)), "not L2-normalised"),
    (lambda q, k, n, t: (-(F.normalize(q, dim=1) * F.normalize(k, dim=1)).sum(1) / t
                         + torch.logsumexp(F.normalize(q, dim=1) @ F.normalize(n, dim=1).T / t, 1)).mean(),
     "positive is missing from the denominator"),
    (lambda q, k, n, t: info_nce_vectorised(q, k, n, t).expand(3), "a scalar"),
])
def test_info_nce_rejects_slips_with_hints(wrong, hint):
    result = check_info_nce(wrong)
    assert not result and hint in result.message


# ------------------------------------------------------------------- NT-Xent
def nt_xent_loop(z1, z2, temperature):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    total = 0.0
    for a in range(2 * n):
        partner = (a + n) % (2 * n)
        denominator = sum(torch.exp(z[a] @ z[b] / temperature) for b in range(2 * n) if b != a)
        total = total - torch.log(torch.exp(z[a] @ z[partner] / temperature) / denominator)
    return total / (2 * n)


def nt_xent_unmasked(z1, z2, temperature):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    return F.cross_entropy(z @ z.T / temperature, torch.cat([torch.arange(n) + n, torch.arange(n)]))


def nt_xent_cross_only(z1, z2, temperature):
    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    target = torch.arange(len(a))
    return 0.5 * (F.cross_entropy(a @ b.T / temperature, target) + F.cross_entropy(b @ a.T / temperature, target))


def nt_xent_matrix(z1, z2, temperature):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, torch.cat([torch.arange(n) + n, torch.arange(n)]))


def nt_xent_unnormalised(z1, z2, temperature):
    z = torch.cat([z1, z2])
    n = len(z1)
    logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, torch.cat([torch.arange(n) + n, torch.arange(n)]))


@pytest.mark.parametrize("answer", [nt_xent_loop, nt_xent_matrix])
def test_nt_xent_accepts_a_loop_and_a_matrix_form(answer):
    assert check_nt_xent(answer)


@pytest.mark.parametrize("wrong, hint", [
    (nt_xent_unmasked, "mask the diagonal"),
    (nt_xent_cross_only, "all 2N-1 other views"),
    (lambda z1, z2, t: nt_xent_loop(z1, z2, 1.0), "temperature is missing"),
    (nt_xent_unnormalised, "not L2-normalised"),
    (lambda z1, z2, t: nt_xent_loop(z1, z2, t) + 0.01, "the partner of view i"),
])
def test_nt_xent_rejects_slips_with_hints(wrong, hint):
    result = check_nt_xent(wrong)
    assert not result and hint in result.message


# --------------------------------------------------------------- logsumexp
def stable_logsumexp(logits):
    m = logits.max(dim=-1, keepdim=True).values
    return (logits - m).exp().sum(-1).log() + m.squeeze(-1)


def test_logsumexp_accepts_the_stable_version_and_rejects_the_naive_one():
    assert check_logsumexp(stable_logsumexp)
    naive = check_logsumexp(lambda x: x.exp().sum(-1).log())
    assert not naive and "subtract each row's max" in naive.message
    whole = check_logsumexp(lambda x: torch.logsumexp(x.flatten(), 0))
    assert not whole and "last dimension" in whole.message
    global_max = check_logsumexp(lambda x: (x - x.max()).exp().sum(-1).log() + x.max())
    assert not global_max  # one max for all rows underflows the row at -1000


# --------------------------------------------------------------- alignment
def test_alignment_checker():
    assert check_alignment(lambda z1, z2: (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).pow(2).sum(1).mean())
    raw = check_alignment(lambda z1, z2: (z1 - z2).pow(2).sum(1).mean())
    assert not raw and "normalise" in raw.message
    no_square = check_alignment(lambda z1, z2: (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).norm(dim=1).mean())
    assert not no_square and "square" in no_square.message


# ------------------------------------------------ negative squared Euclidean score
def neg_euclidean_loop(query, keys):
    return torch.stack([torch.stack([-((q - k) ** 2).sum() for k in keys]) for q in query])


def neg_euclidean_expanded(query, keys):
    # ||q||^2 + ||k||^2 - 2 q.k, a different route to the same matrix
    return -(query.pow(2).sum(1, keepdim=True) + keys.pow(2).sum(1)[None, :] - 2 * query @ keys.T)


@pytest.mark.parametrize("answer", [neg_euclidean_loop, neg_euclidean_expanded])
def test_neg_euclidean_accepts_two_forms(answer):
    assert check_neg_euclidean_score(answer)


@pytest.mark.parametrize("wrong, hint", [
    (lambda q, k: -neg_euclidean_loop(q, k), "negate it"),
    (lambda q, k: -torch.cdist(q, k), "square the distance"),
    (lambda q, k: neg_euclidean_loop(q, k).T, "rows are queries"),
    (lambda q, k: neg_euclidean_loop(F.normalize(q, dim=1), F.normalize(k, dim=1)), "do not normalise"),
])
def test_neg_euclidean_rejects_slips_with_hints(wrong, hint):
    result = check_neg_euclidean_score(wrong)
    assert not result and hint in result.message


# --------------------------------------------------------- cosine schedule
def schedule_loop(base, epochs, steps_per_epoch, warmup_epochs):
    total, warm = epochs * steps_per_epoch, int(round(warmup_epochs * steps_per_epoch))
    out = []
    for s in range(total):
        if s < warm:
            out.append(base * (s + 1) / warm)
        else:
            out.append(0.5 * base * (1 + math.cos(math.pi * (s - warm) / (total - warm))))
    return out


def test_cosine_schedule_accepts_a_loop():
    assert check_cosine_schedule(schedule_loop)


def test_cosine_schedule_rejects_slips():
    def warmup_from_zero(base, epochs, steps, warmup):
        out = schedule_loop(base, epochs, steps, warmup)
        w = int(round(warmup * steps))
        return list(np.linspace(0, base, w)) + out[w:] if w else out

    result = check_cosine_schedule(warmup_from_zero)
    assert not result and "warm-up is not" in result.message

    def full_period(base, epochs, steps, warmup):
        out = schedule_loop(base, epochs, steps, warmup)
        w, total = int(round(warmup * steps)), epochs * steps
        return out[:w] + [0.5 * base * (1 + math.cos(2 * math.pi * (s - w) / (total - w))) for s in range(w, total)]

    result = check_cosine_schedule(full_period)
    assert not result and "half a cosine period" in result.message

    def late_decay(base, epochs, steps, warmup):
        out = schedule_loop(base, epochs, steps, warmup)
        return out[:1] + out[:-1] if warmup else out  # the cosine starts one step late

    result = check_cosine_schedule(late_decay)
    assert not result

    short = check_cosine_schedule(lambda base, epochs, steps, warmup: schedule_loop(base, epochs, steps, warmup)[:-1])
    assert not short and "one per step" in short.message


# -------------------------------------------------------------- uniformity
def uniformity_loop(z):
    z = F.normalize(z, dim=1).double()
    terms = [math.exp(-2 * (z[i] - z[j]).pow(2).sum().item()) for i in range(len(z)) for j in range(i + 1, len(z))]
    return math.log(sum(terms) / len(terms))


def test_uniformity_checker():
    assert check_uniformity(uniformity_loop)
    no_log = check_uniformity(lambda z: math.exp(uniformity_loop(z)))
    assert not no_log and "log" in no_log.message
    with_diagonal = check_uniformity(lambda z: torch.exp(-2 * torch.cdist(F.normalize(z, dim=1), F.normalize(z, dim=1)).pow(2)).mean().log())
    assert not with_diagonal and "i = j" in with_diagonal.message


# ------------------------------------------------------------ SimCLR step
def nt_xent_formula(z1, z2, temperature, self_mask=True):
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, d)
    n = len(z1)
    similarity = z @ z.T / temperature  # (2N, 2N)
    if self_mask:
        similarity = similarity.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])  # (2N,)
    return F.cross_entropy(similarity, partner)


def step_one_pass(model, x1, x2, optimizer, temperature):
    _, z = model(torch.cat([x1, x2]))
    z1, z2 = z.chunk(2)
    loss = nt_xent_formula(z1, z2, temperature)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def step_two_passes(model, x1, x2, optimizer, temperature):
    from crl_helpers.losses import nt_xent

    optimizer.zero_grad(set_to_none=False)
    _, z1 = model(x1)
    _, z2 = model(x2)
    loss = nt_xent(z2, z1, temperature=temperature)  # the views swapped: NT-Xent is symmetric
    loss.backward()
    optimizer.step()
    return loss.detach()


def make_step(zero_grad=True, step=True, temperature=None, self_mask=True, reduce="mean", as_float=False):
    def simclr_step(model, x1, x2, optimizer, tau):
        if zero_grad:
            optimizer.zero_grad()
        _, z1 = model(x1)
        _, z2 = model(x2)
        loss = nt_xent_formula(z1, z2, tau if temperature is None else temperature, self_mask)
        if reduce == "sum":
            loss = loss * 2 * len(x1)
        loss.backward()
        if step:
            optimizer.step()
        return loss.item() if as_float else loss
    return simclr_step


@pytest.mark.parametrize("answer", [step_one_pass, step_two_passes])
def test_simclr_step_accepts_one_pass_and_two_passes(answer):
    assert check_simclr_step(answer)


@pytest.mark.parametrize("wrong, hint", [
    (make_step(zero_grad=False), "zero_grad"),
    (make_step(step=False), "optimizer.step()"),
    (make_step(temperature=0.5), "temperature is ignored"),
    (make_step(temperature=1.0), "temperature is missing"),
    (make_step(self_mask=False), "its own candidates"),
    (make_step(reduce="sum"), "SUM over the 2N views"),
    (make_step(as_float=True), "as a tensor"),
    (lambda model, x1, x2, optimizer, t: (make_step()(model, x1, x2, optimizer, t), None)[1], "returned None"),
])
def test_simclr_step_rejects_slips_with_hints(wrong, hint):
    result = check_simclr_step(wrong)
    assert not result and hint in result.message, result.message


def test_simclr_step_checker_tells_a_late_loss_from_a_wrong_step():
    def returns_the_next_loss(model, x1, x2, optimizer, temperature):
        step_one_pass(model, x1, x2, optimizer, temperature)
        with torch.no_grad():
            return nt_xent_formula(model(x1)[1], model(x2)[1], temperature)  # after the update

    result = check_simclr_step(returns_the_next_loss)
    assert not result and "before the update" in result.message


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
def two_groups(optimizer=torch.optim.Adam, swap=False, one_group=False, skip_encoder=False, **kw):
    def make(encoder, classifier, lr_head, lr_encoder):
        if one_group:
            return optimizer([*encoder.parameters(), *classifier.parameters()], lr=lr_head, **kw)
        groups = [{"params": list(classifier.parameters()), "lr": lr_encoder if swap else lr_head}]
        if not skip_encoder:
            groups.append({"params": list(encoder.parameters()), "lr": lr_head if swap else lr_encoder})
        return optimizer(groups, **kw)
    return make


@pytest.mark.parametrize("answer", [two_groups(), two_groups(torch.optim.SGD), two_groups(torch.optim.AdamW),
                                    two_groups(torch.optim.SGD, momentum=0.9)],
                         ids=["adam", "sgd", "adamw", "sgd-momentum"])
def test_finetune_optimizer_checker_accepts_two_groups(answer):
    assert check_finetune_optimizer(answer)


@pytest.mark.parametrize("slip, hint", [
    (dict(swap=True), "swapped"),
    (dict(one_group=True), "one parameter group"),
    (dict(skip_encoder=True), "encoder's parameters are not in the optimizer"),
    (dict(optimizer=torch.optim.SGD, weight_decay=100.0), "after one step"),
])
def test_finetune_optimizer_checker_names_the_slip(slip, hint):
    result = check_finetune_optimizer(two_groups(**slip))
    assert not result and hint in result.message


def test_finetune_optimizer_checker_refuses_what_is_not_an_optimizer():
    result = check_finetune_optimizer(lambda encoder, classifier, lr_head, lr_encoder: [encoder, classifier])
    assert not result and "torch.optim" in result.message
