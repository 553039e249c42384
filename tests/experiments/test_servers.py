"""Servers on loopback: `mlflow models serve` answers /invocations; `reid ui` in a browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from experiments.pyfunc import image_b64
from experiments.ui import stop_process_group
from tests.experiments.conftest import free_port, wait_http

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _env(uri: str) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # uvicorn and mlflow live next to python
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }


@pytest.mark.slow
def test_models_serve_answers_invocations_with_base64_images(champion, tmp_path):
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        "models:/omnireid@champion",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        cmd,
        cwd=champion.home,
        env=_env(champion.uri),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc)
        nir = sorted((champion.root / "nir").rglob("*.jpg"))[0]
        vis = sorted((champion.root / "vis").rglob("*.jpg"))[0]
        records = [
            {"query_id": "q", "modality": "nir", "image_b64": image_b64(nir)},
            {"query_id": "q", "modality": "text", "text": "a person in a dark jacket"},
            {"query_id": "g", "modality": "vis", "image_b64": image_b64(vis)},
        ]
        body = json.dumps({"dataframe_records": records}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            preds = json.loads(resp.read())["predictions"]
    finally:
        stop_process_group(proc)
        log.close()
    assert [p["query_id"] for p in preds] == ["q", "g"]
    for p in preds:
        assert np.linalg.norm(p["bn_features"]) == pytest.approx(1.0, abs=1e-4)


NO_CHROMIUM = (
    "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
)
GENAI_SIDEBAR = ("Training runs", "Evaluation runs", "Agent versions", "Evaluations")


def start_ui(uri: str, cwd: Path, log: Path) -> tuple[subprocess.Popen, str, list[str]]:
    """`reid ui` on a free port: the process, its address and the lines it printed first."""
    port = free_port()
    out = open(log, "w")  # noqa: SIM115 (a file, not a pipe: the server logs every request)
    proc = subprocess.Popen(
        [sys.executable, "-m", "studies.cli", "ui", "--tracking-uri", uri, "--port", str(port)],
        cwd=cwd, env=_env(uri), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    out.close()  # the server holds its own copy
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/health", proc, log)
    printed = [line for line in log.read_text().splitlines() if base in line]
    return proc, base, printed


def chrome():
    """Headless Chromium, as a new user's browser: nothing stored."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1600,1000"):  # fmt: skip
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))


def in_training_mode(text: str) -> bool:
    """The sidebar shows MLflow's Model training mode (runs, models), not its GenAI one."""
    return "Model registry" in text and not any(word in text for word in GENAI_SIDEBAR)


def screenshot(driver, folder: Path, name: str) -> Path:
    path = Path(os.environ.get("OMNIREID_TEST_ARTIFACTS") or folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    return path


def server_processes(pid: int) -> list[int]:
    """`pid` and its descendants (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            todo += [int(c) for c in (task / "children").read_text().split()]
    return found


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=NO_CHROMIUM)
def test_ui_is_one_process_and_shows_the_run_in_training_mode(tracked, tmp_path):
    pytest.importorskip("selenium", reason="selenium (a dev dependency) is not installed")
    from selenium.webdriver.common.by import By

    proc, base, printed = start_ui(tracked.uri, tracked.home, tmp_path / "ui.log")
    driver = None
    try:
        assert printed[0].startswith(f"MLflow UI for {tracked.uri} at {base}")
        if Path("/proc").is_dir():  # `reid ui` became the server: no wrapper, no workers
            assert server_processes(proc.pid) == [proc.pid]
            assert b"uvicorn" in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        driver = chrome()
        (runs,) = [line for line in printed if line.startswith("training runs: ")]
        driver.get(runs.rsplit(" ", 1)[-1])  # the experiment's runs
        run_name = tracked.out.name
        text = _until(driver, lambda text: run_name in text and "Loading" not in text)
        assert in_training_mode(text) and "MLflow Assistant" not in text
        driver.get(f"{base}/#/experiments/{tracked.experiment_id}/runs/{tracked.run_id}")
        text = _until(driver, lambda text: "Metrics (" in text)
        assert in_training_mode(text)  # no URL parameter: the page's stored default
        box = next(
            e
            for e in driver.find_elements(By.TAG_NAME, "input")
            if e.get_attribute("placeholder") == "Search metrics"
        )
        box.send_keys("test/score")
        score = f"{tracked.result['score']:.6f}"[:-1]  # the page shows more digits
        text = _until(driver, lambda text: "Metrics (1)" in text and score in text)
        assert tracked.run_id in text and "test/score" in text
        screenshot(driver, tmp_path, "mlflow-ui.png")
    finally:
        if driver is not None:
            driver.quit()
        stop_process_group(proc)


def _until(driver, ok, timeout: float = 60) -> str:
    from selenium.webdriver.common.by import By

    end = time.monotonic() + timeout
    text = ""
    while time.monotonic() < end:
        text = driver.find_element(By.TAG_NAME, "body").text
        if ok(text):
            return text
        time.sleep(0.5)
    raise AssertionError(f"page never showed what was expected; it shows: {text[:1500]}")
