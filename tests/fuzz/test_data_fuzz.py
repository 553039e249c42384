"""Random and mutated caption files, evaluation files and image bytes through the real loaders
(`reid_core.data.dataset_index.build_index`, which parses both JSON files, and the image decode
path)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from reid_core.config import load_config
from reid_core.data.dataset_index import DatasetIndex, build_index, clear_index_memo
from reid_core.data.datasets import ImageListDataset
from reid_core.errors import DataError
from reid_core.modality import Modality
from tests.fuzz.conftest import FUZZ, JSON_VALUES, accepted_or_one_line, count, mutate

JSON_CHARS = ' {}[]",:0123456789.-+eE\\/truefalsnvisjpg_TEXT+NIRCP'
CAPTIONS = [
    {"file_path": "vis/0001/a.jpg", "caption": "a man in a red coat"},
    {"file_path": "vis/0002/b.jpg", "caption": "a woman with a bag"},
]
ORBENCH = [{**c, "id": i + 1, "split": "train"} for i, c in enumerate(CAPTIONS)]
EVAL = {
    "RGB_GALLERY": [[1, "vis/0001/a.jpg"], [2, "vis/0002/b.jpg"]],
    "NIR": [[1, "nir/0001/n.jpg"]],
    "TEXT+NIR": [[2, "a woman with a bag", "nir/0002/n.jpg"]],
}


def _jpeg(colour, size=(8, 16), mode="RGB", fmt="JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "data"
    for rel, mode in (("vis/0001/a.jpg", "RGB"), ("vis/0002/b.jpg", "RGB"),
                      ("nir/0001/n.jpg", "L"), ("nir/0002/n.jpg", "L")):  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(_jpeg(128, mode=mode))
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("OMNIREID_CACHE", str(folder))
    return folder


def _files(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()}


def _build(root: Path, cache_dir: Path):
    clear_index_memo()
    result = accepted_or_one_line(build_index, root)
    assert isinstance(result, DatasetIndex | DataError), type(result)
    leftovers = (
        [p.name for p in cache_dir.glob("*") if ".tmp" in p.name] if cache_dir.exists() else []
    )
    assert not leftovers, leftovers  # no half-written cache file
    return result


def _node_mutation(data, value):
    """Replace one random node of a JSON tree by a random JSON value."""
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(value)))
        return {**value, key: _node_mutation(data, value[key])}
    if isinstance(value, list) and value and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(value) - 1))
        return [*value[:i], _node_mutation(data, value[i]), *value[i + 1 :]]
    return data.draw(JSON_VALUES)


def _annotation_text(data, template) -> str:
    how = data.draw(st.sampled_from(["node", "text", "random"]))
    if how == "node":
        return json.dumps(_node_mutation(data, template))
    if how == "text":
        return mutate(data, json.dumps(template), JSON_CHARS)
    return json.dumps(data.draw(JSON_VALUES))


@FUZZ
@given(data=st.data())
def test_caption_files(tree, cache, data):
    count("data: caption JSON files")
    name, template = data.draw(
        st.sampled_from([("text_annos.json", CAPTIONS), ("train_annos.json", ORBENCH)])
    )
    for other in ("text_annos.json", "train_annos.json", "test_gallery_and_queries.json"):
        (tree / other).unlink(missing_ok=True)
    (tree / name).write_text(_annotation_text(data, template), encoding="utf-8")
    before = _files(tree)
    _build(tree, cache)
    assert _files(tree) == before  # the loader writes nothing into ROOT


@FUZZ
@given(data=st.data())
def test_evaluation_files(tree, cache, data):
    count("data: evaluation JSON files")
    for other in ("text_annos.json", "train_annos.json"):
        (tree / other).unlink(missing_ok=True)
    (tree / "text_annos.json").write_text(json.dumps(CAPTIONS), encoding="utf-8")
    path = tree / "test_gallery_and_queries.json"
    if data.draw(st.integers(0, 9)) == 0:
        path.write_bytes(data.draw(st.binary(max_size=64)))  # not even text
    else:
        path.write_text(_annotation_text(data, EVAL), encoding="utf-8")
    result = _build(tree, cache)
    if isinstance(result, DatasetIndex) and result.eval_protocol is not None:
        for _, rel in result.eval_protocol.gallery:  # accepted paths stay inside ROOT
            assert Path(os.path.realpath(tree / rel)).is_relative_to(os.path.realpath(tree))


VALID_IMAGES = [
    _jpeg((200, 10, 10)),
    _jpeg(90, mode="L"),
    _jpeg((10, 200, 10), fmt="PNG"),
    _jpeg((10, 10, 200), size=(3, 5), fmt="BMP"),
]


@FUZZ
@given(data=st.data())
def test_image_bytes(tree, data):
    count("data: image bytes")
    how = data.draw(st.sampled_from(["mutated", "truncated", "random"]))
    if how == "random":
        blob = data.draw(st.binary(max_size=300))
    else:
        blob = bytearray(data.draw(st.sampled_from(VALID_IMAGES)))
        if how == "truncated":
            blob = blob[: data.draw(st.integers(0, len(blob)))]
        else:
            for _ in range(data.draw(st.integers(1, 6))):
                blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    modality = data.draw(st.sampled_from([Modality.VIS, Modality.NIR]))
    path = tree / "fuzz" / "x.jpg"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(bytes(blob))
    cfg = load_config(preset="micro")
    ds = ImageListDataset(tree, ["fuzz/x.jpg"], modality, cfg.data)
    result = accepted_or_one_line(ds.__getitem__, 0)
    if isinstance(result, torch.Tensor):
        assert result.shape == (modality.channels, cfg.data.height, cfg.data.width)
    else:
        assert isinstance(result, DataError) and "fuzz/x.jpg" in str(result)
