"""Load a config: preset or YAML file, then `--set dotted.key=value` overrides, then one validation
of the whole tree. Validation errors name the dotted key, the bad value and what is allowed."""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from reid_core.config.retired import find_retired, retired
from reid_core.config.schema import ReidConfig
from reid_core.errors import ConfigError, printable
from reid_core.safeio import check_path_length, parse_yaml, parse_yaml_value, quote, read_yaml

_MISSING = object()


def list_presets() -> list[str]:
    """Names of the presets shipped as package data."""
    root = resources.files("reid_core") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    return _as_mapping(parse_yaml(text, source, ConfigError), source)


def _as_mapping(data: Any, source: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: a config must be a mapping of sections, got {type(data).__name__}"
        )
    return data


def preset_dict(name: str) -> dict[str, Any]:
    """The raw mapping of a shipped preset; an unknown name lists the known ones."""
    presets = list_presets()
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r} (available: {', '.join(presets)})")
    text = (resources.files("reid_core") / "presets" / f"{name}.yaml").read_text(encoding="utf-8")
    return _read_yaml(text, f"preset {name}")


def file_dict(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a user's YAML config file (read through `reid_core.safeio`: at most
    `YAML_MAX_BYTES`, no aliases, at most `MAX_DEPTH` deep)."""
    p = Path(path)
    check_path_length(p, "config file", ConfigError)
    if not p.exists():
        raise ConfigError(f"{p}: config file not found")
    return _as_mapping(read_yaml(p, ConfigError, what="a config file"), str(p))


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `update` into a copy of `base`; mappings merge, everything else replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        sub = _section_type(field.annotation)
        if sub is not None:
            keys.extend(_known_keys(sub, dotted + "."))
    return keys


def _section_type(annotation: Any) -> type[BaseModel] | None:
    """The pydantic section type behind `Section` or `Section | None` annotations."""
    candidates = getattr(annotation, "__args__", None) or (annotation,)
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
    return None


def parse_override(item: str) -> tuple[str, Any]:
    """Split `a.b.c=value`; the value is read as YAML (`8`, `true`, `[nir, sk]`, `null`)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not of the form dotted.key=value")
    value = parse_yaml_value(raw, f"override {key}", ConfigError) if raw.strip() else ""
    return key, value


def check_key(key: str) -> None:
    """A ConfigError unless `key` (dotted) is a config key: a retired key says what replaced
    it, an unknown one the nearest known key."""
    reason = retired(key)
    if reason is not None:
        raise ConfigError(f"config key {key!r}: {reason}")
    known = _known_keys(ReidConfig)
    if key not in known:
        near = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise ConfigError(f"unknown config key {key!r}{hint}")


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Return a copy of `tree` with `key` (dotted) set to `value`."""
    head, _, rest = key.partition(".")
    out = dict(tree)
    if not rest:
        out[head] = value
        return out
    child = out.get(head)
    out[head] = set_dotted(dict(child) if isinstance(child, Mapping) else {}, rest, value)
    return out


def get_dotted(tree: Mapping[str, Any], key: str, default: Any = _MISSING) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is _MISSING:
                raise KeyError(key)
            return default
        node = node[part]
    return node


def _format_error(exc: ValidationError, tree: Mapping[str, Any]) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(printable(p) for p in err["loc"] if not str(p).startswith("function-"))
        # pydantic's own `input` is the offending value, also inside lists (`data.modalities.1`),
        # which a dotted lookup in the tree cannot reach
        value = err["input"] if "input" in err else get_dotted(tree, loc, None) if loc else None
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            parent = loc.rpartition(".")[0]
            near = difflib.get_close_matches(loc, _known_keys(ReidConfig), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            lines.append(f"unknown config key '{loc}'{hint}" if parent or loc else msg)
        elif loc and not isinstance(value, Mapping):
            lines.append(f"{loc}: {msg} (got {quote(value, 200)})")
        elif loc:
            lines.append(f"{loc}: {msg}")
        else:
            lines.append(msg)
    return "; ".join(lines)


def validate_tree(tree: Mapping[str, Any], source: str = "config") -> ReidConfig:
    """Validate a whole raw tree once; errors become one-line ConfigErrors."""
    found = find_retired(tree)
    if found is not None:
        raise ConfigError(f"{source}: config key {found[0]!r}: {found[1]}")
    try:
        return ReidConfig.model_validate(dict(tree))
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_format_error(exc, tree)}") from None


def load_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> ReidConfig:
    """Preset, then file on top, then overrides; validated once. No preset and no file: defaults."""
    tree: dict[str, Any] = preset_dict(preset) if preset else {}
    source = f"preset {preset}" if preset else "config"
    if config_file is not None:
        tree = deep_merge(tree, file_dict(config_file))
        source = str(config_file)
    items = overrides.items() if isinstance(overrides, Mapping) else map(parse_override, overrides)
    for key, value in items:
        check_key(key)
        tree = set_dotted(tree, key, value)
    return validate_tree(tree, source)


def with_overrides(cfg: ReidConfig, overrides: Mapping[str, Any]) -> ReidConfig:
    """A new config with dotted overrides applied and the whole tree validated again."""
    tree = to_dict(cfg)
    for key, value in overrides.items():
        check_key(key)
        tree = set_dotted(tree, key, value)
    return validate_tree(tree)


def to_dict(cfg: ReidConfig) -> dict[str, Any]:
    """Plain JSON-able mapping (enums as values, tuples as lists)."""
    return json.loads(cfg.model_dump_json())


def to_yaml(cfg: ReidConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def flatten(cfg: ReidConfig | Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted-key view of the tree: `{"model.lora.rank": 4, ...}`; lists stay values."""
    tree = to_dict(cfg) if isinstance(cfg, ReidConfig) else cfg
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def config_hash(cfg: ReidConfig) -> str:
    """Stable short hash of the resolved tree."""
    blob = json.dumps(to_dict(cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def schema_json() -> str:
    return json.dumps(ReidConfig.model_json_schema(), indent=2)
