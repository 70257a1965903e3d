"""Reference solutions, the fallback of an unsolved exercise, and the instructor version of the notebooks."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from crl_helpers import exercises
from crl_helpers.cli import main
from crl_helpers.exercises.instructor import exercise_calls, instructor_cell
from crl_helpers.exercises.solutions import reference, show_solution, solution_names

CHECKERS = sorted(name for name in exercises.__all__ if name.startswith("check_"))


@pytest.mark.parametrize("name", CHECKERS)
def test_every_checker_has_a_solution_that_passes_it(name, capsys):
    checker = getattr(exercises, name)
    assert checker.solution in solution_names(), f"{name}: no solution named {checker.solution!r}"
    assert checker(reference(checker.solution)), f"{name}: its own reference solution fails"


def stub(*args, **kwargs):  # what an exercise cell defines before the learner writes anything
    return None


def raises(*args, **kwargs):
    raise NotImplementedError("write me")


@pytest.mark.parametrize("name", CHECKERS)
@pytest.mark.parametrize("answer", [stub, raises])
def test_unfinished_answers_fail_gracefully(name, answer, capsys):
    result = getattr(exercises, name)(answer)
    assert not result
    assert "[NOT YET]" in capsys.readouterr().out


def test_every_solution_belongs_to_a_checker():
    used = {getattr(exercises, name).solution for name in CHECKERS}
    assert set(solution_names()) <= used, f"solutions without a checker: {set(solution_names()) - used}"


def test_or_reference_keeps_a_passing_function_and_replaces_a_failing_one(capsys):
    def mine(logits):
        return logits.logsumexp(dim=-1)

    assert exercises.check_logsumexp(mine).or_reference() is mine
    capsys.readouterr()
    fallback = exercises.check_logsumexp(lambda logits: None).or_reference()
    printed = capsys.readouterr().out.splitlines()
    assert fallback is reference("logsumexp")
    assert printed[0].startswith("[NOT YET]") and 'show_solution("logsumexp")' in printed[1] and len(printed) == 2


def test_show_solution_prints_the_source_and_names_the_choices(capsys):
    show_solution("nt_xent")
    assert capsys.readouterr().out == inspect.getsource(reference("nt_xent")) + "\n"
    with pytest.raises(ValueError, match="no solution named 'ntxent'.*nt_xent"):
        show_solution("ntxent")


def test_instructor_cell_replaces_only_the_exercise_definition():
    cell = ("helper = 3\n\n\nclass MyHead:\n    pass  # TODO\n\n\n"
            "MyHead = check_projection_head(MyHead).or_reference()\nprint(helper)\n")
    solved = instructor_cell(cell)
    assert solved.startswith("helper = 3\n") and solved.endswith("or_reference()\nprint(helper)\n")
    assert "class MyHead(nn.Module):" in solved and "TODO" not in solved
    assert exercise_calls(cell) == [("check_projection_head", "MyHead")]
    with pytest.raises(ValueError, match="does not define my_fn"):
        instructor_cell("my_fn = check_nt_xent(my_fn).or_reference()\n")


def test_crl_instructor_writes_every_notebook(tmp_path, capsys):
    nbformat = pytest.importorskip("nbformat")
    notebooks = sorted(p.name for p in (Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
    assert main(["instructor", "--out", str(tmp_path / "inst")]) == 0
    assert sorted(p.name for p in (tmp_path / "inst").glob("*.ipynb")) == notebooks
    solved = nbformat.read(tmp_path / "inst" / "04_infonce_and_temperature.ipynb", as_version=4)
    assert any("self_mask" in c.source for c in solved.cells)  # the NT-Xent solution, inline
    assert main(["instructor", "--notebooks", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no notebooks in" in capsys.readouterr().err
