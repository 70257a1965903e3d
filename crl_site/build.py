"""Building the course's static HTML site: the learner's notebooks, executed in one tier, rendered by Sphinx + myst-nb.

``crl site --tier smoke|cpu|gpu --out site/`` (or :func:`build_site`) does it in two steps, in the build folder
``build/site-<tier>`` of the repository, which one build holds at a time (a second build started meanwhile
is refused with one line, :class:`SiteBusy`):

1. :func:`execute_notebooks` runs a copy of every notebook with nbclient, as the learner has it (exercise
   stubs, so each checker prints NOT YET and the cells below use the reference), in ``notebooks/`` as the
   working directory, with ``CRL_CACHE`` inside the build folder: trained runs and executed copies are
   kept there and reused by the next build (a copy is re-executed when its notebook, the package or the
   tier changed). Nothing is written into ``notebooks/``.
2. :func:`render_site` builds HTML from the executed copies with execution off: a short home page says how
   to start (:mod:`crl_site.pages`), the notebooks follow in course order (navigation and previous/next links),
   each with a download of the notebook; the README, the teaching page and the reference pages come after;
   the math is typeset by MathJax 3 (its single-file TeX-to-SVG build, fetched once from npm into the build folder), and no page
   loads anything from another host. Widgets are rendered from the state the executed notebooks saved by
   ``@jupyter-widgets/html-manager`` (with require.js and anywidget's AMD build, fetched from npm with
   MathJax and served from ``_static/widgets/``): the browser explorers of :mod:`crl_helpers.widgets`
   (temperature, UMAP, run comparison) compute in JavaScript and stay interactive without a kernel. The
   notebooks' kernels run with ``CRL_STATIC_WIDGETS=1`` (:data:`crl_helpers.widgets.STATIC_WIDGETS_ENV`), so
   the augmentation explorer, whose views only Python can draw, is its static version: views, meters and
   captions precomputed for a grid of slider values, which its sliders step through on the page (the same
   notebook in JupyterLab, without the variable, gets the live explorer with every control).

``crl lecture --tier cpu --out lecture/`` (:func:`build_lecture`) renders, from the same executed copies, one
page holding only the browser explorers, without code (:func:`lecture_notebook`), for showing in a lecture;
:func:`build_site` writes it into ``<out>/lecture/`` too.

Sphinx writes into the build folder and the finished pages are copied to ``--out``: nothing else is written
beside ``--out`` (myst-nb keeps its image files in ``jupyter_execute/`` beside Sphinx's output folder).

The Sphinx configuration is ``docs/site/conf.py`` in the repository and the pages are the repository's
notebooks and README, so this runs from a clone (``pip install -e ".[site]"``); :func:`require_clone` says so
at once elsewhere.

Example:
    >>> notebook_fingerprint(b"{}", "smoke") == notebook_fingerprint(b"{}", "smoke")
    True
    >>> notebook_fingerprint(b"{}", "smoke") == notebook_fingerprint(b"{}", "cpu")
    False
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from crl_site import pages

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
CONF_DIR = REPO_ROOT / "docs" / "site"
#: Pages besides the notebooks and the README (which becomes ``readme``, at the root beside the pages it links
#: to), in navigation order: the teaching page and the files the README links to.
EXTRA_PAGES = ("docs/teaching.md", "benchmarks/RESULTS.md", "docs/errors.md", "LICENSE")
#: The packages a build imports (the ``[site]`` extra), checked before any notebook runs.
SITE_MODULES = ("sphinx", "myst_nb", "pydata_sphinx_theme", "nbclient", "nbformat")
#: nbclient's limit per cell: a hung kernel fails the build rather than hanging it.
CELL_TIMEOUT_SECONDS = {"smoke": 300, "cpu": 1800, "gpu": 1800}
#: MathJax 3 from npm: one file, TeX input with every extension, SVG output (no font files, so it works
#: from file:// too), fetched once into the build folder.
MATHJAX_NPM = "mathjax@3.2.2"
MATHJAX_FILE = "tex-svg-full.js"
#: The widget manager that renders saved widget state without a kernel, and require.js, through which it loads
#: widget modules (anywidget's, whose npm version :func:`widget_npm_packages` matches to the Python package's).
HTML_MANAGER_NPM = "@jupyter-widgets/html-manager@1.0.15"
REQUIREJS_NPM = "requirejs@2.3.8"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class SiteError(RuntimeError):
    """A notebook that failed to execute, or a Sphinx build that failed: one line naming it."""


class SiteBusy(ValueError):
    """Another ``crl site`` or ``crl lecture`` is building in the same build folder."""


@dataclass(frozen=True)
class SiteResult:
    """What :func:`build_site` made."""

    index: Path  # the home page, <out_dir>/index.html
    executed: tuple[Path, ...]  # the executed notebooks the site was rendered from, in course order
    warnings: tuple[str, ...]  # Sphinx's warnings, one line each (empty for a clean build)


def notebook_fingerprint(source: bytes, tier: str) -> str:
    """A hash of a notebook's source, the tier and every ``crl_helpers`` module (with the explorers'
    JavaScript, which the saved widget state holds): an executed copy whose fingerprint matches is up to date."""
    digest = hashlib.sha256(source + tier.encode())
    package = Path(importlib.util.find_spec("crl_helpers").origin).parent
    for path in sorted(package.rglob("*")):
        if path.suffix in (".py", ".js", ".css"):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _kernel_env(tier: str, cache_dir: Path) -> dict[str, str]:
    env = dict(os.environ, CRL_CACHE=str(cache_dir))
    # The kernel imports the same crl_helpers as this process (a worktree's copy, not an installed one).
    package_root = str(Path(importlib.util.find_spec("crl_helpers").origin).parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH", "")]))
    # Explorers whose figures only a kernel can draw become their precomputed versions: the variable is
    # crl_helpers.widgets.STATIC_WIDGETS_ENV (not imported: it would load torch with this module).
    env["CRL_STATIC_WIDGETS"] = "1"
    env.pop("CRL_SMOKE", None)
    if tier == "smoke":
        env["CRL_SMOKE"] = "1"
    elif tier == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # pick_tier() says "gpu" whenever it sees CUDA
    return env


def _failure(nb, name: str, err: Exception) -> str:
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return (f"{name}: cell {index} raised {output.get('ename')}: "
                        f"{' '.join(_ANSI.sub('', str(output.get('evalue'))).split())[:300]}")
    return f"{name}: {type(err).__name__}: {' '.join(_ANSI.sub('', str(err)).split())[-300:]}"


def check_tier(tier: str) -> str:
    """``tier`` if this machine can execute the notebooks in it.

    Raises:
        ValueError: ``tier`` is unknown, or is ``"gpu"`` without CUDA.
    """
    from crl_helpers.course import TIERS

    if tier not in TIERS:
        raise ValueError(f"--tier {tier!r} is unknown; choose one of {', '.join(TIERS)}")
    if tier == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--tier gpu needs a CUDA GPU and this machine has none; use --tier cpu")
    return tier


def require_clone(conf_dir: str | os.PathLike = CONF_DIR, notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR) -> None:
    """Refuse at once, before anything is executed or written, where the repository is not around this package
    (an installed wheel): the site is made of the clone's notebooks, README and ``docs/site/conf.py``.

    Raises:
        ValueError: ``conf_dir/conf.py`` or the notebooks are missing (names what is missing and the fix).
    """
    conf = Path(conf_dir) / "conf.py"
    missing = [str(p) for p in (conf, Path(notebooks_dir)) if not p.exists()]
    if missing:
        address = pages.repository_url(pages.course_source())
        clone = f"git clone {address}" if address else "clone the course's repository"
        raise ValueError(f"crl site and crl lecture build from a clone of the course's repository, and "
                         f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing here (an installed package has no notebooks): "
                         f"{clone}, then run pip install -e \".[site]\" and crl site in it")


def require_site_packages() -> None:
    """Raises ValueError naming the first missing package of the ``[site]`` extra (checked before any work)."""
    for module in SITE_MODULES:
        if importlib.util.find_spec(module) is None:
            raise ValueError(f"crl site needs the {module} package: pip install -e \".[site]\"")


def check_out_dir(out_dir: str | os.PathLike, notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR,
                  command: str = "site") -> Path:
    """``out_dir`` resolved, if a site may be written there.

    Raises:
        ValueError: ``out_dir`` is empty (``--out ''``: an unset shell variable would write into the working
            folder), is a file, lies inside the notebooks, or holds the repository or the notebooks.
    """
    if not str(out_dir).strip():
        raise ValueError(f"--out '' is empty (an unset shell variable?); name the site's folder, e.g. --out {command}")
    out = Path(out_dir).resolve()
    notebooks = Path(notebooks_dir).resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out_dir} is a file; choose a folder, e.g. --out {command}")
    if out.is_relative_to(notebooks):
        raise ValueError(f"--out {out_dir} is inside the notebook folder {notebooks_dir}; choose another, "
                         f"e.g. {command}")
    if notebooks.is_relative_to(out) or REPO_ROOT.resolve().is_relative_to(out):
        raise ValueError(f"--out {out_dir} holds the course itself (the repository or its notebooks); choose a "
                         f"folder of its own, e.g. --out {command}")
    return out


@contextlib.contextmanager
def hold_build_folder(work_dir: Path):
    """Hold ``work_dir`` for one build (:func:`crl_helpers.run_dir.hold`, a lock the system releases when the
    process ends, however it ends).

    Raises:
        SiteBusy: another build holds it.
    """
    from crl_helpers.run_dir import RunDirInUse, hold

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(hold(work_dir))
        except RunDirInUse:
            holder = ""
            with contextlib.suppress(OSError):
                holder = f" (process {(work_dir / '.crl.lock').read_text().strip()})"
            raise SiteBusy(f"the build folder {work_dir} is in use by another crl site or crl lecture{holder}; "
                           f"wait for it to finish, then run this again") from None
        yield work_dir


def execute_notebooks(tier: str, executed_dir: str | os.PathLike, notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR,
                      cache_dir: str | os.PathLike | None = None, log=print) -> list[Path]:
    """Execute a copy of every ``*.ipynb`` in ``notebooks_dir`` into ``executed_dir``, in name order.

    Each kernel runs in ``notebooks_dir`` (as in JupyterLab) with ``CRL_CACHE=cache_dir`` (default:
    ``<executed_dir>/../cache``), ``CRL_STATIC_WIDGETS=1`` (explorers that work without a kernel, see
    :func:`crl_helpers.widgets.augmentation_explorer`) and the tier's environment (``CRL_SMOKE=1`` for smoke;
    no CUDA for cpu).
    A copy whose :func:`notebook_fingerprint` matches is kept as it is.

    Returns:
        the executed notebooks' paths, in name order.

    Raises:
        SiteError: a cell raised or timed out (names the notebook, the cell and the error).
    """
    import nbclient
    import nbformat

    notebooks_dir, executed_dir = Path(notebooks_dir).resolve(), Path(executed_dir)
    cache_dir = Path(cache_dir) if cache_dir is not None else executed_dir.parent / "cache"
    executed_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted(notebooks_dir.glob("*.ipynb"))
    if not sources:
        raise ValueError(f"{notebooks_dir} holds no .ipynb notebooks; pass the course's notebooks folder")
    env = _kernel_env(tier, cache_dir.resolve())
    done = []
    for source in sources:
        target = executed_dir / source.name
        fingerprint = notebook_fingerprint(source.read_bytes(), tier)
        if target.exists() and nbformat.read(target, as_version=4).metadata.get("crl_site", {}).get(
                "fingerprint") == fingerprint:
            log(f"crl: {source.stem}: up to date")
            done.append(target)
            continue
        log(f"crl: {source.stem}: executing ({tier} tier)")
        nb = nbformat.read(source, as_version=4)
        client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_SECONDS[tier], kernel_name="python3",
                                         resources={"metadata": {"path": str(notebooks_dir)}})
        try:
            client.execute(env=env)
        except Exception as err:  # CellExecutionError, CellTimeoutError, DeadKernelError ...
            raise SiteError(_failure(nb, source.name, err)) from err
        final_progress_text(nb)
        nb.metadata["crl_site"] = {"tier": tier, "fingerprint": fingerprint}
        nbformat.write(nb, target)
        done.append(target)
    return done


def final_progress_text(nb) -> None:
    """Give each tqdm progress bar in an executed notebook its final state in its text output, in place.

    ``tqdm.auto`` in a kernel shows a widget (an HBox of HTML, FloatProgress, HTML) whose ``text/plain``
    fallback is the bar as first displayed, "0%": the saved widget state (``metadata.widgets``) holds its
    last state. Where the widget is not rendered (a page without the widget manager, a viewer, a text
    export) the reader saw that first state. The text becomes the final one, drawn from the saved state; a bar
    tqdm hid when it closed (``leave=False``: JupyterLab shows nothing) loses its output, as it does there.

    Example:
        >>> import nbformat
        >>> state = {"b": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_l", "IPY_MODEL_p",
        ...     "IPY_MODEL_r"], "layout": "IPY_MODEL_y"}}, "y": {"model_name": "LayoutModel", "state": {}},
        ...     "l": {"model_name": "HTMLModel", "state": {"value": "100%"}},
        ...     "p": {"model_name": "FloatProgressModel", "state": {"value": 5.0, "max": 5.0}},
        ...     "r": {"model_name": "HTMLModel", "state": {"value": "\u20075/5\u2007[00:00&lt;00:00]"}}}
        >>> cell = nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output("display_data", data={
        ...     "text/plain": "  0%|          | 0/5", WIDGET_VIEW: {"model_id": "b"}})])
        >>> nb = nbformat.v4.new_notebook(cells=[cell], metadata={"widgets": {WIDGET_STATE: {"state": state}}})
        >>> final_progress_text(nb)
        >>> nb.cells[0].outputs[0]["data"]["text/plain"]
        '100%|██████████| 5/5 [00:00<00:00]'
    """
    import html

    models = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    def model(ref):
        return models.get(str(ref).removeprefix("IPY_MODEL_"), {})

    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            box = model(out.get("data", {}).get(WIDGET_VIEW, {}).get("model_id", ""))
            parts = [model(ref) for ref in box.get("state", {}).get("children", [])]
            if box.get("model_name") != "HBoxModel" or [part.get("model_name") for part in parts] != [
                    "HTMLModel", "FloatProgressModel", "HTMLModel"]:
                kept.append(out)
                continue
            if model(box["state"].get("layout")).get("state", {}).get("visibility") == "hidden":
                continue  # closed with leave=False: gone from the page in JupyterLab
            left, bar, right = (part["state"] for part in parts)
            filled = round(10 * bar.get("value", 0) / bar["max"]) if bar.get("max") else 0
            text = f"{left.get('value', '')}|{'█' * filled}{' ' * (10 - filled)}|{right.get('value', '')}"
            out["data"]["text/plain"] = html.unescape(text).replace("\u2007", " ").strip()
            kept.append(out)
        if "outputs" in cell:
            cell.outputs = kept


def widget_npm_packages() -> tuple[str, ...]:
    """The npm packages the site's widgets need: the html-manager, require.js and anywidget (the installed
    Python anywidget's version: its JavaScript half must match it).

    Example:
        >>> widget_npm_packages()[0]
        '@jupyter-widgets/html-manager@1.0.15'
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        anywidget = version("anywidget")
    except PackageNotFoundError:
        raise ValueError("crl site needs the anywidget package (the browser explorers): pip install anywidget") from None
    return HTML_MANAGER_NPM, REQUIREJS_NPM, f"anywidget@{anywidget}"


def _install_npm_assets(work_dir: Path) -> Path:
    """MathJax and the widget manager, from npm into ``<work_dir>/npm`` (once; kept for later builds), copied to
    ``<work_dir>/static/`` (``mathjax/``, ``widgets/``); returns that static folder.

    One ``npm install`` fetches every package: a later ``--no-save`` install would prune the earlier ones.
    """
    import json
    import subprocess

    modules = work_dir / "npm" / "node_modules"
    packages = (MATHJAX_NPM, *widget_npm_packages())
    manager = modules / "@jupyter-widgets" / "html-manager" / "dist"
    files = {"mathjax": modules / "mathjax" / "es5" / MATHJAX_FILE, "manager": manager / "embed-amd.js",
             "require": modules / "requirejs" / "require.js", "anywidget": modules / "anywidget" / "dist" / "index.js"}
    anywidget_json = modules / "anywidget" / "package.json"
    installed = anywidget_json.exists() and f"anywidget@{json.loads(anywidget_json.read_text())['version']}" in packages
    if not (installed and all(path.exists() for path in files.values())):
        npm = shutil.which("npm")
        if npm is None:
            raise ValueError("crl site needs npm (Node.js) to fetch MathJax and the widget manager once: "
                             "apt-get install npm")
        done = subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix",
                               str(work_dir / "npm"), *packages], capture_output=True, text=True)
        missing = [name for name, path in files.items() if not path.exists()]
        if done.returncode or missing:
            raise SiteError(f"npm install {' '.join(packages)} failed: {' '.join(done.stderr.split())[-300:]}")
    static = work_dir / "static"
    shutil.rmtree(static, ignore_errors=True)
    (static / "mathjax").mkdir(parents=True)
    shutil.copy2(files["mathjax"], static / "mathjax" / MATHJAX_FILE)
    widgets = static / "widgets"
    # The manager with the font files its CSS loads from beside it (no source maps: 6 MB nobody reads).
    shutil.copytree(manager, widgets / "html-manager", ignore=shutil.ignore_patterns("*.map", "embed.js", "libembed*"))
    _patch_widget_manager(widgets / "html-manager" / "embed-amd.js")
    shutil.copy2(files["require"], widgets / "require.js")
    shutil.copy2(files["anywidget"], widgets / "anywidget.js")
    return static


def _patch_widget_manager(bundle: Path) -> None:
    """Fit the widget manager's webpack bundle to the site: its assets load from its own folder, and it
    typesets widget labels with MathJax 3 (the site's), not MathJax 2.

    The bundle's public path is ``""``: its icon fonts' URLs resolve against the page (``notebooks/<hash>.woff2``,
    which does not exist), so the patched bundle reads its own folder from ``document.currentScript`` as it
    loads. Its ``typeset`` calls ``MathJax.Hub.Queue``, which MathJax 3 has not (a page error on every label):
    the patched one calls ``MathJax.typesetPromise``.

    Raises:
        SiteError: a pattern is not in the bundle (another html-manager build).
    """
    text = bundle.read_text(encoding="utf-8")
    text, paths = re.subn(r'\.p=""', ".p=__crlBundleFolder", text)
    text, typesets = re.subn(r'MathJax\.Hub\.Queue\(\["Typeset",MathJax\.Hub,(\w+)\]\)',
                             r"MathJax.typesetPromise&&MathJax.typesetPromise([\1]).catch(function(){})", text)
    if not (paths and typesets):
        raise SiteError(f"{bundle}: no webpack public path or MathJax 2 typeset call to patch; "
                        f"pin {HTML_MANAGER_NPM}, the build this was written for")
    folder = ('var __crlBundleFolder = document.currentScript ? '
              'document.currentScript.src.replace(/[^/]*$/, "") : "";\n')
    bundle.write_text(folder + text, encoding="utf-8")


def _download_copy(executed: Path, notebooks_dir: Path, target: Path) -> None:
    """The notebook a reader downloads: the learner's own (as committed, without outputs), else the executed copy
    with its outputs and build metadata cleared."""
    import nbformat

    if (notebooks_dir / executed.name).is_file():
        shutil.copy2(notebooks_dir / executed.name, target)
        return
    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    for key in ("crl_site", "widgets"):
        nb.metadata.pop(key, None)
    nbformat.write(nb, target)


def render_site(executed: list[Path], out_dir: str | os.PathLike, work_dir: str | os.PathLike,
                repo_root: str | os.PathLike = REPO_ROOT, conf_dir: str | os.PathLike = CONF_DIR, *,
                tier: str = "smoke", notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR,
                cache_dir: str | os.PathLike | None = None, lecture: bool = False) -> SiteResult:
    """Build the HTML site into ``out_dir`` from executed notebooks (Sphinx, myst-nb, execution off).

    The Sphinx source is assembled in ``<work_dir>/source``: the home page (:func:`crl_site.pages.home_page`),
    ``notebooks/`` (the executed copies with a download line under their title, alt text on their figures and
    the build folder's paths in printed output replaced by the learner's ``runs/cache``), the README as
    ``readme`` and :data:`EXTRA_PAGES`. Sphinx writes into ``<work_dir>/html`` (myst-nb's ``jupyter_execute/``
    lands beside it, in the build folder), which is then copied to ``out_dir``, with the learner's notebooks
    beside their pages for download.

    Args:
        lecture: the lecture page is written into ``<out_dir>/lecture/`` with this site (the home page links it).

    Raises:
        SiteError: Sphinx failed.
    """
    import nbformat

    repo_root, work_dir, out_dir = Path(repo_root), Path(work_dir).resolve(), Path(out_dir).resolve()
    cache_dir = Path(cache_dir).resolve() if cache_dir is not None else work_dir / "cache"
    if not (Path(conf_dir) / "conf.py").exists():
        raise ValueError(f"{conf_dir}/conf.py is missing; crl site runs from a clone of the repository "
                         "(pip install -e \".[site]\")")
    source, extra = work_dir / "source", work_dir / "extra"
    for folder in (source, extra):
        shutil.rmtree(folder, ignore_errors=True)
    (source / "notebooks").mkdir(parents=True)
    (extra / "notebooks").mkdir(parents=True)
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    minutes = pages.measured_minutes(readme)
    repository = pages.repository_url(pages.course_source())
    # What a learner's own run prints instead (its kernel runs in notebooks/, CRL_CACHE unset).
    shown_paths = {str(cache_dir): "runs/cache", str(work_dir): f"build/site-{tier}", str(repo_root.resolve()): ".."}
    headings = []
    for path in executed:
        nb = nbformat.read(path, as_version=4)
        headings.append((path.stem, pages.notebook_title(nb) or path.stem, minutes.get(path.stem[:2], "")))
        pages.scrub_paths(nb, shown_paths)
        pages.add_alt_text(nb)
        pages.add_notebook_links(nb, path.name, repository)
        nbformat.write(nb, source / "notebooks" / path.name)
        _download_copy(path, Path(notebooks_dir), extra / "notebooks" / path.name)
    (source / "readme.md").write_text(readme, encoding="utf-8")
    extras = ["About the course (README) <readme>"]
    for page in EXTRA_PAGES:
        if (repo_root / page).exists():
            (source / page).parent.mkdir(parents=True, exist_ok=True)
            text = (repo_root / page).read_text(encoding="utf-8")
            if page == "docs/errors.md":  # it quotes messages exactly: <tmp> is text there, not a tag
                text = pages.escape_angle_brackets(text)
            (source / page).write_text(text, encoding="utf-8")
            if page.endswith(".md"):
                extras.append(page[:-3])
    (source / "index.md").write_text(pages.home_page(pages.readme_intro(readme), headings, tier, repository,
                                                     lecture, extras), encoding="utf-8")
    lines = _sphinx_html(source, work_dir / "html", work_dir, conf_dir, extra=extra)
    _publish(work_dir / "html", out_dir)
    return SiteResult(index=out_dir / "index.html", executed=tuple(executed), warnings=lines)


def _publish(html_dir: Path, out_dir: Path) -> None:
    """Copy a finished Sphinx output folder to ``out_dir`` (made if missing; Sphinx's own files stay behind)."""
    shutil.copytree(html_dir, out_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".buildinfo", ".doctrees"))


def _sphinx_html(source: Path, html_dir: Path, work_dir: Path, conf_dir: str | os.PathLike,
                 extra: Path | None = None) -> tuple[str, ...]:
    """Sphinx's HTML build of ``source`` into ``html_dir`` (emptied first) with the site's configuration and
    static files; returns its warnings, one line each. ``extra``'s files are copied into the output as they are."""
    from sphinx.application import Sphinx
    from sphinx.errors import SphinxError

    static = _install_npm_assets(work_dir)
    shutil.rmtree(html_dir, ignore_errors=True)
    warnings = io.StringIO()
    overrides = {"html_static_path": [str(Path(conf_dir).resolve() / "_static"), str(static)]}
    if extra is not None:
        overrides["html_extra_path"] = [str(extra)]
    try:
        app = Sphinx(str(source), str(conf_dir), str(html_dir), str(work_dir / "doctrees"), "html",
                     confoverrides=overrides, status=None, warning=warnings, freshenv=True)
        app.build(force_all=True)
    except SphinxError as err:
        raise SiteError(f"sphinx: {type(err).__name__}: {' '.join(str(err).split())[:300]}") from err
    if app.statuscode:
        raise SiteError(f"sphinx exited with {app.statuscode}: {warnings.getvalue().strip()[-300:]}")
    # A second Sphinx app in one process (the site, then its lecture page) re-registers docutils' node
    # classes: a note about the process, not about a page.
    return tuple(_ANSI.sub("", line) for line in warnings.getvalue().splitlines()
                 if "WARNING" in line and "is already registered" not in line)


def _work_dir(work_dir: str | os.PathLike | None, tier: str) -> Path:
    return (Path(work_dir) if work_dir is not None else REPO_ROOT / "build" / f"site-{tier}").resolve()


def build_site(tier: str = "smoke", out_dir: str | os.PathLike = "site", notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR,
               executed_dir: str | os.PathLike | None = None, work_dir: str | os.PathLike | None = None,
               log=print) -> SiteResult:
    """Execute the notebooks in ``tier`` (unless ``executed_dir`` already holds executed copies) and render
    the site, with its lecture page in ``<out_dir>/lecture/``, into ``out_dir``.

    Args:
        tier: ``"smoke"`` (CI: seconds per notebook), ``"cpu"`` or ``"gpu"`` (for publishing).
        out_dir: the HTML site; open ``<out_dir>/index.html``.
        notebooks_dir: the learner's notebooks (committed, without outputs).
        executed_dir: notebooks already executed (e.g. by a test fixture); rendered as they are.
        work_dir: the build folder (default ``build/site-<tier>`` in the repository): run cache,
            executed copies, the Sphinx source and output; kept so the next build reuses them.
        log: where progress lines go (``print``; ``lambda line: None`` for silence).

    Returns:
        :class:`SiteResult`.

    Raises:
        ValueError: unknown tier, gpu tier without CUDA, a missing package, no clone around this package,
            a bad ``out_dir`` (:func:`check_out_dir`), no npm, no anywidget.
        SiteBusy: another build holds the build folder.
        SiteError: a notebook raised, or Sphinx failed.
    """
    check_tier(tier)
    require_site_packages()
    require_clone(CONF_DIR, notebooks_dir)
    out = check_out_dir(out_dir, notebooks_dir)
    work_dir = _work_dir(work_dir, tier)
    with hold_build_folder(work_dir):
        _install_npm_assets(work_dir)  # before minutes of execution: fails fast without npm
        if executed_dir is None:
            executed = execute_notebooks(tier, work_dir / "executed", notebooks_dir, work_dir / "cache", log=log)
        else:
            executed = sorted(Path(executed_dir).glob("*.ipynb"))
            if not executed:
                raise ValueError(f"executed_dir {executed_dir} holds no .ipynb notebooks; leave it out to execute them")
        try:
            lecture = lecture_notebook(executed, tier)
        except ValueError:  # no browser explorer in these notebooks: no lecture page, and no link to one
            lecture = None
        log("crl: rendering the site")
        result = render_site(executed, out, work_dir, tier=tier, notebooks_dir=notebooks_dir,
                             cache_dir=work_dir / "cache", lecture=lecture is not None)
        if lecture is not None:
            lines = _render_lecture(lecture, out / "lecture", work_dir)
            result = SiteResult(result.index, result.executed, result.warnings + lines)
    return result


# ------------------------------------------------------------------------------------------ lecture mode
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
LECTURE_INTRO = ("The course's interactive explorers, without the code around them: every slider works in this "
                 "page, with no Python kernel behind it (the augmentation explorer steps through views drawn ahead "
                 "for a grid of settings; the others compute in the page). Each comes from the notebook named in "
                 "its heading, executed in the {tier} tier.")


def lecture_notebook(executed: list[Path], tier: str = "smoke"):
    """One notebook that holds only the browser explorers (anywidgets) of the executed notebooks.

    For each code cell whose output shows a widget of ``anywidget``'s (the explorers of
    :mod:`crl_helpers.widgets` that compute in the browser), the lecture gets a heading (the notebook's
    title) and that output alone, its code removed (myst-nb's ``remove-input`` tag); the notebooks' saved
    widget states are merged into its metadata, so the page renders them without a kernel.

    Raises:
        ValueError: no browser explorer in ``executed`` (were the notebooks executed?).
    """
    import nbformat

    cells, state = [nbformat.v4.new_markdown_cell("# The explorers\n\n" + LECTURE_INTRO.format(tier=tier))], {}
    for path in executed:
        nb = nbformat.read(path, as_version=4)
        models = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
        shown = []
        for cell in nb.cells:
            views = [out for out in cell.get("outputs", []) if WIDGET_VIEW in out.get("data", {})
                     and models.get(out["data"][WIDGET_VIEW].get("model_id"), {}).get("model_module") == "anywidget"]
            if views:
                # The code stays in the notebook (myst-nb drops a cell without source) but not on the page.
                shown.append(nbformat.v4.new_code_cell(cell.source, metadata={"tags": ["remove-input"]}, outputs=views))
        if shown:
            cells.append(nbformat.v4.new_markdown_cell(f"## {pages.notebook_title(nb) or path.stem}\n\nFrom `{path.stem}`."))
            cells += shown
            state.update(models)
    if len(cells) == 1:
        raise ValueError(f"no browser explorer in the {len(executed)} executed notebooks; execute them first "
                         "(crl site) or pass the executed copies")
    lecture = nbformat.v4.new_notebook(cells=cells)
    lecture.metadata["widgets"] = {WIDGET_STATE: {"version_major": 2, "version_minor": 0, "state": state}}
    lecture.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return lecture


def _render_lecture(lecture, out_dir: Path, work_dir: Path) -> tuple[str, ...]:
    """Render :func:`lecture_notebook`'s notebook as ``<out_dir>/index.html``; returns Sphinx's warnings."""
    import nbformat

    source = work_dir / "lecture-source"
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir(parents=True)
    nbformat.write(lecture, source / "index.ipynb")
    lines = _sphinx_html(source, work_dir / "lecture-html", work_dir, CONF_DIR)
    _publish(work_dir / "lecture-html", out_dir)
    return lines


def build_lecture(tier: str = "smoke", out_dir: str | os.PathLike = "lecture",
                  notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR, executed: list[Path] | None = None,
                  work_dir: str | os.PathLike | None = None, log=print) -> SiteResult:
    """The lecture page: the course's browser explorers on one static page, without code (``crl lecture``).

    The notebooks are executed as for :func:`build_site` (the same build folder and cache, so a site built
    before makes this take seconds) unless ``executed`` gives executed copies; :func:`lecture_notebook`
    keeps their explorers; Sphinx renders that one page as ``<out_dir>/index.html``, served from the folder
    itself (MathJax, the widget manager), so it opens from ``file://`` on a lecture-room machine offline.

    Raises:
        ValueError, SiteBusy, SiteError: as :func:`build_site`; no explorer in the notebooks.
    """
    check_tier(tier)
    require_site_packages()
    require_clone(CONF_DIR, notebooks_dir)
    out = check_out_dir(out_dir, notebooks_dir, command="lecture")
    work_dir = _work_dir(work_dir, tier)
    with hold_build_folder(work_dir):
        _install_npm_assets(work_dir)  # fails fast without npm
        if executed is None:
            executed = execute_notebooks(tier, work_dir / "executed", notebooks_dir, work_dir / "cache", log=log)
        lecture = lecture_notebook(list(executed), tier)
        log("crl: rendering the lecture page")
        lines = _render_lecture(lecture, out, work_dir)
    return SiteResult(index=out / "index.html", executed=tuple(executed), warnings=lines)
