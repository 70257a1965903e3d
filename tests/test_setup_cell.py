"""The notebooks' setup cell: a no-op where the package is installed; in a fresh runtime it installs it, never torch."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

from crl_helpers.course import SETUP_CELL_TAG, setup_cell_source, stamp_setup_cells

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_starts_with_the_setup_cell(path):
    nb = nbformat.read(path, as_version=4)
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert SETUP_CELL_TAG in first_code.metadata.get("tags", []), f"{path.name}: the first code cell is not the setup cell"
    assert first_code.source == setup_cell_source(), (
        f"{path.name}: its setup cell differs from crl_helpers.course.setup_cell_source(); "
        "run python -c 'from crl_helpers.course import stamp_setup_cells; stamp_setup_cells()'")


def test_stamping_replaces_the_tagged_cell_and_is_idempotent(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# t"), nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(nb, tmp_path / "a.ipynb")
    assert stamp_setup_cells(tmp_path, source="pkg-a") == ["a.ipynb"]
    assert stamp_setup_cells(tmp_path, source="pkg-a") == []
    assert stamp_setup_cells(tmp_path, source="pkg-b") == ["a.ipynb"]
    cells = nbformat.read(tmp_path / "a.ipynb", as_version=4).cells
    assert [c.cell_type for c in cells] == ["markdown", "code", "code"]
    assert '"pkg-b"' in cells[1].source and "pkg-a" not in cells[1].source and cells[2].source == "x = 1"


def test_the_cell_does_nothing_where_the_package_is_installed(tmp_path):
    done = subprocess.run([sys.executable, "-c", setup_cell_source() + "\nprint('ok')"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok" and not done.stderr, done.stderr


def _runtime(tmp_path: Path) -> Path:
    """A fresh 'hosted runtime': a new venv that sees this venv's packages (torch included) but not crl_helpers.

    Its ``.pth`` adds this venv's site-packages to ``sys.path``; the editable install's own ``.pth`` there
    is not processed (only site directories' ``.pth`` files are), so ``crl_helpers`` is missing, as in Colab.
    """
    runtime = tmp_path / "runtime"
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(runtime)], check=True, timeout=120)
    python = runtime / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    Path(own, "host_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _clone(tmp_path: Path) -> Path:
    clone = tmp_path / "course"
    shutil.copytree(REPO / "crl_helpers", clone / "crl_helpers", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, clone / name)
    (clone / "notebooks").mkdir()
    return clone


def _run(python: Path, code: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), **env}
    return subprocess.run([str(python), "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=environment)


@pytest.mark.skipif(sys.platform == "win32", reason="the venv layout of the fake runtime is POSIX")
def test_a_fresh_runtime_gets_the_package_and_keeps_its_torch(tmp_path):
    python = _runtime(tmp_path)
    clone = _clone(tmp_path)
    where = "import importlib.util as u; print(u.find_spec('crl_helpers'))"
    assert _run(python, where, tmp_path).stdout.strip() == "None", "the fake runtime already sees crl_helpers"
    torch_before = _run(python, "import torch; print(torch.__file__, torch.__version__)", tmp_path).stdout

    done = _run(python, setup_cell_source(), clone / "notebooks", PIP_NO_INDEX="1",
                PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_BUILD_ISOLATION="0")
    assert done.returncode == 0, done.stderr[-2000:]

    after = _run(python, "import crl_helpers, torch; print(crl_helpers.__file__); print(torch.__file__, torch.__version__)",
                 tmp_path)
    assert after.returncode == 0, after.stderr[-2000:]
    package, torch_after = after.stdout.splitlines()
    assert str(tmp_path / "runtime") in package, f"crl_helpers was not installed into the runtime: {package}"
    assert torch_after == torch_before.strip(), "the setup cell changed the runtime's torch"
    installed = {p.name.split("-")[0].lower() for p in Path(package).parents[1].glob("*.dist-info")}
    assert "crl_helpers" in installed and not installed & {"torch", "torchvision"}, installed
    rerun = _run(python, setup_cell_source() + "\nprint('ok')", clone / "notebooks")
    assert rerun.stdout.strip() == "ok", rerun.stderr  # installed now: the cell does nothing


def test_without_a_clone_or_a_source_the_cell_says_what_to_do(tmp_path):
    python = _runtime(tmp_path)
    (tmp_path / "alone" / "notebooks").mkdir(parents=True)
    done = _run(python, setup_cell_source(""), tmp_path / "alone" / "notebooks")
    assert done.returncode != 0 and "not inside a clone of the course" in done.stderr, done.stderr[-1000:]
