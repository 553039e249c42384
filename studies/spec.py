"""Study specs: a validated YAML file (or a shipped name) that says what a study searches.

Every key of `space` and `enqueue` is a dotted config key (the same vocabulary as `--set`,
Optuna parameter names and MLflow params). Everything that can be checked without running a
trial is checked at load time, and each problem is one line naming the key and the value.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reid_core.errors import ConfigError, ReidError, printable
from reid_core.safeio import check_path_length, parse_yaml, quote, read_yaml

SPLITS = ("val", "trainval")
# Budgets beyond these are mistakes, refused when the spec is loaded (docs/RELIABILITY.md).
MAX_TRIALS = 100_000
MAX_TIMEOUT_S = 30 * 24 * 3600  # 30 days; `reid study run` continues a study past it
MAX_GRID_POINTS = MAX_TRIALS  # the grid sampler enumerates every combination up front
MAX_SEED = 2**31 - 1  # numpy seeds stay below 2**32 with a worker index added
MAX_ENQUEUE = 1_000  # configs written as trials when the study is created
SET_METRICS = ("mAP", "mAP100", "mINP", "R1", "R5", "R10")


class SpecError(ReidError):
    """A study spec is malformed or inconsistent."""


class _Section(BaseModel):
    # NaN and infinity are never meaningful in a spec (an infinite timeout never ends)
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


# ----------------------------------------------------------------------------------- space
class _Param(_Section):
    when: dict[str, Any] | None = Field(
        None, description="sample only when these (earlier) parameters have these values"
    )


class FloatParam(_Param):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> FloatParam:
        _check_bounds(self.low, self.high, self.log, self.step)
        return self

    def contains(self, value: Any) -> bool:
        return _is_number(value) and self.low <= float(value) <= self.high


class IntParam(_Param):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> IntParam:
        _check_bounds(self.low, self.high, self.log, None if self.step == 1 else self.step)
        return self

    def contains(self, value: Any) -> bool:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return ok and self.low <= value <= self.high and (value - self.low) % self.step == 0


class CategoricalParam(_Param):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)

    @model_validator(mode="after")
    def _plain(self) -> CategoricalParam:
        for choice in self.choices:
            if not (choice is None or isinstance(choice, bool | int | float | str)):
                raise ValueError(f"choice {quote(choice)} is not a number, string, bool or null")
        return self

    def contains(self, value: Any) -> bool:
        return any(value == c and type(value) is type(c) for c in self.choices) or (
            _is_number(value) and any(_is_number(c) and float(c) == value for c in self.choices)
        )


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_bounds(low: float, high: float, log: bool, step: float | None) -> None:
    if not low < high:
        raise ValueError(f"low must be below high (got low={low}, high={high})")
    if log and low <= 0:
        raise ValueError(f"log scale needs low > 0 (got low={low})")
    if log and step is not None:
        raise ValueError("log and step cannot be combined")


# ------------------------------------------------------------------------------- sections
class BaseConfig(_Section):
    preset: str | None = Field(None, description="a shipped preset (reid config presets)")
    config: str | None = Field(None, description="a config YAML file (relative to the spec)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted key -> value")

    @model_validator(mode="after")
    def _one_base(self) -> BaseConfig:
        if self.preset is None and self.config is None:
            raise ValueError("give a preset or a config file")
        return self


class Objective(_Section):
    metric: str = Field("val/score", description="a val metric name, e.g. val/score")
    direction: Literal["maximize", "minimize"] = "maximize"


class SecondObjective(_Section):
    metric: Literal["trainable_params", "latency_ms"] = Field(
        description="trainable parameters, or query latency in ms per query"
    )
    direction: Literal["maximize", "minimize"] = "minimize"


class ParetoBest(_Section):
    """How `reid study best` picks one trial from a two-objective study's Pareto front."""

    rule: Literal["first", "second_within"] = Field(
        "first",
        description="first: the best first objective; second_within: the best second "
        "objective among Pareto trials within `tolerance` of the best first objective",
    )
    tolerance: float = Field(0.02, ge=0)


class Sampler(_Section):
    type: Literal["tpe", "gp", "random", "grid", "cmaes"] = "tpe"
    seed: int | None = Field(0, ge=0, le=MAX_SEED)
    n_startup_trials: int = Field(
        4, ge=0, le=MAX_TRIALS, description="random trials first (tpe, gp, cmaes)"
    )
    multivariate: bool = Field(True, description="tpe: model parameters jointly")


class Pruner(_Section):
    type: Literal["median", "percentile", "successive_halving", "hyperband", "none"] = "median"
    n_startup_trials: int = Field(
        2, ge=0, le=MAX_TRIALS, description="trials that are never pruned"
    )
    n_warmup_steps: int = Field(0, ge=0, description="epochs before pruning starts")
    interval_steps: int = Field(1, ge=1)
    percentile: float = Field(25.0, gt=0, lt=100, description="percentile pruner")
    min_resource: int | Literal["auto"] = "auto"
    max_resource: int | Literal["auto"] = "auto"
    reduction_factor: int = Field(3, ge=2)


class Budget(_Section):
    n_trials: int | None = Field(None, ge=1, le=MAX_TRIALS)
    timeout: float | None = Field(
        None, gt=0, le=MAX_TIMEOUT_S, description="seconds, per `reid study run` or worker"
    )

    @model_validator(mode="after")
    def _some(self) -> Budget:
        if self.n_trials is None and self.timeout is None:
            raise ValueError("give n_trials and/or timeout")
        return self


class Storage(_Section):
    url: str | None = Field(None, description="Optuna storage (default sqlite:///studies.db)")
    heartbeat_interval: int = Field(
        60, ge=1, le=3600, description="seconds between worker heartbeats"
    )
    grace_period: int | None = Field(
        None, ge=1, le=7 * 24 * 3600, description="stale after (default 2x interval)"
    )
    max_retries: int = Field(2, ge=0, le=100, description="retries of a trial whose worker died")
    checkpoints: str | None = Field(
        None, description="trial run folders, readable by every worker (default runs/studies)"
    )

    @model_validator(mode="after")
    def _grace(self) -> Storage:
        if self.grace_period is not None and self.grace_period <= self.heartbeat_interval:
            raise ValueError(
                f"grace_period ({self.grace_period}) must exceed heartbeat_interval "
                f"({self.heartbeat_interval})"
            )
        return self


class Tracking(_Section):
    log_checkpoints: Literal["best", "all", "none"] = Field(
        "best", description="checkpoint artifacts: the best trial's (best), every trial's, none"
    )


class StudySpec(_Section):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    base: BaseConfig
    data: str | None = Field(None, description="dataset root (or --data)")
    space: dict[str, Param] = Field(default_factory=dict)
    enqueue: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_ENQUEUE)
    objective: Objective = Objective()
    second_objective: SecondObjective | None = None
    pareto_best: ParetoBest = ParetoBest()
    sampler: Sampler = Sampler()
    pruner: Pruner | None = None
    budget: Budget
    storage: Storage = Storage()
    tracking: Tracking = Tracking()

    @property
    def multi_objective(self) -> bool:
        return self.second_objective is not None

    @property
    def effective_pruner(self) -> Pruner:
        """The spec's pruner; the median pruner by default; none for two objectives."""
        if self.pruner is not None:
            return self.pruner
        return Pruner(type="none") if self.multi_objective else Pruner()

    @property
    def directions(self) -> list[str]:
        second = [self.second_objective.direction] if self.second_objective else []
        return [self.objective.direction, *second]


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


def number_ok(value: Any) -> bool:
    return _is_number(value) and math.isfinite(float(value))
