"""The evaluation file parser and the path rules shared with annotation readers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reid_core.data.dataset_index import build_index
from reid_core.data.evalfile import (
    is_image_name,
    protocol_from_json,
    protocol_to_json,
    safe_relpath,
    set_name,
)
from reid_core.errors import DataError
from reid_core.modality import Modality

EVAL = "test_gallery_and_queries.json"


def _edit(root: Path, change) -> None:
    data = json.loads((root / EVAL).read_text())
    change(data)
    (root / EVAL).write_text(json.dumps(data))


def _fails(root: Path, *needles: str) -> None:
    with pytest.raises(DataError) as info:
        build_index(root, cache=False)
    msg = str(info.value)
    assert "\n" not in msg and EVAL in msg
    for needle in needles:
        assert needle in msg, msg


@pytest.mark.parametrize(
    ("raw", "want"),
    [("vis/0001/a.jpg", "vis/0001/a.jpg"), ("./vis//0001/a.jpg", "vis/0001/a.jpg"),
     ("vis\\0001\\a.jpg", "vis/0001/a.jpg")],
)  # fmt: skip
def test_safe_relpath_accepts(raw: str, want: str) -> None:
    assert safe_relpath(raw, "f") == want


@pytest.mark.parametrize(
    ("raw", "needle"),
    [("../x.jpg", "leaves ROOT"), ("vis/../../x.jpg", "leaves ROOT"), ("/etc/x.jpg", "absolute"),
     ("C:\\data\\x.jpg", "absolute"), ("\\\\server\\x.jpg", "absolute"), ("", "non-empty"),
     (3, "non-empty"), (".", "names no file")],
)  # fmt: skip
def test_safe_relpath_rejects(raw: object, needle: str) -> None:
    with pytest.raises(DataError, match=needle):
        safe_relpath(raw, "annos.json: entry 0")


def test_image_name_suffixes() -> None:
    assert is_image_name("a.JPG") and is_image_name("b.webp") and not is_image_name("a red coat")


def test_set_order_and_name_round_trip(orbench_tree: Path) -> None:
    proto = build_index(orbench_tree, cache=False).eval_protocol
    assert proto is not None
    assert [set_name(s.modalities) for s in proto.sets] == [
        "NIR",
        "CP+SK",
        "TEXT+NIR",
        "TEXT+NIR+CP",
    ]
    assert protocol_from_json(json.loads(json.dumps(protocol_to_json(proto)))) == proto


def test_string_pids_and_empty_set_are_accepted(orbench_tree: Path) -> None:
    def change(d):
        d["RGB_GALLERY"][0][0] = "0009"
        d["SK"] = []

    _edit(orbench_tree, change)
    proto = build_index(orbench_tree, cache=False).eval_protocol
    assert proto.gallery[0][0] == 9 and proto.sets[-1].queries == ()


def test_item_count_must_match_set(orbench_tree: Path) -> None:
    _edit(orbench_tree, lambda d: d["CP+SK"][1].pop())
    _fails(orbench_tree, "CP+SK[1]", "2 item(s)")


def test_caption_in_image_slot(orbench_tree: Path) -> None:
    _edit(orbench_tree, lambda d: d["TEXT+NIR"][0].__setitem__(2, "a tall man"))
    _fails(orbench_tree, "TEXT+NIR[0] item 2", "NIR item must be an image path")


def test_path_in_text_slot(orbench_tree: Path) -> None:
    _edit(orbench_tree, lambda d: d["TEXT+NIR"][0].__setitem__(1, "nir/0009/0009_c1_000.jpg"))
    _fails(orbench_tree, "TEXT item must be a caption")


def test_path_of_another_modality(orbench_tree: Path) -> None:
    _edit(orbench_tree, lambda d: d["NIR"][0].__setitem__(1, "cp/0009/0009_c1_000.jpg"))
    _fails(orbench_tree, "is a cp image, expected nir")


def test_rgb_cannot_be_queried(orbench_tree: Path) -> None:
    _edit(orbench_tree, lambda d: d.__setitem__("RGB+NIR", []))
    _fails(orbench_tree, "RGB+NIR", "gallery")


def test_repeated_modality_in_set_name(orbench_tree: Path) -> None:
    _edit(orbench_tree, lambda d: d.__setitem__("NIR+NIR", []))
    _fails(orbench_tree, "NIR+NIR", "repeats")


def test_duplicate_gallery_row(orbench_tree: Path) -> None:
    _edit(orbench_tree, lambda d: d["RGB_GALLERY"].append(d["RGB_GALLERY"][0]))
    _fails(orbench_tree, "RGB_GALLERY[12]", "repeats RGB_GALLERY[0]")


def test_gallery_only_is_rejected(orbench_tree: Path) -> None:
    _edit(orbench_tree, lambda d: [d.pop(k) for k in list(d) if k != "RGB_GALLERY"])
    _fails(orbench_tree, "no query sets")


def test_bad_pid(orbench_tree: Path) -> None:
    _edit(orbench_tree, lambda d: d["NIR"][0].__setitem__(0, -3))
    _fails(orbench_tree, "NIR[0]", "identity id", "-3")


def test_not_an_object(orbench_tree: Path) -> None:
    (orbench_tree / EVAL).write_text("[]")
    _fails(orbench_tree, "JSON object")


def test_query_modalities_are_known(orbench_tree: Path) -> None:
    proto = build_index(orbench_tree, cache=False).eval_protocol
    for qs in proto.sets:
        assert Modality.VIS not in qs.modalities
        for q in qs.queries:
            assert tuple(it.modality for it in q.items) == qs.modalities
