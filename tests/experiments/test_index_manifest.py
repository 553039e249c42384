"""Gallery indexes are verified on open: `reid index build` writes a manifest (row count,
embedding size, dtype, size and sha256 of every file) and a corrupt, truncated, short, swapped
or edited index is refused in one line, by the API, `reid search` and `reid serve` alike."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from experiments.gallery.index import GalleryIndexError, build_index, open_index
from tests.experiments.test_gallery_index import FakeModel
from tests.fuzz.conftest import FUZZ


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("manifest")
    root = base / "data" / "vis"
    for pid in range(1, 5):
        (root / f"{pid:04d}").mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (4, 8), (pid * 40, k * 60, 0)).save(root / f"{pid:04d}" / f"{k}.png")
    build_index(FakeModel(), "m", base / "data", base / "idx", 5, False)
    return base / "idx"


@pytest.fixture
def index(built, tmp_path) -> Path:
    copy = tmp_path / "idx"
    shutil.copytree(built, copy)
    return copy


def _meta(index: Path) -> dict:
    return json.loads((index / "index.json").read_text())


def _rewrite(index: Path, name: str, data: bytes) -> None:
    """Replace a file and make the manifest agree (an attacker who edits both)."""
    (index / name).write_bytes(data)
    meta = _meta(index)
    meta["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (index / "index.json").write_text(json.dumps(meta))


def _refused(index: Path, *needles: str, verify: bool = False) -> str:
    with pytest.raises(GalleryIndexError) as info:
        open_index(index, verify=verify)
    message = str(info.value)
    assert "\n" not in message and all(n in message for n in needles), message
    return message


def test_the_manifest_lists_every_file_with_size_and_checksum(index):
    meta = _meta(index)
    assert meta["format_version"] == 2 and meta["dim"] == 16 and meta["count"] == 12
    for name in ("paths.json", "identities.npy", "embeddings.npy"):
        data = (index / name).read_bytes()
        assert meta["files"][name] == {
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    assert len(open_index(index, verify=True).paths) == 12


def test_a_corrupt_paths_json_is_refused(index):
    data = bytearray((index / "paths.json").read_bytes())
    data[5] ^= 0x20  # same size, other bytes
    (index / "paths.json").write_bytes(bytes(data))
    _refused(index, "paths.json", "checksum")
    (index / "paths.json").write_text("[not json")
    _refused(index, "paths.json", "bytes where the manifest says")


def test_a_truncated_embeddings_file_is_refused(index):
    data = (index / "embeddings.npy").read_bytes()
    (index / "embeddings.npy").write_bytes(data[: len(data) // 2])
    _refused(index, "embeddings.npy", "truncated or changed")


def test_a_missing_identities_file_is_refused(index):
    (index / "identities.npy").unlink()
    _refused(index, "identities.npy", "rebuild it")


def test_fewer_paths_than_embeddings_is_refused_even_with_a_matching_manifest(index):
    paths = json.loads((index / "paths.json").read_text())
    _rewrite(index, "paths.json", json.dumps(paths[:-3]).encode())
    _refused(index, "paths.json", "9 paths for 12 rows")


def test_swapped_embeddings_of_the_same_size_fail_the_full_verification(index):
    emb = np.load(index / "embeddings.npy")
    np.save(index / "embeddings.npy", emb[::-1].copy())
    assert open_index(index).embeddings.shape == (12, 16)  # sizes and shapes hold
    _refused(index, "embeddings.npy", "checksum", verify=True)  # reid serve, index build


def test_an_array_of_another_dtype_or_shape_is_refused(index):
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros((12, 8), dtype=np.float64))
    _rewrite(index, "embeddings.npy", buf.getvalue())
    _refused(index, "embeddings.npy", "float64[12, 8]", "float32[12, 16]")
    buf = io.BytesIO()
    np.save(buf, np.array([object()], dtype=object), allow_pickle=True)
    _rewrite(index, "identities.npy", buf.getvalue())
    _refused(index, "identities.npy", "not a readable array")  # never unpickled


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"count": 10**18}, "count must be an integer"),
        ({"dim": -1}, "dim must be an integer"),
        ({"files": {}}, "lacks paths.json"),
        ({"model": "x"}, "names no model"),
        ({"format_version": 1}, "index format 1"),
    ],
)
def test_a_bad_index_json_is_refused(index, change, needle):
    meta = _meta(index) | change
    (index / "index.json").write_text(json.dumps(meta))
    _refused(index, needle)


def test_an_unfinished_build_with_an_absurd_count_does_not_hang(index):
    meta = _meta(index) | {"status": "building", "count": 10**18, "chunk_rows": 1}
    (index / "index.json").write_text(json.dumps(meta))
    _refused(index, "count must be an integer")


def test_index_json_bombs_are_one_line(index):
    (index / "index.json").write_text("[" * 100_000)
    _refused(index, "64-level limit")
    (index / "index.json").unlink()
    (index / "index.json").symlink_to("/dev/zero")
    _refused(index, "device")


def test_a_path_leaving_the_gallery_is_refused(index):
    paths = json.loads((index / "paths.json").read_text())
    paths[0] = "../../../etc/passwd"
    _rewrite(index, "paths.json", json.dumps(paths).encode())
    _refused(index, "leaves ROOT")


def test_faiss_files_are_in_the_manifest_and_checked_before_faiss_reads_them(index):
    opened = open_index(index)
    opened.faiss("hnsw")
    entry = _meta(index)["files"]["faiss_hnsw.index"]
    assert entry["bytes"] == (index / "faiss_hnsw.index").stat().st_size
    open_index(index).faiss("hnsw")  # read back, verified
    data = bytearray((index / "faiss_hnsw.index").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (index / "faiss_hnsw.index").write_bytes(bytes(data))
    with pytest.raises(GalleryIndexError, match=r"faiss_hnsw\.index: checksum"):
        open_index(index).faiss("hnsw")
    shutil.copy(index / "faiss_hnsw.index", index / "faiss_ivf.index")  # not ours
    with pytest.raises(GalleryIndexError, match="not in the index's manifest"):
        open_index(index).faiss("ivf")


def test_reid_serve_refuses_a_bad_index_before_loading_a_model(index, capsys, monkeypatch):
    from studies.cli import main

    monkeypatch.chdir(index.parent)

    (index / "identities.npy").write_bytes(b"\x93NUMPY")
    code = main(["serve", "--index", str(index), "--model", "models:/nothing/1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "identities.npy" in err and "rebuild" in err
    assert not (index.parent / "mlflow.db").exists()  # refused before any store was touched


NAMES = ["index.json", "paths.json", "identities.npy", "embeddings.npy"]


@FUZZ
@given(data=st.data())
def test_random_damage_is_refused_or_harmless(built, tmp_path_factory, data):
    index = tmp_path_factory.mktemp("fuzz") / "idx"
    shutil.copytree(built, index)
    name = data.draw(st.sampled_from(NAMES))
    blob = bytearray((index / name).read_bytes())
    kind = data.draw(st.sampled_from(["flip", "cut", "append"]))
    at = data.draw(st.integers(0, len(blob) - 1))
    if kind == "flip":
        blob[at] ^= data.draw(st.integers(1, 255))
    elif kind == "cut":
        del blob[at:]
    else:
        blob += data.draw(st.binary(min_size=1, max_size=64))
    (index / name).write_bytes(bytes(blob))
    try:
        opened = open_index(index, verify=True)
    except GalleryIndexError as exc:
        assert "\n" not in str(exc)
        return
    # accepted: then the index must be whole (only index.json formatting can change harmlessly)
    assert name == "index.json" and len(opened.paths) == opened.embeddings.shape[0] == 12
