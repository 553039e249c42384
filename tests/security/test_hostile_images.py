"""One definition of a readable image: `reid data check` passes exactly the images training
decodes; unsupported modes, pixel bombs in any format and truncated files are bad images (skip or
fail as configured); identity folders out of range and names holding control characters never
crash or forge an output line."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from reid_core.config import load_config
from reid_core.data.datasets import ImageListDataset
from reid_core.data.images import (
    MAX_PIXELS,
    MODES,
    BadImageError,
    ImageTooLargeError,
    image_problem,
    load_image,
)
from reid_core.errors import DataError, printable
from reid_core.modality import Modality
from tests.security.conftest import BOMBS, assert_one_line_refusal, reid_bounded, snapshot

# Every mode Pillow can write to TIFF (or PNG), supported or not.
WRITABLE = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I", "F", "LAB"]


def _write_mode(path: Path, mode: str) -> None:
    img = Image.new(mode, (16, 32))
    img.save(path, format="TIFF")


@pytest.fixture(scope="module")
def cfg():
    return load_config(preset="micro")


@pytest.mark.parametrize("mode", WRITABLE)
@pytest.mark.parametrize("modality", [Modality.VIS, Modality.NIR])
def test_the_check_passes_exactly_what_training_decodes(tmp_path, cfg, mode, modality):
    path = tmp_path / "x.tif"
    _write_mode(path, mode)
    verdict = image_problem(path)
    dataset = ImageListDataset(tmp_path, ["x.tif"], modality, cfg.data)
    if verdict is None:
        tensor = dataset[0]
        assert isinstance(tensor, torch.Tensor) and tensor.shape[0] == modality.channels
        assert Image.open(path).mode in MODES
    else:
        with pytest.raises(DataError, match=r"x\.tif") as info:
            dataset[0]
        assert verdict in str(info.value) and "\n" not in str(info.value)
    assert (verdict is None) == (mode in MODES)


def test_lab_and_float_images_are_bad_images_with_the_reason():
    for mode in ("LAB", "F", "I"):
        buf = io.BytesIO()
        Image.new(mode, (8, 8)).save(buf, format="TIFF")
        with pytest.raises(BadImageError, match=f"image mode {mode} is not supported"):
            load_image(buf.getvalue(), "upload")


def test_sixteen_bit_grey_is_scaled_not_clipped():
    import numpy as np

    buf = io.BytesIO()
    Image.fromarray(np.array([[0, 256, 32768, 65535]], dtype=np.uint16)).save(buf, format="PNG")
    img = load_image(buf.getvalue())
    assert img.mode == "L" and list(np.asarray(img)[0]) == [0, 1, 128, 255]


@pytest.mark.parametrize("fmt", sorted(BOMBS))
@pytest.mark.parametrize("size", [(20000, 20000), (7000, 7000), (65535, 65535), (1, 60_000_000)])
def test_pixel_bombs_are_refused_from_the_header(fmt, size):
    if (fmt == "gif" and max(size) > 65535) or (fmt == "jpeg" and max(size) > 65535):
        pytest.skip("the format cannot declare that size")
    with pytest.raises(ImageTooLargeError, match=f"over the {MAX_PIXELS:,}-pixel limit") as info:
        load_image(BOMBS[fmt](*size), f"bomb.{fmt}")
    assert f"bomb.{fmt}" in str(info.value)


def test_truncated_and_junk_images_are_bad_images(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="PNG")
    cases = {"cut.png": buf.getvalue()[:60], "junk.jpg": b"not an image", "empty.png": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        assert image_problem(tmp_path / name) is not None, name
    os.mkfifo(tmp_path / "fifo.png")
    assert image_problem(tmp_path / "fifo.png") == "not a regular file"


@pytest.mark.integration
def test_data_check_refuses_bombs_and_lab_in_bounded_memory(tmp_path):
    from reid_core.data.synth import synthesize

    root = tmp_path / "data"
    synthesize(root, identities=3, seed=0, size=(32, 16))
    (root / "nir" / "0001" / "bomb.png").write_bytes(BOMBS["png"](20000, 20000))
    _write_mode(root / "nir" / "0002" / "lab.tif", "LAB")
    before = snapshot(tmp_path)
    result = reid_bounded("data", "check", root, cwd=tmp_path)
    assert_one_line_refusal(result, "2 unreadable", "bomb.png", "pixel limit", "lab.tif", "LAB")
    assert snapshot(tmp_path) == before
    quick = reid_bounded("data", "check", root, "--quick", cwd=tmp_path)  # headers agree
    assert_one_line_refusal(quick, "2 unreadable", "bomb.png", "lab.tif")


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["skip", "fail"])
def test_a_lab_infrared_image_is_a_bad_image_in_training(tmp_path, capfd, mode):
    from reid_core.data.synth import synthesize
    from studies.cli import main

    root = tmp_path / "data"
    synthesize(root, identities=8, seed=0, size=(32, 16))
    for folder in sorted((root / "nir").iterdir()):
        image = sorted(folder.iterdir())[0]
        image.unlink()
        _write_mode(image.with_suffix(".tif"), "LAB")
    sets = ["train.epochs=1", "train.max_steps_per_epoch=2", f"data.on_bad_image={mode}"]
    args = ["train", "--preset", "micro", "--data", str(root), "--out", str(tmp_path / "run")]
    code = main([*args, "--no-track", *[a for s in sets for a in ("--set", s)]])
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ValueError" not in err
    if mode == "skip":
        assert code == 0
        assert "skipped undecodable image nir/" in err and ".tif" in err
    else:
        assert code == 2
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: cannot decode image") and "image mode LAB" in last


# --------------------------------------------------------------------------- names and ids
@pytest.mark.parametrize("name", ["100000000000000000000000000", "1234567890", "٣"])
def test_identity_folders_out_of_range_are_one_line(tmp_path, name):
    from reid_core.data.dataset_index import build_index
    from reid_core.data.synth import synthesize

    root = tmp_path / "data"
    synthesize(root, identities=3, seed=0, size=(32, 16))
    shutil.copytree(root / "nir" / "0001", root / "nir" / name)
    with pytest.raises(DataError, match="at most 9 digits") as info:
        build_index(root, cache=False)  # what training, evaluation and `data check` all call
    assert "\n" not in str(info.value)


NASTY = [
    "line\nerror: forged",
    "cr\rforged",
    "esc\x1b[31mred",
    "tab\there",
    "bidi\u202etxt.gpj",
    "nul\x7fdel",
]


@pytest.mark.integration
def test_control_characters_in_names_never_forge_a_line(tmp_path):
    from reid_core.data.synth import synthesize

    root = tmp_path / "data"
    synthesize(root, identities=3, seed=0, size=(32, 16))
    folder = root / "nir" / "0001"
    for name in NASTY:
        bad = folder / f"{name}.jpg"
        bad.write_bytes(b"not an image")
        result = reid_bounded("data", "check", root, cwd=tmp_path)
        err = assert_one_line_refusal(result, printable(name))
        assert not any(c in err[:-1] for c in "\x1b\r\n\t\u202e\x7f"), err
        bad.unlink()
    os.mkdir(os.fsencode(root / "nir") + b"/\xff\xfe")  # a folder name that is not UTF-8
    result = reid_bounded("data", "check", root, cwd=tmp_path)
    assert_one_line_refusal(result, "nir/\\xff\\xfe", "at most 9 digits")


@pytest.mark.integration
def test_a_root_named_with_a_newline_prints_one_summary_line(tmp_path):
    from reid_core.data.synth import synthesize

    root = tmp_path / "da\nta"
    synthesize(root, identities=3, seed=0, size=(32, 16))
    result = reid_bounded("data", "check", root, cwd=tmp_path)
    assert result.code == 0, result.err
    assert result.out.count("\n") == 1 and "da\\nta" in result.out


def test_only_the_dataset_formats_are_parsed_never_eps(tmp_path, monkeypatch):
    """EPS would make Pillow run Ghostscript (a PostScript interpreter) on the file: refused
    at the format sniff, before any plugin runs, as are Pillow's rarer formats."""
    import subprocess

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"a program was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    (tmp_path / "x.jpg").write_bytes(eps)
    assert "not an image format OmniReID reads" in image_problem(tmp_path / "x.jpg")
    for fmt in ("ICO", "PPM", "TGA", "PCX", "JPEG2000"):
        buf = io.BytesIO()
        Image.new("RGB", (16, 16)).save(buf, fmt)
        with pytest.raises(BadImageError, match="not an image format OmniReID reads"):
            load_image(buf.getvalue(), fmt)
    buf = io.BytesIO()  # a phone's multi-picture JPEG is a JPEG
    second = Image.new("RGB", (8, 8))
    Image.new("RGB", (8, 8)).save(buf, "MPO", save_all=True, append_images=[second])
    assert load_image(buf.getvalue()).size == (8, 8)
