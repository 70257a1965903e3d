"""Auto-checked exercises for the course notebooks: ``check_*(your_function)`` compares
your code with an independent reference on inputs drawn anew on every call, within a time limit
(``time_limit=`` seconds, default ``CRL_CHECK_TIMEOUT`` or 30), and prints PASSED or a hint;
``show_solution(name)`` prints a reference solution, for a learner who asks.

One module per notebook; every ``check_*`` function is re-exported here, so
``from crl_helpers.exercises import check_info_nce`` works.
"""
from __future__ import annotations

import importlib
import pkgutil

from crl_helpers.exercises._check import CheckResult, exercise_check
from crl_helpers.exercises.solutions import show_solution

__all__ = ["CheckResult", "exercise_check", "show_solution"]
for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        _module = importlib.import_module(f"{__name__}.{_info.name}")
        for _name in dir(_module):
            if _name.startswith("check_"):
                globals()[_name] = getattr(_module, _name)
                __all__.append(_name)
