"""retrieval_metrics against a plain per-query loop, hand-computed cases, and summarize()."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reid_core.evaluation.metrics import (
    metric_names,
    retrieval_metrics,
    retrieval_metrics_from_features,
    summarize,
)

METRICS = ("mAP", "mAP100", "mINP", "R1", "R5", "R10")


def reference(sim: np.ndarray, qids: np.ndarray, gids: np.ndarray, k: int = 100) -> dict:
    """The definitions, one query at a time, from a stable argsort of each row."""
    rows = []
    for row, qid in zip(sim, qids, strict=True):
        order = np.argsort(-row.astype(np.float64), kind="stable")
        ranks = np.flatnonzero(gids[order] == qid) + 1
        if len(ranks) == 0:
            continue
        precision = np.arange(1, len(ranks) + 1) / ranks
        ap_k = precision[ranks <= k].sum() / min(len(ranks), k)
        inp = len(ranks) / ranks[-1]
        rows.append([precision.mean(), ap_k, inp, *(float(ranks[0] <= r) for r in (1, 5, 10))])
    means = np.mean(rows, axis=0)
    names = ("mAP", f"mAP{k}", "mINP", "R1", "R5", "R10")
    return {**dict(zip(names, means, strict=True)), "num_queries": len(rows)}


def random_case(seed: int, q: int, g: int, ids: int, levels: int | None = None, dtype=np.float32):
    """Random scores; with `levels` integer-valued (negatives too) so most positives tie."""
    rng = np.random.default_rng(seed)
    qids = rng.integers(0, ids, q)
    gids = rng.integers(0, ids, g)
    sim = rng.integers(-levels // 2, levels, (q, g)) if levels else rng.standard_normal((q, g))
    return sim.astype(dtype), qids, gids


def assert_matches(got: dict, want: dict, k: int = 100) -> None:
    for name in ("mAP", f"mAP{k}", "mINP", "R1", "R5", "R10"):
        assert got[name] == pytest.approx(want[name], abs=1e-6), name
    assert got["num_queries"] == want["num_queries"]


@pytest.mark.parametrize(
    ("seed", "levels", "k"),
    [(0, None, 100), (1, 3, 100), (2, 7, 5), (3, 40, 100), (4, 1000, 10), (5, 2, 1)],
)
def test_matches_reference_loop_with_ties(seed: int, levels: int | None, k: int) -> None:
    sim, qids, gids = random_case(seed, q=60, g=300, ids=12, levels=levels)
    assert_matches(retrieval_metrics(sim, qids, gids, k=k), reference(sim, qids, gids, k), k)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int16])
def test_many_ties_in_other_dtypes(dtype) -> None:
    sim, qids, gids = random_case(6, q=40, g=400, ids=5, levels=9, dtype=dtype)
    assert_matches(retrieval_metrics(sim, qids, gids), reference(sim, qids, gids))


def test_negative_zero_ties_with_zero() -> None:
    sim = np.array([[0.0, -0.0, 1.0, -0.0, 0.0]] * 2, np.float32)
    sim = np.tile(sim, (1, 8))  # 40 columns: > 16 tied positives takes the sort-key path
    gids = np.tile([0, 1, 0, 1, 1], 8)
    for qids in (np.array([1, 0]), np.array([1, 1])):
        assert_matches(retrieval_metrics(sim, qids, gids), reference(sim, qids, gids))
        assert_matches(
            retrieval_metrics(sim[:, :5], qids, gids[:5]), reference(sim[:, :5], qids, gids[:5])
        )


def test_few_ties_per_row_and_many_positives() -> None:
    # Coarse floats: a handful of ties per row (compare path); 4 ids: >16 tied (argsort path).
    rng = np.random.default_rng(7)
    sim = np.round(rng.standard_normal((40, 500)), 2).astype(np.float32)
    for ids in (40, 4):
        qids, gids = rng.integers(0, ids, 40), rng.integers(0, ids, 500)
        assert_matches(retrieval_metrics(sim, qids, gids), reference(sim, qids, gids))


def test_queries_without_positives_are_skipped_and_counted() -> None:
    sim, qids, gids = random_case(8, q=50, g=200, ids=10, levels=5)
    qids[::5] = 99  # not in the gallery
    got = retrieval_metrics(sim, qids, gids)
    assert got["num_skipped"] == 10 and got["num_queries"] == 40
    assert_matches(got, reference(sim, qids, gids))


def test_no_query_with_positives_is_an_error() -> None:
    with pytest.raises(ValueError, match="no query has a positive"):
        retrieval_metrics(np.zeros((2, 3)), np.array([5, 6]), np.array([1, 2, 3]))


def test_torch_input_equals_numpy_input() -> None:
    sim, qids, gids = random_case(9, q=30, g=120, ids=6, levels=4)
    want = retrieval_metrics(sim, qids, gids)
    got = retrieval_metrics(torch.from_numpy(sim), torch.from_numpy(qids), torch.from_numpy(gids))
    assert got == want
    half = retrieval_metrics(torch.from_numpy(sim).bfloat16(), qids, gids)  # exact: small ints
    assert half == want


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_chunked_equals_unchunked(chunk_size: int) -> None:
    sim, qids, gids = random_case(10, q=50, g=200, ids=8, levels=6)
    qids[:3] = -1
    assert retrieval_metrics(sim, qids, gids, chunk_size=chunk_size) == retrieval_metrics(
        sim, qids, gids
    )


def test_from_features_equals_full_similarity() -> None:
    rng = np.random.default_rng(11)
    q = torch.from_numpy(rng.standard_normal((25, 8)))
    g = torch.from_numpy(rng.standard_normal((90, 8)))
    qids, gids = rng.integers(0, 5, 25), rng.integers(0, 5, 90)
    got = retrieval_metrics_from_features(q, g, qids, gids, chunk_size=4)
    assert_matches(got, reference((q @ g.T).numpy(), qids, gids))


def test_hand_computed_ranks() -> None:
    # Gallery order after sorting: a(+) b(-) c(+) d(-) e(-): positives at ranks 1 and 3.
    sim = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    got = retrieval_metrics(sim, np.array([1]), np.array([1, 0, 1, 0, 0]))
    assert got["mAP"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert got["mAP100"] == got["mAP"]
    assert got["mINP"] == pytest.approx(2 / 3)
    assert (got["R1"], got["R5"], got["R10"]) == (1.0, 1.0, 1.0)


def test_hand_computed_first_hit_late() -> None:
    # 12 items, the only positive last: AP = INP = 1/12, R1 = R5 = R10 = 0.
    sim = -np.arange(12.0)[None]
    gids = np.zeros(12, int)
    gids[-1] = 1
    got = retrieval_metrics(sim, np.array([1]), gids)
    assert got["mAP"] == got["mINP"] == pytest.approx(1 / 12)
    assert (got["R1"], got["R5"], got["R10"]) == (0.0, 0.0, 0.0)


def test_ties_keep_gallery_order() -> None:
    # All equal: the positive at gallery index 2 ranks 3rd, not 1st.
    got = retrieval_metrics(np.ones((1, 4)), np.array([7]), np.array([0, 0, 7, 0]))
    assert got["mAP"] == pytest.approx(1 / 3)
    assert got["R1"] == 0.0 and got["R5"] == 1.0


def test_k_smaller_than_number_of_positives() -> None:
    # Positives at ranks 1, 2, 4, 5; k = 2 counts only ranks 1 and 2, divided by min(4, 2).
    sim = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
    got = retrieval_metrics(sim, np.array([1]), np.array([1, 1, 0, 1, 1]), k=2)
    assert got["mAP2"] == pytest.approx(1.0)
    assert got["mAP"] == pytest.approx((1 + 1 + 3 / 4 + 4 / 5) / 4)
    assert got["mINP"] == pytest.approx(4 / 5)


@pytest.mark.parametrize(
    ("sim", "qids", "gids", "k"),
    [
        (np.zeros((2, 3)), np.array([1]), np.array([1, 2, 3]), 100),
        (np.zeros(3), np.array([1]), np.array([1, 2, 3]), 100),
        (np.zeros((1, 3)), np.array([1]), np.array([1, 2, 3]), 0),
        (np.array([[np.nan, 0.0, 1.0]]), np.array([1]), np.array([1, 2, 3]), 100),
    ],
)
def test_bad_input(sim, qids, gids, k) -> None:
    with pytest.raises(ValueError):
        retrieval_metrics(sim, qids, gids, k=k)


def test_chunk_size_below_one_is_an_error() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        retrieval_metrics(np.zeros((1, 3)), np.array([1]), np.array([1, 2, 3]), chunk_size=0)


def test_summarize_groups_and_score() -> None:
    per_set = {
        "nir": {"mAP100": 0.2},
        "cp": {"mAP100": 0.4},
        "nir_cp": {"mAP100": 0.5},
        "nir_cp_sk": {"mAP100": 0.6},
        "nir_cp_sk_text": {"mAP100": 0.9},
    }
    sizes = {name: name.count("_") + 1 for name in per_set}
    got = summarize(per_set, sizes)
    assert got == pytest.approx({"mm1": 0.3, "mm2": 0.5, "mm3": 0.6, "mm4": 0.9, "score": 0.575})
    names = metric_names("val", per_set, got)
    assert names["val/mAP100/nir_cp"] == 0.5 and names["val/score"] == pytest.approx(0.575)


def test_summarize_missing_groups_and_unknown_set() -> None:
    got = summarize(
        {"nir": {"mAP100": 0.2}, "nir_text": {"mAP100": 0.6}}, {"nir": 1, "nir_text": 2}
    )
    assert got["score"] == pytest.approx(0.4) and "mm3" not in got
    with pytest.raises(KeyError, match="sk"):
        summarize({"sk": {"mAP100": 0.1}}, {"nir": 1})
