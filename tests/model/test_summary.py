"""`reid model summary --json` on micro: LoRA counts equal the analytic count."""

from __future__ import annotations

import json

from click.testing import CliRunner

from reid_core.cli import model_group


def test_summary_json_micro():
    result = CliRunner().invoke(
        model_group, ["summary", "--preset", "micro", "--json", "--num-classes", "10"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    d, r, layers = 32, 4, 1  # micro: vision width 32, rank 4, one block, mlp ratio 4
    per_target = {
        "q": r * (d + d),
        "k": r * (d + d),
        "v": r * (d + d),
        "out": r * (d + d),
        "c_fc": r * (d + 4 * d),
        "c_proj": r * (4 * d + d),
    }
    per_modality = layers * sum(per_target.values())
    assert info["lora"]["per_modality"] == {m: per_modality for m in ("vis", "nir", "cp", "sk")}
    assert info["lora"]["per_target"] == {t: 4 * layers * n for t, n in per_target.items()}
    assert info["parameters"]["lora"]["total"] == 4 * per_modality
    assert info["input"] == {
        "height": 32,
        "width": 16,
        "patch_grid": [4, 2],
        "vision_tokens": 9,
        "channels": {"vis": 3, "nir": 1, "cp": 3, "sk": 1},
        "text_context": 32,
    }
    flops = info["flops_per_sample"]
    assert set(flops["per_modality"]) == {"vis", "nir", "cp", "sk", "text"}
    assert flops["all_modalities"] > sum(flops["per_modality"].values())
    assert info["parameters"]["all"]["total"] >= info["parameters"]["all"]["trainable"]


def test_summary_table_and_frozen_backbone():
    result = CliRunner().invoke(
        model_group, ["summary", "--preset", "micro", "--set", "model.backbone.freeze=true"]
    )
    assert result.exit_code == 0, result.output
    assert "LoRA per modality" in result.output
    backbone_line = next(x for x in result.output.splitlines() if x.startswith("backbone"))
    assert backbone_line.split()[-1] == "0"
