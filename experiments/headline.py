"""Which numbers a run logs as MLflow metrics; everything else goes to table artifacts.

MLflow's run page draws one chart section per metric prefix (the name before its last `/`), so
the names below decide what a researcher sees. A tracked run logs, per epoch (step = epoch,
counted from 1): the losses, gradient norm, spikes, SDM weight, per-modality CE and learning
rates under `train/`, samples/s, epoch time and loader wait under `perf/`, and per validation
the val headline (`val/score` first, `val/mm/1..4`, single-modality `val/mAP/<set>`, the study's
objective) and `trainval/score`. Once, at step 0 (a labelled bar): the best-on-val numbers
(`val/best_score`, `val/best_epoch`, `val/best_<objective>`), `test/score` and `test/mm/1..4`,
and `perf/<field>` of a profiled run. The per-view SDM losses and every per-set table go to
`metrics/*.csv` (docs/TRACKING.md, "What a training run records").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SCORE = "val/score"
BEST_EPOCH = "val/best_epoch"
_PERF = ("samples_per_s", "epoch_time_s", "data_wait_share")  # epoch logs that measure speed
_TABLE_ONLY = ("sdm/",)  # per-view diagnostics: 15 keys, kept in metrics/train.csv


def epoch_metrics(logs: Mapping[str, float]) -> dict[str, float]:
    """An epoch's logs as metrics: `loss` -> `train/loss`, `lr.head` -> `train/lr/head`,
    `ce/nir` -> `train/ce/nir`, `samples_per_s` -> `perf/samples_per_s`; the per-view
    `sdm/<view>` are left to the table."""
    out: dict[str, float] = {}
    for key, value in logs.items():
        name = key.replace(".", "/")
        if name.startswith(_TABLE_ONLY):
            continue
        if name.startswith("perf/") or name in _PERF:
            out["perf/" + name.removeprefix("perf/")] = float(value)
        else:
            out["train/" + name] = float(value)
    return out


def eval_metrics(flat: Mapping[str, float], split: str, objective: str = SCORE) -> dict[str, float]:
    """The headline of one evaluation (`flat`: `flat_metrics` of its result), `score` first."""
    keys = [f"{split}/score"]
    if split != "trainval":
        keys += [f"{split}/mm/{n}" for n in range(1, 5)]
    if split == "val":
        keys += [k for k in flat if k.startswith("val/mAP/") and "_" not in k.rsplit("/", 1)[1]]
    if objective.split("/")[0] == split:
        keys.append(objective)
    return {k: float(flat[k]) for k in dict.fromkeys(keys) if k in flat}


def best_name(metric: str) -> str:
    """The metric a finished run logs for the objective `metric`, read at its best-on-val
    evaluation: `val/score` -> `val/best_score`, `val/mAP/nir_sk` -> `val/best_mAP/nir_sk`,
    `val/mm/2` -> `val/best_mm/2` (the split stays first, so it sorts beside its curve)."""
    split, _, rest = metric.partition("/")
    return f"{split}/best_{rest}"


@dataclass(frozen=True)
class Best:
    """The objective's value at the best-on-val evaluation, and that evaluation's epoch (from
    1; None when it happened before a resume, so only its score is known)."""

    metric: str
    value: float
    epoch: int | None

    def metrics(self) -> dict[str, float]:
        out = {best_name(self.metric): self.value}
        if self.epoch is not None:
            out[BEST_EPOCH] = float(self.epoch)
        return out


def best_of(
    evals: Mapping[int, Mapping[str, float]], objective: str, best_score: float | None
) -> Best | None:
    """`objective` at the evaluation with the best `val/score` (the first of ties: the one whose
    checkpoint a finished run is scored with). `evals` maps epoch -> the flat metrics of that
    epoch's evaluations; `best_score` is the checkpoint callback's best, which outlives a
    resume, and is the value for `val/score`. None when the objective was never produced."""
    scored = [(e, m) for e, m in sorted(evals.items()) if SCORE in m]
    top = max(scored, key=lambda em: em[1][SCORE], default=None)
    if objective == SCORE and best_score is not None:
        epoch = top[0] if top is not None and top[1][SCORE] == best_score else None
        return Best(SCORE, float(best_score), epoch)
    if top is None or objective not in top[1]:
        return None
    return Best(objective, float(top[1][objective]), top[0])


def profile_metrics(profile: Mapping[str, Any]) -> dict[str, float]:
    """A `profile.json`'s finite numeric fields as `perf/<field>` (samples/s, step ms, data-wait
    share, host syncs and ops per step, MFU)."""
    return {
        f"perf/{k}": float(v)
        for k, v in profile.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
