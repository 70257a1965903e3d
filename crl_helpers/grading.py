"""Grading submitted notebooks (``crl grade``): every exercise's verdict, from the checkers themselves.

A submission is one student's notebook, or a folder of notebooks. :func:`grade` copies each notebook
into a fresh temporary folder (the submission is only read), runs it top to bottom in a fresh kernel
(nbclient) in a cost tier (smoke by default), with a time limit per cell and an address-space limit
on the kernel process, and collects one verdict per exercise:

- ``passed``: the exercise's checker passed the learner's answer;
- ``not yet``: the checker ran and did not pass it (its hint says why);
- ``refused``: the answer calls the package's own implementation of that exercise (for NT-Xent,
  :func:`crl_helpers.losses.nt_xent`) or a reference solution (:mod:`crl_helpers.exercises.solutions`);
- ``error``: the checker never ran because a cell raised first (or the kernel died);
- ``timeout``: the checker never ran because a cell ran over the time limit.

The verdicts come from the checks, not from how the notebook ends: a notebook whose exercises are
unsolved still runs to the end on the reference solutions (:meth:`CheckResult.or_reference`), and
scores nothing.

How a verdict reaches the grader: in grading mode the environment variable ``CRL_GRADE_LOG`` names
a file, and every checker (through :func:`grade_hook`, applied by
:func:`crl_helpers.exercises.exercise_check`) appends one JSON line ``{"exercise", "verdict",
"hint"}`` to it. Outside grading the hook does nothing.

The trip-wires: while a check runs in grading mode, a profile hook (:func:`sys.setprofile`) watches
the code of the package's implementations of THAT exercise (:data:`IMPLEMENTATIONS`) and of every
reference solution, however they were imported or renamed. A call to one of them whose nearest
caller outside the package's library code is the learner's code is recorded; a call from the
checker itself (its own reference) is not. Submitting the implementation itself (or a subclass, or a
``functools.partial`` of it) counts too. Everything else the package offers stays allowed.

This is not a sandbox: a notebook runs arbitrary code with the grader's rights, and code written to
deceive (writing the log itself) can. Grade untrusted work in a container.

Example:
    >>> "crl_helpers.losses.nt_xent" in IMPLEMENTATIONS["nt_xent"]
    True
    >>> VERDICTS
    ('passed', 'not yet', 'error', 'timeout', 'refused')
"""
from __future__ import annotations

import csv
import functools
import importlib
import inspect
import json
import os
import shutil
import site
import sys
import sysconfig
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GRADE_LOG_ENV", "IMPLEMENTATIONS", "VERDICTS", "Grade", "Tripwire", "assert_solved", "grade", "grade_hook",
           "summary_table", "write_grades"]

#: The environment variable that switches grading mode on: the file every check appends its verdict to.
GRADE_LOG_ENV = "CRL_GRADE_LOG"
VERDICTS = ("passed", "not yet", "error", "timeout", "refused")
DEFAULT_MEMORY_GB = 8.0  # the kernel's address space outside the gpu tier; importing torch alone maps about 4 GiB
CSV_COLUMNS = ("submission", "notebook", "exercise", "verdict", "hint")

#: The package's own implementation(s) of each exercise (keyed by the exercise's solution name): an
#: answer that calls one of them is refused. The notebooks compare each answer with these (the cell
#: after each exercise), which is what makes them "the package's implementation" of it.
IMPLEMENTATIONS: dict[str, tuple[str, ...]] = {
    "pair_matrix": ("crl_helpers.pairs.negative_mask", "crl_helpers.pairs.false_negative_mask"),
    "positive_index": ("crl_helpers.losses.nt_xent_logits",),
    "same_class_fraction": ("crl_helpers.pairs.same_class_fraction", "crl_helpers.pairs.false_negative_mask"),
    "random_resized_crop_box": ("crl_helpers.views_batched.sample_view_params",
                                "crl_helpers.views_batched.view_params_from_uniforms"),
    "conv_output_size": (),
    "count_parameters": ("crl_helpers.models.count_parameters",),
    "knn_baseline": ("crl_helpers.evaluate.knn_accuracy", "crl_helpers.evaluate.knn_predict",
                     "crl_helpers.evaluate.nearest_neighbours"),
    "normalize": ("crl_helpers.losses.normalize_rows", "crl_helpers.models.ProjectionHead"),
    "MLPHead": ("crl_helpers.models.ProjectionHead",),
    "contextualize": ("crl_helpers.models.ContextHead",),
    "info_nce": ("crl_helpers.losses.info_nce", "crl_helpers.losses.nt_xent", "crl_helpers.losses.nt_xent_logits",
                 "crl_helpers.scores.info_nce_form"),
    "nt_xent": ("crl_helpers.losses.nt_xent", "crl_helpers.losses.nt_xent_logits", "crl_helpers.losses.info_nce",
                "crl_helpers.losses.debiased_nt_xent", "crl_helpers.objectives.SimCLR"),
    "logsumexp": (),
    "neg_euclidean_score": ("crl_helpers.scores.neg_euclidean_score",),
    "alignment": ("crl_helpers.metrics.alignment",),
    "cosine_schedule": ("crl_helpers.train.cosine_schedule",),
    "simclr_step": ("crl_helpers.train.TrainStep", "crl_helpers.train.train_one_epoch"),
    "uniformity": ("crl_helpers.metrics.uniformity",),
    "knn_predict": ("crl_helpers.evaluate.knn_predict", "crl_helpers.evaluate.knn_accuracy",
                    "crl_helpers.evaluate.nearest_neighbours"),
    "linear_probe_frozen": ("crl_helpers.evaluate.linear_probe", "crl_helpers.evaluate.linear_probe_on_features"),
    "make_finetune_optimizer": ("crl_helpers.evaluate.fine_tune",),
    "memory_bank_update": ("crl_helpers.objectives.MemoryBank",),
    "enqueue": ("crl_helpers.objectives.MoCoQueue",),
    "momentum_update": ("crl_helpers.objectives.momentum_update",),
    "supcon_positive_mask": ("crl_helpers.pairs.false_negative_mask", "crl_helpers.objectives.supcon_loss"),
}


# ----------------------------------------------------------------------------------------- the trip-wires
def _resolve(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _codes(obj) -> set:
    """The code objects that run when ``obj`` (a function or a class) is called or used."""
    if inspect.isclass(obj):
        return {f.__code__ for f in vars(obj).values() if inspect.isfunction(f)}
    obj = inspect.unwrap(obj)
    return {obj.__code__} if hasattr(obj, "__code__") else set()


def _solution_objects() -> dict:
    from crl_helpers.exercises import solutions

    found = {f"crl_helpers.exercises.solutions.{n}": o for n, o in vars(solutions).items() if inspect.isfunction(o)}
    for name in solutions.solution_names():
        obj = solutions.reference(name)
        found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def _where() -> tuple[str, str, tuple[str, ...]]:
    package = str(Path(__file__).resolve().parent)
    libraries = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    libraries.update(site.getsitepackages())
    libraries.add(site.getusersitepackages())
    return package + os.sep, str(Path(package) / "exercises") + os.sep, tuple(p + os.sep for p in libraries)


# Code without a file that is the learner's: old IPython cells, doctests, the interactive prompt. Other such
# code (a dataclass's generated __init__, exec'd strings) passes a call on to whoever ran it.
_LEARNER_PSEUDO_FILES = ("<ipython-input", "<doctest", "<stdin>")


def _is_learner_call(frame, package: str, checkers: str, libraries: tuple[str, ...]) -> bool:
    # Walk outwards from the caller: the package's library code and other libraries (torch's Module.__call__)
    # pass a call on; the learner's code (a notebook cell, their own module) records it; a checker's does not.
    frame = frame.f_back
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith("<"):
            if filename.startswith(_LEARNER_PSEUDO_FILES):
                return True
        else:
            resolved = os.path.realpath(filename)
            if resolved.startswith(checkers) and f"{os.sep}solutions{os.sep}" not in resolved[len(checkers) - 1:]:
                return False
            if not (resolved.startswith(package) or resolved.startswith(libraries)):
                return True
        frame = frame.f_back
    return False


class Tripwire:
    """While active, records calls from the learner's code to the implementations of ``exercise``.

    ``called`` lists the dotted names that were called (or submitted); empty means none was.

    Example:
        >>> import torch
        >>> from crl_helpers.losses import nt_xent as package_nt_xent
        >>> with Tripwire("nt_xent") as wire:
        ...     _ = package_nt_xent(torch.ones(2, 3), torch.ones(2, 3), 0.5)
        >>> wire.called  # nt_xent calls nt_xent_logits, another implementation of the exercise
        ['crl_helpers.losses.nt_xent', 'crl_helpers.losses.nt_xent_logits']
    """

    def __init__(self, exercise: str, submitted=None) -> None:
        watched = {name: _resolve(name) for name in IMPLEMENTATIONS.get(exercise, ())}
        watched.update(_solution_objects())
        self.called: list[str] = []
        self._code_names = {code: name for name, obj in watched.items() for code in _codes(obj)}
        for name, obj in watched.items():  # the implementation handed in as the answer
            if _is_same(submitted, obj):
                self.called.append(name)
        self._where = _where()
        self._previous = None

    def _profile(self, frame, event, arg):
        if event == "call":
            name = self._code_names.get(frame.f_code)
            if name is not None and name not in self.called and _is_learner_call(frame, *self._where):
                self.called.append(name)
        if self._previous is not None:
            self._previous(frame, event, arg)

    def __enter__(self) -> "Tripwire":
        self._previous, self._previous_threads = sys.getprofile(), threading.getprofile()
        sys.setprofile(self._profile)
        threading.setprofile(self._profile)  # threads the learner's code starts during the check
        return self

    def __exit__(self, *exc) -> None:
        sys.setprofile(self._previous)
        threading.setprofile(self._previous_threads)


def _is_same(submitted, obj) -> bool:
    if submitted is None:
        return False
    while isinstance(submitted, functools.partial):
        submitted = submitted.func
    submitted = getattr(submitted, "__func__", submitted)  # a bound method
    try:
        submitted = inspect.unwrap(submitted)
    except ValueError:
        pass
    if inspect.isclass(obj) and inspect.isclass(submitted):
        return issubclass(submitted, obj)
    return submitted is obj


def grade_hook(checker):
    """Wrap a decorated checker for grading mode; outside it (``CRL_GRADE_LOG`` unset) a plain pass-through.

    In grading mode the check runs under the exercise's :class:`Tripwire` and its verdict is appended to
    the log as one JSON line: ``passed`` / ``not yet`` from the check, ``timeout`` when the check's time
    limit stopped the answer, ``refused`` when the answer
    called (or was) the package's implementation of the exercise or a reference solution.
    :func:`crl_helpers.exercises.exercise_check` applies it to every checker; ``checker.solution``
    names the exercise.

    Example:
        >>> from crl_helpers.exercises import check_logsumexp
        >>> check_logsumexp.solution, hasattr(check_logsumexp, "__wrapped__")
        ('logsumexp', True)
    """

    @functools.wraps(checker)
    def graded(submitted, *args, **kwargs):
        log = os.environ.get(GRADE_LOG_ENV, "")
        if not log:
            return checker(submitted, *args, **kwargs)
        exercise = getattr(checker, "solution", checker.__name__.removeprefix("check_"))
        with Tripwire(exercise, submitted) as wire:
            result = checker(submitted, *args, **kwargs)
        verdict = "passed" if bool(result) else "timeout" if getattr(result, "timed_out", False) else "not yet"
        hint = str(getattr(result, "message", ""))
        if wire.called:
            verdict = "refused"
            hint = (f"the answer calls {', '.join(wire.called)}: the package's own implementation of this exercise "
                    f"or a reference solution; write it yourself (the rest of the package stays allowed)")
            print(f"[REFUSED] {getattr(result, 'exercise', exercise)}: {hint}")
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"exercise": exercise, "verdict": verdict, "hint": hint}) + "\n")
        return result

    return graded


def assert_solved(checker, answer) -> None:
    """Raise ``AssertionError`` unless ``answer`` is the learner's own and passes ``checker``: nbgrader's test cells.

    After an exercise cell, ``answer`` is the reference solution when the learner's version failed
    (:meth:`CheckResult.or_reference`): that does not count, nor does an answer that calls (or is) the
    package's implementation of the exercise (:class:`Tripwire`). The check runs on fresh inputs.

    Example:
        >>> from crl_helpers.exercises import check_logsumexp
        >>> assert_solved(check_logsumexp, lambda logits: logits.logsumexp(dim=-1))  # doctest: +ELLIPSIS
        [PASSED] ...
        >>> from crl_helpers.exercises.solutions import reference
        >>> assert_solved(check_logsumexp, reference("logsumexp"))
        Traceback (most recent call last):
        ...
        AssertionError: logsumexp is not solved yet: this is the reference solution the cells fell back to
    """
    from crl_helpers.exercises.solutions import reference

    exercise = checker.solution
    if answer is reference(exercise):
        raise AssertionError(f"{exercise} is not solved yet: this is the reference solution the cells fell back to")
    with Tripwire(exercise, answer) as wire:
        result = checker(answer)
    if wire.called:
        raise AssertionError(f"{exercise}: the answer calls {', '.join(wire.called)}, the package's own "
                             f"implementation or a reference solution; write it yourself")
    if not result:
        raise AssertionError(f"{exercise}: {getattr(result, 'message', 'not passed yet')}")


# ----------------------------------------------------------------------------------------------- the grader
@dataclass(frozen=True)
class Grade:
    """One row of the grade table: a submission's verdict on one exercise of one notebook."""

    submission: str
    notebook: str
    exercise: str
    verdict: str
    hint: str


def _notebooks(submission: Path) -> list[Path]:
    if submission.is_file():
        if submission.suffix != ".ipynb":
            raise ValueError(f"submission {str(submission)!r} is not a notebook (.ipynb); pass notebooks or folders "
                             f"of notebooks")
        return [submission]
    if not submission.is_dir():
        raise ValueError(f"submission {str(submission)!r} does not exist; pass a notebook (.ipynb) or a folder of "
                         f"notebooks (one student)")
    found = sorted(p for p in submission.glob("*.ipynb") if not p.name.startswith("."))
    if not found:
        raise ValueError(f"submission folder {str(submission)!r} holds no notebooks (*.ipynb); pass a folder of one "
                         f"student's notebooks")
    return found


def _exercise_cells(nb) -> list[tuple[int, str]]:
    """``(cell index, exercise)`` of every checker call in the notebook, in order."""
    from crl_helpers import exercises
    from crl_helpers.exercises.instructor import exercise_calls

    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            for checker_name, _ in exercise_calls(cell.source):
                checker = getattr(exercises, checker_name, None)
                if checker is not None:
                    found.append((index, checker.solution))
    return found


def _set_memory_limit(limit_bytes: int):
    def apply() -> None:  # runs in the kernel process before it starts (subprocess preexec_fn)
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    return apply


def _tier_environment(tier: str) -> dict[str, str]:
    from crl_helpers.course import TIERS

    if tier not in TIERS:
        raise ValueError(f"--tier {tier!r} is unknown; choose one of {', '.join(TIERS)}")
    if tier == "smoke":
        return {"CRL_SMOKE": "1"}
    if tier == "cpu":
        return {"CRL_SMOKE": "0", "CUDA_VISIBLE_DEVICES": ""}
    import torch

    if not torch.cuda.is_available():
        raise ValueError("--tier gpu needs a CUDA GPU, and torch sees none; grade in --tier smoke or cpu")
    return {"CRL_SMOKE": "0"}


def _first_error(cell) -> str:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename')}: {' '.join(str(output.get('evalue', '')).split())[:200]}"
    return ""


def _run_notebook(path: Path, workdir: Path, log: Path, environment: dict[str, str], cell_timeout: float,
                  memory_bytes: int) -> tuple[list[dict], dict]:
    """Execute one notebook copy; returns the verdict log lines and what stopped or broke it."""
    import nbclient
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb = nbformat.read(workdir / path.name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", allow_errors=True,
                                     interrupt_on_timeout=False, resources={"metadata": {"path": str(workdir)}})
    env = {**os.environ, **environment, GRADE_LOG_ENV: str(log)}
    package_root = str(Path(__file__).resolve().parent.parent)  # the kernel grades with this very package
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    launch = {"env": env}
    if memory_bytes:
        launch["preexec_fn"] = _set_memory_limit(memory_bytes)
    status = {"errors": {}, "timeout": None, "died": None}
    with open(workdir / f"{path.stem}.kernel.log", "w") as kernel_log:
        launch.update(stdout=kernel_log, stderr=kernel_log)
        with client.setup_kernel(**launch):
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                try:
                    client.execute_cell(cell, index)
                except CellTimeoutError:
                    status["timeout"] = index
                    break
                except DeadKernelError:
                    status["died"] = index
                    break
                error = _first_error(cell)
                if error:
                    status["errors"][index] = error
    entries = []
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return entries, {**status, "cells": _exercise_cells(nb)}


def _verdicts(entries: list[dict], status: dict, cell_timeout: float, memory_gb: float) -> list[tuple[str, str, str]]:
    logged = {}
    for entry in entries:  # a check run twice: its last verdict stands
        if entry.get("verdict") in VERDICTS and isinstance(entry.get("exercise"), str):
            logged[entry["exercise"]] = (entry["verdict"], str(entry.get("hint", "")))
    rows, seen = [], set()
    for index, exercise in status["cells"]:
        if exercise in seen:
            continue
        seen.add(exercise)
        if exercise in logged:
            rows.append((exercise, *logged[exercise]))
        elif status["timeout"] is not None and index >= status["timeout"]:
            where = "this exercise's cell" if index == status["timeout"] else f"cell {status['timeout']}"
            rows.append((exercise, "timeout", f"not checked: {where} ran over the {cell_timeout:g} s limit per cell"))
        elif status["died"] is not None and index >= status["died"]:
            limit = f" (over the {memory_gb:g} GiB memory limit?)" if memory_gb else ""
            rows.append((exercise, "error", f"not checked: the kernel died in cell {status['died']}{limit}"))
        elif index in status["errors"]:
            rows.append((exercise, "error", f"not checked: cell {index} raised {status['errors'][index]}"))
        else:
            rows.append((exercise, "error", "not checked: the checker's cell ran but the check left no verdict"))
    rows += [(exercise, *verdict) for exercise, verdict in logged.items() if exercise not in seen]
    return rows


def _problems(status: dict, cell_timeout: float) -> list[tuple[int, str]]:
    problems = sorted(status["errors"].items())
    if status["timeout"] is not None:
        problems.append((status["timeout"], f"ran over the {cell_timeout:g} s limit; the cells after it did not run"))
    if status["died"] is not None:
        problems.append((status["died"], "the kernel died; the cells after it did not run"))
    return problems


def grade(submissions, *, tier: str = "smoke", cell_timeout: float = 300.0, memory_gb: float | None = None,
          on_submission=None, on_notebook=None) -> list[Grade]:
    """Grade each submission (a notebook or a folder of one student's notebooks); returns every row.

    Args:
        submissions: paths; each is run on a temporary copy (only its ``*.ipynb`` files are copied).
        tier: the cost tier the notebooks run in (:data:`crl_helpers.course.TIERS`).
        cell_timeout: seconds a cell may run; the exercises it and the cells after it check get ``timeout``.
        memory_gb: the kernel's address-space limit (``RLIMIT_AS``; 0 for none). By default 8 GiB
            (importing torch alone maps about 4), none in the gpu tier: CUDA reserves far more address
            space than it uses.
        on_submission: called with each submission's rows as soon as they are known (to save them).
        on_notebook: called as ``on_notebook(submission, notebook, problems)`` after each notebook, with
            ``problems`` a list of ``(cell index, what happened)`` for the cells that raised, timed out or
            killed the kernel, checks or not (empty: it ran to the end).

    A notebook that does not read as one gets a single row with an empty ``exercise`` and ``error``.

    Raises:
        ValueError: a submission that is not a notebook or a folder of notebooks, a bad limit or tier.
    """
    if not cell_timeout > 0:
        raise ValueError(f"--cell-timeout {cell_timeout:g} must be > 0 seconds; e.g. 300")
    if memory_gb is None:
        memory_gb = 0.0 if tier == "gpu" else DEFAULT_MEMORY_GB
    if not memory_gb >= 0:
        raise ValueError(f"--memory-gb {memory_gb:g} must be >= 0 (0: no limit); e.g. 8")
    import nbformat

    environment = _tier_environment(tier)
    plan = [(str(s), _notebooks(Path(s))) for s in submissions]  # every path checked before anything runs
    rows: list[Grade] = []
    for name, paths in plan:
        these = []
        with tempfile.TemporaryDirectory(prefix="crl-grade-") as tmp:
            tmp = Path(tmp)
            workdir = tmp / "notebooks"  # data_root ../data and the run cache stay inside the temporary folder
            workdir.mkdir()
            for path in paths:
                shutil.copyfile(path, workdir / path.name)
            notebook_env = {**environment, "CRL_CACHE": str(tmp / "cache")}
            for path in paths:
                try:
                    nbformat.read(workdir / path.name, as_version=4)
                except Exception as err:  # noqa: BLE001 - JSON, schema and encoding errors come in many types
                    # No exercise can be named: one row for the notebook, with an empty exercise.
                    reason = " ".join(str(err).split())[:160] or type(err).__name__
                    these.append(Grade(name, path.name, "", "error", f"the notebook does not read: {reason}"))
                    continue
                entries, status = _run_notebook(path, workdir, tmp / f"{path.stem}.grades.jsonl", notebook_env,
                                                cell_timeout, int(memory_gb * 2**30))
                these += [Grade(name, path.name, *row)
                          for row in _verdicts(entries, status, cell_timeout, memory_gb)]
                if on_notebook is not None:
                    on_notebook(name, path.name, _problems(status, cell_timeout))
        rows += these
        if on_submission is not None:
            on_submission(these)
    return rows


def write_grades(rows: list[Grade], out: str | Path) -> None:
    """Write the grade table as CSV (columns :data:`CSV_COLUMNS`), atomically: a reader never sees half a file."""
    out = Path(out)
    part = out.with_name(out.name + ".part")
    with open(part, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([getattr(row, column) for column in CSV_COLUMNS])
    part.replace(out)


def summary_table(rows: list[Grade]) -> str:
    """One line per submission: exercises passed out of those graded, and the count of each other verdict.

    Example:
        >>> print(summary_table([Grade("ann", "01.ipynb", "pair_matrix", "passed", ""),
        ...                      Grade("ann", "01.ipynb", "positive_index", "refused", "...")]))
        submission  passed  not yet  error  timeout  refused
        ann         1/2     0        0      0        1
    """
    names = list(dict.fromkeys(row.submission for row in rows))
    header = ["submission", "passed", "not yet", "error", "timeout", "refused"]
    table = [header]
    for name in names:
        verdicts = [row.verdict for row in rows if row.submission == name]
        table.append([name, f"{verdicts.count('passed')}/{len(verdicts)}"]
                     + [str(verdicts.count(v)) for v in VERDICTS[1:]])
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table)
