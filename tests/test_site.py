"""The static site (``crl site``): built in the smoke tier, every page opened in headless Chromium.

One module fixture executes each learner notebook once (smoke tier, ``CRL_SMOKE=1``) and renders the site
with :func:`crl_helpers.site.build_site`. Every page then loads from ``file://`` with every request
watched: nothing may go to another host (a request that is not ``file:``/``data:``/``blob:``/``about:``
or localhost is aborted and reported), and the page may log no console error. On each notebook page the
figures are images (as many loaded ``<img>`` as the executed notebook has image outputs), no cell shows
an error, the printed numbers are there, the exercises are the learner's (NOT YET, never PASSED), and
MathJax has typeset every formula (an SVG in each) without a TeX error.

Needs Chromium (``/usr/bin/chromium``), the ``playwright`` package (no ``playwright install``) and the
site's packages (``pip install -e ".[site]"``) and npm (MathJax is fetched once); skips with the reason when one is missing.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = os.environ.get("CRL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PAGE_SECONDS = 60  # load and typeset one page on a busy 2-core machine
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
LOCAL_SCHEMES = {"file", "data", "blob", "about"}
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}

pytestmark = pytest.mark.site


def _chromium() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    found = shutil.which("chromium")
    if not found:
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (CI installs it)")
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built in the smoke tier: (output folder, executed notebooks by stem)."""
    for module in ("sphinx", "myst_nb", "pydata_sphinx_theme", "nbclient", "nbformat"):
        pytest.importorskip(module, reason=f"{module} is missing: pip install -e \".[site]\"")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")
    _chromium()
    if not shutil.which("npm"):
        pytest.skip("no npm: the site fetches MathJax from npm once (apt-get install npm)")
    from crl_helpers.site import build_site

    work = tmp_path_factory.mktemp("site_build")
    result = build_site("smoke", work / "html", work_dir=work / "work", log=lambda line: None)
    return result


def _is_local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in LOCAL_SCHEMES or parsed.hostname in LOCAL_HOSTS


def _image_outputs(nb) -> int:
    return sum(any(kind in output.get("data", {}) for kind in IMAGE_TYPES)
               for cell in nb.cells if cell.cell_type == "code" for output in cell.get("outputs", []))


def _printed(nb) -> str:
    return "\n".join(output.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for output in cell.get("outputs", []) if output.get("output_type") == "stream")


def _pages(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts)


# Sphinx marks each formula span.math / div.math; MathJax 3 puts an mjx-container with an <svg> in each.
MATH_DONE = """() => {
    const math = document.querySelectorAll('.math.notranslate');
    if (math.length === 0) return true;
    return [...math].every(m => m.querySelector('mjx-container svg'));
}"""


def _open(browser, path: Path):
    """Load one page; returns (page, console errors, requests to other hosts)."""
    page = browser.new_page()
    page.set_default_timeout(PAGE_SECONDS * 1000)
    errors, outside = [], []
    page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda err: errors.append(f"page error: {err}"))

    def route(r):
        if _is_local(r.request.url):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_function(MATH_DONE)
    return page, errors, outside


def test_the_site_has_every_page(site):
    out = site.index.parent
    assert site.index.exists(), f"no {site.index}"
    stems = [p.stem for p in site.executed]
    for stem in stems:
        assert (out / "notebooks" / f"{stem}.html").exists(), f"no page for {stem}"
    home = site.index.read_text(encoding="utf-8")
    for stem in stems:  # the home page's navigation reaches every notebook
        assert f"notebooks/{stem}.html" in home, f"the home page does not link to {stem}"
    assert not site.warnings, "sphinx warned:\n" + "\n".join(site.warnings)


def test_every_page_renders_offline_with_its_figures_and_math(site):
    import nbformat
    from playwright.sync_api import sync_playwright

    out = site.index.parent
    executed = {p.stem: nbformat.read(p, as_version=4) for p in site.executed}
    pages = _pages(out)
    assert len(pages) >= len(executed) + 1
    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            for path in pages:
                name = path.relative_to(out).as_posix()
                page, errors, outside = _open(browser, path)
                problems += [f"{name}: {e}" for e in errors]
                problems += [f"{name}: request to another host: {url}" for url in outside]
                tex_errors = page.evaluate("() => [...document.querySelectorAll('mjx-container')]"
                                           ".filter(c => c.querySelector('[data-mml-node=merror]'))"
                                           ".map(c => c.parentElement.textContent.slice(0, 80))")
                problems += [f"{name}: TeX error near {tex!r}" for tex in tex_errors]
                nb = executed.get(path.stem) if path.parent.name == "notebooks" else None
                if nb is not None:
                    images = page.locator(".cell_output img")
                    loaded = page.evaluate("() => [...document.querySelectorAll('.cell_output img')]"
                                           ".filter(i => i.complete && i.naturalWidth > 0).length")
                    expected = _image_outputs(nb)
                    if images.count() != expected or loaded != expected:
                        problems.append(f"{name}: {images.count()} <img> ({loaded} loaded) for {expected} image outputs")
                    if page.locator(".cell_output .traceback, .cell_output .output.error").count():
                        problems.append(f"{name}: a cell shows an error")
                    printed = "\n".join(page.locator(".cell_output").all_inner_texts())
                    if "tier: smoke" not in printed:
                        problems.append(f"{name}: the printed tier line is missing (outputs not rendered?)")
                    if "[PASSED]" in printed:
                        problems.append(f"{name}: an exercise passes: the page is not the learner's version")
                    if printed.count("[NOT YET]") != _printed(nb).count("[NOT YET]"):
                        problems.append(f"{name}: {printed.count('[NOT YET]')} NOT YET shown, "
                                        f"{_printed(nb).count('[NOT YET]')} printed by the notebook")
                    if path.stem != site.executed[-1].stem and not page.locator("a.right-next").count():
                        problems.append(f"{name}: no link to the next notebook")
                page.close()
        finally:
            browser.close()
    assert not problems, "\n".join(problems)
