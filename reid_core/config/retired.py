"""Config keys that no longer exist, and what a user should write instead.

A YAML file, a `--set` override, a study spec or a stored config that still names one fails in
one line naming the key and its replacement, instead of pydantic's "extra inputs are not
permitted". Renamed sections map every key under them (`model.mer.rank` -> `model.lora.rank`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

_COLOUR = "implied by model.head.colour_dims > 0 (docs/MODALITIES.md)"
_LOST = "removed: the experiment lost (docs/MODALITIES.md)"

# dotted key -> why it is gone, what replaces it
REMOVED: dict[str, str] = {
    "data.gallery_modality": "removed: the gallery is always RGB (vis)",
    "data.batch_size": "removed: a batch is data.p x data.k anchors",
    "data.augment.pad_mode": "removed: the crop's border is black (edge and reflect lost; "
    "docs/MODALITIES.md)",
    "model.stem.grey_p": _LOST,
    "model.stem.edge_p": _LOST,
    "model.grey_gallery": _COLOUR,
    "model.sdm.dim": "removed: the separation block is model.fusion.dim wide",
    "model.sdm.heads": "removed: the separation block has model.fusion.heads heads",
    "model.mer.enabled": "removed: model.lora.targets: [] turns the adapters off",
    "model.mer.mode": "removed: the adapters of every modality run in one routed pass",
    "model.clip.custom.embed_dim": "removed: the custom CLIP embeds at model.clip.custom.width",
    "model.clip.custom.vision_width": "renamed model.clip.custom.width (both towers)",
    "model.clip.custom.text_width": "removed: both towers are model.clip.custom.width wide",
    "model.clip.custom.vision_heads": "renamed model.clip.custom.heads (both towers)",
    "model.clip.custom.text_heads": "removed: both towers have model.clip.custom.heads heads",
    "loss.sdm.anchor": _COLOUR,
    "loss.sdm.grey": _COLOUR,
    "loss.sdm.pseudo": _LOST,
    "loss.sdm.reduction": _LOST,
    "optim.lr.text": "removed: the text tower trains at optim.lr.backbone",
    "optim.clip.enabled": "removed: optim.clip.quantile: null turns clipping off",
    "train.amp": "replaced by train.precision (auto, fp32, bf16, fp16)",
    "train.cpu_bf16": "replaced by train.precision: bf16",
    "eval.topk": "removed: the challenge's mAP@100 is fixed",
    "eval.query_chunk": "removed: queries are scored in chunks chosen automatically",
}
# renamed sections: every key under the old prefix lives under the new one
RENAMED: dict[str, str] = {"model.mer": "model.lora"}


def retired(key: str) -> str | None:
    """Why `key` (dotted) is no longer a config key and what replaces it; None if it is not a
    retired key."""
    if key in REMOVED:
        return REMOVED[key]
    for old, new in RENAMED.items():
        if key == old or key.startswith(old + "."):
            return f"renamed {new}{key[len(old) :]}"
    if key.startswith("model.sdm.") or key == "model.sdm":
        return "removed: the separation block is model.fusion.dim wide with model.fusion.heads"
    return None


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        yield dotted
        if isinstance(value, Mapping):
            yield from _leaves(value, dotted + ".")


def find_retired(tree: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first retired key in a raw config tree and why, or None."""
    for key in _leaves(tree):
        reason = retired(key)
        if reason is not None:
            return key, reason
    return None
