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
import os
import stat
from pathlib import Path

from crl_helpers.run_dir import atomic_write_text

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


def learner_definition(source: str, checker_name: str, learner_name: str) -> tuple[object, ast.AST, int]:
    """The checker a cell calls and the learner's definition it checks: ``(checker, node, first line index)``.

    The first line is the first decorator's, if any (0-based). Raises ``ValueError`` for an unknown
    checker or a cell that does not define ``learner_name``.
    """
    from crl_helpers import exercises

    checker = getattr(exercises, checker_name, None)
    if checker is None:
        raise ValueError(f"{checker_name} is not a checker of crl_helpers.exercises")
    definitions = [node for node in ast.parse(source).body
                   if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == learner_name]
    if not definitions:
        raise ValueError(f"the cell calling {checker_name}({learner_name}) does not define {learner_name}")
    node = definitions[0]
    return checker, node, min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1


def instructor_cell(source: str) -> str:
    """``source`` with the learner's definition of each exercise replaced by its reference solution."""
    from crl_helpers.exercises.solutions import solution_source

    for checker_name, learner_name in exercise_calls(source):
        checker, node, start = learner_definition(source, checker_name, learner_name)
        lines = source.splitlines(keepends=True)
        solution = solution_source(checker.solution, as_name=learner_name)
        source = "".join(lines[:start]) + solution + "".join(lines[node.end_lineno:])
    return source


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def _read_notebook(path: Path):
    """The notebook at ``path``, validated against its schema; ValueError naming the file otherwise."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # noqa: BLE001 - JSON, schema and encoding errors come in many types
        reason = " ".join(str(err).split())[:160] or type(err).__name__
        raise ValueError(f"{path} is not a readable notebook ({type(err).__name__}: {reason}); repair it "
                         f"(e.g. git checkout -- {path}) or move it out of {path.parent}") from None
    return nb


def write_instructor_version(notebook_dir: str | Path, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """Write every notebook of ``notebook_dir`` to ``out_dir`` with the solutions inline; returns the paths.

    Nothing is written until every notebook has been read and converted. A notebook already in
    ``out_dir`` with other contents (a learner may have worked in that copy) is replaced only with
    ``overwrite``; one with the same contents is left as it is. A target that is a symlink, or a hard
    link to a file of ``notebook_dir``, is refused even with ``overwrite``: writing there would rewrite
    the learner's own notebook.

    Raises:
        ValueError: ``out_dir`` is empty, a file, or ``notebook_dir`` itself; no notebooks; a notebook
            that does not read or validate (named); a target that differs (without ``overwrite``) or
            that links into ``notebook_dir``.

    Example:
        >>> import tempfile
        >>> write_instructor_version(tempfile.mkdtemp(), "  ")
        Traceback (most recent call last):
        ...
        ValueError: --out '  ' is empty; name a folder such as instructor
    """
    import nbformat

    if not str(out_dir).strip():
        raise ValueError(f"--out {str(out_dir)!r} is empty; name a folder such as instructor")
    notebook_dir, out_dir = Path(notebook_dir), Path(out_dir)
    paths = sorted(notebook_dir.glob("*.ipynb"))
    if not paths:
        raise ValueError(f"no notebooks in {notebook_dir}; pass the course's notebooks/ folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {str(out_dir)!r} is a file, not a folder; choose a folder, e.g. instructor")
    if out_dir.is_dir() and _same_file(out_dir.stat(), notebook_dir.stat()):
        raise ValueError(f"--out {str(out_dir)!r} is the notebook folder itself; choose another folder, e.g. instructor")
    sources = [path.stat() for path in paths]
    # Every notebook read and converted before the first write: a broken one stops the command with nothing written.
    texts = []
    for path in paths:
        nb = _read_notebook(path)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and exercise_calls(cell.source):
                try:
                    cell.source = instructor_cell(cell.source)
                except (ValueError, SyntaxError) as err:
                    raise ValueError(f"{path}, cell {index}: {err}") from None
        texts.append(nbformat.writes(nb))
    targets = [out_dir / path.name for path in paths]
    for target, text in zip(targets, texts):
        if not os.path.lexists(target):
            continue
        if target.is_symlink():
            raise ValueError(f"{target} is a symlink (to {os.readlink(target)}); writing through it could rewrite "
                             f"a learner's notebook: remove it or choose another --out")
        st = target.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{target} exists and is not a file; move it away or choose another --out")
        if any(_same_file(st, source) for source in sources):
            raise ValueError(f"{target} is a hard link to a notebook of {notebook_dir}; writing it would rewrite "
                             f"the learner's notebook: remove the link or choose another --out")
        if not overwrite and target.read_bytes() != text.encode():
            raise ValueError(f"{target} exists and differs from the instructor version (a learner's edits?); "
                             f"pass --overwrite to replace it, or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    for target, text in zip(targets, texts):
        if os.path.lexists(target) and target.read_bytes() == text.encode():
            continue  # the same notebook: leave the file (and its times) as it is
        atomic_write_text(target, text)
    return targets
