"""Pretrained CLIP weights: an open_clip tag found in the local cache, or a local file.

Nothing is downloaded while a model is built: a tag whose file is not cached is an error that says
how to fetch it once or pass a local file. Files are read with `torch.load(weights_only=True)` (or
safetensors), so a checkpoint can never run code.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from reid_core.errors import ReidError

_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
# keys OpenAI's TorchScript archive carries besides the weights
_NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size")
# where open_clip caches weights fetched by URL; the Hugging Face cache is huggingface_hub's default
URL_CACHE_DIR: str | None = None
HF_CACHE_DIR: str | None = None


def is_local_file(pretrained: str) -> bool:
    """A path (existing, or spelled like one) rather than an open_clip tag."""
    return (
        Path(pretrained).expanduser().is_file()
        or any(sep in pretrained for sep in ("/", "\\"))
        or pretrained.lower().endswith(_WEIGHT_SUFFIXES)
    )


def _how_to_supply(name: str, tag: str) -> str:
    return (
        f"fetch it once with python -c \"import open_clip; open_clip.create_model('{name}', "
        f"pretrained='{tag}')\" while online, or pass a local file: "
        "--set model.clip.pretrained=/path/to/weights.pt (a state dict or open_clip checkpoint)"
    )


def _cached_hf_file(hf_hub: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    repo_id, filename = os.path.split(hf_hub)
    names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
    for fname in names:
        found = try_to_load_from_cache(repo_id, fname, cache_dir=HF_CACHE_DIR)
        if isinstance(found, str):
            return found
    return None


def _cached_url_file(url: str) -> str | None:
    cache = URL_CACHE_DIR or os.path.expanduser("~/.cache/clip")
    path = os.path.join(cache, os.path.basename(url))
    return path if url and os.path.isfile(path) else None


def resolve_tag(name: str, tag: str) -> Path:
    """The cached file of open_clip tag `tag` for architecture `name`; never downloads."""
    import open_clip

    if name == "custom":
        raise ReidError(
            f"model.clip.pretrained={tag!r}: a custom CLIP takes a local weights file, not a tag"
        )
    if not open_clip.is_pretrained_cfg(name, tag):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise ReidError(
            f"model.clip.pretrained={tag!r} is neither a file nor an open_clip tag of {name!r} "
            f"(tags: {tags})"
        )
    pcfg = open_clip.get_pretrained_cfg(name, tag)
    found = _cached_hf_file(pcfg["hf_hub"]) if pcfg.get("hf_hub") else None
    found = found or _cached_url_file(pcfg.get("url", ""))
    if found is None:
        raise ReidError(
            f"pretrained weights {name}/{tag} (model.clip.pretrained={tag!r}) are not in the local "
            f"cache and are never downloaded during a build; {_how_to_supply(name, tag)}"
        )
    return Path(found)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict or an open_clip checkpoint (`state_dict` key), `module.` stripped."""
    if not path.is_file():
        raise ReidError(f"model.clip.pretrained: weights file {path} not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, ValueError) as exc:
        if "TorchScript" in str(exc):  # OpenAI's original archive: code, not just weights
            raise ReidError(
                f"{path} is a TorchScript archive, which is never loaded (it can run code); use "
                "the open_clip state dict of the same weights (for 'openai' tags, the Hugging "
                "Face timm/*.openai files open_clip fetches) or save model.state_dict() once"
            ) from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReidError(f"{path}: not a readable weights file ({first})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ReidError(f"{path}: expected a state dict of tensors (or a 'state_dict' entry)")
    return {k.removeprefix("module."): v for k, v in obj.items() if k not in _NON_WEIGHT_KEYS}


def _fit_text_positions(state: dict[str, torch.Tensor], clip: Any) -> None:
    """A shorter text context keeps the first positions (causal: later ones never reach them)."""
    pos = state.get("positional_embedding")
    want = clip.positional_embedding.shape[0]
    if pos is not None and pos.shape[0] > want:
        state["positional_embedding"] = pos[:want]


def load_into_clip(clip: Any, state: dict[str, torch.Tensor], source: str) -> None:
    """Load CLIP weights, resizing the vision positional embedding to the ReID grid (bicubic,
    class token kept) as open_clip does; a missing or mis-shaped weight is an error."""
    from open_clip.model import resize_pos_embed

    pos = state.get("visual.positional_embedding")
    if pos is not None:
        side = round((pos.shape[0] - 1) ** 0.5)
        if side * side != pos.shape[0] - 1 and pos.shape != clip.visual.positional_embedding.shape:
            raise ReidError(
                f"{source}: positional embedding of {pos.shape[0]} is not a square grid"
            )
    resize_pos_embed(state, clip)
    _fit_text_positions(state, clip)
    if getattr(clip, "logit_bias", None) is None:
        state.pop("logit_bias", None)  # SigLIP-style checkpoints: unused by ReID either way
    try:
        result = clip.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1].strip()
        raise ReidError(f"{source} does not fit the configured architecture: {detail}") from None
    missing = [k for k in result.missing_keys if k != "logit_bias"]
    if missing or result.unexpected_keys:
        keys = (missing or result.unexpected_keys)[:3]
        what = "lacks" if missing else "has unexpected"
        raise ReidError(f"{source} {what} weights of the configured architecture, e.g. {keys}")


def load_pretrained(clip: Any, name: str, pretrained: str) -> None:
    """Resolve `pretrained` (tag or file) and load it into `clip`."""
    if is_local_file(pretrained):
        path = Path(pretrained).expanduser()
    else:
        path = resolve_tag(name, pretrained)
    load_into_clip(clip, read_state_dict(path), f"model.clip.pretrained={pretrained!r} ({path})")
