"""Complete, atomic checkpoints that `torch.load(weights_only=True)` reads.

A checkpoint holds everything a resumed run needs to continue identically: model, optimizer,
schedule, scaler, clipper window and spikes, epoch and step, RNG states (as tensors), the resolved
config and the label map.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reid_core.errors import CheckpointError
from reid_core.fileio import atomic_path

FORMAT_VERSION = 1


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, torch.Tensor]:
    """Python, numpy and torch RNG states, every one a tensor."""
    version, words, gauss = random.getstate()
    np_state: tuple[Any, ...] = tuple(np.random.get_state())
    state = {
        "python": torch.tensor([version, *words], dtype=torch.int64),
        "python_gauss": torch.tensor([float("nan") if gauss is None else gauss]),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_meta": torch.tensor([np_state[2], np_state[3]], dtype=torch.int64),
        "numpy_gauss": torch.tensor([np_state[4]], dtype=torch.float64),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda{i}"] = s
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    py = state["python"].tolist()
    gauss = float(state["python_gauss"][0])
    random.setstate((py[0], tuple(py[1:]), None if gauss != gauss else gauss))
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    pos, has_gauss = state["numpy_meta"].tolist()
    np.random.set_state(("MT19937", keys, pos, has_gauss, float(state["numpy_gauss"][0])))
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available():
        cuda = [state[k] for k in sorted(state) if k.startswith("cuda")]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)


class CheckpointWriteError(CheckpointError):
    """The checkpoint could not be written (disk full, permissions): the previous one is kept."""

    exit_code = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a temporary file in the same folder, then an os.replace. A failed write
    (ENOSPC...) leaves the previous file intact, removes the partial one and raises
    `CheckpointWriteError` (one line)."""
    try:
        with atomic_path(Path(path)) as tmp:
            torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
    except (OSError, RuntimeError) as exc:  # torch reports a failed write as a RuntimeError
        reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0][:160]
        raise CheckpointWriteError(
            f"{path}: cannot write checkpoint ({reason or type(exc).__name__}); "
            "the previous checkpoint is kept"
        ) from None


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint (weights only); a missing or corrupt file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not an OmniReID checkpoint (no 'model' entry)")
    return state


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load weights strictly; a different architecture names the mismatched keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
            if keys:
                more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
                parts.append(f"{label}: {', '.join(keys[:3])}{more}")
        raise CheckpointError(
            f"{source}: checkpoint is from another architecture; " + "; ".join(parts)
        )
    model.load_state_dict(state)
