"""The static site (``crl site``): built in the smoke tier, every page opened in headless Chromium.

One module fixture executes each learner notebook once (smoke tier, ``CRL_SMOKE=1``) and renders the site
with :func:`crl_site.build_site` (the course's address unset, as shipped). Every page then loads from ``file://`` with every request
watched: nothing may go to another host (a request that is not ``file:``/``data:``/``blob:``/``about:``
or localhost is aborted and reported), and the page may log no console error. On each notebook page the
figures are images (as many loaded ``<img>`` as the executed notebook has image outputs), no cell shows
an error, the printed numbers are there, the exercises are the learner's (NOT YET, never PASSED), and
MathJax has typeset every formula (an SVG in each) without a TeX error.

The explorers that compute in the browser (crl_helpers.widgets: temperature, run comparison) are driven on
the static pages, with no kernel: a slider moved, the numbers shown must be crl_helpers.temperature's. The
augmentation explorer (its static version: the site's kernels run with CRL_STATIC_WIDGETS=1) looks up views
and meters drawn ahead: a slider moved, it must show the numbers Python saved for that grid point. The
lecture page (``crl lecture``) is built from the same executed notebooks and driven the same way.

The site's own promises are checked on the built pages too: the home page says how to start (three ways,
a download of every notebook, the lecture page built with the site, no made-up repository address), the
pages fit a 390 px phone and keep a one-line header at 1280-1400 px, a heading reached from the page contents
is not under the header, figures have alt text, sliders say their value to a screen reader, no build path is
printed, nothing is written beside the output folder, docs/errors.md's messages are shown exactly, and search
works from file://. The command's refusals (``--out ''``, no clone around the package, a build folder another
build holds) are checked without building anything.

Needs Chromium (``/usr/bin/chromium``), the ``playwright`` package (no ``playwright install``) and the
site's packages (``pip install -e ".[site]"``) and npm (MathJax is fetched once); skips with the reason when one is missing.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock
from urllib.parse import urlparse

import pytest

CHROMIUM = os.environ.get("CRL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PAGE_SECONDS = 60  # load and typeset one page on a busy 2-core machine
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
LOCAL_SCHEMES = {"file", "data", "blob", "about"}
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_SECONDS = 60  # the widget manager renders every widget of a page from its saved state

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
    from crl_site import build_site

    work = tmp_path_factory.mktemp("site_build")
    with mock.patch.dict(os.environ):
        os.environ.pop("CRL_COURSE_SOURCE", None)
        with mock.patch("crl_helpers.course.COURSE_SOURCE", ""):
            result = build_site("smoke", work / "html", work_dir=work / "work", log=lambda line: None)
    # Only the output folder and the build folder (the lecture test adds its own folder later).
    assert sorted(p.name for p in work.iterdir()) == ["html", "work"], "the build wrote beside --out"
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


# The html-manager puts a div.widget-subarea before each widget's view script and draws the widget into it.
WIDGETS_DONE = """() => {
    const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
    return [...views].every(v => v.previousElementSibling && v.previousElementSibling.classList.contains('widget-subarea')
                                 && v.previousElementSibling.childElementCount > 0);
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
                if nb is not None and any(WIDGET_VIEW in out.get("data", {}) for cell in nb.cells
                                          for out in cell.get("outputs", [])):
                    page.wait_for_function(WIDGETS_DONE, timeout=WIDGET_SECONDS * 1000)
                if nb is not None:
                    # Images of the notebook's outputs, not those a widget draws (an Output widget's last figure).
                    images, loaded = page.evaluate(
                        "() => { const i = [...document.querySelectorAll('.cell_output img')]"
                        ".filter(i => !i.closest('.widget-subarea'));"
                        " return [i.length, i.filter(i => i.complete && i.naturalWidth > 0).length]; }")
                    expected = _image_outputs(nb)
                    if images != expected or loaded != expected:
                        problems.append(f"{name}: {images} <img> ({loaded} loaded) for {expected} image outputs")
                    views = sum(WIDGET_VIEW in out.get("data", {}) for cell in nb.cells
                                for out in cell.get("outputs", []))
                    drawn = page.locator(".widget-subarea").count()
                    if drawn != views:
                        problems.append(f"{name}: {drawn} widgets drawn for {views} widget outputs")
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


# ---------------------------------------------------------------------------- the browser explorers, offline
def _launch(playwright):
    return playwright.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS)


def _saved_model(nb, trait: str) -> dict:
    """The saved state of the notebook's anywidget that has ``trait`` (the explorer the page draws)."""
    models = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    found = [m["state"] for m in models.values() if m.get("model_module") == "anywidget" and trait in m["state"]]
    assert found, f"no explorer with {trait!r} in the notebook's saved widget state"
    return found[-1]


def _check_temperature_explorer(page) -> None:
    """Move the temperature, K and negative-mean sliders of the page's temperature explorer (no kernel) and
    check what it shows against crl_helpers.temperature."""
    import json

    import torch

    from crl_helpers import temperature as tm

    root = page.locator(".crl-temperature").first
    root.wait_for(timeout=WIDGET_SECONDS * 1000)
    caption = root.locator(".crl-caption")

    def check(temperature: float, k: int, mean: float) -> None:
        s = tm.similarities_with(k, mean)
        loss = tm.info_nce_from_similarities(s, temperature)
        page.wait_for_function("([el, k]) => el.dataset.nNegatives === String(k)", arg=[root.element_handle(), k])
        shown = {key: root.get_attribute(f"data-{key}") for key in ("temperature", "loss", "p", "weights")}
        where = f"temperature {temperature}, K {k}, negative mean {mean}: {shown['loss']}"
        assert float(shown["temperature"]) == pytest.approx(temperature, rel=1e-12), where
        assert float(shown["loss"]) == pytest.approx(loss, abs=1e-6), where
        torch.testing.assert_close(torch.tensor(json.loads(shown["p"]), dtype=torch.float64),
                                   tm.key_distribution(s, temperature), atol=1e-6, rtol=0)
        torch.testing.assert_close(torch.tensor(json.loads(shown["weights"]), dtype=torch.float64),
                                   tm.gradient_weights(s, temperature), atol=1e-6, rtol=1e-9)
        text = caption.inner_text()
        assert f"K = {k} negatives" in text and f"loss {loss:.3f}" in text, text

    temperature_input = root.locator("input[data-control=temperature]")
    k_input = root.locator("input[data-control=n_negatives]")
    mean_input = root.locator("input[data-control=negative_mean]")
    options = json.loads(k_input.get_attribute("data-options"))
    k, mean = int(root.get_attribute("data-n-negatives")), float(mean_input.input_value())
    check(float(root.get_attribute("data-temperature")), k, mean)
    temperature_input.fill("0")  # log10: temperature 1
    check(1.0, k, mean)
    k_input.fill(str(options.index(63)))
    check(1.0, 63, mean)
    mean_input.fill("0.75")
    check(1.0, 63, 0.75)
    temperature_input.fill("-1.3")
    check(10 ** -1.3, 63, 0.75)
    root.locator("button[data-control=train]").click()  # replays the circle run nearest 0.05 (trained in Python)
    page.wait_for_function("el => el.textContent.includes('trained at temperature 0.050')",
                           arg=caption.element_handle(), timeout=30_000)


def _check_augmentation_explorer(page, model: dict) -> None:
    """Move the crop slider and press re-sample on the page's augmentation explorer (no kernel): the meters,
    caption and view labels shown must be those Python computed for that grid point (the saved widget state),
    and the views must be drawn."""
    root = page.locator(".crl-augment").first
    root.wait_for(timeout=WIDGET_SECONDS * 1000)
    crops, seeds, j = model["crop_values"], model["seeds"], model["jitter_index"]

    def check(c: int, s: int) -> None:
        point = model["points"][c][j][s]
        page.wait_for_function("([el, crop, seed]) => Number(el.dataset.cropScaleMin) === crop "
                               "&& Number(el.dataset.seed) === seed", arg=[root.element_handle(), crops[c], seeds[s]])
        where = f"crop_scale_min {crops[c]}, seed {seeds[s]}"
        assert float(root.get_attribute("data-object-kept")) == point["object_kept"], where
        assert float(root.get_attribute("data-shortcut-rate")) == point["shortcut_rate"], where
        assert root.locator("[data-meter='object kept'] .crl-meter-text").inner_text() == point["object_kept_text"]
        assert root.locator("[data-meter='colour shortcut'] .crl-meter-text").inner_text() == point["shortcut_text"]
        assert root.locator("[data-caption]").inner_text() == point["caption"], where
        labels = root.locator(".crl-tile-label:not(:empty)").all_inner_texts()
        assert [t for t in labels if t.strip()] == [t for row in point["labels"] for t in row], where
        # The views are drawn: the first view's canvas has opaque pixels once its mosaic has loaded.
        page.wait_for_function("el => { const c = el.querySelectorAll('canvas')[1];"
                               " return c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
                               ".some((v, i) => i % 4 === 3 && v > 0); }", arg=root.element_handle())

    crop_input = root.locator("input[data-control=crop_scale_min]")
    check(model["crop_index"], model["seed_index"])
    whole = crops.index(1.0)  # whole-image crops: every object kept
    assert whole != model["crop_index"], "the saved explorer already shows crop_scale_min 1.0: move to another value"
    crop_input.fill(str(whole))
    check(whole, model["seed_index"])
    assert model["points"][whole][j][model["seed_index"]]["object_kept"] == 1.0
    root.locator("button[data-control=resample]").click()
    check(whole, (model["seed_index"] + 1) % len(seeds))
    crop_input.fill("0")
    check(0, (model["seed_index"] + 1) % len(seeds))


def _augmentation_model(site) -> dict:
    import nbformat

    nb = nbformat.read(next(p for p in site.executed if p.stem == "01_pairs_and_augmentations"), as_version=4)
    return _saved_model(nb, "crop_values")


def test_augmentation_explorer_steps_through_its_grid_on_the_static_site(site):
    from playwright.sync_api import sync_playwright

    model = _augmentation_model(site)
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        try:
            page, errors, outside = _open(browser, site.index.parent / "notebooks" / "01_pairs_and_augmentations.html")
            _check_augmentation_explorer(page, model)
            assert not errors and not outside, errors + outside
        finally:
            browser.close()


def test_temperature_explorer_computes_on_the_static_site(site):
    from playwright.sync_api import sync_playwright

    path = site.index.parent / "notebooks" / "04_infonce_and_temperature.html"
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        try:
            page, errors, outside = _open(browser, path)
            _check_temperature_explorer(page)
            assert not errors and not outside, errors + outside
        finally:
            browser.close()


def test_run_comparison_explorer_steps_on_the_static_site(site):
    import nbformat
    from playwright.sync_api import sync_playwright

    stem = "05_training"
    nb = nbformat.read(next(p for p in site.executed if p.stem == stem), as_version=4)
    model = _saved_model(nb, "shared")
    runs, steps = model["runs"], model["steps"]
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        try:
            page, errors, outside = _open(browser, site.index.parent / "notebooks" / f"{stem}.html")
            root = page.locator(".crl-maps").first
            root.wait_for(timeout=WIDGET_SECONDS * 1000)
            n_points = len(model["points"][runs[0]][0]) // 2
            assert root.locator("svg circle").count() >= 2 * n_points  # two panels of points
            root.locator("input[data-control=snapshot]").fill("0")
            other = next(run for run in runs if run != model["left"])
            root.locator("select[data-control=right]").select_option(other)
            page.wait_for_function("([el, key, run]) => el.dataset.key === key && el.dataset.runs.includes(run)",
                                   arg=[root.element_handle(), steps[0], other])
            share = model["shared"][f"{model['left']}\t{other}"][0]  # computed in Python (crl_helpers.widgets)
            assert float(root.get_attribute("data-shared")) == pytest.approx(share, abs=1e-12)
            text = root.locator(".crl-caption").inner_text()
            assert f"{model['left']} vs {other} at {steps[0]}" in text and f"agree on {100 * share:.0f}%" in text, text
            assert not errors and not outside, errors + outside
        finally:
            browser.close()


def test_lecture_page_shows_only_the_explorers_and_they_compute(site):
    from playwright.sync_api import sync_playwright

    from crl_site import build_lecture

    out = site.index.parent.parent / "lecture"
    lecture = build_lecture("smoke", out, executed=list(site.executed), work_dir=site.index.parent.parent / "work",
                            log=lambda line: None)
    assert lecture.index == out / "index.html" and lecture.index.exists()
    # A second Sphinx app in one process re-registers docutils' node classes: not a problem of the page.
    warnings = [w for w in lecture.warnings if "is already registered" not in w]
    assert not warnings, "sphinx warned:\n" + "\n".join(warnings)
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        try:
            page, errors, outside = _open(browser, lecture.index)
            page.wait_for_function(WIDGETS_DONE, timeout=WIDGET_SECONDS * 1000)
            assert page.locator(".crl-temperature").count() == 1 and page.locator(".crl-maps").count() >= 1
            assert page.locator(".crl-augment").count() == 1
            assert page.locator(".cell_input").count() == 0, "the lecture page shows code"
            headings = page.locator("h2").all_inner_texts()
            assert headings and headings[0].startswith("01"), headings  # in course order: augmentations first
            _check_temperature_explorer(page)
            _check_augmentation_explorer(page, _augmentation_model(site))
            assert not errors and not outside, errors + outside
        finally:
            browser.close()


def test_lecture_notebook_keeps_only_the_browser_explorers(tmp_path):
    import nbformat

    from crl_site import lecture_notebook

    def executed(name: str, title: str, models: dict) -> Path:
        views = [nbformat.v4.new_output("display_data", {WIDGET_VIEW: {"model_id": m}, "text/plain": "w"})
                 for m in models]
        nb = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_markdown_cell(f"# {title}\n\ntext"),
            nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", text="1\n")]),
            *[nbformat.v4.new_code_cell("explorer", outputs=[view]) for view in views]])
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
            "version_major": 2, "version_minor": 0,
            "state": {m: {"model_module": module, "model_name": "M", "model_module_version": "1", "state": {}}
                      for m, module in models.items()}}}
        nbformat.write(nb, tmp_path / name)
        return tmp_path / name

    plain = executed("01_a.ipynb", "Augmentations", {"vbox": "@jupyter-widgets/controls"})
    temperature = executed("04_b.ipynb", "Temperature", {"t": "anywidget", "layout": "@jupyter-widgets/base"})
    lecture = lecture_notebook([plain, temperature], "cpu")
    code = [cell for cell in lecture.cells if cell.cell_type == "code"]
    assert len(code) == 1 and code[0].source == "explorer" and code[0].metadata["tags"] == ["remove-input"]
    assert code[0].outputs[0]["data"][WIDGET_VIEW] == {"model_id": "t"}
    assert "## Temperature" in lecture.cells[1].source and "cpu tier" in lecture.cells[0].source
    assert set(lecture.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]) == {"t", "layout"}
    with pytest.raises(ValueError, match="no browser explorer in the 1 executed notebooks"):
        lecture_notebook([plain])


# ------------------------------------------------------------------------------ what the site promises a reader
@contextlib.contextmanager
def _browser():
    """Headless Chromium for one test."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = _launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


def _open_at(browser, path: Path, width: int, height: int = 900, scheme: str = "light"):
    page = browser.new_page(viewport={"width": width, "height": height}, color_scheme=scheme)
    page.set_default_timeout(PAGE_SECONDS * 1000)
    errors = []
    page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda err: errors.append(f"page error: {err}"))
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_function(MATH_DONE)
    return page, errors


def test_home_page_says_how_to_start_with_a_download_of_every_notebook(site):
    import nbformat

    out = site.index.parent
    home = site.index.read_text(encoding="utf-8")
    for way in ("Read it here.", "Run it on your machine.", "Run it in a hosted runtime"):
        assert way in home, f"the home page lacks the choice {way!r}"
    # The course's address is unset: no made-up URL, no Colab link, "clone the repository" without an address.
    assert "colab.research.google.com" not in home and "github.com" not in home
    assert "clone the repository" in home
    assert 'href="lecture/index.html"' in home and (out / "lecture" / "index.html").exists()
    # Navigation titles are plain text: math keeps its spaces, subtitles after the colon go.
    assert "02 · The encoder v = e(x)</a>" in home and "03 · Transform heads</a>" in home
    for executed in site.executed:
        name = executed.name
        assert f'href="notebooks/{name}" download' in home, f"no download of {name} on the home page"
        page = (out / "notebooks" / f"{executed.stem}.html").read_text(encoding="utf-8")
        assert f'href="{name}" download' in page, f"no download link on {executed.stem}'s page"
        downloaded = nbformat.read(out / "notebooks" / name, as_version=4)
        assert not any(cell.get("outputs") for cell in downloaded.cells), f"{name}: the download has outputs"
        assert downloaded.cells[0].source == nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / name, as_version=4).cells[0].source
    assert (out / "docs" / "teaching.html").exists() and (out / "readme.html").exists()


def test_home_page_follows_the_configured_address():
    from crl_site import pages

    source = "crl-helpers @ git+https://github.com/someone/crl-course.git@main"
    repository = pages.repository_url(source)
    home = pages.home_page("Intro.", [("01_pairs", "# 01 · Pairs: $p^+$", "0.3 min")], "cpu", repository, False, [])
    assert "git clone https://github.com/someone/crl-course" in home and "cd crl-course" in home
    assert "https://colab.research.google.com/github/someone/crl-course/blob/main/notebooks/01_pairs.ipynb" in home
    assert "lecture/index.html" not in home  # no lecture page built, no link to one
    local = pages.home_page("Intro.", [("01_pairs", "# 01", "")], "cpu", pages.repository_url("/home/me/crl"), True, [])
    assert "colab.research.google.com" not in local and "git clone /" not in local and "lecture/index.html" in local


def test_page_07_typesets_the_momentum_update(site):
    """The display equation inside MoCo's list item is typeset (it rendered as a stray $ and raw TeX)."""
    with _browser() as browser:
        page, errors = _open_at(browser, site.index.parent / "notebooks" / "07_beyond_simclr.html", 1280)
        item = page.locator("li", has_text="A momentum encoder.").first
        assert item.locator("div.math mjx-container svg").count() == 1, "the momentum update is not display math"
        prose = page.evaluate("() => { const a = document.querySelector('article').cloneNode(true);"
                              " a.querySelectorAll('pre, code, mjx-container, script, style').forEach(e => e.remove());"
                              " return a.innerText; }")
        for raw in ("$$", "\\theta", "0.9999$"):
            assert raw not in prose, f"raw TeX {raw!r} on page 07"
        assert not errors, errors


def test_pages_fit_a_phone_and_keep_a_one_line_header(site):
    out = site.index.parent
    problems = []
    with _browser() as browser:
        for path in [site.index, out / "docs" / "errors.html",
                     *(out / "notebooks" / f"{p.stem}.html" for p in site.executed)]:
            name = path.relative_to(out).as_posix()
            page, _ = _open_at(browser, path, 390, 844)
            if "01_pairs" in name:
                page.locator(".crl-augment canvas").first.wait_for(timeout=WIDGET_SECONDS * 1000)
            scroll, header, search = page.evaluate(
                "() => [document.documentElement.scrollWidth, document.querySelector('header').offsetHeight,"
                " document.querySelector('.navbar-persistent--mobile').getBoundingClientRect().right]")
            if scroll > 390:
                problems.append(f"{name} at 390 px: the page scrolls {scroll - 390} px sideways")
            if header > 100 or search > 390:
                problems.append(f"{name} at 390 px: header {header} px high, search ends at {search} px")
            if "01_pairs" in name:
                grid, box = page.evaluate("() => [document.querySelector('.crl-augment .crl-tiles').scrollWidth,"
                                          " document.querySelector('.crl-augment').clientWidth]")
                if grid > box:
                    problems.append(f"{name}: the augmentation grid is {grid} px in a {box} px box")
            page.close()
        for width in (1280, 1400):
            page, _ = _open_at(browser, out / "notebooks" / f"{site.executed[0].stem}.html", width)
            header = page.evaluate("() => document.querySelector('header').offsetHeight")
            if header > 90:
                problems.append(f"header {header} px high at {width} px")
            page.close()
    assert not problems, "\n".join(problems)


def test_a_heading_reached_from_the_page_contents_is_below_the_header(site):
    with _browser() as browser:
        page, _ = _open_at(browser, site.index.parent / "notebooks" / "05_training.html", 1280)
        link = page.locator(".bd-sidebar-secondary a.nav-link").nth(2)
        target = link.get_attribute("href").lstrip("#")
        link.click()
        page.wait_for_timeout(500)
        top, header = page.evaluate("(id) => [document.getElementById(id).getBoundingClientRect().top,"
                                    " document.querySelector('header').getBoundingClientRect().bottom]", target)
        assert top >= header, f"#{target} lands at {top:.0f} px, under the header ending at {header:.0f} px"


def test_figures_have_alt_text_and_explorers_speak_their_values(site):
    out = site.index.parent
    problems = []
    with _browser() as browser:
        for executed in site.executed:
            page, _ = _open_at(browser, out / "notebooks" / f"{executed.stem}.html", 1280)
            for alt in page.evaluate("() => [...document.querySelectorAll('.cell_output img')].map(i => i.alt)"):
                if not alt.startswith("Figure ") or ".png" in alt or "jupyter_execute" in alt:
                    problems.append(f"{executed.stem}: alt text {alt!r}")
            page.close()
        page, _ = _open_at(browser, out / "notebooks" / "04_infonce_and_temperature.html", 1280)
        root = page.locator(".crl-temperature").first
        root.wait_for(timeout=WIDGET_SECONDS * 1000)
        slider = root.locator("input[data-control=temperature]")
        slider.fill("-1.3")
        readout = root.locator("[data-readout=temperature]").inner_text()
        assert slider.get_attribute("aria-valuetext") == readout and "-1.3" not in readout, readout
        page.close()
        page, _ = _open_at(browser, out / "notebooks" / "01_pairs_and_augmentations.html", 1280)
        canvases = page.locator(".crl-augment canvas")
        canvases.first.wait_for(timeout=WIDGET_SECONDS * 1000)
        labels = [canvases.nth(i).get_attribute("aria-label") for i in range(canvases.count())]
        assert labels and all(label and label.startswith("image ") for label in labels), labels
    assert not problems, "\n".join(problems[:20])


def test_no_build_path_is_printed_and_progress_bars_have_room(site):
    out, work = site.index.parent, site.index.parent.parent / "work"
    for path in _pages(out):
        text = path.read_text(encoding="utf-8")
        for build_path in (str(work), str(Path.cwd().resolve()), "site_build"):
            assert build_path not in text, f"{path.name} shows the build path {build_path}"
    with _browser() as browser:
        page, _ = _open_at(browser, out / "notebooks" / "05_training.html", 1280)
        page.wait_for_function(WIDGETS_DONE, timeout=WIDGET_SECONDS * 1000)
        widths = page.evaluate("() => [...document.querySelectorAll('.cell_output .progress')]"
                               ".map(p => p.getBoundingClientRect().width)")
        assert widths and min(widths) >= 150, f"progress bars {widths} px wide"
        page.close()
        page, _ = _open_at(browser, out / "notebooks" / "05_training.html", 1400, scheme="dark")
        page.locator(".crl-maps svg").first.wait_for(timeout=WIDGET_SECONDS * 1000)
        tops = page.evaluate("() => [...document.querySelector('.crl-maps').querySelectorAll('svg.crl-panel')]"
                             ".map(s => Math.round(s.getBoundingClientRect().top))")
        assert len(tops) >= 2 and tops[0] == tops[1], f"the two maps do not stand side by side: tops {tops}"


def test_errors_page_quotes_messages_exactly_and_search_works_offline(site):
    out = site.index.parent
    with _browser() as browser:
        page, errors = _open_at(browser, out / "docs" / "errors.html", 1280)
        table = page.locator("table").first.inner_text()
        assert "--device" in table and "–device" not in table
        assert "<tmp>" in page.locator("article").inner_text()
        assert page.locator("article img").count() == 0, "a message's <...> became an <img>"
        assert not any(quote in table for quote in "‘’“”"), "quotes turned curly"
        cut = page.evaluate("() => [...document.querySelectorAll('article table')]"
                            ".filter(t => t.scrollWidth > t.parentElement.clientWidth + 1).length")
        assert cut == 0, f"{cut} tables wider than the page: their last column is cut off"
        page.close()
        page, errors = _open_at(browser, out / "search.html", 1280)
        page.goto((out / "search.html").as_uri() + "?q=temperature")
        page.locator("#search-results li").first.wait_for(timeout=WIDGET_SECONDS * 1000)
        assert page.locator("#search-results li").count() >= 2
        assert "\\(" not in page.locator("#search-results").inner_text()
        assert not errors, errors


# ---------------------------------------------------------------------------------- refusals, before any work
def _crl(*argv: str) -> tuple[int, list[str]]:
    import contextlib
    import io

    from crl_helpers import cli

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = cli.main(list(argv))
    return status, err.getvalue().splitlines()


def _no_execution():
    def refuse(*args, **kwargs):
        raise AssertionError("a notebook was executed before the refusal")

    return mock.patch("crl_site.build.execute_notebooks", refuse)


@pytest.mark.parametrize("out", ["", ".", "notebooks/site"])
def test_crl_site_refuses_an_out_that_is_not_a_folder_of_its_own(out, monkeypatch, tmp_path):
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)
    with _no_execution():
        status, lines = _crl("site", "--out", out)
    assert status == 2 and len(lines) == 1 and lines[0].startswith("crl: error: --out"), lines


def test_crl_site_without_a_clone_says_so_at_once(monkeypatch, tmp_path):
    """An installed wheel has no notebooks or Sphinx configuration around the package: one line, nothing run."""
    import crl_site.build

    monkeypatch.setattr(crl_site.build, "CONF_DIR", tmp_path / "site-packages" / "docs" / "site")
    monkeypatch.chdir(tmp_path)
    with _no_execution(), mock.patch("crl_site.build._install_npm_assets", side_effect=AssertionError("npm ran")):
        for command in ("site", "lecture"):
            status, lines = _crl(command, "--out", str(tmp_path / "out"))
            assert status == 2 and len(lines) == 1 and "clone of the course's repository" in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site-packages"] or not any(tmp_path.iterdir())


def test_a_second_build_in_the_same_build_folder_is_refused_in_one_line(tmp_path):
    from crl_site import SiteBusy, build_site

    work = tmp_path / "work"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom crl_helpers.run_dir import hold\n"
                               "with hold(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)", str(work)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with _no_execution(), pytest.raises(SiteBusy, match=rf"build folder .*work is in use by another crl site.*"
                                                            rf"process {holder.pid}"):
            build_site("smoke", tmp_path / "html", work_dir=work, log=lambda line: None)
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "html").exists()
