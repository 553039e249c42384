"""One experiment: `train` (val during training, test once at the end) and `eval`.

Everything a run writes lives under its `--out` folder: `config.yaml`, `checkpoints/`,
`history.jsonl` and `metrics.json`. Trackers join through `callbacks`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reid_core.config import ReidConfig, to_dict, to_yaml, validate_tree
from reid_core.errors import CheckpointError, ReidError
from reid_core.fileio import atomic_path
from reid_core.training.callbacks import Callback


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2), encoding="utf-8")


def _check_out(out: Path, resume: bool) -> Path:
    last = out / "checkpoints" / "last.pt"
    if resume:
        if not last.is_file():
            raise CheckpointError(f"{last}: no checkpoint to resume from")
    elif last.exists():
        raise ReidError(f"{out} already holds a run; pass --resume or choose another --out")
    if out.exists() and not out.is_dir():
        raise ReidError(f"--out {out} is a file, not a folder")
    return last


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


def train(
    cfg: ReidConfig | None,
    data_root: Path,
    out: Path,
    *,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    load_pretrained: bool = True,
) -> dict[str, Any]:
    """Train, score the best-on-val weights on test, write `metrics.json`; returns the result."""
    from reid_core.training.checkpoint import load_checkpoint, load_model_state
    from reid_core.training.hooks import CheckpointCallback, HistoryCallback, ProgressCallback
    from reid_core.training.setup import DataBundle, build_trainer

    out = Path(out)
    last = _check_out(out, resume)
    state = load_checkpoint(last) if resume else None
    if state is not None:
        cfg = resume_config(state, cfg)
    assert cfg is not None
    data = DataBundle.load(Path(data_root), cfg)  # validates the data before anything is written
    extra = {"config": to_dict(cfg), "train_pids": list(data.splits.train)}
    ckpt = CheckpointCallback(out / "checkpoints", cfg.train.checkpoint_every, extra)
    hooks = [ProgressCallback(cfg.train.log_every), ckpt, HistoryCallback(out / "history.jsonl")]
    trainer = build_trainer(cfg, data, [*hooks, *callbacks], load_pretrained=load_pretrained)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
    if state is not None:
        load_model_state(trainer.model, state["model"], str(last))
        trainer.load_state_dict(state)
        ckpt.best = state.get("best_val_score")
    trainer.fit()
    if ckpt.best_path.is_file():
        best = load_checkpoint(ckpt.best_path)
        load_model_state(trainer.model, best["model"], str(ckpt.best_path))
    test = trainer.evaluate("test")
    result = {**test, "val": trainer.last_metrics.get("val"), "best_val_score": ckpt.best}
    result["checkpoint"] = str(ckpt.best_path if ckpt.best_path.is_file() else ckpt.last)
    write_json(out / "metrics.json", result)
    return result


def evaluate(
    cfg: ReidConfig,
    data_root: Path,
    *,
    checkpoint: Path | None,
    split: str,
    out: Path | None,
) -> dict[str, Any]:
    """Score a checkpoint (or, without one, the untrained model: the baseline) on a split."""
    from reid_core.evaluation.runner import evaluate_protocol
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
    result = evaluate_protocol(  # encodes under no_grad itself
        model, data.index.root, data.protocol(split), cfg.data, cfg.eval, device, split
    )
    result["checkpoint"] = str(checkpoint) if checkpoint else None
    if out is not None:
        write_json(Path(out) / "metrics.json", result)
    return result
