#!/usr/bin/env bash
# The wheel as a user gets it from `pip install .`: built, installed NON-editable into a fresh
# virtual environment, then used from a folder outside the source tree. Every module of
# crl_helpers (subpackages included) must import, and notebook 01, whose first cell imports
# crl_helpers.exercises, must run top to bottom in the smoke tier on that environment's kernel.
#
#   bash .ci/check_wheel.sh            # PYTHON=python3.11 to build with another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
NOTEBOOK=01_pairs_and_augmentations.ipynb  # the cheapest notebook that imports crl_helpers.exercises

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

rm -rf build dist  # a stale build/lib would put deleted modules into the wheel
"$PYTHON" -m pip wheel --quiet --no-deps . -w dist/
"$PYTHON" -m venv "$WORK/venv"
VENV_PYTHON=$WORK/venv/bin/python
"$VENV_PYTHON" -m pip install --quiet dist/crl_helpers-*.whl nbclient nbformat ipykernel

mkdir "$WORK/notebooks"
cp "notebooks/$NOTEBOOK" "$WORK/notebooks/"
cd "$WORK"  # neither the checkout nor its notebooks/ is on sys.path from here
# The kernel is the venv's own python3 spec: no user-level kernelspec may stand in for it.
export JUPYTER_DATA_DIR=$WORK/jupyter JUPYTER_CONFIG_DIR=$WORK/jupyter-config
export CRL_SMOKE=1 CRL_CACHE=$WORK/cache MPLBACKEND=Agg
"$VENV_PYTHON" - "$ROOT" "$WORK/notebooks/$NOTEBOOK" <<'EOF'
import importlib
import pkgutil
import sys
from pathlib import Path

import nbclient
import nbformat

import crl_helpers

root, notebook = Path(sys.argv[1]), Path(sys.argv[2])
installed = Path(crl_helpers.__file__).resolve()
assert installed.is_relative_to(Path(sys.prefix).resolve()), f"crl_helpers came from {installed}, not the venv"
assert not installed.is_relative_to(root), f"crl_helpers came from the checkout {installed}"

def fail(name):
    raise ImportError(f"{name} does not import from the wheel")

modules = [m.name for m in pkgutil.walk_packages(crl_helpers.__path__, "crl_helpers.", onerror=fail)]
for name in modules:
    importlib.import_module(name)
assert "crl_helpers.exercises" in modules, f"the wheel lacks crl_helpers.exercises: {modules}"
print(f"wheel: {len(modules)} modules import from {installed.parent}")
from crl_helpers.reference_runs import EXPERIMENTS, load_reference

for name in EXPERIMENTS:  # the shipped result files the notebooks plot are package data
    load_reference(name)
print(f"wheel: the reference runs of {', '.join(EXPERIMENTS)} load")

nb = nbformat.read(notebook, as_version=4)
# A last cell that says where the kernel found the package.
nb.cells.append(nbformat.v4.new_code_cell("import sys, crl_helpers\nprint(sys.prefix, crl_helpers.__file__)"))
nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                        resources={"metadata": {"path": str(notebook.parent)}}).execute()
kernel_prefix, kernel_file = nb.cells[-1].outputs[0]["text"].split()
assert Path(kernel_prefix).resolve() == Path(sys.prefix).resolve(), f"the kernel ran in {kernel_prefix}, not the venv"
assert Path(kernel_file).resolve() == installed, f"the kernel imported {kernel_file}"
print(f"wheel: {notebook.name} runs in the smoke tier on the installed package")
EOF
