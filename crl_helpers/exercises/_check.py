"""The machinery behind every ``check_*`` function: run a learner's code against an independent
reference on fresh inputs, within a time limit, say in one line what passed or what to look at, and
hand the notebook a working function either way (:meth:`CheckResult.or_reference`).

One entry point: a checker is a plain function decorated with :func:`exercise_check`; calling it
with the learner's answer runs the check under :func:`time_limit`, prints a :class:`CheckResult`
and returns it. Inside a checker, :func:`expect` states a condition with its hint and
:func:`fresh_generator` draws the inputs anew on every call, so no table of fixed answers passes.
"""
from __future__ import annotations

import contextlib
import functools
import numbers
import os
import secrets
import signal
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import torch

from crl_helpers.grading import grade_hook

#: Seconds a whole check may run (the learner's calls included) before it is stopped with a NOT YET;
#: ``CRL_CHECK_TIMEOUT`` overrides it (the tests use about a second).
DEFAULT_TIME_LIMIT = 30.0

_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)  # crl_helpers/
_LIBRARY_DIRS = tuple(str(Path(m.__file__).resolve().parent) for m in (torch, numpy, contextlib))  # torch, numpy, stdlib


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one exercise check; ``bool(result)`` is whether it passed.

    ``submitted`` is what the learner passed to the checker and ``solution`` the name of the
    exercise's reference solution (:func:`crl_helpers.exercises.show_solution` prints it).
    """

    exercise: str
    passed: bool
    message: str
    submitted: Any = None
    solution: str = ""
    timed_out: bool = False  # the check's time limit stopped the learner's code

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        mark = "PASSED" if self.passed else "NOT YET"
        return f"[{mark}] {self.exercise}: {self.message}"

    __repr__ = __str__

    def or_reference(self):
        """The learner's function when it passed, else the reference solution, announced in one line.

        An exercise cell ends with ``my_fn = check_x(my_fn).or_reference()``: the cells after it run
        whether or not the exercise is solved, and the learner's code is never overwritten.

        Example:
            >>> from crl_helpers.exercises import check_logsumexp
            >>> fn = check_logsumexp(lambda logits: None).or_reference()  # doctest: +ELLIPSIS
            [NOT YET] stable log-sum-exp: ...
            -> the cells below use the reference solution for now; show_solution("logsumexp") prints it
            >>> fn.__name__
            'logsumexp'
        """
        if self.passed:
            return self.submitted
        from crl_helpers.exercises.solutions import fallback_note, reference

        print(fallback_note(self.solution))  # in a classroom install: the solution is withheld
        return reference(self.solution)


class CheckTimeout(BaseException):
    """The time limit of a check ran out. A ``BaseException``, so that a learner's ``except Exception``
    cannot swallow it (as ``KeyboardInterrupt``)."""


def expect(condition, message: str) -> None:
    """Fail the check with ``message`` (the hint) unless ``condition`` holds.

    An explicit raise, not ``assert``: the hint must survive ``python -O`` and pytest's assert rewriting.

    Example:
        >>> expect(1 + 1 == 2, "never shown")
    """
    if not condition:
        raise AssertionError(message)


def fresh_generator() -> torch.Generator:
    """A torch generator seeded anew from the operating system on every call: fresh inputs per check.

    Example:
        >>> a, b = fresh_generator(), fresh_generator()
        >>> torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))
        False
    """
    return torch.Generator().manual_seed(secrets.randbits(62))


def draw(g: torch.Generator, low: int, high: int) -> int:
    """One integer uniform in ``[low, high]`` (both included) from ``g``.

    Example:
        >>> draw(torch.Generator().manual_seed(0), 3, 3)
        3
    """
    return int(torch.randint(low, high + 1, (1,), generator=g))


def as_number(out, what: str = "your function") -> float:
    """A returned scalar as a float: a Python or numpy number, or a one-element tensor; anything else
    (a string, a bool, None, a list) fails the check with a hint naming the type.

    Example:
        >>> as_number(torch.tensor(0.5)), as_number(3)
        (0.5, 3.0)
    """
    expect(out is not None, f"{what} returned None; return a number")
    if isinstance(out, torch.Tensor):
        expect(out.numel() == 1, f"{what} returned a tensor of shape {tuple(out.shape)}; return one number")
        out = out.detach().reshape(()).item()
    expect(isinstance(out, numbers.Real) and not isinstance(out, bool),
           f"{what} returned a {type(out).__name__} ({out!r:.40}); return a number (a float)")
    return float(out)


def close64(got: torch.Tensor, want, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    """``got`` equals ``want`` within tolerance, compared in float64 whatever their dtypes (a float32 or a
    float64 answer both pass), with equal shapes and finite values.

    Example:
        >>> close64(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0], dtype=torch.float64))
        True
    """
    got = torch.as_tensor(got).detach().to("cpu", torch.float64)
    want = torch.as_tensor(want).detach().to("cpu", torch.float64)
    return got.shape == want.shape and bool(torch.isfinite(got).all()) and torch.allclose(got, want, rtol=rtol, atol=atol)


def _limit_seconds(limit: float | None) -> float:
    if limit is not None:
        return float(limit)
    return float(os.environ.get("CRL_CHECK_TIMEOUT", DEFAULT_TIME_LIMIT))


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`CheckTimeout` in the main thread once ``seconds`` have passed (SIGALRM, Unix).

    The previous SIGALRM handler and any running interval timer are restored afterwards. Outside the
    main thread (or without SIGALRM) there is no limit, with a warning. Ctrl-C still interrupts.

    Example:
        >>> with time_limit(5):
        ...     total = sum(range(10))
    """
    usable = (seconds and seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        if seconds and seconds > 0:
            warnings.warn("no time limit for this check: it needs SIGALRM (Unix) and the main thread", RuntimeWarning,
                          stacklevel=3)
        yield
        return

    def _expired(signum, frame):
        raise CheckTimeout

    previous = signal.signal(signal.SIGALRM, _expired)
    start = time.monotonic()
    # Fires again every half second after the limit: an answer that swallows the first alarm (a bare
    # `except:`) and goes on still gets stopped.
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds, 0.5)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay:  # someone else's alarm (a test runner's timeout, say): give it back, less the time spent
            signal.setitimer(signal.ITIMER_REAL, max(outer_delay - (time.monotonic() - start), 1e-3), outer_interval)


def _is_library(filename: str) -> bool:
    path = str(Path(filename).resolve()) if not filename.startswith("<") else filename
    return path.startswith(_PACKAGE_DIR) or path.startswith(_LIBRARY_DIRS) or "site-packages" in path


def _where(err: BaseException) -> str:
    """Where in the LEARNER's code ``err`` came from: the last traceback frame outside crl_helpers and the
    libraries, or a note that it came from checking the returned value."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not _is_library(f.filename)]
    if not frames:
        return "while checking what your function returned"
    last = frames[-1]
    line = (last.line or "").strip()
    return f"in your line {last.lineno}: {line}" if line else f"in your code, line {last.lineno}"


def _raised_by_learner(err: BaseException) -> bool:
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and not _is_library(frames[-1].filename)


def _raised(name: str, err: BaseException, submitted, key: str) -> CheckResult:
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return CheckResult(name, False, f"your code raised {type(err).__name__}: {message[:200]} ({_where(err)})",
                       submitted, key)


def exercise_check(name: str, solution: str | None = None):
    """Decorate a checker: an ``AssertionError`` raised inside it becomes a failed
    :class:`CheckResult` carrying the assertion's message (a hint), any other exception
    a failed result naming the exception and the learner's line that raised it, and a check that runs
    past the time limit a failed result about loops and sizes; returning normally passes.

    The decorated checker takes the learner's answer and ``time_limit=`` (seconds, default
    ``CRL_CHECK_TIMEOUT`` or 30). ``solution`` names the reference solution in
    :mod:`crl_helpers.exercises.solutions`; by default the checker's name without ``check_``.

    Example:
        >>> @exercise_check("double")
        ... def check_double(fn):
        ...     expect(fn(2) == 4, f"double(2) returned {fn(2)}, expected 4")
        >>> ok = check_double(lambda a: a + a)
        [PASSED] double: matches the reference
        >>> bad = check_double(lambda a: a + 1)
        [NOT YET] double: double(2) returned 3, expected 4
        >>> bool(ok), bool(bad), check_double.solution
        (True, False, 'double')
    """

    def decorate(checker):
        key = solution or checker.__name__.removeprefix("check_")

        @functools.wraps(checker)
        def wrapper(submitted, *args, time_limit: float | None = None, **kwargs) -> CheckResult:
            seconds = _limit_seconds(time_limit)
            try:
                with _limit(seconds):
                    note = checker(submitted, *args, **kwargs)
            except AssertionError as err:
                if _raised_by_learner(err):  # the learner's own assert, not a hint of the checker's
                    result = _raised(name, err, submitted, key)
                else:
                    # Under pytest's assertion rewriting the message gains a line "assert <expression>": drop it.
                    hint = str(err).split("\nassert ")[0]
                    result = CheckResult(name, False, hint or "a check failed", submitted, key)
            except CheckTimeout:
                result = CheckResult(name, False, (
                    f"your code has not returned after {seconds:g} s, so the check stopped it: look for a loop that "
                    f"never ends (a while whose condition never changes) or for sizes far larger than the inputs "
                    f"(a loop over every pixel, a matrix of N^3 entries)"), submitted, key, timed_out=True)
            except (Exception, SystemExit) as err:  # the learner's code raised: show where, briefly
                result = _raised(name, err, submitted, key)
            else:
                result = CheckResult(name, True, note or "matches the reference", submitted, key)
            print(result)
            return result

        wrapper.solution = key
        return grade_hook(wrapper)  # crl grade's verdict log and trip-wires; a pass-through outside grading

    return decorate


_limit = time_limit  # the wrapper's keyword argument shadows the name

__all__ = ["CheckResult", "CheckTimeout", "DEFAULT_TIME_LIMIT", "as_number", "close64", "draw", "exercise_check",
           "expect", "fresh_generator", "time_limit"]
