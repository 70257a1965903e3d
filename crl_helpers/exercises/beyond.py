"""Exercises of notebook 07 (beyond SimCLR): the state that MoCo, InstDisc and SupCon keep or build.

* :func:`check_momentum_update` -- MoCo's key encoder, an exponential moving average of the query
  encoder's parameters (He et al. 2020, eq. 2);
* :func:`check_enqueue` -- MoCo's FIFO queue of keys as a ring buffer with a pointer;
* :func:`check_memory_bank_update` -- InstDisc's memory-bank update (Wu et al. 2018, sec. 3.2);
* :func:`check_supcon_positive_mask` -- which of the 2N views are SupCon positives of each view
  (Khosla et al. 2020, eq. 2).

Every checker computes its expectation with a float64 loop of its own, never with the package code.

Example:
    >>> from crl_helpers.objectives import momentum_update
    >>> ok = check_momentum_update(momentum_update)
    [PASSED] momentum update: matches target <- m * target + (1 - m) * online for every parameter, in place
"""
from __future__ import annotations

import math

import torch
from torch import nn

from crl_helpers.exercises._check import as_number, draw, exercise_check, expect, fresh_generator

__all__ = ["check_enqueue", "check_memory_bank_update", "check_momentum_update", "check_supcon_positive_mask"]


def _close(got: torch.Tensor, want: list, tol: float = 1e-5) -> bool:
    """``got`` has the shape of the nested list ``want`` and matches it within ``tol`` (float64)."""
    want = torch.tensor(want, dtype=torch.float64)
    got = got.detach().double()
    if got.shape != want.shape:
        return False
    return want.numel() == 0 or (bool(torch.isfinite(got).all()) and float((got - want).abs().max()) <= tol)


# ------------------------------------------------------------ momentum update
def _pair_of_nets(g: torch.Generator) -> tuple[nn.Module, nn.Module]:
    a, b, c = draw(g, 2, 6), draw(g, 2, 6), draw(g, 1, 4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(draw(g, 0, 2 ** 30))
        online = nn.Sequential(nn.Linear(a, b), nn.BatchNorm1d(b), nn.Linear(b, c))
        target = nn.Sequential(nn.Linear(a, b), nn.BatchNorm1d(b), nn.Linear(b, c))
    return online, target


@exercise_check("momentum update")
def check_momentum_update(fn):
    """Check ``fn(online, target, m)``: every parameter ``target <- m * target + (1 - m) * online``, in place.

    The reference is the formula applied number by number in float64; the checker also asks that
    ``online`` is left alone, that ``target`` keeps its parameter objects (the update is in place)
    and that no autograd graph is recorded.
    """
    g = fresh_generator()
    for m in (round(float(torch.empty(1).uniform_(0.8, 0.999, generator=g)), 4),
              round(float(torch.empty(1).uniform_(0.3, 0.7, generator=g)), 3)):
        online, target = _pair_of_nets(g)
        online_before = {k: p.detach().double().flatten().tolist() for k, p in online.named_parameters()}
        target_before = {k: p.detach().double().flatten().tolist() for k, p in target.named_parameters()}
        objects = {k: id(p) for k, p in target.named_parameters()}
        try:
            fn(online, target, m)
        except RuntimeError as err:
            if "leaf Variable that requires grad" in str(err):
                raise AssertionError("an in-place change of a parameter needs torch.no_grad(): wrap the update "
                                     "in `with torch.no_grad():` (or decorate the function with @torch.no_grad())")
            raise
        after = {k: p for k, p in target.named_parameters()}
        if {k: id(p) for k, p in after.items()} != objects:
            raise AssertionError("target's parameters were replaced by new tensors; update them in place "
                                 "(p.mul_(m).add_(...), or p.copy_(...)) so that every reference to them sees "
                                 "the new values")
        for k, p in online.named_parameters():
            if not _close(p.flatten(), online_before[k], 0.0):
                raise AssertionError("online changed; the momentum update moves TARGET towards online and leaves "
                                     "online (trained by gradients) as it is")
        for k, p in after.items():
            want = [m * t + (1 - m) * o for t, o in zip(target_before[k], online_before[k])]
            if _close(p.flatten(), want):
                if p.grad_fn is not None:
                    raise AssertionError("the update recorded an autograd graph; run it under torch.no_grad()")
                continue
            swapped = [(1 - m) * t + m * o for t, o in zip(target_before[k], online_before[k])]
            if _close(p.flatten(), swapped):
                raise AssertionError(f"m and 1 - m are swapped: with m = {m} the target should keep {m:g} of "
                                     f"itself and take {1 - m:.2g} of online (target <- m * target + (1 - m) * online)")
            if _close(p.flatten(), online_before[k]):
                raise AssertionError("target became a copy of online; the momentum update only moves it a step "
                                     "(1 - m) of the way: target <- m * target + (1 - m) * online")
            if _close(p.flatten(), target_before[k], 0.0):
                raise AssertionError(f"target's parameter {k} did not change; update every parameter of target "
                                     f"(zip(online.parameters(), target.parameters()))")
            raise AssertionError(f"parameter {k} with m = {m}: got {[round(v, 4) for v in p.flatten().tolist()[:3]]}"
                                 f"..., expected {[round(v, 4) for v in want[:3]]}...")
    return "matches target <- m * target + (1 - m) * online for every parameter, in place"


# ---------------------------------------------------------------------- queue
@exercise_check("enqueue")
def check_enqueue(fn):
    """Check ``fn(queue, ptr, keys) -> new_ptr``: a FIFO ring buffer of keys.

    ``queue`` is ``(K, d)``, ``ptr`` the row to overwrite next (the oldest key), ``keys`` ``(B, d)``
    with ``B <= K``. Rows ``ptr, ptr + 1, ..., ptr + B - 1`` (modulo K) receive the keys in order;
    the function returns ``(ptr + B) % K``. The reference is a Python list used as the ring.
    """
    g = fresh_generator()
    cases = []
    for _ in range(5):
        size = draw(g, 4, 9)
        batch = draw(g, 1, size)
        cases.append((size, draw(g, 0, size - 1), batch))
    size = draw(g, 4, 9)  # one write that surely wraps around the end, one that starts at 0
    cases += [(size, size - 1, draw(g, 2, size)), (size, 0, draw(g, 1, size - 1))]
    for size, ptr, batch in cases:
        d = draw(g, 2, 4)
        queue = torch.randn(size, d, generator=g)
        keys = torch.randn(batch, d, generator=g)
        ring = queue.double().tolist()
        for j, key in enumerate(keys.double().tolist()):
            ring[(ptr + j) % size] = key
        want_ptr = (ptr + batch) % size
        wraps = ptr + batch > size
        before = queue.clone()
        try:
            out = fn(queue, ptr, keys)
        except (RuntimeError, IndexError) as err:
            if wraps:
                raise AssertionError(f"with K={size} rows, ptr={ptr} and B={batch} keys the write runs past the end "
                                     f"of the queue ({type(err).__name__}); wrap around: key j goes to row "
                                     f"(ptr + j) % K")
            raise
        if torch.equal(queue, before):
            raise AssertionError("the queue did not change; write the keys into queue itself, at rows "
                                 "(ptr + j) % K")
        if not _close(queue, ring):
            if wraps:
                raise AssertionError(f"with K={size}, ptr={ptr}, B={batch} the last keys must wrap around to rows "
                                     f"0, 1, ...: key j goes to row (ptr + j) % K")
            raise AssertionError(f"with K={size}, ptr={ptr}, B={batch}: rows {ptr}..{ptr + batch - 1} must hold the "
                                 f"keys in order, the other rows must stay as they were (write into queue in place)")
        expect(out is not None, "your function returned None; return the new pointer, (ptr + B) % K")
        expect(not (isinstance(out, torch.Tensor) and (out.numel() != 1 or out.is_floating_point())),
               f"return the new pointer as an int, got a tensor {out!r:.40}")
        value = as_number(out, "your function")
        expect(value == int(value), f"return the new pointer as an int, got {value:g}")
        got_ptr = int(value)
        if got_ptr == ptr != want_ptr:
            raise AssertionError("the pointer did not move; return ptr + B (modulo K), where the next batch starts")
        if got_ptr == ptr + batch and ptr + batch >= size:
            raise AssertionError(f"returned {got_ptr}, past the end of a queue of K={size}; take it modulo K")
        expect(got_ptr == want_ptr, f"K={size}, ptr={ptr}, B={batch}: returned pointer {got_ptr}, expected {want_ptr}")
    return "FIFO with wrap-around: keys at rows (ptr + j) % K, new pointer (ptr + B) % K"


# ---------------------------------------------------------------- memory bank
@exercise_check("memory bank update")
def check_memory_bank_update(fn):
    """Check ``fn(bank, index, v, m)``: ``bank[i] <- normalise(m * bank[i] + (1 - m) * v)`` for the rows ``index``.

    ``bank`` ``(n, d)`` unit rows, updated in place; ``index`` ``(B,)`` distinct rows; ``v`` ``(B, d)`` the
    new unit-norm embeddings of those images. The reference: the formula and its renormalisation
    written out number by number in float64.
    """
    g = fresh_generator()
    cases = []
    for _ in range(3):
        n, b = draw(g, 4, 12), draw(g, 1, 4)
        index = torch.randperm(n, generator=g)[:b].tolist()  # distinct rows, in no particular order
        cases.append((n, draw(g, 2, 5), round(float(torch.empty(1).uniform_(0.1, 0.95, generator=g)), 3), index))
    for n, d, m, index in cases:
        bank = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
        v = torch.nn.functional.normalize(torch.randn(len(index), d, generator=g), dim=1)
        rows = bank.double().tolist()
        want, unnormalised, swapped = [r[:] for r in rows], [r[:] for r in rows], [r[:] for r in rows]
        for j, i in enumerate(index):
            mixed = [m * b + (1 - m) * x for b, x in zip(rows[i], v[j].double().tolist())]
            norm = math.sqrt(sum(c * c for c in mixed))
            want[i] = [c / norm for c in mixed]
            unnormalised[i] = mixed
            other = [(1 - m) * b + m * x for b, x in zip(rows[i], v[j].double().tolist())]
            other_norm = math.sqrt(sum(c * c for c in other))
            swapped[i] = [c / other_norm for c in other]
        before = bank.clone()
        out = fn(bank, torch.tensor(index), v.clone(), m)
        if _close(bank, want):
            continue
        if torch.equal(bank, before):
            if isinstance(out, torch.Tensor) and out.shape == bank.shape and _close(out, want):
                raise AssertionError("you returned an updated copy; write into bank itself (bank[index] = ...), "
                                     "the bank is the state that lives on between steps")
            raise AssertionError("the bank did not change; write the new rows into bank[index] in place")
        if _close(bank, unnormalised):
            raise AssertionError("the entries are no longer unit vectors; renormalise each mixed row to length 1 "
                                 "(F.normalize(..., dim=1)), as InstDisc does")
        if _close(bank, swapped):
            raise AssertionError(f"m and 1 - m are swapped: with m = {m} the entry keeps {m:g} of its old value "
                                 f"and takes {1 - m:.2g} of the new embedding")
        if _close(bank, [v[index.index(i)].double().tolist() if i in index else r for i, r in enumerate(rows)]):
            raise AssertionError("the entries were replaced by the new embeddings; mix them: "
                                 "normalise(m * bank[index] + (1 - m) * v)")
        untouched = [i for i in range(n) if i not in index]
        if not _close(bank[untouched], [rows[i] for i in untouched]):
            raise AssertionError(f"rows outside index {index} changed; update only the rows of this batch's images")
        raise AssertionError(f"n={n}, m={m}, index={index}: rows {index} got "
                             f"{[[round(c, 4) for c in bank[i].tolist()] for i in index]}, expected "
                             f"{[[round(c, 4) for c in want[i]] for i in index]}")
    return "bank[index] <- normalise(m * bank[index] + (1 - m) * v), in place, other rows untouched"


# ------------------------------------------------------------------ SupCon mask
@exercise_check("SupCon positive mask")
def check_supcon_positive_mask(fn):
    """Check ``fn(labels) -> mask``: labels ``(N,)`` of N images with two views each, views stacked
    ``[view 1 of all images; view 2 of all images]``; ``mask[a, b]`` is True when views ``a != b`` have
    the same label. ``(2N, 2N)`` bool. The reference is a double loop over the views.
    """
    g = fresh_generator()
    cases = [torch.randint(0, draw(g, 2, 4), (draw(g, 5, 10),), generator=g),
             torch.full((draw(g, 2, 4),), draw(g, 0, 9)), torch.randperm(draw(g, 3, 6), generator=g),
             torch.tensor([draw(g, 0, 9)])]
    for labels in cases:
        n = len(labels)
        view_labels = labels.tolist() * 2  # [view 1; view 2]
        want = [[a != b and view_labels[a] == view_labels[b] for b in range(2 * n)] for a in range(2 * n)]
        out = fn(labels.clone())
        expect(out is not None, "your function returned None; return the (2N, 2N) boolean mask")
        expect(isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}")
        if tuple(out.shape) == (n, n):
            raise AssertionError(f"the mask is ({n}, {n}), one row per image; every image has TWO views, so the "
                                 f"mask is (2N, 2N) = ({2 * n}, {2 * n}): use the labels of all views, "
                                 f"torch.cat([labels, labels])")
        expect(tuple(out.shape) == (2 * n, 2 * n), (f"for N={n} images the mask should be ({2 * n}, {2 * n}), "
                                                    f"got {tuple(out.shape)}"))
        got = out.bool().tolist()
        if got == want:
            expect(out.dtype == torch.bool, f"the values are right; return a bool tensor (got {out.dtype}): .bool()")
            continue
        if all(got[a][a] for a in range(2 * n)) and all(
                got[a][b] == want[a][b] for a in range(2 * n) for b in range(2 * n) if a != b):
            raise AssertionError("the diagonal is True: a view is never its own positive (it is not even a "
                                 "candidate); exclude a == b, e.g. & ~torch.eye(2 * N, dtype=torch.bool)")
        partner = [[b == (a + n) % (2 * n) for b in range(2 * n)] for a in range(2 * n)]
        if got == partner and got != want:
            raise AssertionError("only the partner view is marked; in SupCon every view with the SAME LABEL is a "
                                 "positive, whichever image it comes from")
        raise AssertionError(f"labels {labels.tolist()}: the mask differs from the expected one at "
                             f"{sum(g != w for gr, wr in zip(got, want) for g, w in zip(gr, wr))} of "
                             f"{4 * n * n} places; view a and view b (a != b) are positives when their labels match")
    return "(2N, 2N) bool: same label, both views of every image, diagonal excluded"
