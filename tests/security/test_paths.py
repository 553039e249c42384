"""Every path read from an annotation or the evaluation file stays inside ROOT, symlinks included:
`..` and absolute paths are refused, and a symlink (image, identity folder or modality folder)
leading outside ROOT is never indexed, so no annotation can name it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from reid_core.data.dataset_index import build_index
from reid_core.errors import DataError
from reid_core.modality import Modality


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 16), (100, 20, 20)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def layout(tmp_path) -> tuple[Path, Path]:
    """ROOT with two identities, and an `outside` folder holding a JPEG next to it."""
    root, outside = tmp_path / "data", tmp_path / "outside"
    for rel in ("vis/0001/a.jpg", "vis/0002/b.jpg", "nir/0001/n.jpg"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(_jpeg())
    (outside / "0003").mkdir(parents=True)
    (outside / "secret.jpg").write_bytes(_jpeg())
    (outside / "0003" / "c.jpg").write_bytes(_jpeg())
    return root, outside


def _captions(root: Path, *paths: str) -> None:
    rows = [{"file_path": p, "caption": "a person"} for p in paths]
    (root / "text_annos.json").write_text(json.dumps(rows), encoding="utf-8")


@pytest.mark.parametrize(
    "path, message",
    [("../outside/secret.jpg", "leaves ROOT"), ("vis/../../outside/secret.jpg", "leaves ROOT"),
     ("/etc/passwd.jpg", "absolute path"), ("C:\\\\x\\\\y.jpg", "absolute path")],
)  # fmt: skip
def test_caption_paths_leaving_root_are_refused(layout, path, message):
    root, _ = layout
    _captions(root, "vis/0001/a.jpg", path)
    with pytest.raises(DataError, match=message):
        build_index(root, cache=False)


def test_symlinked_image_leading_outside_is_not_indexed_nor_accepted(layout):
    root, outside = layout
    (root / "vis" / "0001" / "evil.jpg").symlink_to(outside / "secret.jpg")
    index = build_index(root, cache=False)
    assert index.paths(Modality.VIS, 1) == ("vis/0001/a.jpg",)
    assert any("outside ROOT" in note for note in index.warnings)
    _captions(root, "vis/0001/evil.jpg")
    with pytest.raises(DataError, match="leads outside ROOT through a symlink"):
        build_index(root, cache=False)


def test_symlinked_identity_folder_leading_outside_is_ignored(layout):
    root, outside = layout
    (root / "vis" / "0003").symlink_to(outside / "0003", target_is_directory=True)
    index = build_index(root, cache=False)
    assert index.paths(Modality.VIS, 3) == ()
    evalfile = {"RGB_GALLERY": [[3, "vis/0003/c.jpg"]], "NIR": [[1, "nir/0001/n.jpg"]]}
    (root / "test_gallery_and_queries.json").write_text(json.dumps(evalfile), encoding="utf-8")
    with pytest.raises(DataError, match="leads outside ROOT through a symlink"):
        build_index(root, cache=False)


def test_symlinked_modality_folder_leading_outside_is_refused(layout, tmp_path):
    root, _ = layout
    elsewhere = tmp_path / "sketches"
    (elsewhere / "0001").mkdir(parents=True)
    (elsewhere / "0001" / "s.jpg").write_bytes(_jpeg())
    (root / "sk").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(DataError, match="outside ROOT"):
        build_index(root, cache=False)


def test_symlinks_inside_root_are_fine(layout):
    root, _ = layout
    (root / "vis" / "0002" / "again.jpg").symlink_to(root / "vis" / "0001" / "a.jpg")
    _captions(root, "vis/0002/again.jpg")
    index = build_index(root, cache=False)
    assert "vis/0002/again.jpg" in index.captions
