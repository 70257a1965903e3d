"""The machinery behind every ``check_*`` function: run a student's code against the
package's reference on fresh inputs and say, in one line, what passed or what to look at."""
from __future__ import annotations

import functools
import traceback
from dataclasses import dataclass


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one exercise check; ``bool(result)`` is whether it passed."""

    exercise: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        mark = "PASSED" if self.passed else "NOT YET"
        return f"[{mark}] {self.exercise}: {self.message}"

    __repr__ = __str__


def exercise_check(name: str):
    """Decorate a checker: an ``AssertionError`` raised inside it becomes a failed
    :class:`CheckResult` carrying the assertion's message (a hint), any other exception
    from the student's code a failed result naming the exception; returning normally passes.

    Example:
        >>> @exercise_check("double")
        ... def check_double(fn):
        ...     assert fn(2) == 4, f"double(2) returned {fn(2)}, expected 4"
        >>> ok = check_double(lambda a: a + a)
        [PASSED] double: matches the reference
        >>> bad = check_double(lambda a: a + 1)
        [NOT YET] double: double(2) returned 3, expected 4
        >>> bool(ok), bool(bad)
        (True, False)
    """

    def decorate(checker):
        @functools.wraps(checker)
        def wrapper(*args, **kwargs) -> CheckResult:
            try:
                note = checker(*args, **kwargs)
            except AssertionError as err:
                result = CheckResult(name, False, str(err) or "a check failed")
            except Exception as err:  # the student's code raised: show where, briefly
                last = traceback.extract_tb(err.__traceback__)[-1]
                result = CheckResult(name, False, f"your code raised {type(err).__name__}: {err} "
                                                  f"(line {last.lineno}: {last.line})")
            else:
                result = CheckResult(name, True, note or "matches the reference")
            print(result)
            return result

        return wrapper

    return decorate
