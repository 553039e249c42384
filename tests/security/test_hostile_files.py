"""Hostile YAML and JSON: alias bombs, nesting bombs, FIFOs, devices, symlinks out of ROOT and
over-long paths end in one line naming the file and the limit, exit 2, within seconds and a
bounded amount of memory (the real `reid` in a child process under `MEMORY_BOUND` and
`TIME_BOUND`), with nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from reid_core.errors import ConfigError, DataError, ReidError
from reid_core.safeio import (
    JSON_MAX_BYTES,
    MAX_DEPTH,
    YAML_MAX_BYTES,
    parse_json,
    parse_yaml,
    read_bytes,
    read_json,
)
from tests.security.conftest import assert_one_line_refusal, reid_bounded, snapshot

pytestmark = pytest.mark.integration

LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""
SPEC = {  # a valid spec, to be broken
    "name": "bomb",
    "base": {"preset": "micro"},
    "space": {"model.lora.rank": {"type": "categorical", "choices": [2, 4]}},
    "budget": {"n_trials": 2},
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from reid_core.data.synth import synthesize

    root = tmp_path_factory.mktemp("hostile") / "data"
    synthesize(root, identities=4, seed=0, size=(32, 16))
    return root


@pytest.fixture
def root(dataset, tmp_path) -> Path:
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(dataset, copy)
    return copy


def _bomb_spec(where: str) -> str:
    """A spec whose `where` (space choices, enqueue or base.overrides) holds the laughs."""
    space = "space: {model.lora.rank: {type: categorical, choices: [2, 4]}}\n"
    body = {
        "space": "space: {model.lora.rank: {type: categorical, choices: *i}}\n",
        "enqueue": space + "enqueue: [{model.lora.rank: *i}]\n",
        "base.overrides": space.replace("base", "") + "base: {preset: micro, overrides: {x: *i}}\n",
    }[where]
    base = "" if where == "base.overrides" else "base: {preset: micro}\n"
    laughs = "".join("  " + line for line in LAUGHS.splitlines(True))
    return f"name: bomb\nlaughs:\n{laughs}{body}{base}budget: {{n_trials: 2}}\n"


def _nest(kind: str, depth: int = 10_000) -> str:
    if kind == "flow-seq":
        return "a: " + "[" * depth + "]" * depth + "\n"
    if kind == "flow-map":
        return "a: " + "{a: " * depth + "1" + "}" * depth + "\n"
    return "".join(" " * i + f"k{i}:\n" for i in range(depth // 10)) + " " * (depth // 10) + "1\n"


# ----------------------------------------------------------------------------------- YAML
def test_a_billion_laughs_config_is_refused_in_one_line(tmp_path):
    config = tmp_path / "bomb.yaml"
    config.write_text("data:\n" + "".join("  " + ln for ln in LAUGHS.splitlines(True)))
    before = snapshot(tmp_path)
    result = reid_bounded("config", "show", "--config", config, cwd=tmp_path)
    assert_one_line_refusal(result, "bomb.yaml", "alias", "not allowed")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("where", ["space", "enqueue", "base.overrides"])
def test_a_billion_laughs_study_spec_is_refused_before_anything_is_created(tmp_path, where):
    spec = tmp_path / "bomb.yaml"
    spec.write_text(_bomb_spec(where))
    before = snapshot(tmp_path)
    storage = f"sqlite:///{tmp_path}/studies.db"
    result = reid_bounded("study", "create", spec, "--storage", storage, cwd=tmp_path)
    assert_one_line_refusal(result, "bomb.yaml", "alias")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["flow-seq", "flow-map", "block-map"])
def test_deeply_nested_yaml_is_refused_at_the_depth_limit(tmp_path, kind):
    config = tmp_path / "deep.yaml"
    config.write_text(_nest(kind))
    result = reid_bounded("config", "show", "--config", config, cwd=tmp_path)
    assert_one_line_refusal(result, "deep.yaml", f"{MAX_DEPTH}-level limit")
    spec = tmp_path / "deep-spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC) + _nest(kind).replace("a:", "description:", 1))
    result = reid_bounded("study", "create", spec, cwd=tmp_path)
    assert_one_line_refusal(result, "deep-spec.yaml", f"{MAX_DEPTH}-level limit")


def test_yaml_over_the_size_limit_a_fifo_and_a_device_are_refused(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(YAML_MAX_BYTES + 1)  # sparse: nothing is really written
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    for path, needle in ((big, "1 MiB limit"), (fifo, "FIFO"), (Path("/dev/zero"), "device")):
        result = reid_bounded("config", "show", "--config", path, cwd=tmp_path)
        assert_one_line_refusal(result, path.name, needle)
    result = reid_bounded("study", "create", fifo, cwd=tmp_path)
    assert_one_line_refusal(result, "fifo.yaml", "FIFO")


def test_an_alias_or_a_bomb_in_a_set_override_is_refused():
    from reid_core.config import load_config

    with pytest.raises(ConfigError, match="alias"):
        load_config(preset="micro", overrides=["data.modalities=&a [vis, *a]"])
    with pytest.raises(ConfigError, match="64-level limit"):
        load_config(preset="micro", overrides=["train.epochs=" + "[" * 5000 + "]" * 5000])
    # text that is not YAML stays a string, as before (and fails validation by name)
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        load_config(preset="micro", overrides=["train.epochs=[1"])


def test_yaml_edge_values_are_one_line_errors():
    for text in ("a: " + "9" * 6000, "a: !!python/object/apply:os.system [ls]", "\x00", "a: [1"):
        with pytest.raises(ReidError) as info:
            parse_yaml(text, "f.yaml", ReidError)
        assert str(info.value).startswith("f.yaml:") and "\n" not in str(info.value)
    assert parse_yaml("a: &x 1\nb: 2\n", "f", ReidError) == {"a": 1, "b": 2}  # an anchor alone


# ----------------------------------------------------------------------------------- JSON
@pytest.mark.parametrize("name", ["text_annos.json", "test_gallery_and_queries.json"])
def test_deeply_nested_annotation_json_is_refused(root, name):
    (root / name).write_text("[" * 100_000 + "]" * 100_000)
    before = snapshot(root.parent)
    result = reid_bounded("data", "check", root, cwd=root.parent)
    assert_one_line_refusal(result, name, f"{MAX_DEPTH}-level limit")
    assert snapshot(root.parent) == before


def test_a_fifo_caption_file_is_refused_not_waited_on(root):
    (root / "text_annos.json").unlink()
    os.mkfifo(root / "text_annos.json")
    result = reid_bounded("data", "check", root, cwd=root.parent)
    assert_one_line_refusal(result, "text_annos.json", "FIFO")


@pytest.mark.parametrize("target", ["/dev/zero", "outside"])
def test_a_caption_file_symlinked_out_of_root_is_refused(root, target):
    outside = root.parent / "outside.json"
    outside.write_text(json.dumps([]))
    (root / "text_annos.json").unlink()
    (root / "text_annos.json").symlink_to(outside if target == "outside" else target)
    result = reid_bounded("data", "check", root, cwd=root.parent)
    assert_one_line_refusal(result, "text_annos.json", "outside ROOT")


def test_annotation_json_over_the_size_limit_is_refused_before_reading(root):
    with open(root / "text_annos.json", "wb") as f:
        f.truncate(JSON_MAX_BYTES + 1)  # sparse
    result = reid_bounded("data", "check", root, cwd=root.parent)
    assert_one_line_refusal(result, "text_annos.json", "256 MiB limit")


@pytest.mark.parametrize("length", [300, 5_000, 10_000])
@pytest.mark.parametrize("name", ["text_annos.json", "test_gallery_and_queries.json"])
def test_over_long_annotation_paths_are_one_line(root, name, length):
    rel = "vis/0001/" + "x" * length + ".jpg"
    if name == "text_annos.json":
        data = json.loads((root / name).read_text())
        data[0]["file_path"] = rel
    else:
        data = {"RGB_GALLERY": [[1, rel]], "NIR": [[1, "nir/0001/a.jpg"]]}
    (root / name).write_text(json.dumps(data))
    result = reid_bounded("data", "check", root, cwd=root.parent)
    limit = "255-byte limit" if length < 4000 else "4096-character limit"
    assert_one_line_refusal(result, name, limit)


def test_a_nul_in_an_annotation_path_is_one_line(root):
    data = json.loads((root / "text_annos.json").read_text())
    data[1]["file_path"] = "vis/0001/a\x00b.jpg"
    (root / "text_annos.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"entry 1.*NUL"):
        from reid_core.data.dataset_index import build_index

        build_index(root, cache=False)


def test_over_long_command_line_paths_are_one_line(tmp_path):
    long = tmp_path / ("y" * 300)
    for args in (
        ("data", "check", long),
        ("config", "show", "--config", long),
        ("study", "create", str(long) + ".yaml"),
        ("config", "show", "--config", "z/" * 2100 + "c.yaml"),
    ):
        result = reid_bounded(*args, cwd=tmp_path)
        assert_one_line_refusal(result, "limit")


def test_json_limits_in_process(tmp_path):
    assert parse_json(b'[{"a": "[[[[\\"[[[["}]', "f", ReidError) == [{"a": '[[[["[[[['}]
    deep_ok = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert parse_json(deep_ok, "f", ReidError)
    for depth, ok in ((MAX_DEPTH, True), (MAX_DEPTH + 1, False)):  # lists and objects mixed
        mixed = b"".join(b'[{"k":' for _ in range(depth // 2)) + (b"[" if depth % 2 else b"")
        mixed += b"1" + (b"]" if depth % 2 else b"") + b"}]" * (depth // 2)
        try:
            parse_json(mixed, "m.json", ReidError)
        except ReidError:
            assert not ok
        else:
            assert ok
    for data in (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), b"{" * 100_000, b"9" * 6000):
        with pytest.raises(ReidError) as info:
            parse_json(data, "f.json", ReidError)
        assert "\n" not in str(info.value)
    path = tmp_path / "x.json"
    path.write_bytes(b"[1, 2, 3]")
    with pytest.raises(ReidError, match="larger than the 4 bytes limit"):
        read_bytes(path, 4, ReidError)
    with pytest.raises(ReidError, match="not UTF-8"):
        path.write_bytes(b"\xff\xfe[]")
        read_json(path, ReidError)


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--index", "nowhere", "--max-upload-mb", "inf"],
        ["serve", "--index", "nowhere", "--max-upload-mb", "nan"],
        ["data", "check", "nowhere", "-j", "100000"],
        ["study", "run", "nothing", "-w", "100000"],
    ],
)
def test_numbers_that_would_eat_the_machine_are_refused(args, capsys, tmp_path, monkeypatch):
    from studies.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ("must be from" in err or "not in the range" in err)
    assert list(tmp_path.iterdir()) == []
