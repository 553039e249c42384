"""The MLflow UI shows a study as a parent run with its trials as child runs (headless Chromium)."""

from __future__ import annotations

import sys

import pytest

from tests.experiments.conftest import free_port, wait_http
from tests.experiments.test_servers import CHROMEDRIVER, CHROMIUM, _until
from tests.studies.conftest import reid, server_env, write_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
def test_ui_opens_the_parent_run_and_lists_its_trials(tmp_path, monkeypatch, study_root):
    pytest.importorskip("selenium", reason="selenium (a dev dependency) is not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from experiments.ui import stop_process_group
    from tests.studies.test_studies import _run_here

    monkeypatch.chdir(tmp_path)
    _, place = _run_here(write_spec(tmp_path, "ui-study"), study_root, tmp_path)
    from tests.studies.test_studies import _runs

    _, (parent,) = _runs(tmp_path, "study")
    port = free_port()
    cmd = [sys.executable, "-m", "studies.cli", "ui", "--tracking-uri", place.tracking_uri]
    proc = reid(*cmd[3:], "--port", str(port), cwd=tmp_path, env=server_env(),
                start_new_session=True)  # fmt: skip
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1600,1000"):  # fmt: skip
        opts.add_argument(arg)
    driver = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health", proc)
        driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
        exp = parent.info.experiment_id
        driver.get(f"{base}/#/experiments/{exp}/runs/{parent.info.run_id}")
        text = _until(driver, lambda t: "Child runs" in t and "ui-study-t1" in t)
        assert "ui-study-t0" in text and "study.sampled_keys" in text
        driver.save_screenshot(str(tmp_path / "parent-run.png"))
    finally:
        if driver is not None:
            driver.quit()
        stop_process_group(proc)
