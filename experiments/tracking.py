"""MLflow tracking: the training callback (the store is `experiments.store`).

One MLflow run per training run. The callback logs the flattened config as params once, tags
(git, versions, dataset digest, config hash, protocol, device), per-epoch metrics in one batched
call, every evaluation's metrics, tables and plots, the final checkpoint and the pyfunc model, and
always ends its run: FINISHED, or FAILED / KILLED when training crashes or is interrupted.
"""

from __future__ import annotations

import contextlib
import json
import platform
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

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
_PACKAGES = ("omnireid", "torch", "torchvision", "open_clip_torch", "mlflow", "numpy")
_MAX_PARAMS_PER_CALL = 100  # MLflow's log_batch limits: 100 params, 100 tags, 1000 metrics
_MAX_METRICS_PER_CALL = 1000


# ----------------------------------------------------------------------------------- run info
def git_state(repo: Path) -> tuple[dict[str, str], str | None]:
    """Tags for the commit and dirty flag, and the diff when dirty (None outside a repository)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=20, check=True
        )
        return done.stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain")
    except (OSError, subprocess.SubprocessError):
        return {"git.commit": "none", "git.dirty": "unknown"}, None
    tags = {"git.commit": commit, "git.dirty": str(bool(status.strip())).lower()}
    tags["mlflow.source.git.commit"] = commit
    if not status.strip():
        return tags, None
    try:
        diff = git("diff", "HEAD")
    except (OSError, subprocess.SubprocessError):
        diff = ""
    return tags, f"# git status --porcelain\n{status}\n# git diff HEAD\n{diff}"


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"version.python": platform.python_version()}
    for dist in _PACKAGES:
        try:
            out[f"version.{dist}"] = version(dist)
        except PackageNotFoundError:
            out[f"version.{dist}"] = "absent"
    return out


def param_value(value: Any) -> str:
    """MLflow params are strings; lists and mappings as JSON, None as `null`."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def log_params(client: Any, run_id: str, flat: dict[str, Any]) -> None:
    """Dotted params in as few `log_batch` calls as MLflow's limits allow."""
    from mlflow.entities import Param

    params = [Param(k, param_value(v)) for k, v in flat.items()]
    for chunk in _chunks(params, _MAX_PARAMS_PER_CALL):
        client.log_batch(run_id, params=chunk)


def log_metrics(client: Any, run_id: str, values: dict[str, float], step: int) -> None:
    """Metrics at one step in one `log_batch` call (up to 1000 of them)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
    for chunk in _chunks(metrics, _MAX_METRICS_PER_CALL):
        client.log_batch(run_id, metrics=chunk)


def train_metric_names(logs: dict[str, float]) -> dict[str, float]:
    """Epoch logs under `train/`: `loss` -> `train/loss`, `lr.head` -> `train/lr/head`,
    `sdm/nir_sk` -> `train/sdm/nir_sk` (one UI section per prefix)."""
    return {"train/" + k.replace(".", "/"): v for k, v in logs.items()}


# ----------------------------------------------------------------------------------- callback
class MlflowTracker(Callback):
    """Logs one training run to MLflow (see the module docstring).

    The run opens at `on_train_start`; `finish(outcome)` ends it: for a finished run it logs
    the plots, checkpoint and pyfunc model (registered under `model_name`, unless None), for a
    stopped one only why it stopped. Use it as a context manager around `experiments.run.train`
    and `finish`, so a crash anywhere still ends the run FAILED (KILLED when interrupted),
    never RUNNING.
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
        model_name: str | None = DEFAULT_MODEL_NAME,
        log_model: bool = True,
        plots: bool = True,
        rank_lists: int = 5,
        on_start: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.data_root = Path(data_root)
        self.paths = RunPaths(Path(out))
        self.store = store
        self.run_name = run_name or self.paths.out.name
        self.extra_tags = dict(tags or {})
        self.parent_run_id = parent_run_id
        self.model_name = model_name
        self.log_model = log_model
        self.plots = plots
        self.rank_lists = rank_lists  # queries per set in plots/ranklist_<set>.png
        self.on_start = on_start  # told the run id as soon as the run exists
        self.run_id: str | None = None  # while the run is open
        self.logged_run_id: str | None = None
        self.model_version: str | None = None
        # Time spent tracking (hooks, artifacts, model): the overhead `summary` reports.
        self.seconds = 0.0

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
        log_metrics(self.client, self.run_id, train_metric_names(logs), epoch)
        self.seconds += time.perf_counter() - t0

    def on_evaluate(self, trainer: Any, epoch: int, split: str, metrics: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        from experiments.artifacts import metric_table_csv
        from reid_core.evaluation.evaluate import flat_metrics

        log_metrics(self.client, self.run_id, flat_metrics(metrics), epoch)
        name = "test" if split == "test" else f"{split}_epoch{epoch + 1:03d}"
        self.client.log_text(self.run_id, metric_table_csv(metrics), f"metrics/{name}.csv")
        tag = "protocol" if split == "test" else f"protocol.{split}"
        self.client.set_tag(self.run_id, tag, metrics["protocol"])
        self.seconds += time.perf_counter() - t0

    def on_train_end(self, trainer: Any, status: str) -> None:
        if status == "stopped" and trainer.stop_reason:
            self.client.set_tag(self.run_id, "stop_reason", trainer.stop_reason)
        if status in ("failed", "interrupted"):
            self.end("KILLED" if status == "interrupted" else "FAILED")
        # finished/stopped: the run stays open until `finish`

    # ---------------------------------------------------------------------------- ending
    def finish(self, outcome: Any, tags: dict[str, str] | None = None) -> None:
        """End the run with the outcome of `experiments.run.train`: a finished run gets its
        test plots, checkpoint and model; a stopped one its tags. Ends FINISHED."""
        if self.run_id is None:
            return
        t0 = time.perf_counter()
        for key, value in (tags or {}).items():
            self.client.set_tag(self.run_id, key, value)
        if outcome.finished:
            self._finish_test(outcome)
        self.end("FINISHED")
        self.seconds += time.perf_counter() - t0

    def _finish_test(self, outcome: Any) -> None:
        import mlflow

        if self.plots:
            self._log_plots(outcome)
        final = outcome.paths.final_checkpoint()
        if final.is_file():
            self.client.log_artifact(self.run_id, str(final), "checkpoints")
        score = f"{outcome.result['score']:.6f}"
        self.client.set_tag(self.run_id, "test.score", score)
        if not self.log_model:
            return
        from experiments.pyfunc import log_pyfunc

        nested = mlflow.active_run() is not None
        with mlflow.start_run(run_id=self.run_id, nested=nested):  # ends it FINISHED
            info = log_pyfunc(outcome.model, self.cfg, self.model_name)
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
        if self.run_id is None:
            return
        run_id, self.run_id = self.run_id, None
        self.client.set_terminated(run_id, status)

    def summary(self) -> str:
        """One line: where the run is, how to open it, and which model version it registered."""
        text = f"mlflow run {self.logged_run_id} in {self.store.uri}"
        if self.model_version:
            text += f"; registered {self.model_name} version {self.model_version}"
        text += f"; tracking took {self.seconds:.1f} s"
        if self.logged_run_id:
            text += f"\nopen: {run_link(self.store, self.logged_run_id)}"
        return text

    def __enter__(self) -> MlflowTracker:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is None:
            self.end("FINISHED")
        else:
            self.end("KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED")


def tag_version(client: Any, name: str, version: str, run_id: str) -> None:
    """Copy the run's identity (data, protocol, config, commit, test score) onto its version:
    promotion compares versions by these tags."""
    run = client.get_run(run_id)
    for key in ("dataset.digest", "protocol", "config.hash", "git.commit", "test.score"):
        if key in run.data.tags:
            client.set_model_version_tag(name, version, key, run.data.tags[key])


def dataset_input(root: Path, index: Any) -> Any:
    """The data root as an MLflow dataset input (name, digest, source): the runs table's
    Dataset column."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    root = Path(root).resolve()
    dataset = Dataset(
        name=root.name, digest=index.digest[:12], source_type="local", source=root.as_uri()
    )
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])


def log_dataset(client: Any, run_id: str, dataset: Any, tries: int = 4) -> None:
    """`client.log_inputs` of one dataset input, tried again when a concurrent run inserted the
    same dataset first. The tracking store's get-or-create of a dataset row is not atomic: when
    study workers start trials on one dataset at the same moment, the loser of the race gets a
    unique-constraint error (PostgreSQL's `duplicate key value violates unique constraint
    "dataset_pk"`, SQLite's `UNIQUE constraint failed`) and its request is rolled back; the next
    try finds the row and links it. Any other error, or the last try's, is raised."""
    from mlflow.exceptions import MlflowException

    for attempt in range(tries):
        try:
            client.log_inputs(run_id, datasets=[dataset])
            return
        except MlflowException as exc:
            if attempt == tries - 1 or "unique" not in str(exc).lower():
                raise
            time.sleep(0.1 * (attempt + 1))


UI_RUNS_VIEW = "runs?workflowType=machine_learning"  # the training runs, not the GenAI overview


def ui_base(store: Store, ui_address: str = "http://127.0.0.1:5000") -> str:
    """Where a browser opens this store: the server itself, or `reid ui` for a local store."""
    return ui_address if is_local(store.uri) else store.uri.rstrip("/")


def experiment_link(store: Store) -> str:
    return f"{ui_base(store)}/#/experiments/{store.experiment_id}/{UI_RUNS_VIEW}"


def run_link(store: Store, run_id: str) -> str:
    link = f"{ui_base(store)}/#/experiments/{store.experiment_id}/runs/{run_id}"
    return link + ("  (start the UI with: reid ui)" if is_local(store.uri) else "")


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


def log_evaluation(
    store: Store, cfg: Any, data_root: Path, result: dict[str, Any], checkpoint: Path | None
) -> str:
    """`reid eval` as its own MLflow run: config params, tags, metrics, table and bar plot."""
    from experiments.artifacts import metric_table_csv, plot_map_bars
    from reid_core.config import config_hash, flatten, to_yaml
    from reid_core.data.dataset_index import build_index
    from reid_core.evaluation.evaluate import flat_metrics

    tags = {
        "kind": "eval",
        "dataset.digest": build_index(data_root).digest,
        "config.hash": config_hash(cfg),
        "protocol": result["protocol"],
        "checkpoint": str(checkpoint) if checkpoint else "none (untrained baseline)",
        **package_versions(),
        **git_state(Path(__file__).resolve().parents[1])[0],
    }
    name = f"eval {Path(checkpoint).parent.parent.name if checkpoint else 'baseline'}"
    run_id = store.client.create_run(store.experiment_id, run_name=name, tags=tags).info.run_id
    try:
        log_params(store.client, run_id, flatten(cfg))
        log_metrics(store.client, run_id, flat_metrics(result), 0)
        store.client.log_text(run_id, to_yaml(cfg), "config.yaml")
        store.client.log_text(run_id, metric_table_csv(result), f"metrics/{result['split']}.csv")
        with tempfile.TemporaryDirectory() as tmp:
            plot_map_bars(result, Path(tmp) / f"{result['split']}_map_by_set.png")
            store.client.log_artifacts(run_id, tmp, "plots")
    except BaseException:
        store.client.set_terminated(run_id, "FAILED")
        raise
    store.client.set_terminated(run_id, "FINISHED")
    return run_id
