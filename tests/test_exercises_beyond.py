"""The checkers of crl_helpers.exercises.beyond (notebook 07) accept correct answers (written here independently,
as a learner would) and reject plausible wrong ones with a hint that names the slip; the red-team
table (tests/test_checker_redteam.py) holds the verdicts of many more answers."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crl_helpers.exercises import (
    check_enqueue,
    check_memory_bank_update,
    check_momentum_update,
    check_supcon_positive_mask,
)


# ------------------------------------------------------------ momentum update
def momentum_lerp(online, target, m):
    with torch.no_grad():
        for p_q, p_k in zip(online.parameters(), target.parameters()):
            p_k.lerp_(p_q, 1 - m)  # p_k + (1 - m) (p_q - p_k)


def momentum_by_name(online, target, m):
    online_params = dict(online.named_parameters())
    for name, p_k in target.named_parameters():
        p_k.data.copy_(m * p_k.data + (1 - m) * online_params[name].data)


@pytest.mark.parametrize("answer", [momentum_lerp, momentum_by_name])
def test_momentum_update_accepts_two_forms(answer):
    assert check_momentum_update(answer)


def momentum_swapped(online, target, m):
    momentum_lerp(online, target, 1 - m)


def momentum_copy(online, target, m):
    target.load_state_dict(online.state_dict())


def momentum_without_no_grad(online, target, m):
    for p_q, p_k in zip(online.parameters(), target.parameters()):
        p_k.mul_(m).add_(p_q, alpha=1 - m)


def momentum_new_parameters(online, target, m):
    for (name, module_q), module_k in zip(online.named_children(), target.children()):
        for pname, p_q in list(module_q.named_parameters(recurse=False)):
            p_k = getattr(module_k, pname)
            setattr(module_k, pname, torch.nn.Parameter(m * p_k.detach() + (1 - m) * p_q.detach()))


def momentum_updates_online(online, target, m):
    momentum_lerp(target, online, m)


@pytest.mark.parametrize("wrong, hint", [
    (momentum_swapped, "m and 1 - m are swapped"),
    (momentum_copy, "copy of online"),
    (momentum_without_no_grad, "torch.no_grad()"),
    (momentum_new_parameters, "in place"),
    (momentum_updates_online, "online changed"),
])
def test_momentum_update_rejects_slips_with_hints(wrong, hint):
    result = check_momentum_update(wrong)
    assert not result and hint in result.message


# ---------------------------------------------------------------------- queue
def enqueue_loop(queue, ptr, keys):
    for key in keys:
        queue[ptr] = key
        ptr = (ptr + 1) % len(queue)
    return ptr


def enqueue_two_slices(queue, ptr, keys):
    first = min(len(keys), len(queue) - ptr)  # what fits before the end
    queue[ptr:ptr + first] = keys[:first]
    queue[:len(keys) - first] = keys[first:]
    return (ptr + len(keys)) % len(queue)


@pytest.mark.parametrize("answer", [enqueue_loop, enqueue_two_slices])
def test_enqueue_accepts_two_forms(answer):
    assert check_enqueue(answer)


def enqueue_no_wrap(queue, ptr, keys):
    queue[ptr:ptr + len(keys)] = keys
    return (ptr + len(keys)) % len(queue)


def enqueue_truncated(queue, ptr, keys):
    room = len(queue) - ptr
    queue[ptr:ptr + min(room, len(keys))] = keys[:room]
    return (ptr + len(keys)) % len(queue)


def enqueue_pointer_stays(queue, ptr, keys):
    enqueue_loop(queue, ptr, keys)
    return ptr


def enqueue_pointer_unbounded(queue, ptr, keys):
    enqueue_loop(queue, ptr, keys)
    return ptr + len(keys)


@pytest.mark.parametrize("wrong, hint", [
    (enqueue_no_wrap, "wrap around"),
    (enqueue_truncated, "wrap around"),
    (enqueue_pointer_stays, "pointer did not move"),
    (enqueue_pointer_unbounded, "modulo K"),
])
def test_enqueue_rejects_slips_with_hints(wrong, hint):
    result = check_enqueue(wrong)
    assert not result and hint in result.message


# ---------------------------------------------------------------- memory bank
def bank_loop(bank, index, v, m):
    for row, i in zip(v, index.tolist()):
        mixed = m * bank[i] + (1 - m) * row
        bank[i] = mixed / mixed.norm()


def bank_index_copy(bank, index, v, m):
    bank.index_copy_(0, index, F.normalize(torch.lerp(v, bank[index], m), dim=1))


@pytest.mark.parametrize("answer", [bank_loop, bank_index_copy])
def test_memory_bank_update_accepts_two_forms(answer):
    assert check_memory_bank_update(answer)


def bank_not_renormalised(bank, index, v, m):
    bank[index] = m * bank[index] + (1 - m) * v


def bank_swapped(bank, index, v, m):
    bank_loop(bank, index, v, 1 - m)


def bank_replaced(bank, index, v, m):
    bank[index] = v


def bank_returns_a_copy(bank, index, v, m):
    out = bank.clone()
    bank_loop(out, index, v, m)
    return out


@pytest.mark.parametrize("wrong, hint", [
    (bank_not_renormalised, "renormalise"),
    (bank_swapped, "m and 1 - m are swapped"),
    (bank_replaced, "replaced by the new embeddings"),
    (bank_returns_a_copy, "returned an updated copy"),
])
def test_memory_bank_update_rejects_slips_with_hints(wrong, hint):
    result = check_memory_bank_update(wrong)
    assert not result and hint in result.message


# ------------------------------------------------------------------ SupCon mask
def mask_loop(labels):
    both = labels.tolist() * 2
    return torch.tensor([[a != b and both[a] == both[b] for b in range(len(both))] for a in range(len(both))])


def mask_fill_diagonal(labels):
    both = labels.repeat(2)  # (2N,)
    return (both[:, None] == both[None, :]).fill_diagonal_(False)


@pytest.mark.parametrize("answer", [mask_loop, mask_fill_diagonal])
def test_supcon_positive_mask_accepts_two_forms(answer):
    assert check_supcon_positive_mask(answer)


def mask_with_diagonal(labels):
    both = torch.cat([labels, labels])
    return both[:, None] == both[None, :]


def mask_one_view(labels):
    return (labels[:, None] == labels[None, :]).fill_diagonal_(False)


def mask_partner_only(labels):
    return mask_fill_diagonal(torch.arange(len(labels)))


def mask_float(labels):
    return mask_fill_diagonal(labels).float()


@pytest.mark.parametrize("wrong, hint", [
    (mask_with_diagonal, "diagonal is True"),
    (mask_one_view, "TWO views"),
    (mask_partner_only, "only the partner view"),
    (mask_float, "bool tensor"),
])
def test_supcon_positive_mask_rejects_slips_with_hints(wrong, hint):
    result = check_supcon_positive_mask(wrong)
    assert not result and hint in result.message
