"""Rank lists and CMC curves drawn from the embeddings the evaluation already computed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reid_core.config import load_config


@pytest.fixture(scope="module")
def evaluated(exp_root):
    """An untrained micro model scored on val, with its embeddings (no second pass)."""
    from experiments.run import evaluate

    cfg = load_config(preset="micro")
    result, emb, protocol, root = evaluate(
        cfg, exp_root, checkpoint=None, split="val", out=None, with_embeddings=True
    )
    return result, emb, protocol, root


def test_default_result_is_unchanged_and_json(evaluated, exp_root):
    from experiments.run import evaluate

    result, emb, protocol, _ = evaluated
    plain = evaluate(load_config(preset="micro"), exp_root, checkpoint=None, split="val", out=None)
    assert json.loads(json.dumps(plain)) == plain
    assert set(plain) == set(result) and list(plain["sets"]) == list(result["sets"])
    for key, metrics in plain["sets"].items():
        assert metrics == pytest.approx(result["sets"][key], abs=1e-6)
    assert emb.gallery.shape == (len(protocol.gallery), emb.gallery.shape[1])
    assert list(emb.sets) == [qs.key for qs in protocol.sets]


def test_embeddings_reproduce_the_metrics_and_cmc(evaluated):
    from experiments.artifacts import cmc_from_embeddings
    from reid_core.evaluation.metrics import retrieval_metrics_from_features

    result, emb, _, _ = evaluated
    curves = cmc_from_embeddings(emb, max_rank=20)
    for key, metrics in result["sets"].items():
        q, qid = emb.sets[key]
        again = retrieval_metrics_from_features(q, emb.gallery, qid, emb.gallery_ids, k=100)
        assert again["mAP"] == pytest.approx(metrics["mAP"], abs=1e-6)
        assert curves[key][0] == pytest.approx(metrics["R1"], abs=1e-6)
        assert curves[key][9] == pytest.approx(metrics["R10"], abs=1e-6)


def test_rank_rows_are_seeded_and_mark_the_first_match(evaluated):
    from experiments.ranklist import rank_rows

    _, emb, protocol, _ = evaluated
    a = rank_rows(emb, protocol, "nir", 4, seed=3)
    assert [r.pid for r in a] == [r.pid for r in rank_rows(emb, protocol, "nir", 4, seed=3)]
    assert len(a) == min(4, len(emb.sets["nir"][1]))  # val holds only a few queries per set
    g_ids = emb.gallery_ids.numpy()
    for row in a:
        assert len(row.top) == 10 and row.scores == sorted(row.scores, reverse=True)
        hits = [i + 1 for i, g in enumerate(row.top) if g_ids[g] == row.pid]
        assert row.first_match >= 1
        assert (hits[0] if hits else None) == (row.first_match if row.first_match <= 10 else None)


def test_write_rank_lists_draws_singles_and_quadruple(evaluated, tmp_path):
    from PIL import Image

    from experiments.ranklist import write_rank_lists

    _, emb, protocol, root = evaluated
    files = write_rank_lists(emb, protocol, root, tmp_path, n=2, seed=0)
    assert sorted(f.name for f in files) == sorted(
        f"ranklist_{k}.png" for k in ("nir", "cp", "sk", "text", "nir_cp_sk_text")
    )
    with Image.open(files[0]) as img:
        w, h = img.size
        pixels = np.asarray(img.convert("RGB"))
    assert w > 2 * h  # queries left, ten gallery images right
    green = ((pixels[..., 1] > 150) & (pixels[..., 0] < 80) & (pixels[..., 2] < 80)).sum()
    red = ((pixels[..., 0] > 180) & (pixels[..., 1] < 70) & (pixels[..., 2] < 70)).sum()
    assert green + red > 1000  # the frames are drawn


def test_eval_cli_writes_rank_lists_untracked(exp_root, tmp_path, capsys):
    from studies.cli import main

    args = ["eval", "--preset", "micro", "--data", str(exp_root), "--split", "val"]
    assert main([*args, "--no-track", "--rank-lists", "1"]) == 2  # nowhere to write
    assert "--rank-lists N needs --out" in capsys.readouterr().err
    out = tmp_path / "eval"
    assert main([*args, "--no-track", "--rank-lists", "2", "--out", str(out)]) == 0
    assert (out / "metrics.json").is_file()
    assert (out / "ranklist_nir_cp_sk_text.png").is_file() and (out / "ranklist_sk.png").is_file()


@pytest.mark.slow
def test_eval_cli_logs_rank_lists_under_plots(exp_root, tmp_path, monkeypatch):
    import mlflow

    from studies.cli import main

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["eval", "--preset", "micro", "--data", str(exp_root), "--split", "val"]
    assert main([*args, "--tracking-uri", uri, "--rank-lists", "2"]) == 0
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("omnireid").experiment_id])
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/ranklist_nir.png" in logged and "plots/ranklist_nir_cp_sk_text.png" in logged
