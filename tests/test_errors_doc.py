"""docs/errors.md is what docs/make_errors.py writes today: no message in it is stale.

The generator runs in a subprocess: it patches torch and the package in-process (a GPU that runs
out of memory, a 2-process world, Ctrl-C) and sends itself a SIGINT, none of which should touch
this test session.
"""
from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "errors.md"


def test_errors_doc_is_up_to_date(tmp_path):
    fresh = tmp_path / "errors.md"
    proc = subprocess.run([sys.executable, str(REPO / "docs" / "make_errors.py"), str(fresh)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"docs/make_errors.py failed:\n{proc.stderr[-3000:]}"
    committed, generated = DOC.read_text(), fresh.read_text()
    diff = "".join(difflib.unified_diff(committed.splitlines(keepends=True), generated.splitlines(keepends=True),
                                        "docs/errors.md (committed)", "docs/errors.md (what the code says now)"))
    assert committed == generated, (
        "docs/errors.md is stale: run `python docs/make_errors.py` and commit the result.\n" + diff[:4000])
