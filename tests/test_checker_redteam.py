"""Red team of the exercise checkers: answers as learners write them, each with the verdict it must get.

``CANDIDATES`` maps every checker to ``(name, answer, verdict)`` triples: ``True`` (a right answer written
another way: a loop or vectorised, float32 or float64 inside, another optimizer), ``False`` (a plausible
wrong answer: the slips the notebooks warn about, answers of the wrong type for the cells after the
exercise, tables of the inputs the checkers once used, ``return 1.0``) or ``TIMEOUT`` (an answer that never
returns: the check must stop it after its time limit, here one second). A new exercise gets its candidates
here, in one place; the last test asks every checker for at least 5 wrong and 2 right answers.
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crl_helpers import exercises
from crl_helpers.exercises.solutions import reference

TIMEOUT = "timeout"


def _sleep(*args, **kwargs):
    time.sleep(60)


def _spin(*args, **kwargs):
    while True:
        try:
            pass
        except Exception:  # a learner's blanket except must not swallow the time limit
            pass


# ------------------------------------------------------------------------------------------ 01 pairs
def pair_loop(n):
    return torch.tensor([[a != b and a % n == b % n for b in range(2 * n)] for a in range(2 * n)])


OLD_PAIR_TABLE = {n: pair_loop(n) for n in (1, 2, 3, 5)}  # the inputs the checker once used


def crop_box(height, width, scale, ratio, *, uniform_ratio=False, centre=False, tries=10, clamp=False,
             rounding=round, exclusive=False, side=False):
    """RandomResizedCrop from torch's RNG, written independently; each keyword is one learner's slip."""
    for _ in range(tries):
        fraction = scale[0] + (scale[1] - scale[0]) * torch.rand(1).item()
        area = height * width * (fraction ** 2 if side else fraction)
        if uniform_ratio:
            aspect = ratio[0] + (ratio[1] - ratio[0]) * torch.rand(1).item()
        else:
            aspect = math.exp(torch.empty(1).uniform_(math.log(ratio[0]), math.log(ratio[1])).item())
        w, h = int(rounding(math.sqrt(area * aspect))), int(rounding(math.sqrt(area / aspect)))
        if clamp:
            w, h = min(w, width), min(h, height)
        if 0 < w <= width and 0 < h <= height:
            if centre:
                return (height - h) // 2, (width - w) // 2, h, w
            if exclusive:
                return (int(torch.randint(0, max(height - h, 1), (1,))), int(torch.randint(0, max(width - w, 1), (1,))),
                        h, w)
            return int(torch.randint(0, height - h + 1, (1,))), int(torch.randint(0, width - w + 1, (1,))), h, w
    return 0, 0, height, width


def crop_box_python_random(height, width, scale, ratio):
    """The right distribution from Python's random module: torch.manual_seed cannot reproduce it."""
    import random

    for _ in range(10):
        area = height * width * random.uniform(*scale)
        aspect = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return random.randint(0, height - h), random.randint(0, width - w), h, w
    return 0, 0, height, width


def same_class_loop(labels):
    labels = labels.tolist()
    n = len(labels)
    return sum(sum(labels[j] == labels[i] for j in range(n) if j != i) / (n - 1) for i in range(n)) / n


# ---------------------------------------------------------------------------------------- 02 encoder
def conv_count(size, kernel_size, stride=1, padding=0):
    return sum(1 for start in range(0, size + 2 * padding - kernel_size + 1, stride))


OLD_CONV_TABLE = {(32, 3, 1, 1): 32, (32, 3, 1, 0): 30, (32, 7, 2, 3): 16, (16, 3, 2, 1): 8, (224, 7, 2, 3): 112,
                  (112, 3, 2, 1): 56, (5, 3, 2, 0): 2, (6, 3, 2, 1): 3, (7, 4, 3, 0): 2}


def count_by_id(model):
    seen = {}
    for p in model.parameters():
        if p.requires_grad:
            seen[id(p)] = p.numel()
    return sum(seen.values())


def knn(train_v, train_y, test_v, test_y, k, *, rule="cosine", take="top", votes="majority", peek=False,
        ties="smallest"):
    """Majority-vote kNN written as a learner would; each keyword is one slip."""
    if rule == "cosine":
        scores = F.normalize(test_v, dim=1) @ F.normalize(train_v, dim=1).T  # (M, N)
    elif rule == "dot":
        scores = test_v @ train_v.T
    else:
        scores = -torch.cdist(test_v, train_v)
    order = scores.argsort(dim=1, descending=True)
    chosen = {"top": order[:, :k], "k+1": order[:, :k + 1], "skip": order[:, 1:k + 1], "one": order[:, :1]}[take]
    labels = train_y[chosen]  # (M, k)
    if peek:
        return (labels == test_y[:, None]).any(1).float().mean().item()
    n_classes = int(train_y.max()) + 1
    weights = torch.exp(scores.gather(1, chosen) / 0.1) if votes == "exp" else torch.ones(labels.shape)
    tally = torch.zeros(len(test_v), n_classes).scatter_add_(1, labels, weights)  # (M, C)
    if ties == "largest":
        predicted = n_classes - 1 - tally.flip(1).argmax(1)
    else:
        predicted = tally.argmax(1)
    return (predicted == test_y).float().mean().item()


# ------------------------------------------------------------------------------------------- 03 head
class Head(nn.Module):
    """Linear -> ReLU -> Linear -> normalise with configurable names and slips."""

    def __init__(self, i, h, o, names=("first", "second"), bias=True, relu="between", normalise=True, bn=False):
        super().__init__()
        self.names, self.relu, self.normalise = names, relu, normalise
        setattr(self, names[0], nn.Linear(i, h, bias=bias))
        setattr(self, names[1], nn.Linear(h, o, bias=bias))
        self.bn = nn.BatchNorm1d(h) if bn else None

    def forward(self, v):
        h = getattr(self, self.names[0])(v)
        h = self.bn(h) if self.bn is not None else h
        h = F.relu(h) if self.relu == "between" else h
        z = getattr(self, self.names[1])(h)
        z = F.relu(z) if self.relu == "last" else z
        return F.normalize(z, dim=1) if self.normalise else z


class SequentialHead(nn.Module):
    def __init__(self, i, h, o):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o))

    def forward(self, v):
        return F.normalize(self.mlp(v), dim=1)


class ManualHead(nn.Module):
    def __init__(self, i, h, o):
        super().__init__()
        self.first, self.second = nn.Linear(i, h), nn.Linear(h, o)

    def forward(self, v):
        z = self.second(torch.maximum(self.first(v), torch.zeros(())))
        return z / torch.sqrt((z * z).sum(dim=1, keepdim=True))


def context(v_seq, cell, order=None, carry=True, reduce="last"):
    h0 = torch.zeros(v_seq.shape[0], cell.hidden_size)
    h, states = h0, []
    for t in order if order is not None else range(v_seq.shape[1]):
        h = cell(v_seq[:, t], h if carry else h0)
        states.append(h)
    if reduce == "mean":
        return torch.stack(states).mean(0)
    if reduce == "first":
        return states[0]
    if reduce == "all":
        return torch.stack(states, dim=1)
    return h


def context_float64(v_seq, cell):
    """The recurrence in float64, on a float64 copy of the cell: the context comes back in float64."""
    cell = copy.deepcopy(cell).double()
    h = torch.zeros(v_seq.shape[0], cell.hidden_size, dtype=torch.float64)
    for t in range(v_seq.shape[1]):
        h = cell(v_seq[:, t].double(), h)
    return h


def context_gru(v_seq, cell):
    gru = nn.GRU(cell.input_size, cell.hidden_size, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(gru, f"{name}_l0").copy_(getattr(cell, name))
    return gru(v_seq)[1][0]


# ---------------------------------------------------------------------------------------- 04 InfoNCE
def info_nce(q, k, negatives, t, *, normalise=True, temperature="divide", positive_in_denominator=True,
             reduce="mean", dtype=None, as_float=False):
    if normalise:
        q, k, negatives = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(negatives, dim=1)
    scale = {"divide": 1 / t, "none": 1.0, "multiply": t}[temperature]
    positive = (q * k).sum(1) * scale  # (N,)
    negative = q @ negatives.T * scale  # (N, K)
    if positive_in_denominator:
        losses = -positive + torch.logsumexp(torch.cat([positive[:, None], negative], 1), 1)
    else:
        losses = -positive + torch.logsumexp(negative, 1)
    loss = losses.mean() if reduce == "mean" else losses.sum()
    loss = loss.to(dtype) if dtype else loss
    return loss.item() if as_float else loss


def info_nce_loop64(q, k, negatives, t):
    total = 0.0
    for qi, ki in zip(q.double(), k.double()):
        qi, ki = qi / qi.norm(), ki / ki.norm()
        pos = torch.exp(qi @ ki / t)
        neg = sum(torch.exp(qi @ (n / n.norm()) / t) for n in negatives.double())
        total = total - torch.log(pos / (pos + neg))
    return (total / len(q)).float()


def nt_xent(z1, z2, t, *, mask="-inf", own_side=True, temperature=True, normalise=True, anchors="all",
            as_float=False, inside=None):
    dtype = z1.dtype
    z = torch.cat([z1, z2]).to(inside or dtype)
    z = F.normalize(z, dim=1) if normalise else z
    n = len(z1)
    logits = z @ z.T / (t if temperature else 1.0)
    eye = torch.eye(2 * n, dtype=torch.bool)
    if mask == "-inf":
        logits = logits.masked_fill(eye, float("-inf"))
    elif mask == "zero":
        logits = logits.masked_fill(eye, 0.0)
    if not own_side:
        same = (torch.arange(2 * n)[:, None] < n) == (torch.arange(2 * n)[None, :] < n)
        logits = logits.masked_fill(same, float("-inf"))
    targets = torch.cat([torch.arange(n) + n, torch.arange(n)])
    losses = F.cross_entropy(logits, targets, reduction="none")
    loss = (losses[:n] if anchors == "first" else losses).mean().to(dtype)
    return loss.item() if as_float else loss


def nt_xent_manual(z1, z2, t):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    sim = torch.exp(z @ z.T / t) * (1 - torch.eye(2 * n))
    partner = torch.cat([torch.arange(n) + n, torch.arange(n)])
    return -torch.log(sim[torch.arange(2 * n), partner] / sim.sum(1)).mean()


def lse(logits, *, how="rows"):
    if how == "naive":
        return logits.exp().sum(-1).log()
    if how == "global":
        m = logits.max()
        return (logits - m).exp().sum(-1).log() + m
    if how == "dim0":
        m = logits.max(0).values
        return (logits - m).exp().sum(0).log() + m
    if how == "keepdim":
        m = logits.max(-1, keepdim=True).values
        return (logits - m).exp().sum(-1, keepdim=True).log() + m
    m = logits.max(-1, keepdim=True).values
    return (logits - m).exp().sum(-1).log() + m.squeeze(-1)


def alignment(z1, z2, *, normalise=True, power=2, reduce="mean"):
    if normalise:
        z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    d = (z1 - z2).norm(dim=1) ** power
    if reduce == "all":
        return ((z1 - z2) ** 2).mean()
    return d.mean() if reduce == "mean" else d.sum()


def score(q, k, *, how="broadcast"):
    if how == "cdist":
        return -torch.cdist(q, k) ** 2
    if how == "expand":
        return -(q.pow(2).sum(1, keepdim=True) - 2 * q @ k.T + k.pow(2).sum(1))
    d = ((q[:, None, :] - k[None, :, :]) ** 2).sum(-1)
    return {"broadcast": -d, "positive": d, "sqrt": -d.sqrt(), "transposed": -d.T, "double": -d.double()}[how]


# --------------------------------------------------------------------------------------- 05 training
def schedule(base, epochs, steps, warmup, *, start=1, periods=0.5, offset=0, rounding=round, torch32=False):
    total, w = epochs * steps, int(rounding(warmup * steps))
    values = [base * (s + start) / w if s < w else
              0.5 * base * (1 + math.cos(2 * math.pi * periods * (s - w) / (total - w - offset))) for s in range(total)]
    return torch.tensor(values, dtype=torch.float32) if torch32 else values


def schedule_numpy(base, epochs, steps, warmup):
    total, w = epochs * steps, int(round(warmup * steps))
    s = np.arange(total)
    decay = 0.5 * base * (1 + np.cos(np.pi * (s - w) / (total - w)))
    return np.where(s < w, base * (s + 1) / max(w, 1), decay)


def step(model, x1, x2, optimizer, temperature, *, passes=2, zero_grad=True, update=True, mode=None, reduce="mean",
         use_temperature=True, returns="detach"):
    from crl_helpers.losses import nt_xent as package_nt_xent

    if mode == "eval":
        model.eval()
    if passes == 1:
        z1, z2 = model(torch.cat([x1, x2]))[1].chunk(2)
    else:
        (_, z1), (_, z2) = model(x1), model(x2)
    loss = package_nt_xent(z1, z2, temperature if use_temperature else 1.0)
    if reduce == "sum":
        loss = loss * 2 * len(x1)
    if zero_grad:
        optimizer.zero_grad()
    loss.backward()
    if update:
        optimizer.step()
    if mode == "eval":
        model.train()  # the learner switched back at the end: the step itself still ran in eval mode
    return {"detach": loss.detach(), "loss": loss, "item": loss.item()}[returns]


def uniformity(z, *, log=True, pairs="i<j", normalise=True, power=2):
    z = F.normalize(z, dim=1) if normalise else z
    d = torch.cdist(z, z) ** power  # (N, N)
    if pairs == "i<j":
        i, j = torch.triu_indices(len(z), len(z), 1)
        values = torch.exp(-2 * d[i, j])
    else:
        values = torch.exp(-2 * d).flatten()
    return values.mean().log() if log else values.mean()


def uniformity_loop(z):
    z = F.normalize(z.double(), dim=1)
    values = [math.exp(-2 * float((z[i] - z[j]).pow(2).sum())) for i in range(len(z)) for j in range(i + 1, len(z))]
    return math.log(sum(values) / len(values))


# -------------------------------------------------------------------------------------- 06 fine-tune
def knn_predict(train_v, train_y, test_v, k, temperature, *, normalise=True, weight="exp", use_k=True,
                use_temperature=True, dtype=None, as_list=False):
    if normalise:
        train_v, test_v = F.normalize(train_v, dim=1), F.normalize(test_v, dim=1)
    sims = test_v @ train_v.T
    top, index = sims.topk(k if use_k else len(train_v), dim=1)
    weights = {"exp": torch.exp(top / (temperature if use_temperature else 1.0)), "ones": torch.ones_like(top),
               "linear": top}[weight]
    votes = torch.zeros(len(test_v), int(train_y.max()) + 1).scatter_add_(1, train_y[index], weights)
    out = votes.argmax(1)
    out = out.to(dtype) if dtype else out
    return out.tolist() if as_list else out


def knn_predict_loop(train_v, train_y, test_v, k, temperature):
    classes = int(train_y.max()) + 1
    sims = F.normalize(test_v, dim=1) @ F.normalize(train_v, dim=1).T
    out = []
    for row in sims:
        top, index = row.topk(k)
        votes = [float(torch.exp(top[train_y[index] == c] / temperature).sum()) for c in range(classes)]
        out.append(max(range(classes), key=lambda c: votes[c]))
    return torch.tensor(out)


def probe(encoder, x_train, y_train, x_test, y_test, *, eval_mode=True, fit_on="train", score_on="test",
          train_encoder=False, returns="float", steps=300):
    if eval_mode:
        encoder.eval()
    fit_x, fit_y = (x_train, y_train) if fit_on == "train" else (x_test, y_test)
    with torch.set_grad_enabled(train_encoder):
        features = encoder(fit_x)
    classifier = nn.Linear(features.shape[1], 2)
    params = list(classifier.parameters()) + (list(encoder.parameters()) if train_encoder else [])
    optimizer = torch.optim.Adam(params, lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        features = encoder(fit_x) if train_encoder else features.detach()
        F.cross_entropy(classifier(features), fit_y).backward()
        optimizer.step()
    with torch.no_grad():
        x, y = (x_test, y_test) if score_on == "test" else (x_train, y_train)
        accuracy = (classifier(encoder(x)).argmax(1) == y).float().mean().item()
    return {"float": accuracy, "string": f"{accuracy:.2f}", "percent": 100 * accuracy}[returns]


def probe_least_squares(encoder, x_train, y_train, x_test, y_test):
    encoder.eval()
    with torch.no_grad():
        v_train, v_test = encoder(x_train).double(), encoder(x_test).double()
    design = lambda v: torch.cat([v, torch.ones(len(v), 1, dtype=v.dtype)], 1)  # noqa: E731
    w = torch.linalg.pinv(design(v_train)) @ F.one_hot(y_train, 2).double()
    return (design(v_test) @ w).argmax(1).eq(y_test).double().mean()  # a 0-d float64 tensor


def groups(optimizer=torch.optim.Adam, *, freeze=False, one_group=False, swap=False, skip_encoder=False, twice=False,
           **kwargs):
    def make(encoder, classifier, lr_head, lr_encoder):
        if freeze:
            encoder.requires_grad_(False)
        if one_group:
            return optimizer([*encoder.parameters(), *classifier.parameters()], lr=lr_head, **kwargs)
        head = {"params": list(classifier.parameters()), "lr": lr_encoder if swap else lr_head}
        body = {"params": list(encoder.parameters()) + (list(classifier.parameters()) if twice else []),
                "lr": lr_head if swap else lr_encoder}
        return optimizer([head] if skip_encoder else [body, head], **kwargs)
    return make


# -------------------------------------------------------------------------------------- 07 beyond
def momentum(online, target, m, *, how="mul_add"):
    if how == "no_grad_missing":
        for q, k in zip(online.parameters(), target.parameters()):
            k.mul_(m).add_(q, alpha=1 - m)
        return
    with torch.no_grad():
        for q, k in zip(online.parameters(), target.parameters()):
            if how == "mul_add":
                k.mul_(m).add_(q, alpha=1 - m)
            elif how == "lerp":
                k.lerp_(q, 1 - m)
            elif how == "swapped":
                k.mul_(1 - m).add_(q, alpha=m)
            elif how == "copy":
                k.copy_(q)
            elif how == "online":
                q.mul_(m).add_(k, alpha=1 - m)
            elif how == "new":
                k.data = m * k.data + (1 - m) * q.data  # rebinds .data: the same object, so it still passes
    if how == "replace":
        for name, q in online.named_parameters():
            module_name, _, attribute = name.rpartition(".")
            module = target.get_submodule(module_name)
            setattr(module, attribute, nn.Parameter(m * getattr(module, attribute).detach() + (1 - m) * q.detach()))


def enqueue(queue, ptr, keys, *, wrap=True, move=True, modulo=True, returns="int"):
    size, batch = len(queue), len(keys)
    for j in range(batch):
        row = (ptr + j) % size if wrap else ptr + j
        queue[row] = keys[j]
    new = ptr + batch if move else ptr
    new = new % size if modulo else new
    return {"int": new, "tensor": torch.tensor(new), "float": float(new) + 0.5}[returns]


def bank_update(bank, index, v, m, *, normalise=True, swapped=False, replace=False, copy_out=False, all_rows=False):
    rows = slice(None) if all_rows else index
    a, b = (1 - m, m) if swapped else (m, 1 - m)
    mixed = v if replace else a * bank[index] + b * v
    new = F.normalize(mixed, dim=1) if normalise else mixed
    if copy_out:
        out = bank.clone()
        out[index] = new
        return out
    if all_rows:
        bank[rows] = F.normalize(m * bank + (1 - m) * v.mean(0), dim=1)
        return None
    bank[index] = new
    return None


def bank_update_loop(bank, index, v, m):
    with torch.no_grad():
        for j, i in enumerate(index.tolist()):
            mixed = m * bank[i] + (1 - m) * v[j]
            bank[i] = mixed / mixed.norm()


def supcon(labels, *, diagonal=False, partner_only=False, per_image=False, dtype=None):
    view = torch.cat([labels, labels]) if not per_image else labels
    mask = view[:, None] == view[None, :]
    if partner_only:
        n = len(labels)
        mask = torch.zeros(2 * n, 2 * n, dtype=torch.bool)
        mask[torch.arange(2 * n), (torch.arange(2 * n) + n) % (2 * n)] = True
    if not diagonal:
        mask &= ~torch.eye(len(view), dtype=torch.bool)
    return mask.to(dtype) if dtype else mask


def supcon_loop(labels):
    view = labels.tolist() * 2
    return torch.tensor([[a != b and view[a] == view[b] for b in range(len(view))] for a in range(len(view))])


# ------------------------------------------------------------------------------------------- the table
CANDIDATES = {
    "check_pair_matrix": [
        ("loop", pair_loop, True),
        ("rolled identity", lambda n: torch.eye(2 * n).roll(n, dims=1).bool(), True),
        ("diagonal included", lambda n: pair_loop(n) | torch.eye(2 * n, dtype=torch.bool), False),
        ("int mask", lambda n: pair_loop(n).int(), False),
        ("numpy array", lambda n: pair_loop(n).numpy(), False),
        ("neighbours", lambda n: torch.eye(2 * n).roll(1, dims=1).bool(), False),
        ("lookup of old inputs", lambda n: OLD_PAIR_TABLE.get(n), False),
        ("return 1.0", lambda n: 1.0, False),
        ("sleeps", _sleep, TIMEOUT),
    ],
    "check_positive_index": [
        ("concatenated aranges", lambda n: torch.cat([torch.arange(n, 2 * n), torch.arange(n)]), True),
        ("rolled arange", lambda n: torch.arange(2 * n).roll(n), True),
        ("int32", lambda n: torch.arange(2 * n).roll(n).int(), False),
        ("float", lambda n: torch.arange(2 * n).roll(n).float(), False),
        ("numpy", lambda n: np.roll(np.arange(2 * n), n), False),
        ("itself", lambda n: torch.arange(2 * n), False),
        ("no wrap-around", lambda n: torch.arange(n, 3 * n), False),
        ("lookup", lambda n: {1: torch.tensor([1, 0]), 2: torch.tensor([2, 3, 0, 1])}.get(n), False),
        ("return 1.0", lambda n: 1.0, False),
    ],
    "check_random_resized_crop_box": [
        ("reference", reference("random_resized_crop_box"), True),
        ("independent", crop_box, True),
        ("uniform ratio", lambda *a: crop_box(*a, uniform_ratio=True), False),
        ("centre corner", lambda *a: crop_box(*a, centre=True), False),
        ("one try", lambda *a: crop_box(*a, tries=1), False),
        ("clamped sides", lambda *a: crop_box(*a, clamp=True), False),
        ("sides rounded down", lambda *a: crop_box(*a, rounding=int), False),
        ("last corner never", lambda *a: crop_box(*a, exclusive=True), False),
        ("scale of the side", lambda *a: crop_box(*a, side=True), False),
        ("Python's random", crop_box_python_random, False),
        ("whole image", lambda height, width, scale, ratio: (0, 0, height, width), False),
    ],
    "check_same_class_fraction": [
        ("loop", same_class_loop, True),
        ("pair count, tensor", lambda y: ((y[:, None] == y).sum() - len(y)) / (len(y) * (len(y) - 1)), True),
        ("anchor counted", lambda y: float((y[:, None] == y).double().mean()), False),
        ("divided by N", lambda y: ((y[:, None] == y).sum().item() - len(y)) / len(y) ** 2, False),
        ("1 / C", lambda y: 1 / len(torch.unique(y)), False),
        ("per anchor", lambda y: ((y[:, None] == y).sum(1) - 1) / (len(y) - 1), False),
        ("string", lambda y: f"{same_class_loop(y):.4f}", False),
        ("lookup", lambda y: {(0, 0, 1, 1, 1): 0.4, (3, 3): 1.0, (0, 1): 0.0}.get(tuple(y.tolist()), 0.1), False),
        ("return 1.0", lambda y: 1.0, False),
    ],
    "check_conv_output_size": [
        ("formula", reference("conv_output_size"), True),
        ("counted", conv_count, True),
        ("floor of a float", lambda n, k, stride=1, padding=0: math.floor((n + 2 * padding - k) / stride) + 1, True),
        ("rounded up", lambda n, k, stride=1, padding=0: math.ceil((n + 2 * padding - k) / stride) + 1, False),
        ("padding once", lambda n, k, stride=1, padding=0: (n + padding - k) // stride + 1, False),
        ("no + 1", lambda n, k, stride=1, padding=0: (n + 2 * padding - k) // stride, False),
        ("stride ignored", lambda n, k, stride=1, padding=0: n + 2 * padding - k + 1, False),
        ("true division", lambda n, k, stride=1, padding=0: (n + 2 * padding - k) / stride + 1, False),
        ("lookup", lambda n, k, stride=1, padding=0: OLD_CONV_TABLE.get((n, k, stride, padding), n), False),
        ("return 1.0", lambda n, k, stride=1, padding=0: 1.0, False),
    ],
    "check_count_parameters": [
        ("generator", lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad), True),
        ("by id", count_by_id, True),
        ("frozen counted", lambda m: sum(p.numel() for p in m.parameters()), False),
        ("state dict", lambda m: sum(t.numel() for t in m.state_dict().values()), False),
        ("shared twice", lambda m: sum(p.numel() for _, p in m.named_parameters(remove_duplicate=False)
                                       if p.requires_grad), False),
        ("first dimension", lambda m: sum(p.shape[0] for p in m.parameters() if p.requires_grad), False),
        ("lookup", lambda m: {"Linear": 16, "Conv2d": 224, "BatchNorm2d": 16}.get(type(m).__name__, 22), False),
        ("return 1.0", lambda m: 1.0, False),
    ],
    "check_knn_baseline": [
        ("reference", reference("knn_baseline"), True),
        ("vectorised", knn, True),
        ("peeks at the label", lambda *a: knn(*a, peek=True), False),
        ("k ignored", lambda *a: knn(*a, take="one"), False),
        ("topk(k + 1)", lambda *a: knn(*a, take="k+1"), False),
        ("nearest skipped", lambda *a: knn(*a, take="skip"), False),
        ("votes exp(s / 0.1)", lambda *a: knn(*a, votes="exp"), False),
        ("raw dot products", lambda *a: knn(*a, rule="dot"), False),
        ("Euclidean", lambda *a: knn(*a, rule="euclidean"), False),
        ("ties to the largest label", lambda *a: knn(*a, ties="largest"), False),
        ("return 1.0", lambda *a: 1.0, False),
    ],
    "check_normalize": [
        ("F.normalize", lambda z: F.normalize(z, dim=1), True),
        ("clamped norm", lambda z: z / z.norm(dim=1, keepdim=True).clamp_min(1e-12), True),
        ("float64 inside", lambda z: (z.double() / z.double().norm(dim=1, keepdim=True).clamp_min(1e-12)).float(), True),
        ("columns", lambda z: F.normalize(z, dim=0), False),
        ("L1", lambda z: F.normalize(z, p=1, dim=1), False),
        ("squared norm", lambda z: z / z.pow(2).sum(1, keepdim=True), False),
        ("no eps", lambda z: z / z.norm(dim=1, keepdim=True), False),
        ("in place", lambda z: z.div_(z.norm(dim=1, keepdim=True).clamp_min(1e-12)), False),
        ("float64 out", lambda z: F.normalize(z.double(), dim=1), True),
        ("return 1.0", lambda z: 1.0, False),
    ],
    "check_projection_head": [
        ("reference", reference("MLPHead"), True),
        ("names and slips off", Head, True),
        ("by hand", ManualHead, True),
        ("fc1 / fc2", lambda i, h, o: Head(i, h, o, names=("fc1", "fc2")), False),
        ("Sequential", SequentialHead, False),
        ("with BatchNorm", lambda i, h, o: Head(i, h, o, bn=True), False),
        ("no biases", lambda i, h, o: Head(i, h, o, bias=False), False),
        ("no ReLU", lambda i, h, o: Head(i, h, o, relu="none"), False),
        ("ReLU last", lambda i, h, o: Head(i, h, o, relu="last"), False),
        ("not normalised", lambda i, h, o: Head(i, h, o, normalise=False), False),
    ],
    "check_contextualize": [
        ("loop", context, True),
        ("nn.GRU", context_gru, True),
        ("h from None", lambda v, cell: [h := None] and [h := cell(v[:, t], h) for t in range(v.shape[1])][-1], True),
        ("backwards", lambda v, cell: context(v, cell, order=range(v.shape[1] - 1, -1, -1)), False),
        ("state not carried", lambda v, cell: context(v, cell, carry=False), False),
        ("mean of states", lambda v, cell: context(v, cell, reduce="mean"), False),
        ("first state", lambda v, cell: context(v, cell, reduce="first"), False),
        ("every state", lambda v, cell: context(v, cell, reduce="all"), False),
        ("float64 copy of the cell", context_float64, True),
    ],
    "check_info_nce": [
        ("vectorised", info_nce, True),
        ("float64 loop, cast back", info_nce_loop64, True),
        ("reference loop", reference("info_nce"), True),
        ("no temperature", lambda *a: info_nce(*a, temperature="none"), False),
        ("times temperature", lambda *a: info_nce(*a, temperature="multiply"), False),
        ("not normalised", lambda *a: info_nce(*a, normalise=False), False),
        ("positive not in the denominator", lambda *a: info_nce(*a, positive_in_denominator=False), False),
        ("sum", lambda *a: info_nce(*a, reduce="sum"), False),
        ("a float", lambda *a: info_nce(*a, as_float=True), False),
        ("float64 out", lambda *a: info_nce(*a, dtype=torch.float64), True),
        ("lookup", lambda q, k, n, t: torch.tensor({0.5: 2.3, 0.1: 4.1, 1.0: 2.5}.get(t, 2.0)), False),
    ],
    "check_nt_xent": [
        ("cross-entropy", nt_xent, True),
        ("manual softmax", nt_xent_manual, True),
        ("float64 inside", lambda z1, z2, t: nt_xent(z1, z2, t, inside=torch.float64), True),
        ("no mask", lambda z1, z2, t: nt_xent(z1, z2, t, mask="none"), False),
        ("diagonal 0", lambda z1, z2, t: nt_xent(z1, z2, t, mask="zero"), False),
        ("other side only", lambda z1, z2, t: nt_xent(z1, z2, t, own_side=False), False),
        ("no temperature", lambda z1, z2, t: nt_xent(z1, z2, t, temperature=False), False),
        ("not normalised", lambda z1, z2, t: nt_xent(z1, z2, t, normalise=False), False),
        ("first N anchors", lambda z1, z2, t: nt_xent(z1, z2, t, anchors="first"), False),
        ("a float", lambda z1, z2, t: nt_xent(z1, z2, t, as_float=True), False),
        ("lookup", lambda z1, z2, t: torch.tensor({0.5: 1.9, 0.2: 2.4, 0.07: 3.1}.get(t, 2.0)), False),
        ("never returns", _spin, TIMEOUT),
    ],
    "check_logsumexp": [
        ("max trick", lse, True),
        ("torch.logsumexp", lambda x: torch.logsumexp(x, dim=-1), True),
        ("float64 inside and out", lambda x: lse(x.double()), True),
        ("naive", lambda x: lse(x, how="naive"), False),
        ("global max", lambda x: lse(x, how="global"), False),
        ("over dim 0", lambda x: lse(x, how="dim0"), False),
        ("keepdim", lambda x: lse(x, how="keepdim"), False),
        ("a list", lambda x: lse(x).tolist(), False),
        ("return 1.0", lambda x: 1.0, False),
    ],
    "check_alignment": [
        ("vectorised", alignment, True),
        ("loop to a float", lambda z1, z2: sum(float(((a / a.norm()) - (b / b.norm())).pow(2).sum())
                                              for a, b in zip(z1, z2)) / len(z1), True),
        ("not normalised", lambda z1, z2: alignment(z1, z2, normalise=False), False),
        ("not squared", lambda z1, z2: alignment(z1, z2, power=1), False),
        ("sum", lambda z1, z2: alignment(z1, z2, reduce="sum"), False),
        ("mean over coordinates", lambda z1, z2: alignment(z1, z2, reduce="all"), False),
        ("return 1.0", lambda z1, z2: 1.0, False),
        ("sleeps", _sleep, TIMEOUT),
    ],
    "check_neg_euclidean_score": [
        ("broadcast", score, True),
        ("cdist", lambda q, k: score(q, k, how="cdist"), True),
        ("expanded square", lambda q, k: score(q, k, how="expand"), True),
        ("not negated", lambda q, k: score(q, k, how="positive"), False),
        ("not squared", lambda q, k: score(q, k, how="sqrt"), False),
        ("transposed", lambda q, k: score(q, k, how="transposed"), False),
        ("normalised", lambda q, k: score(F.normalize(q, dim=1), F.normalize(k, dim=1)), False),
        ("float64 out", lambda q, k: score(q.double(), k.double()), True),
        ("return 1.0", lambda q, k: 1.0, False),
    ],
    "check_cosine_schedule": [
        ("loop", schedule, True),
        ("numpy", schedule_numpy, True),
        ("torch float32", lambda *a: schedule(*a, torch32=True), True),
        ("warm-up from 0", lambda *a: schedule(*a, start=0), False),
        ("full period", lambda *a: schedule(*a, periods=1.0), False),
        ("decay over T - W - 1", lambda *a: schedule(*a, offset=1), False),
        ("W rounded down", lambda *a: schedule(*a, rounding=int), False),
        ("W rounded up", lambda *a: schedule(*a, rounding=math.ceil), False),
        ("one value short", lambda *a: schedule(*a)[:-1], False),
        ("return 1.0", lambda *a: 1.0, False),
    ],
    "check_simclr_step": [
        ("two passes", step, True),
        ("one pass", lambda *a: step(*a, passes=1), True),
        ("loss not detached", lambda *a: step(*a, returns="loss"), True),
        ("eval mode, left so", lambda m, *a: [m.eval(), step(m, *a)][1], False),
        ("eval mode, switched back", lambda *a: step(*a, mode="eval"), False),
        ("no zero_grad", lambda *a: step(*a, zero_grad=False), False),
        ("no optimizer.step", lambda *a: step(*a, update=False), False),
        ("no temperature", lambda *a: step(*a, use_temperature=False), False),
        ("sum", lambda *a: step(*a, reduce="sum"), False),
        ("loss.item()", lambda *a: step(*a, returns="item"), False),
    ],
    "check_uniformity": [
        ("cdist pairs", uniformity, True),
        ("loop to a float", uniformity_loop, True),
        ("pdist", reference("uniformity"), True),
        ("no log", lambda z: uniformity(z, log=False), False),
        ("all pairs", lambda z: uniformity(z, pairs="all"), False),
        ("not normalised", lambda z: uniformity(z, normalise=False), False),
        ("not squared", lambda z: uniformity(z, power=1), False),
        ("return 1.0", lambda z: 1.0, False),
    ],
    "check_knn_predict": [
        ("vectorised", knn_predict, True),
        ("loop over classes", knn_predict_loop, True),
        ("unweighted", lambda *a: knn_predict(*a, weight="ones"), False),
        ("weighted by s", lambda *a: knn_predict(*a, weight="linear"), False),
        ("raw dot product", lambda *a: knn_predict(*a, normalise=False), False),
        ("k ignored", lambda *a: knn_predict(*a, use_k=False), False),
        ("no temperature", lambda *a: knn_predict(*a, use_temperature=False), False),
        ("float labels", lambda *a: knn_predict(*a, dtype=torch.float32), False),
        ("int32 labels", lambda *a: knn_predict(*a, dtype=torch.int32), False),
        ("a list", lambda *a: knn_predict(*a, as_list=True), False),
        ("sleeps", _sleep, TIMEOUT),
    ],
    "check_linear_probe_frozen": [
        ("Adam probe", probe, True),
        ("least squares, a tensor", probe_least_squares, True),
        ("training accuracy", lambda *a: probe(*a, score_on="train"), False),
        ("fitted on the test set", lambda *a: probe(*a, fit_on="test"), False),
        ("a string", lambda *a: probe(*a, returns="string"), False),
        ("a percentage", lambda *a: probe(*a, returns="percent"), False),
        ("train-mode features", lambda *a: probe(*a, eval_mode=False), False),
        ("encoder trained", lambda *a: probe(*a, train_encoder=True, steps=20), False),
        ("return 1.0", lambda *a: 1.0, False),
        ("return 0.95", lambda *a: 0.95, False),
    ],
    "check_finetune_optimizer": [
        ("Adam", groups(), True),
        ("SGD with Nesterov momentum", groups(torch.optim.SGD, momentum=0.9, nesterov=True), True),
        ("RMSprop", groups(torch.optim.RMSprop), True),
        ("AdamW", groups(torch.optim.AdamW, weight_decay=0.05), True),
        ("encoder frozen", groups(freeze=True), False),
        ("one group", groups(one_group=True), False),
        ("rates swapped", groups(swap=True), False),
        ("encoder left out", groups(skip_encoder=True), False),
        ("head twice", groups(twice=True), False),
        ("a list", lambda encoder, classifier, lr_head, lr_encoder: [encoder, classifier], False),
    ],
    "check_momentum_update": [
        ("mul_ add_", momentum, True),
        ("lerp_", lambda *a: momentum(*a, how="lerp"), True),
        ("swapped", lambda *a: momentum(*a, how="swapped"), False),
        ("copied", lambda *a: momentum(*a, how="copy"), False),
        ("online moved", lambda *a: momentum(*a, how="online"), False),
        ("new Parameters", lambda *a: momentum(*a, how="replace"), False),
        ("no torch.no_grad", lambda *a: momentum(*a, how="no_grad_missing"), False),
        ("nothing", lambda *a: None, False),
        ("never returns", _spin, TIMEOUT),
    ],
    "check_enqueue": [
        ("loop", enqueue, True),
        ("index tensor, tensor pointer", lambda q, p, k: [q.index_copy_(0, (p + torch.arange(len(k))) % len(q), k),
                                                          torch.tensor((p + len(k)) % len(q))][1], True),
        ("no wrap-around", lambda *a: enqueue(*a, wrap=False), False),
        ("pointer not moved", lambda *a: enqueue(*a, move=False), False),
        ("pointer not modulo", lambda *a: enqueue(*a, modulo=False), False),
        ("a float pointer", lambda *a: enqueue(*a, returns="float"), False),
        ("a copy", lambda q, p, k: enqueue(q.clone(), p, k), False),
        ("return 1.0", lambda *a: 1.0, False),
    ],
    "check_memory_bank_update": [
        ("vectorised", bank_update, True),
        ("loop", bank_update_loop, True),
        ("not renormalised", lambda *a: bank_update(*a, normalise=False), False),
        ("m swapped", lambda *a: bank_update(*a, swapped=True), False),
        ("replaced", lambda *a: bank_update(*a, replace=True), False),
        ("a copy", lambda *a: bank_update(*a, copy_out=True), False),
        ("every row", lambda *a: bank_update(*a, all_rows=True), False),
        ("return 1.0", lambda *a: 1.0, False),
    ],
    "check_supcon_positive_mask": [
        ("vectorised", supcon, True),
        ("loop", supcon_loop, True),
        ("diagonal", lambda y: supcon(y, diagonal=True), False),
        ("partner only", lambda y: supcon(y, partner_only=True), False),
        ("one row per image", lambda y: supcon(y, per_image=True), False),
        ("int mask", lambda y: supcon(y, dtype=torch.int64), False),
        ("float mask", lambda y: supcon(y, dtype=torch.float32), False),
        ("lookup", lambda y: {3: supcon(torch.tensor([3, 3, 3]))}.get(len(y), torch.zeros(0)), False),
    ],
}

CASES = [pytest.param(checker, answer, verdict, id=f"{checker.removeprefix('check_')}: {name}")
         for checker, candidates in CANDIDATES.items() for name, answer, verdict in candidates]


@pytest.mark.parametrize("checker, answer, verdict", CASES)
def test_verdict(checker, answer, verdict, capsys):
    answer = copy.deepcopy(answer) if isinstance(answer, nn.Module) else answer
    result = getattr(exercises, checker)(answer, time_limit=1.0 if verdict is TIMEOUT else None)
    if verdict is TIMEOUT:
        assert not result and "has not returned after 1 s" in result.message, result.message
    else:
        assert bool(result) is verdict, result.message


def test_every_exercise_has_its_red_team():
    checkers = sorted(name for name in exercises.__all__ if name.startswith("check_"))
    assert sorted(CANDIDATES) == checkers
    for checker, candidates in CANDIDATES.items():
        verdicts = [verdict for _, _, verdict in candidates]
        assert verdicts.count(False) + verdicts.count(TIMEOUT) >= 5 and verdicts.count(True) >= 2, checker
    assert sum(verdict is TIMEOUT for c in CANDIDATES.values() for _, _, verdict in c) >= 5
