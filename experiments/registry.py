"""The model registry: list versions, promote one to an alias, load a model by URI.

Promotion compares test scores on the same data: the candidate must have the holder's dataset
digest and protocol, and beat the holder's `test.score` by at least `min_delta`. The decision
(previous holder, both scores, reason) is written into the candidate's version tags.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reid_core.errors import ReidError

DEFAULT_ALIAS = "champion"
MLMODEL_MAX_BYTES = 256 * 1024  # ours is about 2 KiB


class RegistryError(ReidError):
    """A registered model, version, alias or run that does not exist."""


class PromotionRefused(ReidError):
    """The candidate does not beat the alias holder; nothing changed."""

    exit_code = 1


@dataclass
class VersionInfo:
    version: str
    aliases: list[str]
    score: float | None
    run_id: str | None
    digest: str
    protocol: str
    created: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _score(client: Any, mv: Any) -> float | None:
    tag = (mv.tags or {}).get("test.score")
    if tag is not None:
        return float(tag)
    if mv.run_id:
        value = client.get_run(mv.run_id).data.metrics.get("test/score")
        return None if value is None else float(value)
    return None


def _info(client: Any, mv: Any) -> VersionInfo:
    tags = mv.tags or {}
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(mv.creation_timestamp / 1000))
    return VersionInfo(
        version=str(mv.version),
        aliases=sorted(getattr(mv, "aliases", []) or []),
        score=_score(client, mv),
        run_id=mv.run_id,
        digest=tags.get("dataset.digest", "?"),
        protocol=tags.get("protocol", "?"),
        created=created,
    )


def _registered(client: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        raise RegistryError(
            f"no registered model {name!r} in this store; train a run first (reid train)"
        ) from None


def list_versions(client: Any, name: str) -> list[VersionInfo]:
    """Every version of `name`, newest first."""
    _registered(client, name)
    versions = client.search_model_versions(f"name = '{name}'")
    infos = [_info(client, client.get_model_version(name, mv.version)) for mv in versions]
    return sorted(infos, key=lambda v: int(v.version), reverse=True)


def alias_holder(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _candidate(client: Any, name: str, version: str | None, run_id: str | None) -> Any:
    from mlflow.exceptions import MlflowException

    if version is not None:
        try:
            return client.get_model_version(name, str(version))
        except MlflowException:
            raise RegistryError(f"model {name!r} has no version {version}") from None
    versions = client.search_model_versions(f"name = '{name}'")
    if run_id is not None:
        versions = [mv for mv in versions if mv.run_id == run_id]
        if not versions:
            raise RegistryError(f"run {run_id} registered no version of {name!r}")
    if not versions:
        raise RegistryError(f"model {name!r} has no versions")
    return max(versions, key=lambda mv: int(mv.version))


@dataclass
class Decision:
    promoted: bool
    reason: str
    candidate: VersionInfo
    holder: VersionInfo | None


def decide(cand: VersionInfo, holder: VersionInfo | None, min_delta: float, force: bool):
    """Whether `cand` may take the alias from `holder`, and why (pure; no store access)."""
    if cand.score is None:
        return False, f"version {cand.version} has no test score"
    if holder is None:
        return True, "no current holder"
    if holder.version == cand.version:
        return False, f"version {cand.version} already holds it"
    if force:
        return True, "forced (--force)"
    if (cand.digest, cand.protocol) != (holder.digest, holder.protocol):
        return False, (
            f"scored on other data: dataset {cand.digest} / protocol {cand.protocol} vs the "
            f"holder's {holder.digest} / {holder.protocol} (use --force to promote anyway)"
        )
    if holder.score is None:
        return True, f"holder version {holder.version} has no test score"
    delta = cand.score - holder.score
    if delta > 0 and delta >= min_delta:
        return True, f"test.score {cand.score:.4f} beats {holder.score:.4f} by {delta:+.4f}"
    return False, (
        f"test.score {cand.score:.4f} does not beat the holder's {holder.score:.4f} by "
        f"min_delta {min_delta:g} (delta {delta:+.4f})"
    )


def promote(
    client: Any,
    name: str,
    *,
    alias: str = DEFAULT_ALIAS,
    version: str | None = None,
    run_id: str | None = None,
    min_delta: float = 0.0,
    force: bool = False,
) -> Decision:
    """Move `alias` to the candidate when it wins (see the module docstring); tag the decision.

    The candidate is `version`, else the version `run_id` registered, else the newest version.
    Raises PromotionRefused (exit status 1) when it does not win, and ModelFormatError when the
    candidate is not an OmniReID model (its MLmodel is checked; nothing is loaded).
    """
    _registered(client, name)
    found = _candidate(client, name, version, run_id)
    check_model_uri(f"models:/{name}/{found.version}", client.tracking_uri)
    cand = _info(client, found)
    held = alias_holder(client, name, alias)
    holder = _info(client, held) if held is not None else None
    ok, reason = decide(cand, holder, min_delta, force)
    decision = Decision(ok, reason, cand, holder)
    prefix = f"promotion.{alias}"
    tags = {
        f"{prefix}.reason": reason,
        f"{prefix}.score": _fmt(cand.score),
        f"{prefix}.previous_version": holder.version if holder else "none",
        f"{prefix}.previous_score": _fmt(holder.score) if holder else "none",
        f"{prefix}.decided_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        f"{prefix}.outcome": "promoted" if ok else "refused",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, cand.version, key, value)
    if not ok:
        raise PromotionRefused(f"version {cand.version} not promoted to {alias!r}: {reason}")
    client.set_registered_model_alias(name, alias, cand.version)
    return decision


def _fmt(score: float | None) -> str:
    return "none" if score is None else f"{score:.6f}"


def load_model(uri: str) -> Any:
    """Load the OmniReID pyfunc model behind `uri` (`models:/NAME@ALIAS`, `models:/NAME/VERSION`,
    `runs:/RUN/NAME` with the run's model named after the run, a folder): its MLmodel is read
    and checked first (`check_mlmodel`), so a model that is not ours is refused with one line
    before any of its code could run. Missing models, versions and aliases are one-line errors
    too."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from experiments.pyfunc import ModelFormatError

    _check_alias(uri)
    try:
        return mlflow.pyfunc.load_model(str(fetch_model(uri)))
    except ModelFormatError as exc:
        raise ModelFormatError(str(exc) if uri in str(exc) else f"{uri}: {exc}") from None
    except MlflowException as exc:
        raise RegistryError(f"{uri}: {_first_line(exc)}") from None
    except OSError as exc:
        raise RegistryError(f"{uri}: cannot read the model ({exc})") from None


def fetch_model(uri: str, tracking_uri: str | None = None) -> Path:
    """A local copy of the model behind `uri`, downloaded only after its MLmodel passed
    `check_mlmodel`; the copy's own MLmodel is checked again, since that is what gets loaded."""
    import atexit
    import shutil
    import tempfile

    import mlflow

    check_model_uri(uri, tracking_uri)
    dst = Path(tempfile.mkdtemp(prefix="omnireid-model-"))
    atexit.register(shutil.rmtree, dst, ignore_errors=True)
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(dst), tracking_uri=tracking_uri
        )
    )
    _check_mlmodel_file(local / "MLmodel", uri)
    return local


def check_model_uri(uri: str, tracking_uri: str | None = None) -> None:
    """Download the MLmodel file alone of `uri` and refuse a model that is not ours."""
    import mlflow

    base = uri.rstrip("/")
    if re.fullmatch(r"models:/m-[0-9a-f]+", base):  # a logged model: `models:/ID/MLmodel` would
        # read as version "MLmodel" of a registered model named ID
        model_id = base.removeprefix("models:/")
        base = mlflow.MlflowClient(tracking_uri).get_logged_model(model_id).artifact_location
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{base}/MLmodel", tracking_uri=tracking_uri
    )
    _check_mlmodel_file(Path(local), uri)


def _check_mlmodel_file(path: Path, uri: str) -> None:
    from experiments.pyfunc import ModelFormatError, check_mlmodel
    from reid_core.safeio import read_yaml

    try:  # bounded: a regular file, no aliases, at most MLMODEL_MAX_BYTES and 64 levels deep
        doc = read_yaml(path, ModelFormatError, limit=MLMODEL_MAX_BYTES, what="an MLmodel file")
    except ModelFormatError as exc:
        raise ModelFormatError(
            f"{uri}: unreadable MLmodel file ({exc}): not an OmniReID model"
        ) from None
    check_mlmodel(doc, uri)


def _check_alias(uri: str) -> None:
    """`models:/NAME@ALIAS`: name the aliases that do exist when ALIAS does not."""
    import mlflow

    if not uri.startswith("models:/") or "@" not in uri:
        return
    name, _, alias = uri.removeprefix("models:/").partition("@")
    client = mlflow.MlflowClient()
    model = _registered(client, name)
    aliases = sorted(getattr(model, "aliases", {}) or {})
    if alias not in aliases:
        known = ", ".join(aliases) if aliases else "none yet"
        raise RegistryError(
            f"{uri}: model {name!r} has no alias {alias!r} (aliases: {known}); "
            f"set one with `reid models promote --alias {alias}`"
        )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def register_run_model(client: Any, name: str, run_id: str) -> str:
    """Register the pyfunc model a run logged (once: a run's existing version is reused) and
    copy the run's identity tags onto the version; returns the version."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from experiments.tracking import tag_version

    if client.search_registered_models(f"name = '{name}'"):
        for mv in client.search_model_versions(f"name = '{name}'"):
            if mv.run_id == run_id:
                return str(mv.version)
    source = f"runs:/{run_id}/model"
    run = client.get_run(run_id)
    for model in run.outputs.model_outputs if run.outputs else []:
        source = f"models:/{model.model_id}"  # MLflow 3 keeps logged models apart from runs
    try:
        mv = mlflow.register_model(source, name)
    except MlflowException as exc:
        raise RegistryError(
            f"run {run_id}: cannot register its model ({_first_line(exc)})"
        ) from None
    tag_version(client, name, str(mv.version), run_id)
    return str(mv.version)
