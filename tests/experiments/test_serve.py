"""`reid index build`, `reid search --index` and the search service (API and page)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.experiments.conftest import free_port, wait_http

MODEL = "models:/omnireid/1"
RESULT_KEYS = {"rank", "score", "path", "identity", "thumbnail"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def served(tracked, tmp_path_factory):
    """The tracked run's model, its gallery index (built by the CLI) and the app's client."""
    import mlflow
    from fastapi.testclient import TestClient

    from experiments.gallery.index import open_index
    from experiments.gallery.serve import create_app
    from experiments.registry import load_model
    from studies.cli import main

    mlflow.set_tracking_uri(tracked.uri)
    mlflow.set_registry_uri(tracked.uri)
    index_dir = tmp_path_factory.mktemp("serve") / "index"
    args = ["index", "build", "--model", MODEL, "--gallery", str(tracked.root)]
    assert main([*args, "--out", str(index_dir), "--tracking-uri", tracked.uri]) == 0
    model, index = load_model(MODEL), open_index(index_dir)
    client = TestClient(create_app(model, index, max_bytes=200_000))
    return tracked, index_dir, index, model, client


def _sketch(root: Path) -> Path:
    return sorted((root / "sk").rglob("*.jpg"))[0]


def _one_line(resp) -> str:
    detail = resp.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and detail
    return detail


def test_index_holds_the_gallery_and_the_model(served):
    tracked, _, index, _, _ = served
    assert len(index.paths) == len(list((tracked.root / "vis").rglob("*.jpg")))
    assert index.meta["model"]["name"] == "omnireid" and index.meta["model"]["version"] == "1"
    assert index.meta["model"]["run_id"] == tracked.run_id


def test_search_answers_the_contract(served):
    tracked, _, index, _, client = served
    sk = _sketch(tracked.root)
    files = {"sk": (sk.name, sk.read_bytes(), "image/jpeg")}
    resp = client.post("/search", files=files, data={"text": "a person in a cap", "top": "12"})
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert len(results) == 12 and all(set(r) == RESULT_KEYS for r in results)
    assert [r["rank"] for r in results] == list(range(1, 13))
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    first = results[0]
    assert first["path"] in index.paths and isinstance(first["identity"], int)
    thumb = client.get(first["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size[1] <= 192


def test_cli_search_with_the_index_agrees_with_the_service(served, capsys):
    from studies.cli import main

    tracked, index_dir, _, _, client = served
    sk = _sketch(tracked.root)
    resp = client.post("/search", files={"sk": (sk.name, sk.read_bytes())}, data={"top": "5"})
    expected = [r["path"] for r in resp.json()["results"]]
    args = ["search", "--model", MODEL, "--index", str(index_dir), "--query", f"sk={sk}"]
    assert main([*args, "--top", "5", "--json", "--tracking-uri", tracked.uri]) == 0
    import json

    matches = json.loads(capsys.readouterr().out)["matches"]
    assert [m["path"] for m in matches] == expected
    hnsw = ["--kind", "hnsw", "--top", "5", "--tracking-uri", tracked.uri]
    assert main([*args, *hnsw]) == 0
    assert expected[0] in capsys.readouterr().out


def test_search_refuses_an_index_of_another_model(served, tmp_path, capsys):
    import json

    from studies.cli import main

    tracked, index_dir, _, _, _ = served
    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    meta = json.loads((copy / "index.json").read_text())
    meta["model"] |= {"weights_digest": "0" * 64, "version": "7"}
    (copy / "index.json").write_text(json.dumps(meta))
    sk = _sketch(tracked.root)
    args = ["search", "--model", MODEL, "--index", str(copy), "--query", f"sk={sk}"]
    assert main([*args, "--tracking-uri", tracked.uri]) == 2
    err = capsys.readouterr().err
    assert "was built by omnireid version 7" in err and err.count("\n") == 1


def test_healthz_and_openapi(served):
    _, _, index, _, client = served
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["gallery"] == len(index.paths)
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/search"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body
    page = client.get("/")
    assert page.status_code == 200 and 'name="sk"' in page.text


@pytest.mark.parametrize(
    ("files", "data", "status", "says"),
    [
        ({}, {"top": "5"}, 400, "no query"),
        ({}, {"text": "   "}, 400, "text: the caption is empty"),  # as `reid search` says
        ({"sk": ("x.jpg", b"not an image", "image/jpeg")}, {}, 400, "sk: not a decodable image"),
        ({"nir": ("big.png", b"\x89PNG" + b"0" * 300_000, "image/png")}, {}, 413, "larger than"),
        ({}, {"text": "a man", "colour": "red"}, 400, "unknown field(s) colour"),
        ({"rgb": ("x.jpg", b"x", "image/jpeg")}, {"text": "a man"}, 400, "unknown field(s) rgb"),
        ({}, {"text": "a man", "top": "0"}, 422, "top:"),
        ({}, {"text": "a man", "top": "many"}, 422, "top:"),
        ({}, {"text": "x" * 2001}, 413, "text: longer than"),
    ],
)
def test_bad_requests_get_a_4xx_with_one_line(served, files, data, status, says):
    client = served[-1]
    resp = client.post("/search", files=files or None, data=data)
    assert resp.status_code == status, resp.text
    assert says in _one_line(resp)


def test_huge_pixel_count_and_non_form_bodies_are_refused(served):
    client = served[-1]
    buf = io.BytesIO()
    Image.new("1", (8000, 6000)).save(buf, format="PNG")  # 48 Mpx, a few kB
    resp = client.post("/search", files={"cp": ("bomb.png", buf.getvalue(), "image/png")})
    assert resp.status_code == 413 and "8000x6000 = 48,000,000 pixels" in _one_line(resp)
    resp = client.post("/search", json={"text": "a man"})
    assert resp.status_code == 415 and "multipart" in _one_line(resp)
    assert client.get("/thumbnail/999999").status_code == 404


@pytest.mark.integration
@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="chromium and chromedriver are not installed (apt-get install chromium "
    "chromium-driver; .ci/run does it)",
)
def test_page_in_chromium_ranks_a_sketch_and_caption(served, tmp_path):
    """`reid serve` on loopback; the page: upload a sketch, type a caption, see >= 10 results.

    The screenshot goes to $OMNIREID_TEST_ARTIFACTS (else the test's tmp folder)."""
    pytest.importorskip("selenium", reason="selenium (a dev dependency) is not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    from experiments.ui import stop_process_group

    tracked, index_dir, _, _, _ = served
    port = free_port()
    cmd = [sys.executable, "-m", "studies.cli", "serve", "--model", MODEL, "--index"]
    cmd += [str(index_dir), "--port", str(port), "--tracking-uri", tracked.uri]
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        cmd, cwd=tracked.home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    opts.add_argument("--window-size=1400,900")
    driver = None
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", proc, tmp_path / "serve.log")
        driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
        driver.get(f"{base}/")
        driver.find_element(By.CSS_SELECTOR, "input[name=sk]").send_keys(str(_sketch(tracked.root)))
        driver.find_element(By.ID, "text").send_keys("a person with a bag and a cap")
        driver.find_element(By.ID, "go").click()
        loaded = (
            "return [...document.querySelectorAll('#results .hit img')]"
            ".filter(i => i.complete && i.naturalWidth > 0).length"
        )
        end = time.monotonic() + 60
        while time.monotonic() < end and driver.execute_script(loaded) < 10:
            time.sleep(0.3)
        status = driver.find_element(By.ID, "status").text
        assert driver.execute_script(loaded) >= 10, status
        assert "results in" in status
        ranks = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#results .rank")]
        assert ranks[:10] == [f"#{i}" for i in range(1, 11)]
        folder = Path(os.environ.get("OMNIREID_TEST_ARTIFACTS") or tmp_path)
        folder.mkdir(parents=True, exist_ok=True)
        shot = folder / "serve-page.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        if driver is not None:
            driver.quit()
        stop_process_group(proc)
        log.close()
