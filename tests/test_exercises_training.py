"""The checkers of crl_helpers.exercises.training (notebook 05) accept correct answers (written here independently,
as a learner would) and reject plausible wrong ones with a hint that names the slip; the red-team
table (tests/test_checker_redteam.py) holds the verdicts of many more answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crl_helpers.exercises import (
    check_cosine_schedule,
    check_simclr_step,
    check_uniformity,
)


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
    assert not result and "full cosine period" in result.message

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


