"""The instructor version of the course: every exercise cell with its reference solution inline.

An exercise cell defines the learner's function and ends with
``my_fn = check_x(my_fn).or_reference()``; :func:`instructor_cell` replaces the ``def`` (or
``class``) of ``my_fn`` by the solution of ``check_x`` (:mod:`crl_helpers.exercises.solutions`),
renamed to ``my_fn``. Both versions come from the same notebooks, so they cannot drift:
``crl instructor --out instructor/`` writes them.

Example:
    >>> cell = "def my_lse(logits):\\n    return None  # TODO\\n\\n\\nmy_lse = check_logsumexp(my_lse).or_reference()\\n"
    >>> solved = instructor_cell(cell).splitlines()
    >>> solved[0], solved[-1]
    ('def my_lse(logits):', 'my_lse = check_logsumexp(my_lse).or_reference()')
    >>> print(solved[1])
        m = logits.max(dim=-1, keepdim=True).values  # (N, 1) row maxima
"""
from __future__ import annotations

import ast
from pathlib import Path

__all__ = ["exercise_calls", "instructor_cell", "write_instructor_version"]


def exercise_calls(source: str) -> list[tuple[str, str]]:
    """``(checker name, learner's name)`` of every ``name = check_x(name).or_reference()`` in a cell.

    Example:
        >>> exercise_calls("f = check_nt_xent(f).or_reference()")
        [('check_nt_xent', 'f')]
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics: not an exercise cell
        return []
    found = []
    for node in tree.body:
        call = node.value if isinstance(node, ast.Assign) else None
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "or_reference"
                and isinstance(call.func.value, ast.Call) and isinstance(call.func.value.func, ast.Name)
                and call.func.value.func.id.startswith("check_") and call.func.value.args
                and isinstance(call.func.value.args[0], ast.Name)):
            found.append((call.func.value.func.id, call.func.value.args[0].id))
    return found


def instructor_cell(source: str) -> str:
    """``source`` with the learner's definition of each exercise replaced by its reference solution."""
    from crl_helpers import exercises
    from crl_helpers.exercises.solutions import solution_source

    for checker_name, learner_name in exercise_calls(source):
        checker = getattr(exercises, checker_name, None)
        if checker is None:
            raise ValueError(f"{checker_name} is not a checker of crl_helpers.exercises")
        lines = source.splitlines(keepends=True)
        definitions = [node for node in ast.parse(source).body
                       if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == learner_name]
        if not definitions:
            raise ValueError(f"the cell calling {checker_name}({learner_name}) does not define {learner_name}")
        node = definitions[0]
        start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
        solution = solution_source(checker.solution, as_name=learner_name)
        source = "".join(lines[:start]) + solution + "".join(lines[node.end_lineno:])
    return source


def write_instructor_version(notebook_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write every notebook of ``notebook_dir`` to ``out_dir`` with the solutions inline; returns the paths."""
    import nbformat

    notebook_dir, out_dir = Path(notebook_dir), Path(out_dir)
    paths = sorted(notebook_dir.glob("*.ipynb"))
    if not paths:
        raise ValueError(f"no notebooks in {notebook_dir}; pass the course's notebooks/ folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code" and exercise_calls(cell.source):
                cell.source = instructor_cell(cell.source)
        target = out_dir / path.name
        nbformat.write(nb, target)
        written.append(target)
    return written
