"""The bounded readers (`reid_core.safeio`) against generated input: aliases and nesting of any
shape are refused in one line and nothing expands; the JSON depth pre-scan agrees with the real
depth whatever the strings hold; no name survives `printable` with a line break in it."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from reid_core.errors import ReidError, printable
from reid_core.safeio import MAX_DEPTH, parse_json, parse_yaml
from tests.fuzz.conftest import FUZZ, count

TRICKY = st.text(alphabet='[]{}"\\:,&*!|>- \n\tab0', max_size=12)
JSON_TREES = st.recursive(
    st.none() | st.integers() | TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY, inner, max_size=3),
    max_leaves=20,
)


def _depth(value) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


def _wrap(value, levels: int, kind: str):
    for i in range(levels):
        as_list = kind == "list" or (kind == "mixed" and i % 2 == 0)
        value = [value] if as_list else {"k": value}
    return value


@FUZZ
@given(
    tree=JSON_TREES,
    levels=st.integers(0, 2 * MAX_DEPTH),
    kind=st.sampled_from(["list", "map", "mixed"]),
)
def test_json_depth_check_agrees_with_the_parsed_depth(tree, levels, kind):
    count("safeio: JSON trees")
    value = _wrap(tree, levels, kind)
    data = json.dumps(value).encode()
    try:
        got = parse_json(data, "f.json", ReidError)
    except ReidError as exc:
        assert "\n" not in str(exc) and "64-level limit" in str(exc)
        assert _depth(value) > MAX_DEPTH
        return
    assert got == value and _depth(value) <= MAX_DEPTH


PIECES = st.sampled_from(
    ["&a ", "*a", "&b ", "*b", "[", "]", "{", "}", "- ", "k: ", ", ", "\n", "  ", "x", "1", "<<: "]
)


@FUZZ
@given(parts=st.lists(PIECES, max_size=60))
def test_yaml_with_anchors_and_aliases_never_expands(parts):
    count("safeio: YAML fragments")
    text = "".join(parts)
    try:
        value = parse_yaml(text, "f.yaml", ReidError)
    except ReidError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("f.yaml:")
        return
    # whatever was accepted holds no more items than the text has characters (no expansion)
    assert len(json.dumps(value, default=str)) <= 8 * (len(text) + 4)


@FUZZ
@given(depth=st.integers(MAX_DEPTH + 1, 3000), style=st.sampled_from(["[", "{a: ", "- "]))
def test_yaml_nesting_beyond_the_limit_is_refused(depth, style):
    count("safeio: YAML nesting")
    if style == "- ":
        text = "".join("  " * i + "-\n" for i in range(depth)) + "  " * depth + "1\n"
    else:
        close = "]" if style == "[" else "}"
        text = style * depth + "1" + close * depth
    try:
        parse_yaml(text, "deep.yaml", ReidError)
    except ReidError as exc:
        assert "64-level limit" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("accepted")


@FUZZ
@given(
    text=st.text(max_size=40)
    | st.binary(max_size=20).map(lambda b: b.decode("utf-8", "surrogateescape"))
)
def test_printable_leaves_one_line_and_is_idempotent(text):
    count("errors: printable names")
    shown = printable(text)
    assert shown.isprintable() and printable(shown) == shown
    assert str(ReidError(f"{text}: bad")).isprintable()
