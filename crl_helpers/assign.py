"""The course as an nbgrader assignment (``crl assign --format nbgrader``): solution regions and autograded cells.

nbgrader (Jupyter's grading tool) starts from a *source* version of each notebook: the solutions in
regions that ``nbgrader generate_assignment`` clears for the students (``### BEGIN SOLUTION`` /
``### END SOLUTION``), and test cells whose passing earns points. :func:`write_nbgrader` makes it
from the course's own notebooks, solutions (:mod:`crl_helpers.exercises.solutions`) and checkers,
so the three cannot drift:

- each exercise cell becomes a *solution cell*: the learner's function (or each method of the
  learner's class) keeps its signature and its TODO notes, and its body is the reference solution's
  inside a solution region (the student version raises ``NotImplementedError`` there, which the
  checker reports as NOT YET, and the cells after it fall back to the reference as in the course);
- after it comes a locked *autograded cell* worth ``points``, which runs the same checker on the
  learner's own function (:func:`crl_helpers.grading.assert_solved`: the reference that the notebook
  fell back to does not count, nor does an answer calling the package's implementation).

The layout is nbgrader's course folder: ``OUT/source/<notebook>/<notebook>.ipynb`` (one assignment per
notebook with exercises) and ``OUT/nbgrader_config.py``.

Example:
    >>> cell = "def my_lse(logits):\\n    # TODO: stable\\n    return None\\n\\n\\nmy_lse = check_logsumexp(my_lse).or_reference()\\n"
    >>> (answer, meta), (test, test_meta) = nbgrader_cells(cell, points=2)
    >>> print(answer.split("\\n    m = ")[0])
    def my_lse(logits):
        # TODO: stable
        ### BEGIN SOLUTION
    >>> print(test.splitlines()[-1])
    assert_solved(check_logsumexp, my_lse)
    >>> test_meta["points"], test_meta["locked"], meta["solution"]
    (2, True, True)
"""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

__all__ = ["BEGIN_SOLUTION", "END_SOLUTION", "nbgrader_cells", "write_nbgrader"]

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
NBGRADER_SCHEMA_VERSION = 3  # nbgrader's cell metadata schema (nbgrader 0.9)
FORMATS = ("nbgrader",)


def _metadata(grade_id: str, *, solution: bool = False, grade: bool = False, points: float | None = None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": NBGRADER_SCHEMA_VERSION,
            "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return meta


def _signature(lines: list[str], node) -> list[str]:
    # The decorators and the def line(s) up to the body, without comment lines (which could tell the solution).
    start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
    return [line for line in lines[start:node.body[0].lineno - 1] if not line.strip().startswith("#")]


def _comments(lines: list[str], node) -> list[str]:
    """The learner's own notes (TODO comments) inside a stub's definition, trailing ones included."""
    found = []
    for line in lines[node.lineno:] if node is not None else []:
        text = line.strip()
        if text and not text.startswith("#") and len(line) - len(line.lstrip()) <= node.col_offset:
            break  # the definition has ended
        if text.startswith("#"):
            found.append(line)
    return found


def _region(lines: list[str], first: int, last: int, indent: str) -> list[str]:
    body = textwrap.dedent("".join(lines[first - 1:last]))
    return ([f"{indent}{BEGIN_SOLUTION}\n"] + [indent + line if line.strip() else line
                                             for line in body.splitlines(keepends=True)]
            + [f"{indent}{END_SOLUTION}\n"])


def _function(lines: list[str], node: ast.FunctionDef, stub_lines: list[str], stub, indent: str) -> list[str]:
    body_indent = indent + " " * 4
    return (_signature(lines, node) + [body_indent + c.strip() + "\n" for c in _comments(stub_lines, stub)]
            + _region(lines, node.body[0].lineno, node.end_lineno, body_indent))


def _answer(stub_source: str, stub, solution_source: str) -> str:
    """The learner's definition with the solution's body (or methods' bodies) in solution regions."""
    stub_lines = stub_source.splitlines(keepends=True)
    lines = solution_source.splitlines(keepends=True)
    node = ast.parse(solution_source).body[0]
    if isinstance(node, ast.FunctionDef):
        return "".join(_function(lines, node, stub_lines, stub, ""))
    stub_methods = {m.name: m for m in getattr(stub, "body", []) if isinstance(m, ast.FunctionDef)}
    out = _signature(lines, node)
    for statement in node.body:
        if isinstance(statement, ast.FunctionDef):
            out += ["\n"] * (out[-1].strip() != "" and statement is not node.body[0])
            out += _function(lines, statement, stub_lines, stub_methods.get(statement.name),
                             " " * statement.col_offset)
        else:  # a class attribute: part of the solution
            out += _region(lines, statement.lineno, statement.end_lineno, " " * statement.col_offset)
    return "".join(out)


def nbgrader_cells(source: str, points: float = 1) -> list[tuple[str, dict]]:
    """An exercise cell as nbgrader cells: ``[(solution cell, metadata), (autograded cell, metadata), ...]``.

    One autograded cell per checker call in the cell, each worth ``points``. Raises ``ValueError`` for a
    cell that calls a checker without defining the learner's function (as ``crl instructor`` does).
    """
    from crl_helpers import exercises
    from crl_helpers.exercises.instructor import exercise_calls, learner_definition
    from crl_helpers.exercises.solutions import solution_source

    calls = exercise_calls(source)
    tests = []
    for checker_name, learner_name in calls:
        checker, stub, start = learner_definition(source, checker_name, learner_name)
        lines = source.splitlines(keepends=True)
        answer = _answer(source, stub, solution_source(checker.solution, as_name=learner_name))
        source = "".join(lines[:start]) + answer + "".join(lines[stub.end_lineno:])
        key = checker.solution
        tests.append((f"# Autograded ({points:g} point{'s' * (points != 1)}): your {learner_name} passes "
                      f"{checker_name} again, on fresh inputs.\n# The reference solution the cells above fall "
                      f"back to does not count, nor does calling the package's own implementation.\n"
                      f"from crl_helpers.grading import assert_solved\n\n"
                      f"assert_solved({checker_name}, {learner_name})",
                      _metadata(f"check_{key}", grade=True, points=points)))
    keys = "_".join(getattr(exercises, name).solution for name, _ in calls)
    return [(source, _metadata(f"answer_{keys}", solution=True))] + tests


def write_nbgrader(notebook_dir: str | Path, out_dir: str | Path, points: float = 1) -> list[Path]:
    """Write nbgrader's source version of every notebook with exercises to ``out_dir``; returns the notebooks.

    ``out_dir`` becomes an nbgrader course folder: ``source/<stem>/<stem>.ipynb`` and ``nbgrader_config.py``
    (a cell time limit long enough for the smoke tier's training cells).
    """
    import nbformat

    from crl_helpers.exercises.instructor import exercise_calls

    notebook_dir, out_dir = Path(notebook_dir), Path(out_dir)
    paths = sorted(notebook_dir.glob("*.ipynb"))
    if not paths:
        raise ValueError(f"no notebooks in {notebook_dir}; pass the course's notebooks/ folder")
    if not points > 0:
        raise ValueError(f"--points {points} must be > 0; e.g. 1")
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        cells = []
        for cell in nb.cells:
            if cell.cell_type != "code" or not exercise_calls(cell.source):
                cells.append(cell)
                continue
            for source, meta in nbgrader_cells(cell.source, points):
                new = nbformat.v4.new_code_cell(source, metadata={**cell.metadata, "nbgrader": meta})
                new.id = meta["grade_id"].replace("_", "-")[:64]  # stable ids: the same course, the same file
                if meta["grade"]:
                    new.metadata.pop("tags", None)
                cells.append(new)
        if len(cells) == len(nb.cells):
            continue  # no exercises: nothing to grade
        nb.cells = cells
        target = out_dir / "source" / path.stem / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        written.append(target)
    (out_dir / "nbgrader_config.py").write_text(
        "# nbgrader's configuration for the course, written by `crl assign --format nbgrader`.\n"
        "c = get_config()  # noqa: F821 (nbgrader defines it)\n"
        "# Training cells of the smoke tier (CRL_SMOKE=1) take minutes on a busy laptop, not nbgrader's 30 s.\n"
        "c.ExecutePreprocessor.timeout = 600\n")
    return written
