"""Fuzzing helpers: every input goes through a real loader and must end as a value or one
one-line `ReidError`; anything else (another exception, a traceback) fails the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from reid_core.errors import ReidError

# A few hundred inputs each, no per-example deadline (the CPU is shared); see docs/RELIABILITY.md.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
COUNTS: dict[str, int] = {}


def accepted_or_one_line(fn, *args, **kwargs):
    """Run a loader; a ReidError must be one non-empty line. Returns the value or the error."""
    try:
        return fn(*args, **kwargs)
    except ReidError as exc:
        message = str(exc)
        assert message.strip() and "\n" not in message, repr(message)
        assert "Traceback" not in message
        return exc


def count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


def mutate(data: st.DataObject, text: str, alphabet: str) -> str:
    """A few random edits of `text`: delete, insert or replace a span, or swap two lines."""
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["delete", "insert", "replace", "swap"]))
        n = len(text)
        i = data.draw(st.integers(0, n))
        j = data.draw(st.integers(i, min(n, i + 12)))
        piece = data.draw(st.text(alphabet=alphabet, max_size=8))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + piece + text[i:]
        elif kind == "replace":
            text = text[:i] + piece + text[j:]
        else:
            lines = text.splitlines()
            if len(lines) > 1:
                a = data.draw(st.integers(0, len(lines) - 1))
                b = data.draw(st.integers(0, len(lines) - 1))
                lines[a], lines[b] = lines[b], lines[a]
                text = "\n".join(lines)
    return text


JSON_SCALARS = (
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats() | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value), encoding="utf-8")


@pytest.fixture(scope="session", autouse=True)
def _report_counts():
    yield
    if COUNTS:
        print("\nfuzz inputs tried: " + ", ".join(f"{k} {v}" for k, v in sorted(COUNTS.items())))
