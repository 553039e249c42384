"""What a researcher sees after a study, in a real browser (headless Chromium, nothing stored):
the link `reid ui` prints opens the study's trials ranked by the value Optuna used, in MLflow's
Model training mode, and so do the trial and parent pages reached by clicking;
optuna-dashboard names the objective and links each trial's MLflow run."""

from __future__ import annotations

import re
import time

import pytest

from tests.experiments.conftest import free_port, wait_http
from tests.experiments.test_servers import (
    CHROMEDRIVER,
    CHROMIUM,
    NO_CHROMIUM,
    _until,
    chrome,
    in_training_mode,
    screenshot,
    start_ui,
)
from tests.studies.conftest import reid, server_env, trials, write_spec

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=NO_CHROMIUM),
]
MAX_SECTIONS = 12


@pytest.fixture(scope="module")
def study_with_a_pruned_trial(tmp_path_factory, study_root):
    """Three trials of study `ui-study`, trial 2 pruned at its first validation; the stores
    and run folders in the returned folder."""
    import optuna

    import studies.study
    from tests.studies.test_studies import _run_here

    class PruneTrial2(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return trial.number == 2

    home = tmp_path_factory.mktemp("ui-study")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(studies.study, "make_pruner", lambda spec: PruneTrial2())
        mp.chdir(home)
        path = write_spec(home, "ui-study", budget={"n_trials": 3})
        _, place = _run_here(path, study_root, home)
    return home, place


def _follow(driver, text: str) -> None:
    """Open the link reading `text` in this tab (description links open a new one)."""
    from selenium.webdriver.common.by import By

    found = driver.find_element(By.XPATH, f"//a[normalize-space()='{text}']")
    driver.get(found.get_attribute("href"))


def _click(driver, text: str) -> None:
    """Click the innermost element reading exactly `text` (a link, a tab)."""
    from selenium.webdriver.common.by import By

    exact = f"normalize-space()='{text}'"
    driver.find_element(By.XPATH, f"//*[{exact} and not(*[{exact}])]").click()


def test_the_printed_link_ranks_the_trials_and_every_page_is_model_training(
    study_with_a_pruned_trial, tmp_path
):
    pytest.importorskip("selenium", reason="selenium (a dev dependency) is not installed")
    home, place = study_with_a_pruned_trial
    got = trials(place.storage, "ui-study")
    ranked = [f"ui-study-t{t.number}" for t in sorted(got, key=lambda t: -(t.value or -1))]
    best = ranked[0]
    proc, _, printed = start_ui(place.tracking_uri, home, tmp_path / "ui.log")
    driver = chrome()
    try:
        (line,) = [x for x in printed if x.startswith("study ui-study")]
        driver.get(line.rsplit(" ", 1)[-1])  # the printed link, as a new user opens it
        text = _until(driver, lambda t: all(r in t for r in ranked) and "Loading" not in t)
        assert in_training_mode(text) and "MLflow Assistant" not in text
        # the trials, best first by the objective, with their params and state: no clicks
        rows = [r for r in text.splitlines() if r in ranked]
        assert rows == ranked
        headers = text[: text.index(ranked[0])]
        for column in ("val/best_score", "test/score", "optim.lr.head", "model.lora.rank",
                       "optuna.state"):  # fmt: skip
            assert column in headers
        assert text.count("PRUNED") == 1 and text.count("COMPLETE") == 2
        screenshot(driver, tmp_path, "study-trials.png")

        _click(driver, best)  # click 1: the best trial's page
        text = _until(driver, lambda t: "Metrics (" in t and best in t)
        assert in_training_mode(text) and "val/best_score" in text
        _click(driver, "Model metrics")  # click 2: its charts
        text = _until(driver, lambda t: "Add chart" in t and "val/mm" in t)
        sections = sum(line.strip() == "Add chart" for line in text.splitlines())
        assert sections <= MAX_SECTIONS, sections
        assert in_training_mode(text)
        _until(driver, lambda t: t.count("Step") >= 2)  # the first charts are drawn
        screenshot(driver, tmp_path, "trial-metrics.png")

        _click(driver, "Overview")
        _until(driver, lambda t: "Description" in t and "Optuna trial" in t)
        _follow(driver, "ui-study")  # click 3: the description's link to the study
        text = _until(driver, lambda t: "best/val_score" in t and "Child runs" in t)
        assert in_training_mode(text) and "best/test_score" in text
        assert "study.sampled_keys" in text and f"trial {best.rsplit('t', 1)[1]}" in text
        screenshot(driver, tmp_path, "study-parent.png")

        _follow(driver, "val/best_score against the sampled params")  # the study's charts
        text = _until(driver, lambda t: "Parallel Coordinates" in t and "val/best_score" in t)
        assert in_training_mode(text)
        screenshot(driver, tmp_path, "study-charts.png")
    finally:
        driver.quit()
        from experiments.ui import stop_process_group

        stop_process_group(proc)


def test_optuna_dashboard_names_the_objective_and_links_each_trials_run(
    study_with_a_pruned_trial, tmp_path
):
    pytest.importorskip("selenium", reason="selenium (a dev dependency) is not installed")
    from selenium.webdriver.common.by import By

    from experiments.ui import stop_process_group

    home, place = study_with_a_pruned_trial
    got = trials(place.storage, "ui-study")
    port = free_port()
    proc = reid("study", "dashboard", "--storage", place.storage, "--port", str(port),
                cwd=home, env=server_env(), start_new_session=True)  # fmt: skip
    driver = chrome()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base, proc)
        driver.get(f"{base}/dashboard/studies/1")
        _until(driver, lambda t: "val/score" in t)
        assert "Objective 0" not in driver.find_element(By.TAG_NAME, "body").text
        for t in got:
            driver.get(f"{base}/dashboard/studies/1/trials?numbers={t.number}")
            run_id = t.user_attrs["mlflow_run_id"]
            _until(driver, lambda text, run_id=run_id: run_id in text)
            time.sleep(0.5)
            hrefs = [a.get_attribute("href") or "" for a in driver.find_elements(By.TAG_NAME, "a")]
            assert any(re.search(f"#/experiments/\\d+/runs/{run_id}\\?workflowType", h)
                       for h in hrefs), hrefs  # fmt: skip
        screenshot(driver, tmp_path, "optuna-dashboard-trial.png")
    finally:
        driver.quit()
        stop_process_group(proc)
