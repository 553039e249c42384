"""One experiment: `train` (val during training, test once at the end) and `eval`.

Everything a run writes lives under its `--out` folder (`reid_core.training.paths.RunPaths`).
Trackers join through `callbacks`, and whoever runs `train` finishes them with its outcome.
Under torchrun only rank 0 writes, evaluates and runs callbacks (`RunOutcome.is_main`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reid_core.config import ReidConfig, to_dict, to_yaml, validate_tree
from reid_core.errors import CheckpointError, ReidError
from reid_core.fileio import atomic_path
from reid_core.training.callbacks import Callback
from reid_core.training.paths import RunPaths

if TYPE_CHECKING:  # torch comes with it: `reid --help` imports this module's callers only
    from reid_core.training.setup import DataBundle


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2), encoding="utf-8")


def _check_out(paths: RunPaths, resume: bool, resume_from: Path | None) -> Path | None:
    """The checkpoint to resume from (None for a fresh run); refuses to overwrite a run."""
    out = paths.out
    if out.exists() and not out.is_dir():
        raise ReidError(f"--out {out} is a file, not a folder")
    if resume and resume_from is not None:
        raise ReidError("give --resume (continue OUT) or --resume-from PATH, not both")
    if resume:
        if not paths.last.is_file():
            raise CheckpointError(f"{paths.last}: no checkpoint to resume from")
        return paths.last
    if paths.last.exists():
        raise ReidError(f"{out} already holds a run; pass --resume or choose another --out")
    if resume_from is not None and not Path(resume_from).is_file():
        raise CheckpointError(f"{resume_from}: no checkpoint to resume from")
    return Path(resume_from) if resume_from is not None else None


def resume_config(state: dict[str, Any], cfg: ReidConfig | None) -> ReidConfig:
    """The checkpoint's config; a config given with --resume may change `train.epochs` only."""
    stored = validate_tree(state["config"], "checkpoint config")
    if cfg is None:
        return stored
    from reid_core.config import flatten

    a, b = flatten(stored), flatten(cfg)
    diff = sorted(k for k in a if a[k] != b.get(k) and k != "train.epochs")
    if diff:
        raise ReidError(f"--resume with a different config: {', '.join(diff[:5])}")
    return cfg


@dataclass
class RunOutcome:
    """What a training run ended with. `result` is what `OUT/metrics.json` holds: the test
    metrics of a finished run, the val state of a stopped one (a stopped run is not scored on
    test: pruning and other stop requests must not touch the test split)."""

    status: str  # "finished" or "stopped"
    paths: RunPaths
    data: DataBundle
    model: Any  # the weights `result` was scored with (best-on-val for a finished run)
    device: Any
    result: dict[str, Any]
    stop_reason: str | None = None
    resumed_from_epoch: int = 0
    embeddings: Any = None  # the test evaluation's (EvalEmbeddings), for plots and rank lists
    is_main: bool = True  # False on torchrun ranks other than 0: they wrote and scored nothing

    @property
    def finished(self) -> bool:
        return self.status == "finished"


def train(
    cfg: ReidConfig | None,
    data_root: Path,
    out: Path,
    *,
    resume: bool = False,
    resume_from: Path | None = None,
    data: DataBundle | None = None,
    callbacks: Sequence[Callback] = (),
    load_pretrained: bool = True,
) -> RunOutcome:
    """Train into `out`; a finished run is scored once on test with its best-on-val weights.

    `resume` continues `out` from its own last checkpoint; `resume_from` starts the new run
    folder `out` from another run's checkpoint (a retried study trial). `data`, when given and
    built for the same root and config, is used instead of loading the dataset again. Under
    torchrun every rank calls it; rank 0 alone writes, evaluates and runs `callbacks`.
    """
    from reid_core.training.checkpoint import load_checkpoint, load_model_state
    from reid_core.training.distributed import current
    from reid_core.training.hooks import CheckpointCallback, HistoryCallback, ProgressCallback
    from reid_core.training.setup import DataBundle, build_trainer

    paths = RunPaths(Path(out))
    source = _check_out(paths, resume, resume_from)
    state = load_checkpoint(source) if source is not None else None
    if state is not None:
        cfg = resume_config(state, cfg)
    assert cfg is not None
    if data is None or not data.fits(Path(data_root), cfg):
        data = DataBundle.load(Path(data_root), cfg)  # validates the data before any write
    extra = {"config": to_dict(cfg), "train_pids": list(data.splits.train)}
    ckpt = CheckpointCallback(paths, cfg.train.checkpoint_every, extra)
    hooks = [ProgressCallback(cfg.train.log_every), ckpt, HistoryCallback(paths.history)]
    main = current().is_main
    every = [*hooks, *callbacks] if main else []
    profile_dir = paths.out if cfg.train.profile and main else None
    trainer = build_trainer(
        cfg, data, every, load_pretrained=load_pretrained, profile_dir=profile_dir
    )
    if main:
        paths.out.mkdir(parents=True, exist_ok=True)
        paths.config.write_text(to_yaml(cfg), encoding="utf-8")
    if state is not None:
        load_model_state(trainer.model, state["model"], str(source))
        trainer.load_state_dict(state)
        ckpt.best = state.get("best_val_score")
    resumed_from = trainer.state.epoch
    status = trainer.fit()
    if not main:
        result = {"status": status, "stop_reason": trainer.stop_reason}
        return RunOutcome(
            status, paths, data, trainer.model, trainer.device, result,
            trainer.stop_reason, resumed_from, is_main=False,
        )  # fmt: skip
    val = trainer.last_metrics.get("val")
    result: dict[str, Any] = {"status": status, "val": val, "best_val_score": ckpt.best}
    if status == "finished":
        if paths.best.is_file():
            best = load_checkpoint(paths.best)
            load_model_state(trainer.model, best["model"], str(paths.best))
        result = {**trainer.evaluate("test"), **result}
    else:
        result.update(stop_reason=trainer.stop_reason, epoch=trainer.state.epoch)
    result["checkpoint"] = str(paths.final_checkpoint())
    write_json(paths.metrics, result)
    return RunOutcome(
        status,
        paths,
        data,
        trainer.model,
        trainer.device,
        result,
        trainer.stop_reason,
        resumed_from,
        getattr(trainer.evaluate_fn, "embeddings", {}).get("test"),
    )


def evaluate(
    cfg: ReidConfig,
    data_root: Path,
    *,
    checkpoint: Path | None,
    split: str,
    out: Path | None,
    with_embeddings: bool = False,
) -> Any:
    """Score a checkpoint (or, without one, the untrained model: the baseline) on a split.

    Returns the result; with `with_embeddings`, `(result, embeddings, protocol, data root)`, the
    embeddings being what the evaluation ranked (for rank lists, without encoding again).
    """
    from reid_core.evaluation.evaluate import evaluate_protocol
    from reid_core.model import build_model
    from reid_core.training.checkpoint import load_checkpoint, load_model_state
    from reid_core.training.engine import resolve_device
    from reid_core.training.setup import DataBundle, seed_everything

    state = load_checkpoint(checkpoint) if checkpoint else None
    data = DataBundle.load(Path(data_root), cfg)
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    num_classes = len(state["train_pids"]) if state else len(data.splits.train)
    model = build_model(cfg, num_classes, load_pretrained=state is None)
    if state is not None:
        load_model_state(model, state["model"], str(checkpoint))
    model.to(device)
    protocol = data.protocol(split)
    result, emb = evaluate_protocol(  # encodes under no_grad itself
        model, data.index.root, protocol, cfg.data, cfg.eval, device, split, return_embeddings=True
    )
    result["checkpoint"] = str(checkpoint) if checkpoint else None
    if out is not None:
        write_json(RunPaths(Path(out)).metrics, result)
    return (result, emb, protocol, Path(data.index.root)) if with_embeddings else result
