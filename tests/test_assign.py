"""``crl assign --format nbgrader`` (crl_helpers.assign): nbgrader's metadata, solution regions, autograded cells.

Without nbgrader: every cell's metadata validates against nbgrader's cell metadata schema (version 3, copied
below from nbgrader 0.9.6, nbgraderformat/v3.json, BSD-3-Clause) and the rules its validator adds; every
answer in the source version passes its checker, and with the regions cleared as nbgrader clears them, none
does. With nbgrader installed (``pip install -e ".[classroom]"``; marked ``notebooks``): nbgrader itself
generates the student version of notebook 01 and autogrades an unsolved and a solved copy.
"""
from __future__ import annotations

import ast
import contextlib
import csv
import io
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crl_helpers import assign, cli, exercises
from crl_helpers.exercises.instructor import exercise_calls

nbformat = pytest.importorskip("nbformat")
jsonschema = pytest.importorskip("jsonschema")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"

NBGRADER_V3_SCHEMA = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "type": "object",
    "properties": {
        "schema_version": {"type": "integer", "minimum": 3, "maximum": 3},
        "grade": {"type": "boolean"},
        "locked": {"type": "boolean"},
        "solution": {"type": "boolean"},
        "task": {"type": "boolean"},
        "grade_id": {"type": "string", "pattern": "^[a-zA-Z0-9_\\-]*$"},
        "points": {"type": "number", "minimum": 0},
        "checksum": {"type": "string", "minLength": 32, "maxLength": 32},
        "cell_type": {"type": "string", "enum": ["raw", "code", "markdown"]},
    },
    "required": ["schema_version", "grade", "locked", "solution"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nbgrader")
    assign.write_nbgrader(NOTEBOOKS, out, points=2)
    return out


def _source_notebooks(course: Path) -> list[Path]:
    return sorted((course / "source").glob("*/*.ipynb"))


def _clear_solutions(source: str) -> str:
    """nbgrader's ClearSolutions, as its documentation states it: each region becomes the code stub."""
    return re.sub(r"^( *)### BEGIN SOLUTION\n.*?^\1### END SOLUTION\n",
                  r"\1# YOUR CODE HERE\n\1raise NotImplementedError()\n", source, flags=re.S | re.M)


def test_every_notebook_with_exercises_becomes_an_assignment_with_valid_nbgrader_metadata(course):
    expected = [p for p in sorted(NOTEBOOKS.glob("*.ipynb"))
                if any(exercise_calls(c.source) for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code")]
    assert [p.name for p in _source_notebooks(course)] == [p.name for p in expected] and len(expected) == 7
    for path in _source_notebooks(course):
        assert path.parent.name == path.stem  # nbgrader's source/<assignment>/<notebook>
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        graded = [c for c in nb.cells if "nbgrader" in c.metadata]
        ids = [c.metadata.nbgrader["grade_id"] for c in graded]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate grade ids"
        for cell in graded:
            meta = cell.metadata.nbgrader
            jsonschema.validate(meta, NBGRADER_V3_SCHEMA)
            assert meta["grade_id"] and (not meta["grade"] or "points" in meta)  # nbgrader's validator rules
            assert cell.cell_type == "code" and not meta["task"]
        original = nbformat.read(NOTEBOOKS / path.name, as_version=4)
        calls = [call for c in original.cells if c.cell_type == "code" for call in exercise_calls(c.source)]
        answers = [c for c in graded if c.metadata.nbgrader["solution"]]
        tests = [c for c in graded if c.metadata.nbgrader["grade"]]
        assert len(answers) == len(tests) == len(calls)
        assert all(not c.metadata.nbgrader["locked"] and not c.metadata.nbgrader["grade"] for c in answers)
        assert all(c.metadata.nbgrader["locked"] and c.metadata.nbgrader["points"] == 2 for c in tests)
        for (checker, name), test in zip(calls, tests):
            assert test.source.rstrip().endswith(f"assert_solved({checker}, {name})")
        assert len(nb.cells) == len(original.cells) + len(tests)  # every other cell is kept, in order


def _answers(path: Path):
    """``(checker, learner's name, the answer cell's source)`` of each exercise in a source notebook."""
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            ((checker, name),) = exercise_calls(cell.source)
            yield checker, name, cell.source


def _definition(source: str, name: str, filename: str):
    """Only the learner's ``def``/``class`` of a cell, executed with the imports every notebook has."""
    tree = ast.parse(source)
    module = ast.Module([node for node in tree.body if getattr(node, "name", None) == name], [])
    namespace = {"torch": torch, "nn": nn, "F": F, "math": math, "np": np}
    from crl_helpers.losses import nt_xent  # 05 imports it for the SimCLR step

    namespace["nt_xent"] = nt_xent
    exec(compile(module, filename, "exec"), namespace)
    return namespace[name]


@pytest.mark.parametrize("notebook", sorted(p.name for p in NOTEBOOKS.glob("0[1-7]_*.ipynb")))
def test_the_source_answers_pass_and_the_cleared_ones_do_not(course, notebook):
    (path,) = (course / "source").glob(f"*/{notebook}")
    for checker_name, name, source in _answers(path):
        checker = getattr(exercises, checker_name)
        assert source.count(assign.BEGIN_SOLUTION) == source.count(assign.END_SOLUTION) >= 1
        student = _clear_solutions(source)
        assert assign.BEGIN_SOLUTION not in student and "raise NotImplementedError()" in student
        assert "# TODO" in student or "TODO" not in source  # the learner keeps the stub's notes
        with contextlib.redirect_stdout(io.StringIO()):
            solved = checker(_definition(source, name, f"/tmp/ipykernel_0/{name}.py"))
            cleared = checker(_definition(student, name, f"/tmp/ipykernel_0/{name}.py"))
        assert solved.passed, f"{notebook}: the source version of {name}: {solved.message}"
        assert not cleared.passed and "NotImplementedError" in cleared.message


def test_crl_assign_refuses_bad_input_in_one_line(capsys, tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    for argv, expected in [
        (["assign", "--format", "otter", "--out", str(tmp_path / "a")], "--format 'otter' is unknown"),
        (["assign", "--notebooks", str(tmp_path / "empty"), "--out", str(tmp_path / "b")], "no notebooks in"),
        (["assign", "--notebooks", str(NOTEBOOKS), "--out", str(NOTEBOOKS / "x")], "is inside the notebook folder"),
        (["assign", "--points", "0", "--out", str(tmp_path / "c")], "--points: 0 must be a finite number > 0"),
    ]:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
    monkeypatch.setenv("CRL_WITHHOLD_SOLUTIONS", "1")
    assert cli.main(["assign", "--notebooks", str(NOTEBOOKS), "--out", str(tmp_path / "d")]) == 2
    assert "withheld" in capsys.readouterr().err and not (tmp_path / "d").exists()


@pytest.mark.notebooks
def test_nbgrader_generates_the_student_version_and_autogrades_a_solved_and_an_unsolved_copy(tmp_path):
    pytest.importorskip("nbgrader")
    course = tmp_path / "course"
    assert cli.main(["assign", "--notebooks", str(NOTEBOOKS), "--out", str(course)]) == 0
    name = "01_pairs_and_augmentations"
    env = {**os.environ, "CRL_SMOKE": "1", "CRL_CACHE": str(tmp_path / "cache"),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}

    def nbgrader(*args):
        proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    nbgrader("generate_assignment", name, "--force")
    student = course / "release" / name / f"{name}.ipynb"
    cells = nbformat.read(student, as_version=4).cells
    assert not any(assign.BEGIN_SOLUTION in c.source for c in cells)
    for who, version in (("unsolved", student), ("solved", course / "source" / name / f"{name}.ipynb")):
        (course / "submitted" / who / name).mkdir(parents=True)
        shutil.copyfile(version, course / "submitted" / who / name / f"{name}.ipynb")
    nbgrader("autograde", name, "--force")
    nbgrader("export", "--to", str(tmp_path / "grades.csv"))
    with open(tmp_path / "grades.csv", newline="") as f:
        scores = {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in csv.DictReader(f)}
    n = sum(len(exercise_calls(c.source)) for c in nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4).cells)
    assert n >= 4 and scores == {"unsolved": (0.0, n), "solved": (n, n)}  # 1 point per exercise
