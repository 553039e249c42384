"""The study spec's schema: the validated sections of a spec file and their bounds.

`studies.spec` checks what one section cannot see alone (conditions, enqueued configs, the
objective, the grid) and loads files; the names here are importable from there too.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reid_core.errors import ReidError
from reid_core.safeio import quote

# Budgets beyond these are mistakes, refused when the spec is loaded (docs/RELIABILITY.md).
MAX_TRIALS = 100_000
MAX_TIMEOUT_S = 30 * 24 * 3600  # 30 days; `reid study run` continues a study past it
MAX_GRID_POINTS = MAX_TRIALS  # the grid sampler enumerates every combination up front
MAX_SEED = 2**31 - 1  # numpy seeds stay below 2**32 with a worker index added
MAX_ENQUEUE = 1_000  # configs written as trials when the study is created


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


def number_ok(value: Any) -> bool:
    return _is_number(value) and math.isfinite(float(value))
