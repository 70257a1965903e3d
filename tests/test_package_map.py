"""The package map (crl_helpers.__doc__) and README's layout table name every module of crl_helpers, and only those."""
from __future__ import annotations

import pkgutil
import re
from pathlib import Path

import crl_helpers

README = Path(__file__).resolve().parents[1] / "README.md"


def _modules() -> set[str]:
    return {m.name for m in pkgutil.iter_modules(crl_helpers.__path__)}


def test_the_package_map_names_every_module_once_by_layer():
    names = re.findall(r"^    ``(\w+)``", crl_helpers.__doc__, flags=re.MULTILINE)
    assert sorted(names) == sorted(_modules())  # each module once, none that does not exist
    layers = re.findall(r"^(\w+)$", crl_helpers.__doc__, flags=re.MULTILINE)
    assert layers == ["base", "data", "views", "model", "objective", "loop", "evaluation", "course"]


def test_the_readme_layout_table_is_the_package_map():
    text = README.read_text(encoding="utf-8")
    table = text[text.index("## Layout"):text.index("## Tests")]
    rows = re.findall(r"^\|[^|]*\| `(\w+)(?:\.py|/)` \| ([^|]+) \|$", table, flags=re.MULTILINE)
    in_package = {name: what.strip() for name, what in rows if name != "crl_site"}
    mapped = dict(re.findall(r"^    ``(\w+)``\s+(.+)$", crl_helpers.__doc__, flags=re.MULTILINE))
    assert list(in_package) == list(mapped)  # same modules, same order
    for name, what in in_package.items():  # same words (the README spells code in backticks)
        assert what.replace("`", "") == mapped[name].replace("``", ""), name
