"""``crl grade`` (crl_helpers.grading): verdicts from the checkers, trip-wires, and the grader's run of real kernels.

The hook and the trip-wires run in-process (fast). The kernels (nbclient, marked ``notebooks``) run a tiny
synthetic submission that meets every verdict, and the cheapest course notebook with exercises (01, smoke
tier) as shipped (nothing passes) and as ``crl instructor`` writes it (everything passes).
"""
from __future__ import annotations

import csv
import functools
import hashlib
import json
from pathlib import Path

import pytest
import torch

from crl_helpers import cli, grading
from crl_helpers.exercises import check_logsumexp, check_nt_xent, check_pair_matrix, check_projection_head
from crl_helpers.exercises.solutions import WITHHOLD_ENV, reference, show_solution, solution_names
from crl_helpers.grading import GRADE_LOG_ENV, IMPLEMENTATIONS, Grade, Tripwire
from crl_helpers.losses import normalize_rows, nt_xent
from crl_helpers.models import ProjectionHead

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_01 = REPO / "notebooks" / "01_pairs_and_augmentations.ipynb"
EXERCISES_DIR = REPO / "crl_helpers" / "exercises"


def _my_nt_xent(z1, z2, temperature):  # a correct answer written by hand (cross-entropy over the 2N rows)
    z = normalize_rows(torch.cat([z1, z2]))  # (2N, d): another package function, allowed
    n = len(z1)
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))  # (2N, 2N)
    return torch.nn.functional.cross_entropy(logits, torch.cat([torch.arange(n) + n, torch.arange(n)]))


@pytest.fixture
def grade_log(tmp_path, monkeypatch) -> Path:
    log = tmp_path / "grades.jsonl"
    monkeypatch.setenv(GRADE_LOG_ENV, str(log))
    return log


def _logged(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


# ----------------------------------------------------------------------------------------- hook, in-process
def test_every_exercise_has_its_implementations_named_and_they_exist():
    assert set(IMPLEMENTATIONS) == set(solution_names())  # a new exercise must say what would be refused
    for names in IMPLEMENTATIONS.values():
        for name in names:
            assert callable(grading._resolve(name)), name


def test_outside_grading_the_hook_logs_nothing_and_returns_the_check(tmp_path, monkeypatch):
    monkeypatch.delenv(GRADE_LOG_ENV, raising=False)
    result = check_nt_xent(lambda z1, z2, temperature: nt_xent(z1, z2, temperature))
    assert result.passed  # no trip-wire outside grading: the learner may compare with the package
    assert list(tmp_path.iterdir()) == []


def test_grading_logs_passed_and_not_yet_from_the_check(grade_log):
    check_nt_xent(_my_nt_xent)
    check_pair_matrix(lambda batch_size: None)
    entries = _logged(grade_log)
    assert [(e["exercise"], e["verdict"]) for e in entries] == [("nt_xent", "passed"), ("pair_matrix", "not yet")]
    assert "None" in entries[1]["hint"]  # the checker's own hint


def test_an_answer_stopped_by_the_checks_time_limit_is_logged_as_timeout(grade_log):
    def never_returns(batch_size):
        while True:
            pass

    result = check_pair_matrix(never_returns, time_limit=0.5)
    assert not result.passed and result.timed_out
    (entry,) = _logged(grade_log)
    assert (entry["exercise"], entry["verdict"]) == ("pair_matrix", "timeout")


@pytest.mark.parametrize("answer, called", [
    (lambda z1, z2, temperature: nt_xent(z1, z2, temperature), "crl_helpers.losses.nt_xent"),
    (nt_xent, "crl_helpers.losses.nt_xent"),  # the implementation handed in itself
    (functools.partial(nt_xent), "crl_helpers.losses.nt_xent"),
    (reference("nt_xent"), "crl_helpers.exercises.solutions.infonce.nt_xent"),
    (lambda z1, z2, temperature: reference("nt_xent")(z1, z2, temperature), "solutions.infonce.nt_xent"),
], ids=["calls-package", "is-package", "partial", "is-solution", "calls-solution"])
def test_an_answer_that_uses_the_package_implementation_is_refused(grade_log, answer, called):
    result = check_nt_xent(answer)
    assert result.passed  # the check alone would pass it: the trip-wire is what refuses
    (entry,) = _logged(grade_log)
    assert entry["verdict"] == "refused" and called in entry["hint"]


def test_a_subclass_of_the_package_head_is_refused_and_other_exercises_keep_their_verdict(grade_log):
    class Head(ProjectionHead):
        pass

    check_projection_head(lambda in_dim, hidden_dim, out_dim: Head(in_dim, hidden_dim, out_dim, batch_norm=False))
    check_logsumexp(lambda logits: torch.logsumexp(logits, dim=-1))  # torch's own: allowed
    assert [e["verdict"] for e in _logged(grade_log)] == ["refused", "passed"]


def _function_in(filename: str):
    """``loss(z1, z2, t)`` calling the package's nt_xent, compiled as if it lived in ``filename``."""
    namespace = {"nt_xent": nt_xent}
    exec(compile("def loss(z1, z2, t):\n    return nt_xent(z1, z2, t)\n", filename, "exec"), namespace)
    return namespace["loss"]


def test_the_tripwire_tells_the_learners_call_from_the_checkers_own():
    z = torch.randn(4, 3)
    checker_side = _function_in(str(EXERCISES_DIR / "a_checker.py"))
    learner_side = _function_in("/tmp/ipykernel_1/cell.py")
    with Tripwire("nt_xent") as wire:
        checker_side(z, z, 0.5)
    assert wire.called == []
    with Tripwire("nt_xent") as wire:
        learner_side(z, z, 0.5)
    assert wire.called[0] == "crl_helpers.losses.nt_xent"
    with Tripwire("pair_matrix") as wire:  # another exercise: nt_xent is the package's to use there
        learner_side(z, z, 0.5)
    assert wire.called == []
    generated = _function_in("<string>")  # code without a file (a dataclass's __init__): its caller decides
    namespace = {"generated": generated}
    exec(compile("def run(z):\n    return generated(z, z, 0.5)\n", str(EXERCISES_DIR / "a_checker.py"), "exec"),
         namespace)
    with Tripwire("nt_xent") as wire:
        namespace["run"](z)  # the checker ran it
    assert wire.called == []
    with Tripwire("nt_xent") as wire:
        generated(z, z, 0.5)  # this test, the learner's side, ran it
    assert wire.called[0] == "crl_helpers.losses.nt_xent"


# ----------------------------------------------------------------------------------------- classroom build
def test_the_classroom_build_withholds_the_solution_yet_still_falls_back_to_the_reference(capsys, monkeypatch):
    from crl_helpers.exercises.solutions import solution_source

    monkeypatch.setenv(WITHHOLD_ENV, "1")
    show_solution("nt_xent")
    shown = capsys.readouterr().out
    assert "withheld" in shown and "def " not in shown and "cross_entropy" not in shown
    fallback = check_nt_xent(lambda z1, z2, temperature: None).or_reference()
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("[NOT YET]") and "withheld" in printed[1] and "show_solution" not in printed[1]
    assert fallback is reference("nt_xent")  # the cells after the exercise still run
    with pytest.raises(ValueError, match="withheld"):
        solution_source("nt_xent")
    with pytest.raises(ValueError, match="no solution named"):
        show_solution("ntxent")
    monkeypatch.setenv(WITHHOLD_ENV, "0")  # "0" is off, as for the other CRL_ switches
    show_solution("nt_xent")
    assert "cross_entropy" in capsys.readouterr().out


def test_crl_instructor_refuses_in_the_classroom_build(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv(WITHHOLD_ENV, "1")
    assert cli.main(["instructor", "--notebooks", str(REPO / "notebooks"), "--out", str(tmp_path / "i")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "withheld" in err[0] and WITHHOLD_ENV in err[0]


# ------------------------------------------------------------------------------------ verdicts and tables
def test_cells_that_never_ran_their_check_get_error_or_timeout():
    status = {"cells": [(3, "pair_matrix"), (5, "positive_index"), (8, "nt_xent"), (9, "alignment")],
              "errors": {5: "NameError: name 'x' is not defined"}, "timeout": 8, "died": None}
    entries = [{"exercise": "pair_matrix", "verdict": "not yet", "hint": "first"},
               {"exercise": "pair_matrix", "verdict": "passed", "hint": "second"}]  # run twice: the last stands
    rows = grading._verdicts(entries, status, cell_timeout=7, memory_gb=8)
    assert rows == [("pair_matrix", "passed", "second"),
                    ("positive_index", "error", "not checked: cell 5 raised NameError: name 'x' is not defined"),
                    ("nt_xent", "timeout", "not checked: this exercise's cell ran over the 7 s limit per cell"),
                    ("alignment", "timeout", "not checked: cell 8 ran over the 7 s limit per cell")]
    died = grading._verdicts([], {**status, "timeout": None, "died": 4, "errors": {}}, 7, 8)
    assert [r[1] for r in died] == ["error"] * 4 and "kernel died in cell 4" in died[1][2]


def test_the_csv_and_the_summary_count_each_verdict(tmp_path):
    rows = [Grade("ann/", "01.ipynb", "pair_matrix", "passed", "ok"),
            Grade("ann/", "01.ipynb", "positive_index", "refused", "calls, the package"),
            Grade("bob.ipynb", "bob.ipynb", "pair_matrix", "timeout", "")]
    grading.write_grades(rows, tmp_path / "g.csv")
    with open(tmp_path / "g.csv", newline="") as f:
        read = list(csv.DictReader(f))
    assert [tuple(r.values()) for r in read] == [tuple(vars(r).values()) for r in rows]
    lines = grading.summary_table(rows).splitlines()
    assert lines[1].split() == ["ann/", "1/2", "0", "0", "0", "1"]
    assert lines[2].split() == ["bob.ipynb", "0/1", "0", "0", "1", "0"]


# --------------------------------------------------------------------------------------- the crl command
@pytest.mark.parametrize("argv, expected", [
    (["grade", "no/such/submission"], "'no/such/submission' does not exist"),
    (["grade", "README.md"], "'README.md' is not a notebook (.ipynb)"),
    (["grade", "crl_helpers"], "'crl_helpers' holds no notebooks"),
    (["grade", "notebooks", "--out", "notebooks/grades.csv"], "is inside the submission notebooks"),
    (["grade", str(NOTEBOOK_01), "--tier", "tpu"], "--tier 'tpu' is unknown"),
    (["grade", str(NOTEBOOK_01), "--out", "README.md/grades.csv"], "--out README.md/grades.csv cannot be written"),
    (["grade", str(NOTEBOOK_01), "--memory-gb", "-1"], "--memory-gb -1 must be >= 0"),
    (["grade", str(NOTEBOOK_01), "--cell-timeout", "0"], "--cell-timeout: 0 must be a finite number > 0"),
])
def test_crl_grade_refuses_bad_input_in_one_line(capsys, monkeypatch, argv, expected):
    monkeypatch.chdir(REPO)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crl: error: ") and expected in err[0], err
    assert not (REPO / "grades.csv").exists()  # refused before anything is written


# ------------------------------------------------------------------------------------------- real kernels
def _notebook(cells: list[str]):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    return nb


MEMORY_GB = 7  # the kernel's limit the synthetic notebook asserts (address space, enough for torch)
SYNTHETIC = [
    f"import resource\nassert resource.getrlimit(resource.RLIMIT_AS)[0] == {MEMORY_GB} * 2**30\nimport torch\n"
    "from crl_helpers.exercises import check_alignment, check_logsumexp, check_nt_xent, check_pair_matrix, "
    "check_positive_index\nfrom crl_helpers.exercises.solutions import reference\n"
    "from crl_helpers.losses import nt_xent as package_loss",
    "def pair_matrix(batch_size):\n    i = torch.arange(2 * batch_size)\n"
    "    return (i[:, None] % batch_size == i[None, :] % batch_size) & (i[:, None] != i[None, :])\n\n\n"
    "pair_matrix = check_pair_matrix(pair_matrix).or_reference()",
    "def my_nt_xent(z1, z2, temperature):\n    return package_loss(z1, z2, temperature)\n\n\n"
    "my_nt_xent = check_nt_xent(my_nt_xent).or_reference()",
    "def my_logsumexp(logits):\n    return None  # TODO\n\n\nmy_logsumexp = check_logsumexp(my_logsumexp).or_reference()",
    "undefined_name\n\n\ndef positive_index(batch_size):\n    return None\n\n\n"
    "positive_index = check_positive_index(positive_index).or_reference()",
    "import time\ntime.sleep(120)",
    "def my_alignment(z1, z2):\n    return None\n\n\nmy_alignment = check_alignment(my_alignment).or_reference()",
]


@pytest.mark.notebooks
def test_crl_grade_meets_every_verdict_and_never_writes_into_the_submission(tmp_path, capsys):
    pytest.importorskip("nbclient")
    import nbformat

    submission = tmp_path / "student"
    submission.mkdir()
    nbformat.write(_notebook(SYNTHETIC), submission / "a.ipynb")
    nbformat.write(_notebook(["import os\nos._exit(1)\nf = None\nf = check_pair_matrix(f).or_reference()"]),
                   submission / "b.ipynb")
    (submission / "c.ipynb").write_text("{not json")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in submission.iterdir()}
    out = tmp_path / "grades.csv"
    assert cli.main(["grade", str(submission), "--out", str(out), "--cell-timeout", "10",
                     "--memory-gb", str(MEMORY_GB)]) == 0
    with open(out, newline="") as f:
        rows = [(r["notebook"], r["exercise"], r["verdict"]) for r in csv.DictReader(f)]
    assert rows == [("a.ipynb", "pair_matrix", "passed"), ("a.ipynb", "nt_xent", "refused"),
                    ("a.ipynb", "logsumexp", "not yet"), ("a.ipynb", "positive_index", "error"),
                    ("a.ipynb", "alignment", "timeout"), ("b.ipynb", "pair_matrix", "error"),
                    ("c.ipynb", "", "error")]
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in submission.iterdir()}
    assert after == before  # nothing changed, nothing added
    summary = capsys.readouterr().out
    assert str(submission) in summary and "1/7" in summary


@pytest.mark.notebooks
def test_notebook_01_as_shipped_scores_nothing_and_as_the_instructor_writes_it_everything(tmp_path, monkeypatch):
    """Graded in the classroom build (solutions withheld), in which the notebooks still run to the end."""
    pytest.importorskip("nbclient")
    from crl_helpers.exercises.instructor import write_instructor_version  # noqa: I001

    instructor = tmp_path / "instructor"
    write_instructor_version(REPO / "notebooks", instructor)
    monkeypatch.setenv(WITHHOLD_ENV, "1")  # the kernels inherit it
    import nbformat

    from crl_helpers.exercises.instructor import exercise_calls

    calls = sum(len(exercise_calls(c.source)) for c in nbformat.read(NOTEBOOK_01, as_version=4).cells)
    problems = []
    rows = grading.grade([NOTEBOOK_01, instructor / NOTEBOOK_01.name], tier="smoke",
                         on_notebook=lambda submission, notebook, found: problems.append(found))
    assert problems == [[], []]  # every cell of both versions ran without an error
    shipped = [r.verdict for r in rows if r.submission == str(NOTEBOOK_01)]
    solved = [r.verdict for r in rows if r.submission != str(NOTEBOOK_01)]
    assert calls >= 4 and shipped == ["not yet"] * calls and solved == ["passed"] * calls
