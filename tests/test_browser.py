"""End to end: each explorer renders in a real JupyterLab and redraws when one of its controls moves.

Starts JupyterLab headless on a localhost port that it picks itself (``--port=0``, read back from the
server file it writes), with a token, in a temporary folder; opens a small generated notebook in
headless Chromium through Playwright, runs all cells, waits for the widget's figure, edits the
``jitter_strength`` slider the way a user can (its readout is editable), and checks that the figure
changed and that no "Error displaying widget" appeared.

Needs ``/usr/bin/chromium`` (Debian package ``chromium``) and the ``playwright`` Python package
(no ``playwright install``: the system Chromium is used). Skips with the reason when either is missing.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CRL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVER_START_SECONDS = 120
RENDER_SECONDS = 240  # kernel start, torch import and the first figure on a busy 2-core machine
REDRAW_SECONDS = 90

NOTEBOOK = {
    "cells": [{
        "cell_type": "code", "execution_count": None, "id": "explorer", "metadata": {}, "outputs": [],
        "source": ("from crl_helpers.data import load_dataset\n"
                   "from crl_helpers.widgets import augmentation_explorer\n"
                   "explorer = augmentation_explorer(load_dataset('shapes', 'train', n=3).x, n_views=3, seed=0)\n"
                   "explorer"),
    }],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def _wait_for_server(token: str, process: subprocess.Popen, log: Path, runtime_dir: Path) -> int:
    """The port the server chose (from the jpserver-*.json it writes once listening), when it answers."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            info = json.loads(next(runtime_dir.glob("jpserver-*.json")).read_text())
            port = int(info["port"])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=5) as r:
                if r.status == 200:
                    return port
        except (StopIteration, ValueError, KeyError, OSError):  # no server file yet, half written, or no answer
            time.sleep(1)
    raise RuntimeError(f"jupyter lab did not answer within {SERVER_START_SECONDS} s:\n{log.read_text()[-3000:]}")


def _shutdown_kernels(port: int, token: str) -> None:
    # Kernels run in sessions of their own: ask the server to stop them before stopping the server.
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernels?token={token}", timeout=10) as r:
            kernels = json.load(r)
        for kernel in kernels:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/kernels/{kernel['id']}?token={token}",
                                             method="DELETE")
            urllib.request.urlopen(request, timeout=30).close()
    except OSError:
        pass  # the server is gone already; SIGTERM below is all that is left to do


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # a graceful stop: the server shuts down what it still runs
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _figure_src(page) -> str | None:
    image = page.locator(".jp-OutputArea-output .widget-vbox img").first
    return image.get_attribute("src") if image.count() else None


def run_all(page) -> None:
    # Fire and forget: the command's promise resolves only when every cell has run, and evaluate() would wait.
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def _wait_until(predicate, seconds: float, what: str, page, shots: Path):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    page.screenshot(path=str(shots / "failure.png"), full_page=True)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}; screenshot: {shots / 'failure.png'}")


def _start_lab(tmp_path: Path, notebook: dict, name: str) -> tuple[subprocess.Popen, str, int | None, Path]:
    """A headless JupyterLab serving ``notebook`` as ``name`` from a fresh folder: (server, token, port, log)."""
    root = tmp_path / "lab"
    root.mkdir()
    (root / name).write_text(json.dumps(notebook))
    token, runtime_dir = secrets.token_hex(16), tmp_path / "runtime"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_RUNTIME_DIR=str(runtime_dir),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"))
    log = tmp_path / "jupyter.log"
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--port=0", "--ServerApp.ip=127.0.0.1",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
               "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI containers run as root
    with open(log, "w") as log_file:
        server = subprocess.Popen(command, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        return server, token, _wait_for_server(token, server, log, runtime_dir), log
    except BaseException:
        _stop(server)
        raise


@contextlib.contextmanager
def explorer_page(tmp_path: Path, source: str, what: str, width: int = 1400, browser_drawn: bool = False):
    """JupyterLab in headless Chromium running a one-cell notebook of ``source``; yields ``(page, figure)``
    once the explorer's first figure (a PNG data URL) is shown, or for an explorer drawn in the browser
    (``browser_drawn``: an anywidget of crl_helpers.widgets) ``(page, caption)`` once its caption shows.
    Skips when Chromium or Playwright is missing."""
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (CI installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")
    pytest.importorskip("jupyterlab", reason="pip install jupyterlab")
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    notebook = dict(NOTEBOOK, cells=[dict(NOTEBOOK["cells"][0], source=source)])
    server, token, port, _ = _start_lab(tmp_path, notebook, "explorer.ipynb")
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": width, "height": 1000})
                page.set_default_timeout(RENDER_SECONDS * 1000)
                page.goto(f"http://127.0.0.1:{port}/lab/tree/explorer.ipynb?token={token}")
                page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
                page.wait_for_function("window.jupyterapp && window.jupyterapp.commands.hasCommand('notebook:run-all-cells')")
                run_all(page)
                last_run = [time.monotonic()]

                def rendered():
                    # JupyterLab may ask which kernel to start (a race with its own auto-start): accept the
                    # preselected python3 and run again, since the first request may have been dropped.
                    accept = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
                    if accept.count():
                        accept.first.click()
                        run_all(page)
                        last_run[0] = time.monotonic()
                    # On a loaded machine the run request can also be dropped while the kernel is still
                    # connecting (the cell stays "[ ]:", kernel idle): ask again every 30 s until it runs.
                    prompt = page.locator(".jp-Cell .jp-InputPrompt").first
                    never_ran = prompt.count() and prompt.inner_text().strip() in ("[ ]:", "")
                    if never_ran and time.monotonic() - last_run[0] > 30:
                        run_all(page)
                        last_run[0] = time.monotonic()
                    if browser_drawn:
                        caption = page.locator(".jp-OutputArea-output .crl-explorer .crl-caption")
                        return caption.first.inner_text() if caption.count() and caption.first.inner_text() else None
                    src = _figure_src(page) or ""
                    return src if src.startswith("data:image/png") else None

                first = _wait_until(rendered, RENDER_SECONDS, f"the {what}'s figure", page, tmp_path)
                yield page, first
                page.screenshot(path=str(tmp_path / "after.png"), full_page=True)
                assert "Error displaying widget" not in page.content()
            finally:
                browser.close()
    finally:
        if port is not None:
            _shutdown_kernels(port, token)
        _stop(server)


def set_readout(page, label: str, value: str):
    """Type ``value`` into the editable readout of the slider labelled ``label``, as a user can; returns it."""
    slider = page.locator(".widget-slider", has=page.locator("label", has_text=label)).first
    readout = slider.locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(value)
    page.keyboard.press("Enter")
    return readout


def redrawn(page, first: str, what: str, shots: Path) -> str:
    """The figure's new PNG data URL, once it differs from ``first``."""
    second = _wait_until(lambda: (_figure_src(page) or first) != first and _figure_src(page),
                         REDRAW_SECONDS, f"the figure to redraw after {what}", page, shots)
    assert second.startswith("data:image/png")
    return second


def _caption(page) -> str:
    return page.locator(".jp-OutputArea-output .widget-html").first.inner_text()


@pytest.mark.browser
def test_augmentation_explorer_redraws_in_jupyterlab(tmp_path):
    with explorer_page(tmp_path, NOTEBOOK["cells"][0]["source"], "augmentation explorer") as (page, first):
        readout = set_readout(page, "jitter_strength", "2.0")
        redrawn(page, first, "moving the jitter slider", tmp_path)
        assert "2.00" in readout.inner_text()
        assert "jitter s=2.00" in _caption(page)


@pytest.mark.browser
def test_augmentation_explorer_perspective_and_meters_in_jupyterlab(tmp_path):
    """The explorer's perspective slider redraws the views and its meters show in JupyterLab."""
    source = ("from crl_helpers.data import load_dataset\n"
              "from crl_helpers.pairs import object_masks\n"
              "from crl_helpers.widgets import augmentation_explorer\n"
              "data = load_dataset('shapes', 'train', n=3)\n"
              "explorer = augmentation_explorer(data.x, n_views=3, seed=0, masks=object_masks(data))\n"
              "explorer")
    with explorer_page(tmp_path, source, "augmentation explorer") as (page, first):
        meters = page.locator(".jp-OutputArea-output .widget-label", has_text="of the object inside the crop")
        assert meters.count() == 1 and "%" in meters.first.inner_text()
        assert page.locator(".jp-OutputArea-output .widget-label", has_text="colour histogram").count() == 1
        readout = set_readout(page, "perspective", "0.5")
        redrawn(page, first, "moving the perspective slider", tmp_path)
        assert "0.50" in readout.inner_text()
        assert "perspective 0.50" in _caption(page)


def _browser_caption(page) -> str:
    return page.locator(".jp-OutputArea-output .crl-explorer .crl-caption").first.inner_text()


def _wait_caption(page, text: str, shots: Path) -> str:
    return _wait_until(lambda: text in _browser_caption(page) and _browser_caption(page), REDRAW_SECONDS,
                       f"the caption to show {text!r}", page, shots)


@pytest.mark.browser
def test_run_comparison_explorer_redraws_when_another_run_is_picked(tmp_path):
    source = ("import numpy as np\n"
              "from crl_helpers.widgets import run_comparison_explorer\n"
              "rng = np.random.default_rng(0)\n"
              "maps = {run: {f'epoch {e}': rng.normal(size=(60, 2)) for e in (0, 1, 3)}\n"
              "        for run in ('crop only', 'colour only', 'crop + colour')}\n"
              "colourings = {'class': rng.integers(0, 3, 60), 'object_hue': rng.random(60)}\n"
              "explorer = run_comparison_explorer(maps, colourings, names=['a', 'b', 'c'])\n"
              "explorer")
    with explorer_page(tmp_path, source, "run comparison", browser_drawn=True) as (page, first):
        assert "crop only vs colour only at epoch 3" in first
        page.locator(".crl-maps select[data-control=right]").select_option("crop + colour")
        _wait_caption(page, "crop only vs crop + colour at epoch 3", tmp_path)
        page.locator(".crl-maps input[data-control=snapshot]").fill("0")
        _wait_caption(page, "crop only vs crop + colour at epoch 0", tmp_path)


@pytest.mark.browser
def test_temperature_explorer_redraws_in_jupyterlab(tmp_path):
    """Moving the temperature explorer's K slider redraws it in the browser; the kernel's state follows."""
    source = ("from crl_helpers.widgets import temperature_explorer\n"
              "explorer = temperature_explorer(temperature=0.5, train_steps=10, n_points=16)\n"
              "explorer")
    with explorer_page(tmp_path, source, "temperature explorer", width=1600, browser_drawn=True) as (page, first):
        assert "K = 15 negatives" in first
        k_input = page.locator(".crl-temperature input[data-control=n_negatives]")
        options = json.loads(k_input.get_attribute("data-options"))
        k_input.fill(str(options.index(63)))
        _wait_caption(page, "K = 63 negatives", tmp_path)
        assert page.locator(".crl-temperature [data-readout=n_negatives]").inner_text() == "63"
