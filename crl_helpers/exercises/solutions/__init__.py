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
import pkgutil
import re

import torch  # noqa: F401  (the doctest above)

__all__ = ["reference", "show_solution", "solution_names", "solution_source"]


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
    """The source of the solution of ``name``, its ``def``/``class`` renamed to ``as_name`` if given."""
    source = inspect.getsource(reference(name))
    if as_name:
        source = re.sub(rf"^(def|class) {re.escape(name)}\b", rf"\1 {as_name}", source, count=1, flags=re.M)
    return source


def show_solution(name: str) -> None:
    """Print the reference solution of exercise ``name`` (try the exercise first)."""
    print(solution_source(name))
