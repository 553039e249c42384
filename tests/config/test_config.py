from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from reid_core.config import (
    ReidConfig,
    config_hash,
    flatten,
    list_presets,
    load_config,
    schema_json,
    with_overrides,
)
from reid_core.errors import ConfigError
from reid_core.modality import Modality


def test_presets_ship_and_validate():
    assert set(list_presets()) >= {"micro", "cpu-tiny", "vit-b16", "orbench"}
    for name in list_presets():
        cfg = load_config(preset=name)
        assert cfg.data.batch_size == cfg.data.p * cfg.data.k
    assert load_config(preset="orbench").data.height == 384
    assert load_config(preset="vit-b16").model.clip.name == "ViT-B-16"


def test_overrides_are_typed_by_schema():
    cfg = load_config(
        preset="micro",
        overrides=["model.lora.rank=8", "optim.lr.lora=1e-4", "data.modalities=[vis, nir]"],
    )
    assert cfg.model.lora.rank == 8
    assert cfg.optim.lr.lora == pytest.approx(1e-4)
    assert cfg.data.modalities == (Modality.VIS, Modality.NIR)


def test_config_is_frozen():
    cfg = load_config(preset="micro")
    with pytest.raises(ValidationError):
        cfg.model.lora.rank = 3  # type: ignore[misc]


def test_file_merges_on_top_of_preset(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  lora:\n    rank: 2\n")
    cfg = load_config(preset="micro", config_file=f, overrides=["model.lora.alpha=2"])
    assert cfg.model.lora.rank == 2 and cfg.model.lora.alpha == 2.0
    assert cfg.data.height == 32  # the preset underneath is kept


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("model.lora.rnak=3", "model.lora.rnak"),
        ("model.mer.rank=3", "renamed model.lora.rank"),
        ("loss.sdm.pseudo=[sk]", "loss.sdm.pseudo"),
        ("model.lora.rank=abc", "model.lora.rank"),
        ("model.lora.rank=0", "model.lora.rank"),
        ("data.k=1", "data.k"),
        ("data.batch_size=8", "a batch is data.p x data.k"),
        ("data.modalities=[nir, sk]", "must include vis"),
        ("data.modalities=[vis, smell]", "data.modalities"),
        ("data.on_bad_image=ignore", "data.on_bad_image"),
        ("nonsense", "dotted.key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(preset="micro", overrides=[override])
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_unknown_key_in_file_and_yaml_syntax(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  lora:\n    ranks: 2\n")
    with pytest.raises(ConfigError, match=r"model\.lora\.ranks"):
        load_config(config_file=bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML syntax error") as err:
        load_config(config_file=broken)
    assert "broken.yaml" in str(err.value) and "line" in str(err.value)
    with pytest.raises(ConfigError, match="not found"):
        load_config(config_file=tmp_path / "missing.yaml")


def test_unknown_preset_lists_known():
    with pytest.raises(ConfigError, match="cpu-tiny"):
        load_config(preset="nope")


def test_flatten_hash_and_with_overrides():
    cfg = load_config(preset="micro")
    flat = flatten(cfg)
    assert flat["model.lora.rank"] == 4 and flat["data.modalities"] == [
        "vis",
        "nir",
        "cp",
        "sk",
        "text",
    ]
    assert len(flat) >= 40
    other = with_overrides(cfg, {"model.lora.rank": 2})
    assert other.model.lora.rank == 2 and config_hash(other) != config_hash(cfg)
    assert config_hash(load_config(preset="micro")) == config_hash(cfg)
    with pytest.raises(ConfigError):
        with_overrides(cfg, {"data.batch_size": 7})


def test_schema_is_json():
    schema = json.loads(schema_json())
    assert "properties" in schema and "data" in schema["properties"]
    assert ReidConfig.model_config["extra"] == "forbid"


def test_custom_patch_must_divide_input():
    with pytest.raises(ConfigError, match="patch_size"):
        load_config(preset="micro", overrides=["data.height=36"])


def test_data_cache_off_survives_yaml_booleans():
    # YAML 1.1 reads a bare `off` as False
    assert load_config(preset="micro", overrides=["data.cache=off"]).data.cache == "off"
    assert load_config(preset="micro", overrides=["data.cache=auto"]).data.cache == "auto"


def test_the_config_stays_small_and_each_key_says_what_it_is_in_one_line():
    """Issue 20's bound: at most 85 leaf keys, every field described in one short line."""
    import typing

    from reid_core.config import flatten, load_config
    from reid_core.config.schema import ReidConfig

    assert len(flatten(load_config())) <= 85
    descriptions = []

    def walk(model):
        for name, field in model.model_fields.items():
            kinds = [field.annotation, *typing.get_args(field.annotation)]
            sections = [k for k in kinds if isinstance(k, type) and hasattr(k, "model_fields")]
            if sections:
                walk(sections[0])
            else:
                descriptions.append((name, field.description or ""))

    walk(ReidConfig)
    assert len(descriptions) >= 60  # the walk reached the leaves
    bad = [(n, d) for n, d in descriptions if not d or "\n" in d or len(d) > 160]
    assert not bad, bad
