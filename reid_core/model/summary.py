"""`reid model summary`: parameters per group, LoRA per modality and target, FLOPs per sample.

The model is built with `load_pretrained=False`: same architecture, random weights, no download.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable
from typing import Any, cast

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from reid_core.config.schema import ReidConfig
from reid_core.modality import ALL_MODALITIES, Modality
from reid_core.model.lora import LoraGroup, MerBlock
from reid_core.model.omnireid import GROUPS, OmniReID, build_model

_aten = torch.ops.aten


def _sdpa_cpu(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward(
    grad_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:
    return sdpa_backward_flop_count(grad_shape, query_shape, key_shape, value_shape)


# torch's flop counter knows the CUDA attention kernels but not the CPU flash kernel SDPA uses here
CPU_ATTENTION_FLOPS = {
    _aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu,
    _aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward,
}


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs (2 per multiply-add) of the GEMMs, convolutions and attention `fn` runs."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        fn()
    return int(counter.get_total_flops())


def dummy_inputs(model: OmniReID, batch: int = 1) -> dict[Modality, torch.Tensor]:
    """Every modality of the model; captions fill the whole text context (the upper bound)."""
    height, width = model.backbone.image_size
    inputs = {
        m: torch.randn(batch, m.channels, height, width) for m in model.modalities if m.is_image
    }
    if Modality.TEXT in model.modalities:
        inputs[Modality.TEXT] = model.tokenize(["person " * model.context_length] * batch)
    return inputs


def full_mask(model: OmniReID, batch: int = 1) -> torch.Tensor:
    mask = torch.zeros(batch, len(ALL_MODALITIES), dtype=torch.bool)
    for m in model.modalities:
        mask[:, m.column] = True
    return mask


def _parameters(model: OmniReID) -> dict[str, dict[str, int]]:
    groups = model.named_param_groups(trainable=False)
    out = {
        g: {
            "total": sum(p.numel() for _, p in groups[g]),
            "trainable": sum(p.numel() for _, p in groups[g] if p.requires_grad),
        }
        for g in GROUPS
    }
    out["all"] = {k: sum(v[k] for v in out.values()) for k in ("total", "trainable")}
    return out


def _lora(model: OmniReID) -> dict[str, Any]:
    per: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for block in model.backbone.blocks:
        block = cast(MerBlock, block)
        for group in block.lora.values():
            for target in cast(LoraGroup, group).targets:
                for m in block.modalities:
                    down, up = block.adapter(m, target)
                    per[m.value][target] += down.numel() + up.numel()
    per_target: dict[str, int] = defaultdict(int)
    for targets in per.values():
        for t, n in targets.items():
            per_target[t] += n
    return {
        "per_modality": {m: sum(t.values()) for m, t in per.items()},
        "per_target": dict(per_target),
        "per_modality_target": {m: dict(t) for m, t in per.items()},
        "total": sum(per_target.values()),
    }


def _flops(model: OmniReID) -> dict[str, Any]:
    inputs = dummy_inputs(model)
    per: dict[str, int] = {}
    with torch.no_grad():
        for m, x in inputs.items():
            per[m.value] = count_flops(functools.partial(model.encode, {m: x}))
        full = count_flops(functools.partial(model, inputs, full_mask(model)))
    return {"per_modality": per, "all_modalities": full}


def model_summary(cfg: ReidConfig, num_classes: int) -> dict[str, Any]:
    """Everything `reid model summary` reports, as JSON-ready data."""
    model = build_model(cfg, num_classes, load_pretrained=False).eval()
    backbone, lora = model.backbone, cfg.model.lora
    return {
        "architecture": cfg.model.clip.name,
        "pretrained": cfg.model.clip.pretrained,
        "num_classes": num_classes,
        "embed_dim": model.embed_dim,
        "input": {
            "height": cfg.data.height,
            "width": cfg.data.width,
            "patch_grid": list(backbone.grid_size),
            "vision_tokens": backbone.positional_embedding.shape[0],
            "channels": {m.value: m.channels for m in model.modalities if m.is_image},
            "text_context": model.context_length,
        },
        "mer": {
            "enabled": bool(lora.targets),
            "rank": lora.rank,
            "alpha": lora.alpha,
            "scale": lora.alpha / lora.rank,
            "targets": list(lora.targets),
            "blocks": sum(1 for b in backbone.blocks if len(cast(MerBlock, b).lora) > 0),
        },
        "parameters": _parameters(model),
        "lora": _lora(model),
        "flops_per_sample": _flops(model),
    }


def _human(n: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.4g}{unit}"
        n /= 1000
    return f"{n:.4g}P"


def format_summary(info: dict[str, Any]) -> str:
    """A plain-text rendering of `model_summary`."""
    inp, mer = info["input"], info["mer"]
    lines = [
        f"architecture {info['architecture']} (pretrained: {info['pretrained']}), "
        f"embedding {info['embed_dim']}, {info['num_classes']} classes",
        f"input {inp['height']}x{inp['width']}, patch grid {inp['patch_grid'][0]}x"
        f"{inp['patch_grid'][1]} ({inp['vision_tokens']} tokens), text context "
        f"{inp['text_context']}",
        f"MER {'on' if mer['enabled'] else 'off'}: rank {mer['rank']}, "
        f"alpha {mer['alpha']}, {mer['blocks']} blocks, targets {','.join(mer['targets'])}",
        "",
        f"{'parameters':<12}{'total':>12}{'trainable':>12}",
    ]
    for group, n in info["parameters"].items():
        lines.append(f"{group:<12}{n['total']:>12,}{n['trainable']:>12,}")
    lora = info["lora"]
    lines += [
        "",
        f"LoRA per modality: {lora['per_modality']}",
        f"LoRA per target: {lora['per_target']}",
    ]
    flops = info["flops_per_sample"]
    lines.append("")
    lines += [f"FLOPs/sample {m:<5} {_human(n)}" for m, n in flops["per_modality"].items()]
    lines.append(f"FLOPs/sample all   {_human(flops['all_modalities'])}")
    return "\n".join(lines)
