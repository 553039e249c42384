"""Issue 2, "Bad input": each gives one line naming the file, key or value, exit 2, no traceback,
nothing written; awkward but valid inputs pass. Both the Python API and the CLI are tested."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from reid_core.config import load_config
from reid_core.data.check import check_dataset
from reid_core.data.dataset_index import build_index
from reid_core.data.splits import make_splits
from reid_core.errors import ConfigError, DataError
from studies.cli import main
from tests.data.conftest import image_bytes

IMG = "vis/0001/0001_c1_000.jpg"
EVAL = "test_gallery_and_queries.json"


def _snapshot(path: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")
    }


@pytest.fixture
def cli(tmp_path: Path, capsys, monkeypatch) -> Callable[..., tuple[int, str, str]]:
    """Run `reid ARGS` in-process from an empty cwd; asserts nothing was written under tmp_path."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    def run(*args: str, ok: bool = False) -> tuple[int, str, str]:
        before = _snapshot(tmp_path)
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        if not ok:
            assert code == 2, (out, err)
            assert err.startswith("error: ") and err.count("\n") == 1, err
            assert "Traceback" not in err + out
            assert _snapshot(tmp_path) == before
        return code, out, err

    return run


def _jpeg(noise_px: int = 64) -> bytes:
    rng = random.Random(0)
    from PIL import Image

    raw = bytes(rng.getrandbits(8) for _ in range(noise_px * noise_px * 3))
    buf = io.BytesIO()
    Image.frombytes("RGB", (noise_px, noise_px), raw).save(buf, "JPEG")
    return buf.getvalue()


def _write(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data if isinstance(data, bytes) else data.encode())

    return mutate


def _annos(change: Callable[[list], object]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        data = json.loads((root / "text_annos.json").read_text())
        change(data)
        (root / "text_annos.json").write_text(json.dumps(data))

    return mutate


def _eval(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        data = json.loads((root / EVAL).read_text())
        change(data)
        (root / EVAL).write_text(json.dumps(data))

    return mutate


ANNO = "text_annos.json"
# (case, mutation of a valid seed tree, what the message must name); image cases need `check`.
IMAGE_CASES = {
    "corrupt_image": (_write(IMG, b"this is not a jpeg"), [IMG, "not an image"]),
    "truncated_image": (_write(IMG, _jpeg()[:900]), [IMG, "truncated"]),
    "zero_byte_image": (_write(IMG, b""), [IMG, "zero-byte"]),
}
INDEX_CASES = {
    "identity_not_a_number": (lambda r: (r / "nir" / "person7").mkdir(), ["nir/person7", "number"]),
    "annotation_not_json": (_write(ANNO, "[{'file_path': 1"), [ANNO, "not valid JSON", "line 1"]),
    "annotation_not_a_list": (_write(ANNO, '{"a": 1}'), [ANNO, "JSON list"]),
    "annotation_lacks_field": (
        _annos(lambda d: d[4].pop("caption")),
        [ANNO, "entry 4", "'caption'"],
    ),
    "annotation_path_dotdot": (
        _annos(lambda d: d[2].update(file_path="../x.jpg")),
        [ANNO, "entry 2", "'../x.jpg'", "leaves ROOT"],
    ),
    "annotation_path_absolute": (
        _annos(lambda d: d[0].update(file_path="/etc/passwd.jpg")),
        [ANNO, "entry 0", "absolute"],
    ),
    "caption_for_missing_file": (
        _annos(lambda d: d[1].update(file_path="vis/0001/gone.jpg")),
        [ANNO, "entry 1", "vis/0001/gone.jpg", "does not exist"],
    ),
    "duplicate_entries": (
        _annos(lambda d: d.append(dict(d[3]))),
        [ANNO, "entry 30", "duplicate", "first at entry 3"],
    ),
    "missing_gallery_folder": (lambda r: shutil.rmtree(r / "vis"), ["vis", "gallery"]),
}
EVAL_CASES = {
    "eval_not_json": (_write(EVAL, "{nope"), [EVAL, "not valid JSON"]),
    "eval_lacks_gallery": (_eval(lambda d: d.pop("RGB_GALLERY")), [EVAL, "RGB_GALLERY"]),
    "eval_missing_file": (
        _eval(lambda d: d["NIR"][0].__setitem__(1, "nir/0009/missing.jpg")),
        [EVAL, "NIR[0]", "nir/0009/missing.jpg", "does not exist"],
    ),
    "eval_unknown_modality": (_eval(lambda d: d.__setitem__("THERMAL+NIR", [])), [EVAL, "THERMAL"]),
    "eval_path_outside_root": (
        _eval(lambda d: d["RGB_GALLERY"][0].__setitem__(1, "../../etc/x.jpg")),
        [EVAL, "leaves ROOT"],
    ),
}


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_bad_image(case: str, seed_tree: Path, cli) -> None:
    mutate, needles = IMAGE_CASES[case]
    mutate(seed_tree)
    build_index(seed_tree, cache=False)  # the index never opens an image
    with pytest.raises(DataError) as info:
        check_dataset(seed_tree, workers=2)
    assert all(n in str(info.value) for n in needles), str(info.value)
    _, _, err = cli("data", "check", str(seed_tree))
    assert all(n in err for n in needles) and "1 unreadable image" in err


def test_many_bad_images_are_counted(seed_tree: Path, cli) -> None:
    for pid in range(1, 6):
        (seed_tree / "nir" / f"{pid:04d}" / f"{pid:04d}_c1_000.jpg").write_bytes(b"")
    _, _, err = cli("data", "check", str(seed_tree), "--quick")
    assert "5 unreadable image(s)" in err and "and 2 more" in err


@pytest.mark.parametrize("case", list(INDEX_CASES))
def test_bad_tree_or_annotation(case: str, seed_tree: Path, cli) -> None:
    mutate, needles = INDEX_CASES[case]
    mutate(seed_tree)
    with pytest.raises(DataError) as info:
        build_index(seed_tree, cache=False)
    assert all(n in str(info.value) for n in needles), str(info.value)
    _, _, err = cli("data", "check", str(seed_tree))
    assert all(n in err for n in needles), err


@pytest.mark.parametrize("case", list(EVAL_CASES))
def test_bad_eval_file(case: str, orbench_tree: Path, cli) -> None:
    mutate, needles = EVAL_CASES[case]
    mutate(orbench_tree)
    with pytest.raises(DataError) as info:
        build_index(orbench_tree, cache=False)
    assert all(n in str(info.value) for n in needles), str(info.value)
    _, _, err = cli("data", "stats", str(orbench_tree), "--json")
    assert all(n in err for n in needles), err


def test_missing_other_folder_is_reported_not_fatal(seed_tree: Path, cli) -> None:
    shutil.rmtree(seed_tree / "sk")
    assert build_index(seed_tree, cache=False).missing_folders[0].value == "sk"
    code, out, err = cli("data", "check", str(seed_tree), ok=True)
    assert code == 0 and out.startswith("OK") and "warning: sk/ folder is missing" in err


def test_missing_root(tmp_path: Path, cli) -> None:
    with pytest.raises(DataError, match="does not exist"):
        build_index(tmp_path / "nowhere")
    _, _, err = cli("data", "check", str(tmp_path / "nowhere"))
    assert "nowhere" in err and "does not exist" in err


def test_file_as_root(tmp_path: Path, cli) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        build_index(tmp_path / "afile")
    _, _, err = cli("data", "stats", str(tmp_path / "afile"))
    assert "afile" in err and "is a file" in err


def test_unreadable_root(seed_tree: Path, cli, monkeypatch) -> None:
    # Root reads every folder whatever its mode bits, so the denial is simulated at os.access.
    real_access = os.access
    denied = str(seed_tree)
    monkeypatch.setattr(os, "access", lambda p, mode: str(p) != denied and real_access(p, mode))
    with pytest.raises(DataError, match="not readable"):
        build_index(seed_tree, cache=False)
    code, _, err = cli("data", "stats", str(seed_tree), ok=True)
    assert code == 2 and "not readable" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------- config
CONFIG_CASES = {
    "unknown_key": (["--set", "data.colour=1"], "unknown config key 'data.colour'"),
    "wrong_type": (["--set", "data.p=many"], "data.p"),
    "out_of_range": (["--set", "data.val_share=1.5"], "data.val_share"),
    "retired_key": (["--set", "data.batch_size=7"], "removed: a batch is data.p x data.k"),
    "unknown_preset": (["--preset", "huge"], "unknown preset 'huge'"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config(case: str, seed_tree: Path, cli) -> None:
    args, needle = CONFIG_CASES[case]
    overrides = [a for a in args[1::2]] if args[0] == "--set" else []
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        if overrides:
            load_config(overrides=overrides)
        else:
            load_config(preset=args[1])
    _, _, err = cli("data", "stats", str(seed_tree), *args)
    assert needle in err, err


def test_yaml_syntax_error(seed_tree: Path, tmp_path: Path, cli) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  p: [4\n  k: 2\n")
    with pytest.raises(ConfigError, match="YAML syntax error"):
        load_config(config_file=bad)
    _, _, err = cli("data", "stats", str(seed_tree), "--config", str(bad))
    assert "bad.yaml" in err and "YAML syntax error" in err


def test_fewer_identities_than_p(seed_tree: Path, cli) -> None:
    cfg = load_config(overrides=["data.p=9"])
    with pytest.raises(DataError, match=r"fewer than data\.p=9"):
        make_splits(build_index(seed_tree, cache=False), cfg.data)
    _, _, err = cli("data", "stats", str(seed_tree), "-s", "data.p=9")
    assert "fewer than data.p=9" in err


# ------------------------------------------------------------------------------------ synth
def test_synth_bad_size_writes_nothing(tmp_path: Path, cli) -> None:
    _, _, err = cli("data", "synth", str(tmp_path / "out"), "--size", "12x")
    assert "--size '12x'" in err and not (tmp_path / "out").exists()


def test_synth_refuses_non_empty_out(tmp_path: Path, cli) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    _, _, err = cli("data", "synth", str(tmp_path / "out"))
    assert "not empty" in err and "--overwrite" in err


# ------------------------------------------------------------------------ awkward but valid
def test_awkward_but_valid_images_pass(seed_tree: Path, cli) -> None:
    png = image_bytes("PNG")
    (seed_tree / IMG).write_bytes(png)  # PNG bytes under a .jpg name
    (seed_tree / "nir/0002/0002_c1_000.jpg").write_bytes(image_bytes("JPEG", "CMYK"))
    (seed_tree / "vis/0003/0003_c1_000.jpg").write_bytes(image_bytes("JPEG", "CMYK"))
    (seed_tree / "cp/0004/0004_c1_000.jpg").write_bytes(image_bytes("JPEG", "L"))
    (seed_tree / "vis/0004/0004_c2_001.jpg").write_bytes(image_bytes("PNG", "L"))
    (seed_tree / "sk/0005/skizze_ü_人.png").write_bytes(png)
    report = check_dataset(seed_tree, workers=2)
    assert report.images["sk"] == 21 and not report.quick
    code, out, _ = cli("data", "check", str(seed_tree), ok=True)
    assert code == 0 and out.startswith("OK") and "91 images decoded" in out
    code, out, _ = cli("data", "check", str(seed_tree), "--quick", "-j", "1", ok=True)
    assert code == 0 and "headers read" in out


def test_cli_subprocess_has_no_traceback(seed_tree: Path) -> None:
    (seed_tree / IMG).write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, "-m", "studies.cli", "data", "check", str(seed_tree)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr and IMG in proc.stderr
