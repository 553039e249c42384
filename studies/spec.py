"""Study specs: a validated YAML file (or a shipped name) that says what a study searches.

Every key of `space` and `enqueue` is a dotted config key (the same vocabulary as `--set`,
Optuna parameter names and MLflow params). Everything that can be checked without running a
trial is checked at load time, and each problem is one line naming the key and the value. The
sections themselves are `studies.spec_schema`; their names are importable from here.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reid_core.errors import ConfigError, printable
from reid_core.safeio import check_path_length, parse_yaml, quote, read_yaml
from studies.spec_schema import (
    MAX_ENQUEUE,
    MAX_GRID_POINTS,
    MAX_SEED,
    MAX_TIMEOUT_S,
    MAX_TRIALS,
    BaseConfig,
    Budget,
    CategoricalParam,
    FloatParam,
    IntParam,
    Objective,
    Param,
    ParetoBest,
    Pruner,
    Sampler,
    SecondObjective,
    SpecError,
    Storage,
    StudySpec,
    Tracking,
    number_ok,
)

__all__ = [
    "MAX_ENQUEUE",
    "MAX_GRID_POINTS",
    "MAX_SEED",
    "MAX_TIMEOUT_S",
    "MAX_TRIALS",
    "BaseConfig",
    "Budget",
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "Objective",
    "Param",
    "ParetoBest",
    "Pruner",
    "Sampler",
    "SecondObjective",
    "SpecError",
    "Storage",
    "StudySpec",
    "Tracking",
    "grid_points",
    "load_spec",
    "number_ok",
    "parse_spec",
    "shipped_specs",
    "spec_to_dict",
]

SPLITS = ("val", "trainval")
SET_METRICS = ("mAP", "mAP100", "mINP", "R1", "R5", "R10")


# ------------------------------------------------------------------------------ checking
def _check_spec(spec: StudySpec) -> None:
    from reid_core.config.load import check_key

    for section, keys in (("space", spec.space), ("base.overrides", spec.base.overrides)):
        for key in keys:
            try:
                check_key(key)
            except ConfigError as exc:
                raise SpecError(f"{section}: {exc}") from None
    _check_conditions(spec)
    for i, config in enumerate(spec.enqueue):
        _check_enqueued(spec, i, config)
    _check_objective(spec.objective.metric)
    if spec.multi_objective and spec.pruner is not None and spec.pruner.type != "none":
        raise SpecError(
            f"pruner: {spec.pruner.type!r} on a two-objective study; Optuna cannot prune "
            "multi-objective trials (remove the pruner or set type: none)"
        )
    if spec.sampler.type == "grid":
        _check_grid(spec)
    if spec.sampler.type == "cmaes" and any(
        isinstance(p, CategoricalParam) for p in spec.space.values()
    ):
        raise SpecError("sampler: cmaes cannot sample categorical parameters; use tpe or gp")


def grid_points(param: Any) -> int:
    """How many values the grid sampler tries for `param`."""
    if isinstance(param, CategoricalParam):
        return len(param.choices)
    if isinstance(param, FloatParam):
        assert param.step is not None
        return int((param.high - param.low) // param.step) + 1
    return (param.high - param.low) // param.step + 1


def _check_grid(spec: StudySpec) -> None:
    if any(isinstance(p, FloatParam) and p.step is None for p in spec.space.values()):
        raise SpecError("sampler: grid needs categorical parameters or floats with a step")
    total = 1
    for key, param in spec.space.items():
        total *= grid_points(param)
        if total > MAX_GRID_POINTS:
            raise SpecError(
                f"space.{key}: the grid has more than {MAX_GRID_POINTS:,} points (the "
                "grid sampler lists them all); use a coarser step or another sampler"
            )


def _check_conditions(spec: StudySpec) -> None:
    order = list(spec.space)
    for key, param in spec.space.items():
        for parent, value in (param.when or {}).items():
            if parent not in spec.space or order.index(parent) >= order.index(key):
                raise SpecError(
                    f"space.{key}.when: {parent!r} must be a parameter listed before {key!r}"
                )
            if not spec.space[parent].contains(value):
                raise SpecError(f"space.{key}.when: {parent}={quote(value)} is outside its space")


def _check_enqueued(spec: StudySpec, i: int, config: dict[str, Any]) -> None:
    for key, value in config.items():
        param = spec.space.get(key)
        if param is None:
            raise SpecError(f"enqueue[{i}]: {key!r} is not a parameter of the space")
        if not param.contains(value):
            raise SpecError(
                f"enqueue[{i}]: {key}={quote(value)} is outside the space ({_show(param)})"
            )


def _show(param: Any) -> str:
    if isinstance(param, CategoricalParam):
        return f"choices {param.choices}"
    return f"{param.low}..{param.high}" + (" log" if param.log else "")


def _check_objective(metric: str) -> None:
    """`val/score`, `val/mm/N` or `val/<metric>/<set>` (the set is checked against the data
    when the study starts)."""
    parts = metric.split("/")
    ok = parts[0] in SPLITS and (
        (len(parts) == 2 and parts[1] == "score")
        or (len(parts) == 3 and parts[1] == "mm" and parts[2] in ("1", "2", "3", "4"))
        or (len(parts) == 3 and parts[1] in SET_METRICS and parts[2] != "")
    )
    if not ok:
        raise SpecError(
            f"objective.metric: training never produces {quote(metric)} (expected val/score, "
            f"val/mm/1..4 or val/<{'|'.join(SET_METRICS)}>/<set>, e.g. val/mAP/nir_sk)"
        )


# ------------------------------------------------------------------------------- loading
def _specs_folder() -> Any:
    return resources.files("studies") / "specs"


def shipped_specs() -> dict[str, str]:
    """Shipped spec name -> its description."""
    out = {}
    for entry in sorted(_specs_folder().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            tree = parse_yaml(entry.read_text(encoding="utf-8"), entry.name, SpecError) or {}
            out[entry.name.removesuffix(".yaml")] = str(tree.get("description", "")).strip()
    return out


def _spec_tree(name_or_path: str | Path) -> tuple[Any, str, Path | None]:
    """The parsed YAML of a spec file (bounded: `reid_core.safeio`) or a shipped spec, where it
    came from, and the folder a relative `base.config` is resolved against."""
    check_path_length(str(name_or_path), "study spec", SpecError)
    path = Path(name_or_path)
    shipped = _specs_folder() / f"{name_or_path}.yaml"
    if path.suffix in (".yaml", ".yml") or path.is_file() or not shipped.is_file():
        if not path.exists() and path.suffix not in (".yaml", ".yml"):
            names = ", ".join(shipped_specs())
            raise SpecError(f"unknown study spec {quote(str(path))} (shipped: {names}; or a path)")
        if not path.exists():
            raise SpecError(f"study spec {path}: no such file")
        tree = read_yaml(path, SpecError, what="a study spec")
        return tree, str(path), path.resolve().parent
    source = f"shipped spec {name_or_path}"
    return parse_yaml(shipped.read_text(encoding="utf-8"), source, SpecError), source, None


def parse_spec(tree: Any, source: str = "study spec") -> StudySpec:
    """Validate a raw mapping; every problem is a SpecError naming `source` and the key."""
    if not isinstance(tree, dict):
        raise SpecError(f"{source}: expected a mapping at the top, got {type(tree).__name__}")
    try:
        spec = StudySpec.model_validate(tree)
    except ValidationError as exc:
        raise SpecError(f"{source}: {_format(exc)}") from None
    try:
        _check_spec(spec)
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None
    return spec


def load_spec(name_or_path: str | Path) -> StudySpec:
    """A shipped spec by name (`demo`) or a YAML file; a relative `base.config` is resolved
    against the spec's folder."""
    tree, source, folder = _spec_tree(name_or_path)
    base = tree.get("base") if isinstance(tree, dict) else None
    relative = isinstance(base, dict) and isinstance(base.get("config"), str)
    if folder is not None and relative and not Path(base["config"]).is_absolute():
        tree = {**tree, "base": {**base, "config": str(folder / base["config"])}}
    return parse_spec(tree, source)


def _format(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(printable(p) for p in err["loc"] if not str(p).startswith("function-"))
        loc = _strip_tags(loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key '{loc}'")
        elif err["type"] == "literal_error":
            got = err.get("input")
            lines.append(f"{loc}: unknown value {quote(got)} ({msg.lower()})")
        elif err["type"] == "union_tag_invalid":
            got = quote(err.get("input", {}))
            lines.append(f"{loc}: unknown type {got} (float, int, categorical)")
        elif loc and isinstance(err.get("input"), int | float | str) and err["type"] != "missing":
            lines.append(f"{loc}: {msg} (got {quote(err['input'])})")
        else:
            lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(dict.fromkeys(lines))


def _strip_tags(loc: str) -> str:
    """`space.x.float.low` -> `space.x.low` (pydantic names the union member it tried)."""
    for tag in (".float.", ".int.", ".categorical."):
        loc = loc.replace(tag, ".")
    for tag in (".float", ".int", ".categorical"):
        loc = loc.removesuffix(tag)
    return loc


def spec_to_dict(spec: StudySpec) -> dict[str, Any]:
    """JSON-able, for the study's user attrs (a worker on another machine rebuilds it)."""
    return spec.model_dump(mode="json")
