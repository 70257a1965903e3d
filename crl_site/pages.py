r"""What the site's pages say beyond the notebooks: the home page (how to start), the line atop each notebook
page (download it, open it in a hosted runtime), short navigation titles, alt text for the figures, and
printed output without the build machine's paths.

Every link to the repository follows one value, the course's public address: ``crl_helpers.course.COURSE_SOURCE``
(a pip requirement such as ``"crl-helpers @ git+https://github.com/<owner>/<repo>"``; ``CRL_COURSE_SOURCE`` in
the environment overrides it, as for the notebooks' setup cell). While it is empty the pages say "clone the
repository" without an address and offer no "Open in Colab" link: never a made-up URL.

Example:
    >>> repository_url("crl-helpers @ git+https://github.com/ann/crl.git@v1")
    'https://github.com/ann/crl'
    >>> colab_url("https://github.com/ann/crl", "01_pairs.ipynb")
    'https://colab.research.google.com/github/ann/crl/blob/main/notebooks/01_pairs.ipynb'
    >>> repository_url("") is None and colab_url(None, "01_pairs.ipynb") is None
    True
    >>> nav_title("# 03 · Transform heads: the projection head $z = h(v)$")
    '03 · Transform heads'
    >>> nav_title("# 02 · The encoder $v = e(x)$")
    '02 · The encoder v = e(x)'
    >>> plain_text("*Run* `train_or_load` at $\\tau = 0.1$")
    'Run train_or_load at τ = 0.1'
"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

#: TeX commands that read as one character in a plain-text title or an image's alt text.
_TEX_SYMBOLS = {r"\tau": "τ", r"\theta": "θ", r"\alpha": "α", r"\beta": "β", r"\lambda": "λ", r"\mu": "μ",
                r"\sigma": "σ", r"\leftarrow": "←", r"\to": "→", r"\cdot": "·", r"\le": "≤", r"\ge": "≥"}
_GITHUB = re.compile(r"^https://github\.com/([^/]+)/([^/@#?]+?)(?:\.git)?/?$")


def course_source() -> str:
    """The one configured address of the course: ``$CRL_COURSE_SOURCE``, else ``crl_helpers.course.COURSE_SOURCE``."""
    from crl_helpers.course import COURSE_SOURCE

    return os.environ.get("CRL_COURSE_SOURCE") or COURSE_SOURCE


def repository_url(source: str | None) -> str | None:
    """The public web address of the repository that a pip source names (``name @ git+URL[@ref]``, ``git+URL``
    or a plain ``https://`` URL), or ``None`` when it names none (empty, a local path, a package name)."""
    text = (source or "").split(" @ ", 1)[-1].strip()
    text = text[4:] if text.startswith("git+") else text
    if not text.startswith("https://"):
        return None
    head, _, ref = text[len("https://"):].partition("@")  # git+https://host/o/r@ref
    return "https://" + re.sub(r"\.git$", "", head.rstrip("/"))


def colab_url(repository: str | None, notebook: str) -> str | None:
    """Colab's "open from GitHub" address of ``notebooks/<notebook>`` on the default branch, or ``None`` when the
    repository is not on GitHub (Colab opens only GitHub addresses)."""
    found = _GITHUB.match(repository or "")
    if not found:
        return None
    return f"https://colab.research.google.com/github/{found[1]}/{found[2]}/blob/main/notebooks/{notebook}"


def plain_text(tex: str) -> str:
    """Markdown with inline TeX (``$...$``) as plain text: ``$\\tau$`` reads τ; markup and backslashes go."""
    def math(found: re.Match) -> str:
        text = found[1]
        for command, symbol in _TEX_SYMBOLS.items():
            text = re.sub(re.escape(command) + r"(?![A-Za-z])", symbol, text)
        text = re.sub(r"\\(?:text|mathrm|mathbf|operatorname)\{([^}]*)\}", r"\1", text)
        return re.sub(r"\\[A-Za-z]+|[\\{}]", "", text).replace("  ", " ")

    text = re.sub(r"\$\$?(.+?)\$\$?", math, tex, flags=re.S)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [link](target) -> link
    text = re.sub(r"(?<!\w)_+|_+(?!\w)", "", re.sub(r"[*`#>]", "", text))  # emphasis, not snake_case names
    return " ".join(text.split())


def nav_title(heading: str) -> str:
    """A notebook's title for the navigation: its ``# `` heading up to the first colon, math as plain text
    (MathJax does not reach the navigation bar, where ``$v = e(x)$`` would lose its spaces)."""
    return plain_text(heading.lstrip("#").split(":", 1)[0])


def notebook_title(nb) -> str:
    """The first ``# `` heading of a notebook (markdown, as written), or ``""``."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def _caption(source: str) -> str:
    """The first sentence of a markdown cell, as plain text (what a figure below it shows)."""
    text = plain_text("\n".join(line for line in source.splitlines() if not line.startswith("#")))
    sentence = re.split(r"(?<=[.!?:])\s", text, maxsplit=1)[0]
    return sentence if len(sentence) <= 160 else sentence[:157].rsplit(" ", 1)[0] + " ..."


def add_alt_text(nb) -> int:
    """Give each code cell's figures an alt text (myst-nb's cell option ``mystnb.image.alt``): the notebook's
    title, the figure's number and the first sentence of the markdown above it (the text that introduces the
    figure), instead of the image file's path. Returns the number of cells given one."""
    title, caption, figure, cells = nav_title(notebook_title(nb)), "", 0, 0
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.strip():
            caption = _caption(cell.source) or caption
        if cell.cell_type != "code":
            continue
        images = sum(any(kind.startswith("image/") for kind in output.get("data", {})) for output in cell.outputs)
        if images:
            figure += 1
            alt = f"Figure {figure} of {title}" + (f", below the text: {caption}" if caption else "")
            cell.metadata.setdefault("mystnb", {}).setdefault("image", {})["alt"] = alt
            cells += 1
    return cells


def scrub_paths(nb, replacements: dict[str, str]) -> int:
    """Replace the build machine's paths in printed output (streams and plain text) by what a learner's own
    run prints (``{"/abs/build/site-cpu/cache": "runs/cache"}``); returns how many outputs changed."""
    changed = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for holder, key in [(output, "text"), (output.get("data", {}), "text/plain")]:
                text = holder.get(key)
                if isinstance(text, list):
                    text = "".join(text)
                if not isinstance(text, str):
                    continue
                new = text
                for path, shown in replacements.items():
                    new = new.replace(path, shown)
                if new != text:
                    holder[key] = new
                    changed += 1
    return changed


def _link(href: str, text: str, download: bool = False) -> str:
    return f'<a href="{html.escape(href)}"{" download" if download else ""}>{html.escape(text)}</a>'


def notebook_links(name: str, repository: str | None) -> str:
    """The line atop a notebook's page: download the notebook (without outputs) and, when the repository is
    on GitHub, open it in Colab. Raw HTML: a Markdown link to an ``.ipynb`` would become a link to its page."""
    parts = [f"Run it yourself: {_link(name, f'download {name}', download=True)} (open it from a clone's "
             "<code>notebooks/</code> folder)"]
    colab = colab_url(repository, name)
    if colab:
        parts.append(_link(colab, "open in Colab"))
    return f'<p class="crl-run-it">{" · ".join(parts)}</p>'


def add_notebook_links(nb, name: str, repository: str | None) -> None:
    """Put :func:`notebook_links` right under the notebook's ``# `` heading."""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and any(line.startswith("# ") for line in cell.source.splitlines()):
            lines = cell.source.splitlines()
            at = next(i for i, line in enumerate(lines) if line.startswith("# ")) + 1
            cell.source = "\n".join([*lines[:at], "", notebook_links(name, repository), "", *lines[at:]])
            return


def _clone_steps(repository: str | None) -> str:
    folder = repository.rstrip("/").rsplit("/", 1)[-1] if repository else "<the course folder>"
    clone = f"git clone {repository}" if repository else "# clone the repository (ask your teacher for its address)"
    return "\n".join(["```bash", clone, f"cd {folder}", 'pip install -e .        # Python >= 3.10; a venv is a good idea',
                      "jupyter lab notebooks/", "```"])


def home_page(intro: str, notebooks: list[tuple[str, str, str]], tier: str, repository: str | None,
              lecture: bool, extras: list[str]) -> str:
    """The site's home page (MyST): the course in one paragraph, three ways to start, the notebooks with a
    link to each page and each download, and the hidden tables of contents that make the navigation.

    Args:
        intro: the README's opening paragraph.
        notebooks: ``(stem, heading, minutes)`` in course order: the page ``notebooks/<stem>``, its ``# `` heading,
            the measured CPU-tier time (or ``""``).
        tier: the tier the pages were executed in.
        repository: :func:`repository_url` of the configured source, or ``None``.
        lecture: whether the lecture page is built with the site (``lecture/index.html``).
        extras: the other pages' document names (``readme``, ``docs/teaching`` ...), in navigation order.
    """
    first = notebooks[0][0] if notebooks else ""
    where = f"[the repository]({repository})" if repository else "the repository"
    hosted = ("each notebook's **open in Colab** link below starts it there; its first cell installs the course "
              "package" if colab_url(repository, "x.ipynb") else
              "clone the repository inside the runtime (`!git clone` and its address) and open the notebooks from "
              "its `notebooks/` folder: their first cell installs the course package from the clone")
    lines = [
        "# Contrastive representation learning, hands on", "", intro.strip(), "",
        "## How to start", "",
        "Three ways in, from no installation to the whole course on your machine:", "",
        f"1. **Read it here.** Every notebook is on this site, run from top to bottom (in the {tier} tier), with "
        f"its figures and printed numbers; the explorers work in the page without Python. Start with "
        f"{{doc}}`the overview <notebooks/{first}>`. The exercises need Python: for them, choose 2 or 3.",
        f"2. **Run it on your machine.** Clone {where}, install the package and open the notebooks in Jupyter:", "",
        "   " + _clone_steps(repository).replace("\n", "\n   "), "",
        f"3. **Run it in a hosted runtime** (Colab and the like): {hosted}. Downloading a notebook alone is not "
        "enough: it needs the course package.", "",
    ]
    if lecture:
        lines += ["For a lecture: " + _link("lecture/index.html", "the explorers on one page, without code") +
                  " (built with this site; it opens offline too).", ""]
    lines += ["## The notebooks", "",
              "| notebook | CPU tier | download | hosted |", "|---|---|---|---|"]
    for stem, heading, minutes in notebooks:
        colab = colab_url(repository, f"{stem}.ipynb")
        lines.append(f"| {{doc}}`{nav_title(heading)} <notebooks/{stem}>` | {minutes or ''} | "
                     f"{_link(f'notebooks/{stem}.ipynb', f'{stem}.ipynb', download=True)} | "
                     f"{_link(colab, 'open in Colab') if colab else 'clone first'} |")
    lines += ["", "CPU tier: the minutes a first pass takes on 2 cores, measured as the README says "
              "({doc}`readme`). More: {doc}`docs/teaching` (for teachers), {doc}`benchmarks/RESULTS`, "
              "{doc}`docs/errors`.", ""]

    def toctree(caption: str, entries: list[str]) -> list[str]:
        return ["```{toctree}", ":hidden:", f":caption: {caption}", "", *entries, "```", ""]

    lines += toctree("The course", [f"{nav_title(heading)} <notebooks/{stem}>" for stem, heading, _ in notebooks])
    lines += toctree("Reference", extras)
    return "\n".join(lines)


def readme_intro(readme: str) -> str:
    """The README's first paragraph under its title."""
    paragraphs = [p.strip() for p in readme.split("\n\n") if p.strip() and not p.lstrip().startswith("#")]
    return paragraphs[0] if paragraphs else ""


def measured_minutes(readme: str) -> dict[str, str]:
    """``{"00": "0.2 min", ...}``: the CPU-tier column of the README's table of notebooks (its measured times)."""
    found = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"\d\d .+", cells[0]) and cells[4].endswith("min"):
            found[cells[0][:2]] = cells[4]
    return found


def escape_angle_brackets(markdown: str) -> str:
    """``<tmp>`` and the like outside code spans as text (``\\<tmp>``), not as HTML tags the page would swallow:
    ``docs/errors.md`` quotes messages exactly."""
    parts = re.split(r"(`+[^`]*`+)", markdown)
    return "".join(part if part.startswith("`") else re.sub(r"<(?=[A-Za-z/!])", r"\\<", part) for part in parts)
