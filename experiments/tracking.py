"""MLflow tracking: the training callback (the store is `experiments.store`).

One MLflow run per training run. The callback logs the flattened config as params once, tags
(git, versions, dataset digest, config hash, protocol, device), per epoch the headline metrics
of `experiments.headline` in one batched call with that epoch's validation, the per-set and
per-epoch tables as CSV artifacts, and at the end the best-on-val numbers, a profiled run's
speed, the test plots, and the checkpoint and pyfunc model its policy asks for. It always ends
its run: FINISHED, or FAILED / KILLED when training crashes or is interrupted.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments import system_metrics
from experiments.run_info import (
    dataset_input,
    git_state,
    log_dataset,
    log_metrics,
    log_params,
    package_versions,
)
from experiments.store import (  # noqa: F401 (re-exported: the store is part of tracking)
    DEFAULT_ARTIFACTS,
    DEFAULT_EXPERIMENT,
    DEFAULT_URI,
    Store,
    TrackingError,
    _quiet_mlflow,
    check_reachable,
    is_local,
    open_store,
    resolve_uri,
)
from reid_core.training.callbacks import Callback
from reid_core.training.paths import RunPaths

DEFAULT_MODEL_NAME = "omnireid"
CHECKPOINTS = ("best", "all", "none")  # `tracking.log_checkpoints` / `--log-checkpoints`
PROFILE_FILES = ("profile.json", "profile_trace.json", "profile_trace.json.gz")


@dataclass(frozen=True)
class Logs:
    """What a finished run logs besides its metrics: the pyfunc model (`log_model`, registered
    under `model_name` unless None), checkpoints (`best`: the one test was scored with, `all`:
    best and last, `none`), the test plots and `rank_lists` queries per set in the rank-list
    pictures."""

    model_name: str | None = DEFAULT_MODEL_NAME
    log_model: bool = True
    checkpoints: str = "best"
    plots: bool = True
    rank_lists: int = 5


class MlflowTracker(Callback):
    """Logs one training run to MLflow (see the module docstring).

    The run opens at `on_train_start`; `finish(outcome)` ends it: for a finished run it logs
    the best-on-val metrics and what `logs` asks for (plots, checkpoints, pyfunc model), for a
    stopped one only why it stopped. `objective` is the metric
    a study optimises: logged every validation and, at the end, in its best form
    (`headline.best_name`). Use it as a context manager around `experiments.run.train` and
    `finish`, so a crash anywhere still ends the run FAILED (KILLED when interrupted).
    """

    def __init__(
        self,
        cfg: Any,
        data_root: Path,
        out: Path,
        *,
        store: Store,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
        logs: Logs = Logs(),
        objective: str = "val/score",
        on_start: Callable[[str], None] | None = None,
    ) -> None:
        if logs.checkpoints not in CHECKPOINTS:
            raise ValueError(f"checkpoints={logs.checkpoints!r}: one of {', '.join(CHECKPOINTS)}")
        self.cfg = cfg
        self.data_root = Path(data_root)
        self.paths = RunPaths(Path(out))
        self.store = store
        self.run_name = run_name or self.paths.out.name
        self.extra_tags = dict(tags or {})
        self.parent_run_id = parent_run_id
        self.model_name = logs.model_name
        self.log_model = logs.log_model
        self.checkpoints = logs.checkpoints
        self.plots = logs.plots
        self.rank_lists = logs.rank_lists  # queries per set in plots/ranklist_<set>.png
        self.objective = objective
        self.on_start = on_start  # told the run id as soon as the run exists
        self.run_id: str | None = None  # while the run is open
        self.logged_run_id: str | None = None
        self.model_version: str | None = None
        self.evals: dict[int, dict[str, float]] = {}  # epoch (from 1) -> its evaluations' metrics
        self.epochs: list[dict[str, float]] = []  # every epoch's logs: metrics/train.csv
        self.results: dict[str, list[tuple[int | None, dict[str, Any]]]] = {}  # per split
        self.pending: tuple[int, dict[str, float]] | None = None  # logged with the validation
        # Time spent tracking (hooks, artifacts, model): the overhead `summary` reports.
        self.seconds = 0.0
        self._system: Any | None = None  # MLflow's system-metrics monitor, while the run is open

    @property
    def client(self) -> Any:
        return self.store.client

    # ------------------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: Any) -> None:
        t0 = time.perf_counter()
        from reid_core.config import config_hash, flatten, to_yaml, validate_tree
        from reid_core.config.load import file_dict
        from reid_core.data.dataset_index import build_index

        if self.cfg is None:  # a resumed run: experiments.run wrote the resolved config
            self.cfg = validate_tree(file_dict(self.paths.config), "run config")
        index = build_index(self.data_root)
        tags = {
            "dataset.digest": index.digest,
            "dataset.root": str(self.data_root.resolve()),
            "config.hash": config_hash(self.cfg),
            "device": str(trainer.device),
            "out": str(self.paths.out.resolve()),
            **package_versions(),
            **self.extra_tags,
        }
        git_tags, diff = git_state(Path(__file__).resolve().parents[1])
        tags.update(git_tags)
        if trainer.state.epoch:
            tags["resumed_from_epoch"] = str(trainer.state.epoch)
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        run = self.client.create_run(self.store.experiment_id, run_name=self.run_name, tags=tags)
        self.run_id = self.logged_run_id = run.info.run_id
        self._system = system_metrics.start(self.run_id, self.store.uri)
        if self.on_start is not None:
            self.on_start(self.run_id)
        log_params(self.client, self.run_id, flatten(self.cfg))
        log_dataset(self.client, self.run_id, dataset_input(self.data_root, index))
        self.client.log_text(self.run_id, to_yaml(self.cfg), "config.yaml")
        if diff is not None:
            self.client.log_text(self.run_id, diff, "git/diff.patch")
        self.seconds += time.perf_counter() - t0

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        t0 = time.perf_counter()
        from experiments.artifacts import epochs_csv
        from experiments.headline import epoch_metrics

        self.epochs.append({"epoch": epoch + 1, **logs})
        self.client.log_text(self.run_id, epochs_csv(self.epochs), "metrics/train.csv")
        self._flush()
        self.pending = (epoch + 1, epoch_metrics(logs))
        if not trainer.should_eval(epoch):  # else it goes with the validation, in one call
            self._flush()
        self.seconds += time.perf_counter() - t0

    def on_evaluate(self, trainer: Any, epoch: int, split: str, metrics: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        from experiments.artifacts import history_csv
        from experiments.headline import eval_metrics
        from reid_core.evaluation.evaluate import flat_metrics

        flat = flat_metrics(metrics)
        if split == "test":
            self._log_test(metrics, flat)
        else:
            self.evals.setdefault(epoch + 1, {}).update(flat)
            first = eval_metrics(flat, split, self.objective)  # `val/score` first, then train
            self._flush(first, epoch + 1)
            rows = self.results.setdefault(split, [])
            rows.append((epoch + 1, metrics))
            self.client.log_text(self.run_id, history_csv(rows), f"metrics/{split}.csv")
            self.client.set_tag(self.run_id, f"protocol.{split}", metrics["protocol"])
        self.seconds += time.perf_counter() - t0

    def _flush(self, first: dict[str, float] | None = None, step: int | None = None) -> None:
        """Log `first` and the pending epoch metrics in one call (step: the epoch, from 1)."""
        pending, self.pending = self.pending, None
        values = {**(first or {}), **(pending[1] if pending else {})}
        if values:
            log_metrics(self.client, self.run_id, values, step or (pending[0] if pending else 0))

    def _log_test(self, metrics: dict[str, Any], flat: dict[str, float]) -> None:
        """Test is scored once: its headline at step 0 (labelled bars), the per-set table as
        CSV and as MLflow's table artifact (the Artifact view compares it across runs)."""
        from experiments.artifacts import metric_table_csv, percent_table
        from experiments.headline import eval_metrics

        log_metrics(self.client, self.run_id, eval_metrics(flat, "test"), 0)
        self.client.log_text(self.run_id, metric_table_csv(metrics), "metrics/test.csv")
        self.client.log_table(self.run_id, percent_table(metrics), "metrics/test.json")
        self.client.set_tag(self.run_id, "protocol", metrics["protocol"])

    def on_train_end(self, trainer: Any, status: str) -> None:
        if self.run_id is not None:
            self._flush()
        if status == "stopped" and trainer.stop_reason:
            self.client.set_tag(self.run_id, "stop_reason", trainer.stop_reason)
        if status in ("failed", "interrupted"):
            self.end("KILLED" if status == "interrupted" else "FAILED")
        # finished/stopped: the run stays open until `finish`

    # ---------------------------------------------------------------------------- ending
    def best(self, outcome: Any) -> Any:
        """The objective at the best-on-val evaluation (`headline.Best`), None when training
        never produced it: the value a study's trial returns to Optuna."""
        from experiments.headline import best_of

        return best_of(self.evals, self.objective, outcome.result.get("best_val_score"))

    def finish(self, outcome: Any, tags: dict[str, str] | None = None) -> None:
        """End the run with the outcome of `experiments.run.train`: a finished run gets its
        best-on-val metrics, test plots, checkpoint and model; a stopped one its tags. A
        profiled run's `profile.json` is logged either way. Ends FINISHED."""
        if self.run_id is None:
            return
        t0 = time.perf_counter()
        system_metrics.stop(self._system)
        self._system = None
        for key, value in (tags or {}).items():
            self.client.set_tag(self.run_id, key, value)
        self._log_profile(outcome.paths.out)
        if outcome.finished:
            best = self.best(outcome)
            if best is not None:
                log_metrics(self.client, self.run_id, best.metrics(), 0)
            self._finish_test(outcome)
        self.end("FINISHED")
        self.seconds += time.perf_counter() - t0

    def _log_profile(self, out: Path) -> None:
        """`reid train --profile` leaves `profile.json` (and a trace) in the run folder: its
        numbers as `perf/<field>` metrics, the files under `profile/`."""
        from experiments.headline import profile_metrics

        path = Path(out) / "profile.json"
        if not path.is_file():
            return
        with contextlib.suppress(ValueError, OSError):  # a half-written file: the files only
            log_metrics(self.client, self.run_id, profile_metrics(json.loads(path.read_text())), 0)
        for name in PROFILE_FILES:
            if (Path(out) / name).is_file():
                self.client.log_artifact(self.run_id, str(Path(out) / name), "profile")

    def _finish_test(self, outcome: Any) -> None:
        import mlflow

        if self.plots:
            self._log_plots(outcome)
        for path in checkpoint_files(outcome.paths, self.checkpoints):
            self.client.log_artifact(self.run_id, str(path), "checkpoints")
        self.client.set_tag(self.run_id, "test.score", f"{outcome.result['score']:.6f}")
        if not self.log_model:
            return
        from experiments.pyfunc import log_pyfunc

        nested = mlflow.active_run() is not None
        with mlflow.start_run(run_id=self.run_id, nested=nested):  # ends it FINISHED
            name = logged_model_name(self.run_name)
            info = log_pyfunc(outcome.model, self.cfg, self.model_name, name=name)
        self.run_id, run_id = None, self.run_id
        version = getattr(info, "registered_model_version", None)
        if self.model_name and version is not None:
            self.model_version = str(version)
            tag_version(self.client, self.model_name, self.model_version, run_id)

    def _log_plots(self, outcome: Any) -> None:
        """Per-set mAP bars, CMC curves and rank lists of the test split, all drawn from the
        embeddings its evaluation ranked (nothing is encoded again)."""
        from experiments.artifacts import cmc_curves, cmc_from_embeddings, plot_cmc, plot_map_bars
        from experiments.ranklist import write_rank_lists

        data, emb = outcome.data, outcome.embeddings
        if emb is not None:
            curves = cmc_from_embeddings(emb)
        else:  # an outcome from elsewhere, without embeddings
            cfg = self.cfg
            curves = cmc_curves(
                outcome.model, data.index.root, data.test, cfg.data, cfg.eval, outcome.device
            )
        with tempfile.TemporaryDirectory() as tmp:
            plot_map_bars(outcome.result, Path(tmp) / "test_map_by_set.png")
            plot_cmc(curves, Path(tmp) / "test_cmc.png")
            if emb is not None:
                write_rank_lists(emb, data.test, data.index.root, Path(tmp), self.rank_lists)
            self.client.log_artifacts(self.run_id, tmp, "plots")

    def end(self, status: str = "FINISHED") -> None:
        """End the run (idempotent): FINISHED, FAILED or KILLED."""
        system_metrics.stop(self._system)
        self._system = None
        if self.run_id is None:
            return
        run_id, self.run_id = self.run_id, None
        self.client.set_terminated(run_id, status)

    def summary(self) -> str:
        """One line: where the run is, how to open it, and which model version it registered."""
        from experiments import links

        text = f"mlflow run {self.logged_run_id} in {self.store.uri}"
        if self.model_version:
            text += f"; registered {self.model_name} version {self.model_version}"
        text += f"; tracking took {self.seconds:.1f} s"
        if self.logged_run_id:
            page = links.link(
                self.store.uri, links.run_path(self.store.experiment_id, self.logged_run_id)
            )
            text += "\nopen: " + links.with_hint(self.store.uri, page)
        return text

    def __enter__(self) -> MlflowTracker:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is None:
            self.end("FINISHED")
        else:
            self.end("KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED")


def logged_model_name(run_name: str) -> str:
    """A run's logged model is named after the run, less what MLflow refuses (`/:.%"'`)."""
    return re.sub(r"[/:.%\"']+", "-", run_name).strip("-") or "model"


def checkpoint_files(paths: RunPaths, policy: str) -> list[Path]:
    """The checkpoints a run logs: best = the one its test score came from, all = that and
    `last.pt`, none = nothing (they stay in the run folder)."""
    if policy == "none":
        return []
    files = [paths.final_checkpoint()]
    if policy == "all":
        files.append(paths.last)
    return [p for p in dict.fromkeys(files) if p.is_file()]


def tag_version(client: Any, name: str, version: str, run_id: str) -> None:
    """Copy the run's identity (data, protocol, config, commit, test score) onto its version
    (promotion compares versions by these tags) and link the run from its description."""
    from experiments import links

    run = client.get_run(run_id)
    for key in ("dataset.digest", "protocol", "config.hash", "git.commit", "test.score"):
        if key in run.data.tags:
            client.set_model_version_tag(name, version, key, run.data.tags[key])
    page = links.run_path(run.info.experiment_id, run_id)
    score = run.data.tags.get("test.score", "-")
    text = f"Trained by run [{run.info.run_name}]({page}); test score {score}."
    client.update_model_version(name, version, description=text)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside, SIGTERM raises KeyboardInterrupt, so a terminated run ends KILLED, not RUNNING."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
