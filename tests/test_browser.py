"""End to end: the augmentation explorer renders in a real JupyterLab and redraws when a slider moves.

Starts JupyterLab headless on a localhost port that it picks itself (``--port=0``, read back from the
server file it writes), with a token, in a temporary folder; opens a small generated notebook in
headless Chromium through Playwright, runs all cells, waits for the widget's figure, edits the
``jitter_strength`` slider the way a user can (its readout is editable), and checks that the figure
changed and that no "Error displaying widget" appeared.

Needs ``/usr/bin/chromium`` (Debian package ``chromium``) and the ``playwright`` Python package
(no ``playwright install``: the system Chromium is used). Skips with the reason when either is missing.
"""
from __future__ import annotations

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


@pytest.mark.browser
def test_augmentation_explorer_redraws_in_jupyterlab(tmp_path):
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (CI installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")
    pytest.importorskip("jupyterlab", reason="pip install jupyterlab")
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")

    root = tmp_path / "lab"
    root.mkdir()
    (root / "explorer.ipynb").write_text(json.dumps(NOTEBOOK))
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
    port = None
    try:
        port = _wait_for_server(token, server, log, runtime_dir)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
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
                    src = _figure_src(page) or ""
                    return src if src.startswith("data:image/png") else None

                first = _wait_until(rendered, RENDER_SECONDS, "the explorer's figure", page, tmp_path)
                page.screenshot(path=str(tmp_path / "before.png"), full_page=True)

                slider = page.locator(".widget-slider", has=page.locator("label", has_text="jitter_strength")).first
                readout = slider.locator(".widget-readout")
                readout.click()
                page.keyboard.press("Control+A")
                page.keyboard.type("2.0")
                page.keyboard.press("Enter")

                second = _wait_until(lambda: (_figure_src(page) or first) != first and _figure_src(page),
                                     REDRAW_SECONDS, "the figure to redraw after moving the slider", page, tmp_path)
                page.screenshot(path=str(tmp_path / "after.png"), full_page=True)
                assert second.startswith("data:image/png")
                assert "2.00" in readout.inner_text()
                assert "Error displaying widget" not in page.content()
                assert "jitter s=2.00" in page.locator(".jp-OutputArea-output .widget-html").first.inner_text()
            finally:
                browser.close()
    finally:
        if port is not None:
            _shutdown_kernels(port, token)
        _stop(server)


TEMPERATURE_NOTEBOOK = {
    "cells": [{
        "cell_type": "code", "execution_count": None, "id": "temperature", "metadata": {}, "outputs": [],
        "source": ("from crl_helpers.widgets import temperature_explorer\n"
                   "explorer = temperature_explorer(temperature=0.5, train_steps=10, n_points=16)\n"
                   "explorer"),
    }],
    "metadata": NOTEBOOK["metadata"], "nbformat": 4, "nbformat_minor": 5,
}


@pytest.mark.browser
def test_temperature_explorer_redraws_in_jupyterlab(tmp_path):
    """The temperature explorer in a real JupyterLab: typing a new K into its slider redraws the figure and caption."""
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (CI installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")
    pytest.importorskip("jupyterlab", reason="pip install jupyterlab")
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")

    root = tmp_path / "lab"
    root.mkdir()
    (root / "temperature.ipynb").write_text(json.dumps(TEMPERATURE_NOTEBOOK))
    token, runtime_dir = secrets.token_hex(16), tmp_path / "runtime"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_RUNTIME_DIR=str(runtime_dir),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"))
    log = tmp_path / "jupyter.log"
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--port=0", "--ServerApp.ip=127.0.0.1",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
               "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    with open(log, "w") as log_file:
        server = subprocess.Popen(command, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    port = None
    try:
        port = _wait_for_server(token, server, log, runtime_dir)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.set_default_timeout(RENDER_SECONDS * 1000)
                page.goto(f"http://127.0.0.1:{port}/lab/tree/temperature.ipynb?token={token}")
                page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
                page.wait_for_function("window.jupyterapp && window.jupyterapp.commands.hasCommand('notebook:run-all-cells')")
                run_all(page)
                last_run = [time.monotonic()]

                def rendered():
                    accept = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
                    if accept.count():  # JupyterLab may ask which kernel to start: accept python3, run again
                        accept.first.click()
                        run_all(page)
                        last_run[0] = time.monotonic()
                    prompt = page.locator(".jp-Cell .jp-InputPrompt").first
                    if prompt.count() and prompt.inner_text().strip() in ("[ ]:", "") \
                            and time.monotonic() - last_run[0] > 30:  # a dropped run request: ask again
                        run_all(page)
                        last_run[0] = time.monotonic()
                    src = _figure_src(page) or ""
                    return src if src.startswith("data:image/png") else None

                first = _wait_until(rendered, RENDER_SECONDS, "the temperature explorer's figure", page, tmp_path)
                caption = page.locator(".jp-OutputArea-output .widget-html").first
                assert "K = 15 negatives" in caption.inner_text()

                slider = page.locator(".widget-slider", has=page.locator("label", has_text="K negatives")).first
                readout = slider.locator(".widget-readout")
                readout.click()
                page.keyboard.press("Control+A")
                page.keyboard.type("63")
                page.keyboard.press("Enter")

                second = _wait_until(lambda: (_figure_src(page) or first) != first and _figure_src(page),
                                     REDRAW_SECONDS, "the figure to redraw after setting K", page, tmp_path)
                page.screenshot(path=str(tmp_path / "after.png"), full_page=True)
                assert second.startswith("data:image/png")
                assert "K = 63 negatives" in caption.inner_text()
                assert "Error displaying widget" not in page.content()
            finally:
                browser.close()
    finally:
        if port is not None:
            _shutdown_kernels(port, token)
        _stop(server)
