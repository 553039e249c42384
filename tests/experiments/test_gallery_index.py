"""Gallery index: build (resumable), refusal of another model, exact and faiss top-k."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from experiments.gallery.index import (
    GalleryIndexError,
    build_faiss,
    build_index,
    exact_topk,
    faiss_topk,
    open_index,
)

DIM = 16


class FakeModel:
    """Embeds a path by its name's hash (no torch): enough to test the index's bookkeeping."""

    def __init__(self, digest: str = "a" * 64, fail_after: int | None = None) -> None:
        self.digest = digest
        self.calls = 0
        self.fail_after = fail_after

    def weights_digest(self) -> str:
        return self.digest

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-build
        self.calls += 1
        feats = [vector(p) for p in frame["path"]]
        return pd.DataFrame({"query_id": frame["query_id"], "bn_features": feats})


def vector(path: str) -> list[float]:
    seed = int(hashlib.sha256(path.rsplit("/", 1)[-1].encode()).hexdigest()[:8], 16)
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


@pytest.fixture
def gallery(tmp_path):
    root = tmp_path / "data" / "vis"
    for pid in range(1, 6):
        folder = root / f"{pid:04d}"
        folder.mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (4, 8), (pid * 40, k * 60, 0)).save(folder / f"{pid:04d}_{k}.png")
    return tmp_path / "data"


def test_build_stores_rows_identities_and_model(gallery, tmp_path):
    index, what = build_index(FakeModel(), "runs:/r1/model", gallery, tmp_path / "idx", 4, False)
    assert what == "built" and len(index.paths) == 15 and index.embeddings.shape == (15, DIM)
    assert index.paths[0] == "0001/0001_0.png" and index.identity(0) == 1
    assert np.allclose(index.embeddings[7], vector(index.paths[7]))
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert meta["status"] == "complete" and meta["model"]["weights_digest"] == "a" * 64
    assert not (tmp_path / "idx" / "chunks").exists()
    _, what = build_index(FakeModel(), "runs:/r1/model", gallery, tmp_path / "idx", 4, False)
    assert what == "up to date"


def test_interrupted_build_resumes_where_it_stopped(gallery, tmp_path):
    out = tmp_path / "idx"
    with pytest.raises(KeyboardInterrupt):
        build_index(FakeModel(fail_after=2), "m", gallery, out, 4, False)
    assert len(list((out / "chunks").glob("*.npy"))) == 2
    with pytest.raises(GalleryIndexError, match="unfinished build \\(8/15 rows\\)"):
        open_index(out)
    model = FakeModel()
    index, what = build_index(model, "m", gallery, out, 4, False)
    assert what == "resumed at row 8" and model.calls == 2  # chunks 3 and 4 only
    full, _ = build_index(FakeModel(), "m", gallery, tmp_path / "full", 4, False)
    assert np.array_equal(np.asarray(index.embeddings), np.asarray(full.embeddings))


def test_another_model_is_refused(gallery, tmp_path):
    from experiments.gallery.index import model_identity

    out = tmp_path / "idx"
    index, _ = build_index(FakeModel(), "models:/omnireid/1", gallery, out, 8, False)
    other = model_identity(FakeModel("b" * 64), "models:/omnireid/2")
    with pytest.raises(GalleryIndexError, match=r"built by omnireid version 1 .* not by"):
        index.check_model(other)
    with pytest.raises(GalleryIndexError, match="another model"):
        build_index(FakeModel("b" * 64), "models:/omnireid/2", gallery, out, 8, False)
    index.check_model(model_identity(FakeModel(), "models:/omnireid/3"))  # same weights: fine


def test_not_an_index(tmp_path):
    with pytest.raises(GalleryIndexError, match="not an index"):
        open_index(tmp_path)


def test_exact_topk_matches_a_full_sort_across_chunks():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((1000, DIM)).astype(np.float32)
    emb[500] = emb[10]  # a tie: the lower row ranks first
    q = rng.standard_normal((3, DIM)).astype(np.float32)
    q[0] = emb[10]
    rows, scores = exact_topk(emb, q, 10, chunk=97)
    full = q @ emb.T
    for i in range(3):
        order = np.argsort(-full[i], kind="stable")[:10]
        assert rows[i].tolist() == order.tolist()
        assert np.allclose(scores[i], full[i, order])
    assert rows[0][:2].tolist() == [10, 500]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_faiss_finds_the_exact_neighbours_of_clustered_data(kind):
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((200, DIM))
    emb = centres.repeat(20, axis=0) + 0.1 * rng.standard_normal((4000, DIM))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    q = emb[rng.choice(4000, 50, replace=False)] + 0.01
    exact, _ = exact_topk(emb, q, 10)
    approx, _ = faiss_topk(build_faiss(emb, kind), q, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.9


def test_faiss_index_is_built_once_and_kept(gallery, tmp_path):
    index, _ = build_index(FakeModel(), "m", gallery, tmp_path / "idx", 4, False)
    rows, _ = index.search(np.asarray(vector("0003_1.png")), 3, "hnsw")
    assert index.paths[rows[0][0]] == "0003/0003_1.png"
    assert (tmp_path / "idx" / "faiss_hnsw.index").is_file()
    reopened = open_index(tmp_path / "idx")
    rows2, _ = reopened.search(np.asarray(vector("0003_1.png")), 3, "hnsw")
    assert rows2.tolist() == rows.tolist()
