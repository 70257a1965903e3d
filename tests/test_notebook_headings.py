"""The notebooks' headings read in order: sections and exercises numbered 1, 2, 3, ... from top to bottom, and
notebook 04 is its core followed by a marked "Going deeper" part."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SECTION = re.compile(r"^## (\d+)\. ", re.M)
EXERCISE = re.compile(r"^#+ *Exercise (\d+)\b", re.M)


def _headings(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.split("\n") if line.startswith("#")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_sections_and_exercises_are_numbered_in_reading_order(path: Path):
    text = "\n".join(_headings(path))
    for name, pattern in (("sections", SECTION), ("exercises", EXERCISE)):
        numbers = [int(n) for n in pattern.findall(text)]
        assert numbers == list(range(1, len(numbers) + 1)), f"{path.name}: {name} numbered {numbers} from top to bottom"


def test_04_reads_as_its_core_then_a_marked_going_deeper_part():
    headings = _headings(NOTEBOOK_DIR / "04_infonce_and_temperature.ipynb")
    deeper = next((i for i, h in enumerate(headings) if h.startswith("## Going deeper")), None)
    assert deeper is not None, "04 has no '## Going deeper' heading marking its optional part"
    core, rest = "\n".join(headings[:deeper]), "\n".join(headings[deeper:])
    for topic in ("InfoNCE", "NT-Xent", "log-sum-exp", "temperature does", "Alignment and uniformity", "Explore",
                  "## Summary"):
        assert topic in core and topic not in rest, f"{topic!r} belongs to 04's core, before 'Going deeper'"
    for topic in ("bound", "scoring function", "precision", "## References"):
        assert topic in rest and topic not in core, f"{topic!r} belongs to 04's going-deeper part"
    first_deeper = int(SECTION.search(rest).group(1))
    assert first_deeper == max(int(n) for n in SECTION.findall(core)) + 1  # the numbering runs on across the mark
