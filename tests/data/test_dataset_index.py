"""build_index: scanning, captions, the evaluation file, digest, memo and disk cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reid_core.data import dataset_index as index_mod
from reid_core.data.dataset_index import build_index, cache_dir, clear_index_memo
from reid_core.modality import Modality
from tests.data.conftest import EVAL_SETS, image_bytes


def test_seed_tree_paths_captions(seed_tree: Path) -> None:
    idx = build_index(seed_tree, cache=False)
    assert idx.root == seed_tree.resolve()
    assert idx.pids() == list(range(1, 11))
    assert idx.paths(Modality.VIS, 1) == (
        "vis/0001/0001_c1_000.jpg",
        "vis/0001/0001_c2_001.jpg",
        "vis/0001/0001_c3_002.jpg",
    )
    assert idx.paths(Modality.SK, 10)[0].endswith(".png")
    assert idx.num_images(Modality.VIS) == 30 and idx.num_images(Modality.NIR) == 20
    assert idx.caption_file == "text_annos.json"
    assert len(idx.captions) == 30 and all(p.startswith("vis/") for p in idx.captions)
    assert idx.eval_protocol is None and idx.missing_folders == () and idx.warnings == ()
    assert len(idx.digest) == 16
    assert idx.has(Modality.TEXT, 1) and len(idx.captions_of(1)) == 3


def test_orbench_tree_loads_ordered_sets(orbench_tree: Path) -> None:
    idx = build_index(orbench_tree, cache=False)
    assert idx.caption_file == "train_annos.json"
    proto = idx.eval_protocol
    assert proto is not None and proto.name == "file"
    assert [s.key for s in proto.sets] == ["nir", "cp_sk", "text_nir", "text_nir_cp"]
    assert proto.pids() == {9, 10, 11, 12}
    assert len(proto.gallery) == 12 and proto.gallery[0] == (9, "vis/0009/0009_c1_000.jpg")
    text_nir = proto.sets[2]
    assert text_nir.modalities == (Modality.TEXT, Modality.NIR)
    q = text_nir.queries[0]
    assert q.pid == 9 and [it.modality for it in q.items] == [Modality.TEXT, Modality.NIR]
    assert q.items[0].value.startswith("a person") and q.items[1].value.startswith("nir/0009/")
    assert len(EVAL_SETS) == len(proto.sets)


def test_both_caption_files_prefers_orbench(orbench_tree: Path) -> None:
    (orbench_tree / "text_annos.json").write_text("[]", encoding="utf-8")
    idx = build_index(orbench_tree, cache=False)
    assert idx.caption_file == "train_annos.json"
    assert any("using train_annos.json" in w for w in idx.warnings)


def test_suffixes_case_insensitive_and_other_files_reported(tree) -> None:
    root = tree(identities=2, captions=None)
    (root / "vis" / "0001" / "UPPER.JPG").write_bytes(image_bytes())
    (root / "vis" / "0001" / "notes.txt").write_text("x")
    (root / "vis" / "readme.md").write_text("x")
    idx = build_index(root, cache=False)
    assert "vis/0001/UPPER.JPG" in idx.paths(Modality.VIS, 1)
    assert not any(p.endswith(".txt") for p in idx.paths(Modality.VIS, 1))
    assert any("non-image" in w for w in idx.warnings)
    assert any("outside identity folders" in w for w in idx.warnings)
    assert idx.caption_file is None and idx.captions == {}


def test_digest_tracks_content(seed_tree: Path) -> None:
    first = build_index(seed_tree, cache=False).digest
    assert build_index(seed_tree, cache=False).digest == first
    annos = json.loads((seed_tree / "text_annos.json").read_text())
    annos[0]["caption"] = "someone else"
    (seed_tree / "text_annos.json").write_text(json.dumps(annos))
    assert build_index(seed_tree, cache=False).digest != first


def test_memo_reuses_until_tree_changes(seed_tree: Path) -> None:
    a = build_index(seed_tree)
    assert build_index(seed_tree) is a
    (seed_tree / "vis" / "0002" / "extra.jpg").write_bytes(image_bytes())
    b = build_index(seed_tree)
    assert b is not a and "vis/0002/extra.jpg" in b.paths(Modality.VIS, 2)
    assert build_index(seed_tree, cache=False) is not b


def test_disk_cache_round_trip(orbench_tree: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OMNIREID_CACHE", str(tmp_path / "cache"))
    built = build_index(orbench_tree)
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    clear_index_memo()

    def no_build(root):
        raise AssertionError("should have come from the disk cache")

    monkeypatch.setattr(index_mod, "_build", no_build)
    loaded = build_index(orbench_tree)
    assert loaded == built and loaded is not built


def test_disk_cache_stale_or_corrupt_rebuilds(seed_tree: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OMNIREID_CACHE", str(tmp_path / "cache"))
    build_index(seed_tree)
    (cache_file,) = (tmp_path / "cache").glob("*.json")
    cache_file.write_text("{not json")
    clear_index_memo()
    assert build_index(seed_tree).num_images(Modality.VIS) == 30
    assert json.loads(cache_file.read_text())["version"] == 1


def test_cache_dir_env(monkeypatch) -> None:
    monkeypatch.setenv("OMNIREID_CACHE", "")
    assert cache_dir() is None
    monkeypatch.delenv("OMNIREID_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "omnireid" / "index"


def test_lacking_modalities_and_missing_folder(tree) -> None:
    root = tree(lacking={"nir": (3,), "vis": (5,)})
    import shutil

    shutil.rmtree(root / "cp")
    idx = build_index(root, cache=False)
    assert idx.missing_folders == (Modality.CP,)
    assert any("cp/ folder is missing" in w for w in idx.warnings)
    assert 3 not in idx.pids(Modality.NIR) and 5 not in idx.pids()
    assert 5 in idx.all_pids() and idx.pids(Modality.TEXT) == idx.pids()


def test_non_ascii_names(tree) -> None:
    root = tree(identities=2, captions=None)
    name = "személy_ü_人.jpg"
    (root / "vis" / "0001" / name).write_bytes(image_bytes())
    rel = f"vis/0001/{name}"
    annos = [{"file_path": rel, "caption": "ünïcode caption"}]
    (root / "text_annos.json").write_text(json.dumps(annos, ensure_ascii=False), encoding="utf-8")
    idx = build_index(root, cache=False)
    assert idx.captions[rel] == "ünïcode caption"
    assert os.fsdecode(os.fsencode(rel)) in idx.paths(Modality.VIS, 1)


@pytest.mark.parametrize("captions", ["text_annos.json", "train_annos.json"])
def test_backslash_paths_are_normalised(tree, captions: str) -> None:
    root = tree(identities=2, captions=captions)
    annos = json.loads((root / captions).read_text())
    annos[0]["file_path"] = annos[0]["file_path"].replace("/", "\\")
    (root / captions).write_text(json.dumps(annos))
    assert len(build_index(root, cache=False).captions) == 6
