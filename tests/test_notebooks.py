"""The course notebooks: each one runs top to bottom in the smoke tier, and each committed one is clean.

Execution uses nbclient with ``CRL_SMOKE=1`` and one ``CRL_CACHE`` folder shared by the whole session,
so a later notebook (05, 06) reuses what an earlier one (03, 05) trained, as a student's runs would.
Notebooks run with ``notebooks/`` as the working directory, like in JupyterLab.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
COURSE = ("00_overview", "01_pairs_and_augmentations", "02_encoder", "03_projection_head",
          "04_infonce_and_temperature", "05_training", "06_finetuning_and_evaluation", "07_beyond_simclr")
TIMEOUT_SECONDS = 300  # per cell (nbclient): a hung kernel fails the test rather than CI
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _ids(paths):
    return [p.stem for p in paths]


@pytest.fixture(scope="session")
def notebook_cache(tmp_path_factory) -> Path:
    """One run cache for every notebook of the session (CRL_CACHE), like a student's runs/cache."""
    return tmp_path_factory.mktemp("crl_cache")


def _failure_report(nb, path: Path, err: Exception) -> str:
    for index, cell in enumerate(nb.cells):
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            trace = _ANSI.sub("", "\n".join(errors[0].get("traceback", [])))
            return (f"{path.name}: cell {index} failed with {errors[0].get('ename')}: {errors[0].get('evalue')}\n"
                    f"--- cell source ---\n{cell.source}\n--- traceback ---\n{trace[-4000:]}")
    return f"{path.name}: {type(err).__name__}: {_ANSI.sub('', str(err))[-4000:]}"


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_in_smoke_tier(path: Path, notebook_cache: Path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("CRL_SMOKE", "1")
    monkeypatch.setenv("CRL_CACHE", str(notebook_cache))  # the kernel inherits the environment
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=TIMEOUT_SECONDS, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    try:
        client.execute()
    except Exception as err:  # CellExecutionError, CellTimeoutError, DeadKernelError ...
        pytest.fail(_failure_report(nb, path, err), pytrace=False)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_the_package_loads_before_torch(path: Path):
    # crl_helpers sets OMP_WAIT_POLICY when it loads; libgomp reads it only when torch loads.
    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    imports = re.findall(r"^(?:import|from) (\w+)", code, flags=re.M)
    assert "crl_helpers" in imports and "torch" in imports, path.name
    assert imports.index("crl_helpers") < imports.index("torch"), f"{path.name}: import crl_helpers before torch"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_notebook_is_clean(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernelspec must be python3"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert not cell.outputs, f"{path.name}: cell {index} was committed with outputs; clear them before saving"
        assert cell.execution_count is None, f"{path.name}: cell {index} has execution_count {cell.execution_count}"
        assert not re.search(r"pip\s+install", cell.source), (
            f"{path.name}: cell {index} installs packages; dependencies belong in pyproject.toml")


def test_the_course_is_complete():
    assert [p.stem for p in NOTEBOOKS] == list(COURSE), f"expected the course's eight notebooks, found {_ids(NOTEBOOKS)}"


EXERCISE_NOTEBOOKS = [p for p in NOTEBOOKS if p.stem[:2] in {"01", "02", "03", "04", "05", "06"}]


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=_ids(EXERCISE_NOTEBOOKS))
def test_exercises_have_checks_and_hidden_solutions(path: Path):
    nb = nbformat.read(path, as_version=4)
    solutions = [i for i, c in enumerate(nb.cells) if "solution" in c.metadata.get("tags", [])]
    assert len(solutions) >= 2, f"{path.name}: {len(solutions)} solution cells; every notebook 01-06 has >= 2 exercises"
    for i in solutions:
        cell = nb.cells[i]
        assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, f"{path.name}: solution cell {i} not hidden"
        exercise = nb.cells[i - 1]
        assert exercise.cell_type == "code" and "check_" in exercise.source, (
            f"{path.name}: the cell before solution cell {i} should be the exercise calling its check_*()")
        assert "check_" in cell.source, f"{path.name}: solution cell {i} should run its check (assert check_...)"
