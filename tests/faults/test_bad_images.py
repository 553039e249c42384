"""Undecodable images met mid-epoch and at evaluation (`data.on_bad_image: skip | fail`).

skip: each skipped image is one plain stderr line (no Python warning format), the evaluation
leaves out the gallery rows and queries holding one and says how many in its result
(`skipped_images`, `skipped_gallery`, `skipped_queries`), and the run ends with that count.
fail: the run stops with one `error:` line naming the file; the weights written so far are kept
and `reid eval` scores them.
"""

from __future__ import annotations

import json
import re

import pytest

from reid_core.training.checkpoint import load_checkpoint
from tests.faults.conftest import SHORT, reid, split_pids, truncate_first

pytestmark = pytest.mark.integration
SKIP_LINE = re.compile(r"^skipped undecodable image (vis|nir|cp|sk)/\d{4}/\S+ \(.*\)$")


def _train(root, out, mode, *more):
    sets = [*SHORT, f"data.on_bad_image={mode}", *more]
    return reid(
        "train", "--preset", "micro", "--data", root, "--out", out, "--no-track",
        *[a for s in sets for a in ("--set", s)],
    )  # fmt: skip


def _eval(root, checkpoint, out, mode):
    return reid(
        "eval", "--preset", "micro", "--data", root, "--checkpoint", checkpoint, "--out", out,
        "--no-track", "--set", f"data.on_bad_image={mode}",
    )  # fmt: skip


def test_skip_goes_on_through_training_and_evaluation(data_root, tmp_path, capfd):
    bad = truncate_first(data_root, "nir")  # one infrared image per identity, as a user did
    assert _train(data_root, tmp_path / "run", "skip", "train.epochs=1") == 0
    err = capfd.readouterr().err
    assert "Warning" not in err and "warnings.warn" not in err
    skips = [line for line in err.splitlines() if line.startswith("skipped undecodable")]
    assert skips and all(SKIP_LINE.match(line) for line in skips)
    assert {line.split()[3] for line in skips} <= set(bad)
    assert any("evaluation" in line for line in skips)  # met at evaluation, not only training
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["split"] == "test" and 0 <= metrics["score"] <= 1
    assert metrics["skipped_images"] > 0 and metrics["skipped_queries"] > 0
    assert metrics["skipped_gallery"] == 0  # the gallery is RGB, untouched here
    count = f"test: skipped {metrics['skipped_images']} undecodable images"
    assert count in err  # the run ends with the count

    # the trained weights are scorable later, on the same broken data
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    assert _eval(data_root, best, tmp_path / "eval", "skip") == 0
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert scored["skipped_images"] == metrics["skipped_images"]
    assert scored["score"] == pytest.approx(metrics["score"])


def test_skip_leaves_out_a_bad_gallery_image(data_root, tmp_path, capfd):
    bad = truncate_first(data_root, "vis", split_pids(data_root, "test"))
    assert _train(data_root, tmp_path / "run", "skip", "train.epochs=1") == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["skipped_gallery"] == len(bad) and metrics["skipped_images"] >= len(bad)
    assert metrics["gallery_size"] > metrics["skipped_gallery"]


def test_fail_at_evaluation_names_the_file_and_keeps_the_weights(data_root, tmp_path, capfd):
    bad = truncate_first(data_root, "nir", split_pids(data_root, "test"))
    out = tmp_path / "run"
    assert _train(data_root, out, "fail", "train.epochs=1") == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: cannot decode image ") and "Traceback" not in "\n".join(err)
    assert any(path in err[-1] for path in bad)
    best = out / "checkpoints" / "best.pt"
    assert load_checkpoint(best)["epoch"] == 1 and (out / "checkpoints" / "last.pt").is_file()
    assert _eval(data_root, best, tmp_path / "e_fail", "fail") == 2
    assert _eval(data_root, best, tmp_path / "e_skip", "skip") == 0
    scored = json.loads((tmp_path / "e_skip" / "metrics.json").read_text())
    assert scored["skipped_images"] == len(bad) and 0 <= scored["score"] <= 1


def test_fail_mid_epoch_names_the_file_and_keeps_the_checkpoint(data_root, tmp_path, capfd):
    out = tmp_path / "run"
    assert _train(data_root, out, "fail", "train.epochs=1") == 0
    before = (out / "checkpoints" / "last.pt").read_bytes()
    train_pids = split_pids(data_root, "train")
    bad = [p for pid in train_pids for p in truncate_first(data_root, "vis", {pid})]
    capfd.readouterr()
    sets = [*SHORT, "data.on_bad_image=fail", "train.epochs=2"]
    code = reid(
        "train", "--preset", "micro", "--data", data_root, "--out", out, "--no-track", "--resume",
        *[a for s in sets for a in ("--set", s)],
    )  # fmt: skip
    assert code == 2
    last = capfd.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: cannot decode image ") and any(p in last for p in bad)
    assert (out / "checkpoints" / "last.pt").read_bytes() == before  # epoch 1 survives intact
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 1
