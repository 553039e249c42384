"""What a run logs as metrics: names, the best-on-val value a study optimises, profiles."""

from __future__ import annotations

import pytest

from experiments.headline import (
    Best,
    best_name,
    best_of,
    epoch_metrics,
    eval_metrics,
    profile_metrics,
)


@pytest.mark.parametrize(
    ("metric", "best"),
    [
        ("val/score", "val/best_score"),
        ("val/mAP/nir_sk", "val/best_mAP/nir_sk"),
        ("val/mm/2", "val/best_mm/2"),
        ("trainval/score", "trainval/best_score"),
    ],
)
def test_the_best_form_keeps_the_split_first(metric, best):
    assert best_name(metric) == best


def test_the_objective_is_read_at_the_best_val_score_first_of_ties():
    evals = {
        1: {"val/score": 0.4, "val/mAP/nir": 0.9},
        2: {"val/score": 0.6, "val/mAP/nir": 0.2},
        3: {"val/score": 0.6, "val/mAP/nir": 0.8},  # a tie: the checkpoint kept epoch 2
    }
    assert best_of(evals, "val/score", 0.6) == Best("val/score", 0.6, 2)
    assert best_of(evals, "val/mAP/nir", 0.6) == Best("val/mAP/nir", 0.2, 2)
    assert best_of(evals, "val/mAP/sk", 0.6) is None  # never produced
    assert best_of({}, "val/score", None) is None


def test_a_best_score_from_before_a_resume_has_no_epoch():
    evals = {5: {"val/score": 0.3}}  # this run resumed at epoch 4; the best was 0.5 before
    best = best_of(evals, "val/score", 0.5)
    assert best == Best("val/score", 0.5, None)
    assert best.metrics() == {"val/best_score": 0.5}
    assert Best("val/mm/1", 0.7, 3).metrics() == {"val/best_mm/1": 0.7, "val/best_epoch": 3.0}


def test_epoch_logs_become_train_and_perf_metrics_and_per_view_sdm_stays_in_the_table():
    logs = {"loss": 1.0, "lr.head": 0.1, "ce/nir": 0.5, "sdm/nir_cp": 2.0, "samples_per_s": 8.0,
            "epoch_time_s": 3.0, "perf/mfu": 0.2}  # fmt: skip
    assert epoch_metrics(logs) == {
        "train/loss": 1.0,
        "train/lr/head": 0.1,
        "train/ce/nir": 0.5,
        "perf/samples_per_s": 8.0,
        "perf/epoch_time_s": 3.0,
        "perf/mfu": 0.2,
    }


def test_the_headline_of_each_split():
    flat = {f"{s}/{k}": 0.1 for s in ("val", "test", "trainval")
            for k in ("score", "mm/1", "mm/2", "mAP/nir", "mAP/nir_cp", "mAP100/sk")}  # fmt: skip
    assert list(eval_metrics(flat, "val")) == [
        "val/score", "val/mm/1", "val/mm/2", "val/mAP/nir"
    ]  # fmt: skip
    assert list(eval_metrics(flat, "val", "val/mAP100/sk"))[-1] == "val/mAP100/sk"
    assert list(eval_metrics(flat, "test")) == ["test/score", "test/mm/1", "test/mm/2"]
    assert list(eval_metrics(flat, "trainval")) == ["trainval/score"]


def test_a_profile_becomes_perf_metrics():
    profile = {"samples_per_s": 120.5, "step_ms": 8, "mfu": 0.31, "device": "cuda",
               "ok": True, "bad": float("nan")}  # fmt: skip
    assert profile_metrics(profile) == {
        "perf/samples_per_s": 120.5,
        "perf/step_ms": 8.0,
        "perf/mfu": 0.31,
    }
