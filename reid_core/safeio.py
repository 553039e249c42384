"""Bounded reading of a user's files, and user text made safe to print.

Every YAML or JSON file a user hands OmniReID (a config, a study spec, a caption or evaluation
file, a gallery index, a model's files) is read here: a regular file only (a FIFO, a device or a
socket is refused without a blocking read), at most a size cap (checked with `stat` and again
while reading, so `/dev/zero` or a growing file cannot exceed it), nested at most `MAX_DEPTH`
levels (checked before a recursive parser sees it), and YAML without aliases (the billion-laughs
bomb). Every failure is one `ReidError` line naming the file and the limit; docs/RELIABILITY.md
lists the limits.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from reid_core.errors import ReidError, printable

YAML_MAX_BYTES = 1 << 20  # config files, study specs, a model's config.yaml and MLmodel
JSON_MAX_BYTES = 256 << 20  # caption and evaluation files (ORBench's are about 20 MiB)
MAX_DEPTH = 64  # nested lists/mappings; OmniReID's own files need 6 at most
PATH_MAX_CHARS = 4096  # Linux's PATH_MAX
NAME_MAX_BYTES = 255  # one path component, as most file systems allow

__all__ = [
    "JSON_MAX_BYTES",
    "MAX_DEPTH",
    "NAME_MAX_BYTES",
    "PATH_MAX_CHARS",
    "YAML_MAX_BYTES",
    "check_path_length",
    "parse_json",
    "parse_yaml",
    "parse_yaml_value",
    "printable",
    "quote",
    "read_bytes",
    "read_json",
    "read_yaml",
    "shorten",
    "size_text",
]


class _LimitError(Exception):
    """A limit the bounded YAML composer hit (turned into the caller's ReidError)."""


def size_text(n: int) -> str:
    """`1 MiB`, `256 MiB`, `64 KiB`, `900 bytes`."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:.0f} {unit}" if value.is_integer() else f"{value:.1f} {unit}"
    return f"{n} bytes"


def shorten(text: object, limit: int = 80) -> str:
    """`printable(text)`, cut to `limit` characters with `...` (for values inside a message)."""
    shown = printable(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def quote(value: object, limit: int = 80) -> str:
    """`repr(value)`, printable and cut to `limit` characters: a user's value inside a message."""
    return shorten(repr(value), limit)


# ---------------------------------------------------------------------------------- paths
def check_path_length(path: str | os.PathLike[str], where: str, error: type[ReidError]) -> None:
    """Refuse a path longer than `PATH_MAX_CHARS` or with a component over `NAME_MAX_BYTES`
    (the operating system would answer `File name too long`)."""
    text = os.fspath(path)
    if len(text) > PATH_MAX_CHARS:
        raise error(
            f"{where}: path {shorten(text, 60)} is {len(text)} characters long, over the "
            f"{PATH_MAX_CHARS}-character limit"
        )
    for part in re.split(r"[\\/]", text):
        size = len(part.encode("utf-8", "surrogateescape"))
        if size > NAME_MAX_BYTES:
            raise error(
                f"{where}: path component {shorten(part, 60)} is {size} bytes long, over the "
                f"{NAME_MAX_BYTES}-byte limit"
            )


def _check_regular(mode: int, path: Path, error: type[ReidError]) -> None:
    if stat.S_ISREG(mode):
        return
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    kind = next((name for test, name in kinds if test(mode)), "not a plain file")
    raise error(f"{printable(path)}: is {kind}, not a regular file")


def _inside(path: Path, root: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(Path(os.path.realpath(root)))


def read_bytes(
    path: str | os.PathLike[str],
    limit: int,
    error: type[ReidError],
    *,
    what: str = "this file",
    root: Path | None = None,
) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; with `root`, the file (after
    symlinks) must lie inside it. Never blocks on a FIFO and never reads past `limit`."""
    path = Path(path)
    shown = printable(path)
    check_path_length(path, shown[:200], error)
    if root is not None and not _inside(path, root):
        raise error(f"{shown}: a symlink leading outside ROOT (files stay inside ROOT)")
    try:
        _check_regular(os.stat(path).st_mode, path, error)  # before open: a FIFO would block
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise error(f"{shown}: no such file") from None
    except OSError as exc:
        raise error(f"{shown}: cannot read ({exc.strerror or exc})") from None
    try:
        _check_regular(os.fstat(fd).st_mode, path, error)  # the file opened is the one checked
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise error(f"{shown}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if total > limit:
        raise error(f"{shown}: larger than the {size_text(limit)} limit for {what}")
    return b"".join(chunks)


def _decode(data: bytes, source: str, error: type[ReidError], kind: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{source}: not UTF-8 text (byte {exc.start}), so not {kind}") from None


# ----------------------------------------------------------------------------------- YAML
class _BoundedComposer(Composer):
    """PyYAML's composer, refusing aliases and more than `MAX_DEPTH` nested collections while
    composing, before anything is expanded or recursed into."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):  # type: ignore[attr-defined]
            event = self.peek_event()  # type: ignore[attr-defined]
            raise _LimitError(
                f"line {event.start_mark.line + 1}: YAML alias *{printable(event.anchor)} "
                "(aliases and merge keys are not allowed: write the value out)"
            )
        if not self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):  # type: ignore[attr-defined]
            return super().compose_node(parent, index)
        self._depth = getattr(self, "_depth", 0) + 1
        if self._depth > MAX_DEPTH:
            line = self.peek_event().start_mark.line + 1  # type: ignore[attr-defined]
            raise _LimitError(f"line {line}: nested deeper than the {MAX_DEPTH}-level limit")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


try:  # libyaml's parser: 3-4x faster than PyYAML's
    from yaml.cyaml import CParser as _CParser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _CParser = None  # type: ignore[assignment, misc]

if _CParser is not None:

    class BoundedSafeLoader(_BoundedComposer, _CParser, SafeConstructor, Resolver):
        """The safe loader on libyaml's parser, with the bounded composer."""

        def __init__(self, stream: str) -> None:
            _CParser.__init__(self, stream)
            _BoundedComposer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml

    class BoundedSafeLoader(_BoundedComposer, yaml.SafeLoader):  # type: ignore[no-redef]
        """PyYAML's pure-Python safe loader, with the bounded composer."""


class _YamlSyntaxError(Exception):
    """Text that is not YAML (`parse_yaml_value` keeps it as a string)."""


def _load_yaml(text: str, source: str, error: type[ReidError]) -> Any:
    """Parse YAML; a limit is `error`, a syntax error `_YamlSyntaxError` with its message."""
    loader = BoundedSafeLoader(text)
    try:
        return loader.get_single_data()
    except _LimitError as exc:
        raise error(f"{source}: {exc}") from None
    except (yaml.YAMLError, ValueError, TypeError) as exc:  # ValueError: e.g. a 5,000-digit int
        if "nesting depth" in str(getattr(exc, "problem", "")):  # libyaml's own flow limit
            raise error(f"{source}: nested deeper than the {MAX_DEPTH}-level limit") from None
        raise _YamlSyntaxError(f"{source}:{_yaml_problem(exc)}") from None
    finally:
        loader.dispose()


def _yaml_problem(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    return f"{where} YAML syntax error: {printable(problem)}"


def parse_yaml(text: str, source: str, error: type[ReidError]) -> Any:
    """Parse YAML text (no aliases, at most `MAX_DEPTH` deep); problems are one `error` line
    starting with `source`."""
    try:
        return _load_yaml(text, source, error)
    except _YamlSyntaxError as exc:
        raise error(str(exc)) from None


def parse_yaml_value(text: str, source: str, error: type[ReidError]) -> Any:
    """A `--set` value read as YAML; text that is not YAML stays a string, but an alias or a
    nesting bomb is refused."""
    try:
        return _load_yaml(text, source, error)
    except _YamlSyntaxError:
        return text


def read_yaml(
    path: str | os.PathLike[str],
    error: type[ReidError],
    *,
    limit: int = YAML_MAX_BYTES,
    what: str = "a YAML file",
) -> Any:
    """A YAML file through `read_bytes` and `parse_yaml`."""
    data = read_bytes(path, limit, error, what=what)
    source = printable(path)
    return parse_yaml(_decode(data, source, error, "YAML"), source, error)


# ----------------------------------------------------------------------------------- JSON
_ESCAPES = re.compile(rb"\\.", re.DOTALL)
_STRINGS = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_PAIRS = re.compile(rb"\[\]|\{\}")


def _too_deep(data: bytes, max_depth: int = MAX_DEPTH) -> bool:
    """Whether JSON `data` nests more than `max_depth` lists/objects, found without parsing:
    escapes and strings are cut, then innermost `[]`/`{}` pairs are removed level by level;
    a pair left after `max_depth` rounds sits deeper. Unclosed brackets count as levels."""
    brackets = data.translate(None, _NOT_BRACKETS)
    if len(brackets) <= max_depth:
        return False
    if b"\\" in data:
        data = _ESCAPES.sub(b"", data)
    brackets = _STRINGS.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(max_depth):
        reduced = _PAIRS.sub(b"", brackets)  # one pass: exactly one level per round
        if reduced == brackets:
            break
        brackets = reduced
    if _PAIRS.search(brackets):
        return True
    return brackets.count(b"[") + brackets.count(b"{") > max_depth


def parse_json(data: bytes, source: str, error: type[ReidError]) -> Any:
    """Parse JSON bytes (at most `MAX_DEPTH` deep); problems are one `error` line."""
    text = _decode(data, source, error, "JSON")
    deep = f"{source}: nested deeper than the {MAX_DEPTH}-level limit"
    if _too_deep(data):
        raise error(deep)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(
            f"{source}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
        ) from None
    except RecursionError:  # unreachable after the depth check; kept as a second guard
        raise error(deep) from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise error(f"{source}: not valid JSON ({shorten(exc)})") from None


def read_json(
    path: str | os.PathLike[str],
    error: type[ReidError],
    *,
    limit: int = JSON_MAX_BYTES,
    root: Path | None = None,
    what: str = "a JSON file",
) -> Any:
    """A JSON file through `read_bytes` (inside `root` when given) and `parse_json`."""
    data = read_bytes(path, limit, error, what=what, root=root)
    return parse_json(data, printable(path), error)
