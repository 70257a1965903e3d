"""The machinery behind every ``check_*`` function: run a student's code against an independent
reference on fresh inputs, say in one line what passed or what to look at, and hand the notebook
a working function either way (:meth:`CheckResult.or_reference`)."""
from __future__ import annotations

import functools
import traceback
from dataclasses import dataclass
from typing import Any

from crl_helpers.grading import grade_hook


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one exercise check; ``bool(result)`` is whether it passed.

    ``submitted`` is what the student passed to the checker and ``solution`` the name of the
    exercise's reference solution (:func:`crl_helpers.exercises.show_solution` prints it).
    """

    exercise: str
    passed: bool
    message: str
    submitted: Any = None
    solution: str = ""

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        mark = "PASSED" if self.passed else "NOT YET"
        return f"[{mark}] {self.exercise}: {self.message}"

    __repr__ = __str__

    def or_reference(self):
        """The student's function when it passed, else the reference solution, announced in one line.

        An exercise cell ends with ``my_fn = check_x(my_fn).or_reference()``: the cells after it run
        whether or not the exercise is solved, and the student's code is never overwritten.

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


def exercise_check(name: str, solution: str | None = None):
    """Decorate a checker: an ``AssertionError`` raised inside it becomes a failed
    :class:`CheckResult` carrying the assertion's message (a hint), any other exception
    from the student's code a failed result naming the exception; returning normally passes.

    ``solution`` names the reference solution in :mod:`crl_helpers.exercises.solutions`; by default
    the checker's name without ``check_``. The decorated checker carries it as ``.solution``.

    Example:
        >>> @exercise_check("double")
        ... def check_double(fn):
        ...     assert fn(2) == 4, f"double(2) returned {fn(2)}, expected 4"
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
        def wrapper(submitted, *args, **kwargs) -> CheckResult:
            if not __debug__:  # python -O strips the checkers' asserts: every answer would pass
                result = CheckResult(name, False, "Python runs with -O, which removes the checks; run it without -O",
                                     submitted, key)
                print(result)
                return result
            try:
                note = checker(submitted, *args, **kwargs)
            except AssertionError as err:
                # Under pytest's assertion rewriting the message gains a line "assert <expression>": drop it.
                hint = str(err).split("\nassert ")[0]
                result = CheckResult(name, False, hint or "a check failed", submitted, key)
            except Exception as err:  # the student's code raised: show where, briefly
                last = traceback.extract_tb(err.__traceback__)[-1]
                result = CheckResult(name, False, f"your code raised {type(err).__name__}: {err} "
                                                  f"(line {last.lineno}: {last.line})", submitted, key)
            else:
                result = CheckResult(name, True, note or "matches the reference", submitted, key)
            print(result)
            return result

        wrapper.solution = key
        return grade_hook(wrapper)  # crl grade's verdict log and trip-wires; a pass-through outside grading

    return decorate
