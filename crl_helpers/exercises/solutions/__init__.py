"""Reference solutions of the course's exercises, one module per notebook.

A learner sees a solution only by asking for it: ``show_solution("nt_xent")`` prints it. The
checkers never use these functions (they compare with references of their own); an exercise
cell falls back to one of them, and says so, while the exercise is unsolved
(:meth:`crl_helpers.exercises.CheckResult.or_reference`), and ``crl instructor`` writes them
into the instructor version of the notebooks.

Example:
    >>> show_solution("logsumexp")  # doctest: +ELLIPSIS
    def logsumexp(logits):
    ...
    >>> reference("logsumexp")(torch.zeros(2, 4))
    tensor([1.3863, 1.3863])
"""
from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re

import torch  # noqa: F401  (the doctest above)

__all__ = ["WITHHOLD_ENV", "fallback_note", "reference", "show_solution", "solution_names", "solution_source",
           "solutions_withheld"]

#: The classroom build: with this environment variable set (to anything but "" or "0"), ``show_solution``
#: prints a notice instead of the solution and ``crl instructor`` refuses to write one. The references still
#: run the cells after an unsolved exercise (the course runs to the end); a learner who digs into the
#: installed package can still read them, which is why grading does not rely on their being hidden
#: (``crl grade`` refuses an answer that calls one).
WITHHOLD_ENV = "CRL_WITHHOLD_SOLUTIONS"


def solutions_withheld() -> bool:
    """Whether this is a classroom install, in which the solutions are not shown (:data:`WITHHOLD_ENV`).

    Example:
        >>> solutions_withheld() == (os.environ.get(WITHHOLD_ENV, "") not in ("", "0"))
        True
    """
    return os.environ.get(WITHHOLD_ENV, "") not in ("", "0")


def fallback_note(name: str) -> str:
    """The line an unsolved exercise prints when the cells after it switch to the reference ``name``.

    Example:
        >>> fallback_note("nt_xent").startswith("-> the cells below use the reference solution for now")
        True
    """
    if solutions_withheld():
        return ("-> the cells below use the reference solution for now; its code is withheld in this classroom "
                "install, so the exercise is yours to solve")
    return f'-> the cells below use the reference solution for now; show_solution("{name}") prints it'


def _solutions() -> dict:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name, obj in vars(module).items():
            if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__ \
                    and (inspect.isfunction(obj) or inspect.isclass(obj)):
                found[name] = obj
    return found


def solution_names() -> list[str]:
    """Every exercise that has a reference solution, sorted."""
    return sorted(_solutions())


def reference(name: str):
    """The reference solution (a function or a class) of exercise ``name``."""
    solutions = _solutions()
    if name not in solutions:
        raise ValueError(f"no solution named {name!r}; the exercises are: {', '.join(sorted(solutions))}")
    return solutions[name]


def solution_source(name: str, as_name: str | None = None) -> str:
    """The source of the solution of ``name``, its ``def``/``class`` renamed to ``as_name`` if given.

    Raises:
        ValueError: no exercise is called ``name``, or the solutions are withheld (:func:`solutions_withheld`).
    """
    if solutions_withheld():
        raise ValueError(f"the solutions are withheld in this install ({WITHHOLD_ENV} is set); unset it to see "
                         f"or write them")
    source = inspect.getsource(reference(name))
    if as_name:
        source = re.sub(rf"^(def|class) {re.escape(name)}\b", rf"\1 {as_name}", source, count=1, flags=re.M)
    return source


def show_solution(name: str) -> None:
    """Print the reference solution of exercise ``name`` (try the exercise first); in a classroom install, a notice."""
    reference(name)  # an unknown name is an error in both builds
    if solutions_withheld():
        print(f"The solution of {name!r} is withheld in this classroom install; the checker's hint is your guide.")
        return
    print(solution_source(name))
