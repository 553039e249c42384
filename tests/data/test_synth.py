"""`synthesize`: layout, determinism, missing modalities, bad input, what each modality keeps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid_core.data import synth
from reid_core.errors import DataError

SIZE = (64, 32)
CAPTIONS = "text_annos.json"
PATTERN_WORDS = "|".join(sorted(synth.PATTERNS, key=len, reverse=True))
GARMENT = re.compile(
    rf"(?:(light|dark) )?(?:({'|'.join(synth.COLOURS)}) )?(?:({PATTERN_WORDS}) )?"
    r"(shirt|top|jacket|sweater|trousers|pants|shorts|skirt)\b"
)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _images(root: Path, modality: str) -> list[Path]:
    return sorted((root / modality).glob("*/*.jpg"))


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "data"
    return root, synth.synthesize(root, identities=8, seed=3, size=SIZE)


def test_layout_and_captions(tree: tuple[Path, dict]) -> None:
    root, summary = tree
    assert sorted(p.name for p in root.iterdir()) == ["cp", "nir", "sk", "text_annos.json", "vis"]
    ids = [f"{i:04d}" for i in range(1, 9)]
    for modality in ("vis", "nir", "cp", "sk"):
        assert sorted(p.name for p in (root / modality).iterdir()) == ids
        files = _images(root, modality)
        assert len(files) == summary["images"][modality] >= 8 * 3
        assert {Image.open(f).size for f in files} == {(SIZE[1], SIZE[0])}
    annos = json.loads((root / CAPTIONS).read_text(encoding="utf-8"))
    assert all(set(a) == {"file_path", "caption"} and a["caption"] for a in annos)
    paths = [a["file_path"] for a in annos]
    assert paths == [p.relative_to(root).as_posix() for p in _images(root, "vis")]
    assert len(annos) == summary["captions"] == summary["images"]["vis"]
    assert summary["identities"] == 8 and summary["out"] == str(root)
    assert summary["missing"] == {"nir": 0, "cp": 0, "sk": 0, "text": 0}


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in "abc")
    synth.synthesize(a, identities=3, seed=5, size=SIZE)
    synth.synthesize(b, identities=3, seed=5, size=SIZE)
    synth.synthesize(c, identities=3, seed=6, size=SIZE)
    assert _tree(a) == _tree(b)
    first, other = _tree(a), _tree(c)
    assert first[CAPTIONS] != other[CAPTIONS]
    assert all(first[k] != other[k] for k in set(first) & set(other) if k.endswith(".jpg"))


def test_missing_rate_drops_modalities_but_never_vis(tmp_path: Path) -> None:
    full = synth.synthesize(tmp_path / "full", identities=12, size=SIZE)
    summary = synth.synthesize(tmp_path / "gaps", identities=12, size=SIZE, missing_rate=0.5)
    root = tmp_path / "gaps"
    assert summary["images"]["vis"] == full["images"]["vis"]
    assert len(list((root / "vis").iterdir())) == 12
    for modality in ("nir", "cp", "sk"):
        present = len(list((root / modality).iterdir()))
        assert present == 12 - summary["missing"][modality]
    assert 0 < sum(summary["missing"].values()) < 4 * 12
    captioned = {a["file_path"].split("/")[1] for a in json.loads((root / CAPTIONS).read_text())}
    assert len(captioned) == 12 - summary["missing"]["text"]
    # what remains is the same rendering as without missing modalities
    kept, whole = _tree(root), _tree(tmp_path / "full")
    assert all(whole[k] == v for k, v in kept.items() if k.endswith(".jpg"))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"identities": 1}, "identities"),
        ({"identities": 2.5}, "identities"),
        ({"size": (15, 8)}, "size"),
        ({"size": (16, 7)}, "size"),
        ({"size": (32,)}, "size"),
        ({"missing_rate": 1.0}, "missing rate"),
        ({"missing_rate": -0.1}, "missing rate"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, kwargs: dict, needle: str
) -> None:
    with pytest.raises(DataError, match=needle) as err:
        synth.synthesize(tmp_path / "out", **kwargs)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_non_empty_out_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "vis").mkdir(parents=True)
    (out / "vis" / "stale.txt").write_text("old")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        synth.synthesize(out, identities=2, size=SIZE)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "out",
        "out/notes.txt",
        "out/vis",
        "out/vis/stale.txt",
    ]
    synth.synthesize(out, identities=2, size=SIZE, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"  # not the layout's: left alone
    assert not (out / "vis" / "stale.txt").exists()
    assert (out / CAPTIONS).is_file() and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        synth.synthesize(tmp_path / "f", identities=2, size=SIZE)


def _torso(path: Path, mode: str) -> np.ndarray:
    """A window that lies inside the torso whatever the pose jitter."""
    img = Image.open(path)
    w, h = img.size
    box = (int(0.42 * w), int(0.26 * h), int(0.58 * w), int(0.44 * h))
    return np.asarray(img.crop(box).convert(mode), dtype=np.float32)


def test_each_modality_keeps_part_of_the_identity(tree: tuple[Path, dict]) -> None:
    root, _ = tree
    for modality in ("nir", "sk"):  # no hue at all
        for f in _images(root, modality):
            assert Image.open(f).mode == "L"
    sketch = np.stack([np.asarray(Image.open(f), dtype=np.float32) for f in _images(root, "sk")])
    assert (sketch > 200).mean() > 0.6 and (sketch < 90).mean() > 0.05  # white page, dark lines
    vis_sat = np.mean([_saturation(f) for f in _images(root, "vis")])
    cp_sat = np.mean([_saturation(f) for f in _images(root, "cp")])
    assert vis_sat > 60 and cp_sat > 25  # RGB and colour pencil keep colour
    patterned = [p for p in range(1, 9) if synth.identity(3, p).pattern != "plain"]
    assert patterned
    for pid in patterned:  # the torso pattern shows in vis, nir and sk but not in cp
        std = {
            m: np.mean(
                [_torso(f, "L").std() for f in _images(root, m) if f.parent.name == f"{pid:04d}"]
            )
            for m in ("vis", "nir", "sk", "cp")
        }
        assert min(std["vis"], std["nir"], std["sk"]) > 2 * std["cp"], (pid, std)


def _saturation(path: Path) -> float:
    return float(np.asarray(Image.open(path).convert("RGB").convert("HSV"))[..., 1].mean())


def test_vis_torso_hue_matches_the_identity(tree: tuple[Path, dict]) -> None:
    root, _ = tree
    for f in _images(root, "vis"):
        ident = synth.identity(3, int(f.parent.name))
        hsv = _torso(f, "HSV")
        angle = hsv[..., 0].ravel() / 256 * 2 * np.pi
        hue = np.degrees(np.arctan2(np.sin(angle).mean(), np.cos(angle).mean())) % 360
        assert abs((hue - ident.hues[0] + 180) % 360 - 180) < 25, (f.name, hue, ident.hues[0])


def test_captions_name_the_identity_attributes(tree: tuple[Path, dict]) -> None:
    root, _ = tree
    annos = json.loads((root / CAPTIONS).read_text(encoding="utf-8"))
    lengths = set()
    for a in annos:
        ident = synth.identity(3, int(a["file_path"].split("/")[1]))
        text = a["caption"]
        for shade, colour, pattern, garment in GARMENT.findall(text):
            lower = garment in ("trousers", "pants", "shorts", "skirt")
            i = int(lower)
            if colour:
                assert colour == synth.COLOURS[ident.colours[i]], text
            if shade:
                assert (shade == "dark") == ident.dark[i], text
            if pattern:
                assert not lower and pattern == ident.pattern, text
            if lower:
                assert ident.lower_type == ("trousers" if garment == "pants" else garment), text
        assert ("a cap" in text) <= ident.hat and ("without a hat" in text) <= (not ident.hat)
        assert ("long hair" in text) <= ident.long_hair and ("backpack" in text) <= (
            ident.bag == "backpack"
        )
        lengths.add(len(text))
    assert len(lengths) > 3  # different subsets per caption


@pytest.mark.parametrize("size", [(16, 8), (24, 12), (32, 16)])
def test_smallest_sizes_render(tmp_path, size):
    summary = synth.synthesize(tmp_path / "tiny", identities=3, seed=1, size=size)
    assert summary["identities"] == 3
    assert any((tmp_path / "tiny" / "vis").rglob("*.jpg"))


def test_orbench_layout_has_the_file_protocol_and_no_test_identity_in_training(tmp_path):
    from reid_core.config import load_config
    from reid_core.data.dataset_index import build_index
    from reid_core.data.splits import make_splits, resolve_protocol
    from studies.cli import main

    out = tmp_path / "orbench"
    args = ["data", "synth", str(out), "-n", "20", "--size", "32x16", "--layout", "orbench"]
    assert main(args) == 0
    assert not (out / "text_annos.json").exists()
    annos = json.loads((out / "train_annos.json").read_text())
    evaluation = json.loads((out / "test_gallery_and_queries.json").read_text())
    test_ids = {pid for pid, _ in evaluation["RGB_GALLERY"]}
    assert len(test_ids) == 6 and not test_ids & {a["id"] for a in annos}
    assert len(evaluation) == 33 and "TEXT+NIR+CP" in evaluation  # 32 ordered sets + gallery
    index = build_index(out, cache=False)
    cfg = load_config(preset="micro")
    splits = make_splits(index, cfg.data)
    protocol = resolve_protocol(index, "test", splits, cfg.eval, 0)
    assert protocol.name == "file" and len(protocol.sets) == 32
    assert set(splits.test) == test_ids
    assert main(["data", "check", str(out)]) == 0
