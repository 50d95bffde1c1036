"""JupyterLab as a user meets it: `make lab` serves the notebooks; Chromium runs both in it."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import pytest

from conftest import write_notebook_kernel

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# Quiet, deterministic JupyterLab: no news or update checks, every cell in the page (no
# virtual scrolling), so the test reads outputs as they are drawn.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}
RUN_TIMEOUT_MS = 150_000

pytestmark = pytest.mark.slow
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def jupyter_env(home: Path) -> dict[str, str]:
    """The environment for a JupyterLab of the test's own: config, data and settings in ``home``."""
    folders = {
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_DATA_DIR": "data",
        "JUPYTER_RUNTIME_DIR": "runtime",
        "JUPYTERLAB_SETTINGS_DIR": "settings",
        "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
    }
    for name, text in LAB_SETTINGS.items():
        path = home / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(text))
    src = str(ROOT / "src")
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, **{k: str(home / v) for k, v in folders.items()}, "PYTHONPATH": path}


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def wait_for_http(url: str, process: subprocess.Popen, log: Path, *, timeout_s: float) -> Any:
    """Poll ``url`` until it answers 200 (bounded); fail with the log if the server dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return get_json(url)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def running(command: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> Iterator[Any]:
    """Start ``command`` in its own process group; stop that group (only it) afterwards."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def overlay_venv(path: Path) -> Path:
    """A virtual environment that sees this one's packages and that ``make install`` counts as
    built, so ``make lab VENV=path`` runs its own steps (notebooks extra, kernel) on top of it
    without changing the environment running the tests."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    target = Path(sysconfig.get_paths(vars={"base": str(path), "platbase": str(path)})["purelib"])
    shared = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (target / "_tested_environment.pth").write_text("\n".join(sorted(shared)) + "\n")
    (path / ".installed").touch()
    return path


def wait_for_line(log: Path, pattern: str, process: subprocess.Popen, *, timeout_s: float) -> str:
    """Wait (bounded) until the log has a match of ``pattern``; return its first group."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text())
        if found:
            return found.group(1)
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"no {pattern!r} within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_prints_its_url_and_serves_the_notebooks_with_the_sliceseg_kernel(tmp_path):
    venv = overlay_venv(tmp_path / "venv")
    port, log = free_port(), tmp_path / "lab.log"
    base = f"http://127.0.0.1:{port}"
    command = ["make", "lab", f"VENV={venv}", f"PORT={port}"]
    with running(command, cwd=ROOT, env=jupyter_env(tmp_path / "home"), log=log) as process:
        url = rf"({re.escape(base)}/lab\?token=[0-9a-f]{{32,}})\s"
        token = wait_for_line(log, url, process, timeout_s=240).rsplit("=", 1)[1]
        status = wait_for_http(f"{base}/api/status?token={token}", process, log, timeout_s=60)
        contents = get_json(f"{base}/api/contents?token={token}")
        specs = get_json(f"{base}/api/kernelspecs?token={token}")["kernelspecs"]
        with pytest.raises(urllib.error.HTTPError, match="403"):
            get_json(f"{base}/api/contents")  # the token is needed
    assert status["started"]
    assert {"train.ipynb", "test.ipynb"} <= {item["name"] for item in contents["content"]}
    assert specs["sliceseg"]["spec"]["display_name"] == "Python (sliceseg)"
    assert Path(specs["sliceseg"]["spec"]["argv"][0]).parent == venv / "bin"
    assert (venv / ".notebooks").is_file()


class Lab:
    """A JupyterLab of the test's own, serving ``root``."""

    def __init__(self, root: Path, base: str, token: str) -> None:
        self.root, self.base, self.token = root, base, token

    def url(self, name: str) -> str:
        """The notebook alone in a fresh workspace of its own (no tabs restored)."""
        workspace = Path(name).stem
        return f"{self.base}/lab/workspaces/{workspace}/tree/{name}?reset&token={self.token}"

    def add_notebook(self, name: str, parameters: dict[str, Any]) -> str:
        """Copy a notebook with the settings injected as papermill does, not executed."""
        from papermill.iorw import load_notebook_node
        from papermill.parameterize import parameterize_notebook

        notebook = load_notebook_node(str(ROOT / "notebooks" / name))
        nbformat.write(parameterize_notebook(notebook, parameters), self.root / name)
        return name


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    pytest.importorskip("papermill")
    pytest.importorskip("jupyterlab")
    home = tmp_path_factory.mktemp("lab")
    root = home / "work"
    root.mkdir()
    port, token = free_port(), secrets.token_hex(12)
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        "--LabApp.extension_manager=readonly",
    ]
    log = home / "lab.log"
    write_notebook_kernel(home / "data")  # JUPYTER_DATA_DIR: as `make lab` registers it
    with running(command, cwd=root, env=jupyter_env(home), log=log) as process:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/api/status?token={token}", process, log, timeout_s=120)
        yield Lab(root, base, token)


@pytest.fixture()
def page(tmp_path: Path) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            yield page
        finally:
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            browser.close()


# True when every code cell has run ("[n]:"), or when one failed (JupyterLab stops there).
ALL_RUN_OR_FAILED = """() => {
    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
    const stderr = '[data-mime-type="application/vnd.jupyter.stderr"]';
    const isError = [...document.querySelectorAll(stderr)].some(
        e => /Error|Traceback/.test(e.textContent));
    return isError || (prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent)));
}"""


# The status bar reads "Python (sliceseg) | Idle" once the notebook's kernel is connected.
KERNEL_IDLE = r"""() => /Python \(sliceseg\) \| Idle/.test(
    document.querySelector('#jp-main-statusbar')?.innerText ?? '')"""


def run_all_cells(page: Any, url: str) -> None:
    """Open a notebook, wait for its kernel, run Run ▸ Run All Cells and wait until done."""
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=90_000)
    page.wait_for_function(KERNEL_IDLE, timeout=90_000, polling=500)
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
    page.wait_for_function(ALL_RUN_OR_FAILED, timeout=RUN_TIMEOUT_MS, polling=500)
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    if not all(p.strip("[]: ").isdigit() for p in prompts):
        errors = page.locator(".jp-OutputArea-output").all_inner_texts()
        pytest.fail("a cell failed in JupyterLab:\n" + "\n".join(errors)[-3000:])


TABLE_ROWS = """table => [...table.querySelectorAll('tr')].map(
    row => [...row.querySelectorAll('th, td')].map(cell => cell.textContent.trim()))"""


@needs_chromium
def test_test_notebook_in_jupyterlab(lab, page, tiny_phantom, tiny_model):
    dicom_dir = tiny_phantom / "test" / "dicoms"
    settings = {"dicom_dir": str(dicom_dir), "model_path": str(tiny_model), "overwrite": True}
    started = time.monotonic()
    run_all_cells(page, lab.url(lab.add_notebook("test.ipynb", settings)))
    seconds = time.monotonic() - started
    assert page.locator('.jp-OutputArea-output img[src^="data:image/gif;base64,"]').count() == 1
    chooser = page.locator(".jp-OutputArea-output .widget-vbox", has_text="DICOM folder to segment")
    assert chooser.get_by_role("button", name="Select").is_visible()
    shown = page.locator(".jp-OutputArea-output table.dataframe").first.evaluate(TABLE_ROWS)
    csv = pd.read_csv(lab.root / "results" / "csa.csv", index_col="slice", dtype={"slice": str})
    header, rows = shown[0], [r for r in shown[1:] if len(r) == len(shown[0])]
    assert header[1:] == list(csv.columns)
    assert [r[0] for r in rows] == list(csv.index)
    assert [r[1] for r in rows] == csv["file"].fillna("").tolist()
    on_page = np.array([[float(v) for v in r[2:]] for r in rows])
    np.testing.assert_allclose(on_page, csv[header[2:]].to_numpy(float), rtol=1e-5, atol=1e-6)
    assert np.nansum(on_page) > 0
    print(f"test.ipynb ran in JupyterLab in {seconds:.1f} s")
    choose_subfolder_and_rerun(page, chooser, dicom_dir)


def choose_subfolder_and_rerun(page: Any, chooser: Any, dicom_dir: Path) -> None:
    """Pick the first subject's folder with the widget, run the next cell, see it used."""
    subject = sorted(p.name for p in dicom_dir.iterdir())[0]
    chooser.get_by_role("button", name="Select").click()
    chooser.locator("select").last.select_option(label=f"\U0001f4c1 {subject}")
    chooser.get_by_role("button", name="Select").click()
    cell = page.locator(".jp-CodeCell", has_text="dicom_dir = picker.selected")
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    n_slices = len(list((dicom_dir / subject).rglob("*.dcm")))
    output = cell.locator(".jp-OutputArea-output", has_text=f"Segmented {n_slices} slices")
    output.wait_for(timeout=60_000)
    # the progress bar's widget splits the cell's printed lines into several outputs
    shown = cell.locator(".jp-Cell-outputArea").inner_text()
    assert f"DICOM folder to segment: {dicom_dir / subject} (chosen above)." in shown


@needs_chromium
def test_train_notebook_in_jupyterlab(lab, page, tiny_phantom):
    settings = {
        "data_dir": str(tiny_phantom / "train"),
        "out_dir": "model",
        "epochs": 3,
        "input_shape": 64,
        "batch_size": 4,
        "print_checkpoint": 1,
        "save_checkpoint": 3,
    }
    started = time.monotonic()
    run_all_cells(page, lab.url(lab.add_notebook("train.ipynb", settings)))
    seconds = time.monotonic() - started
    curves = page.locator('.jp-OutputArea-output img[alt="sliceseg training curves"]')
    assert curves.count() == 1  # one figure, redrawn in place
    assert curves.get_attribute("src").startswith("data:image/png;base64,")
    assert curves.evaluate("img => img.naturalWidth") > 600
    caption = page.locator(".jp-OutputArea-output figcaption").inner_text()
    assert caption == "Training curves after epoch 3/3"
    assert page.get_by_text("Completed epochs: 3/3 | Dice loss:").count() == 1
    history = pd.read_csv(lab.root / "model" / "sliceseg_history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    print(f"train.ipynb ran in JupyterLab in {seconds:.1f} s")
