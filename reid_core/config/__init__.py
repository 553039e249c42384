"""Validated, frozen config with one dotted-key vocabulary (see DESIGN.md, "Config")."""

from reid_core.config.load import (
    config_hash,
    flatten,
    list_presets,
    load_config,
    parse_override,
    schema_json,
    to_dict,
    to_yaml,
    validate_tree,
    with_overrides,
)
from reid_core.config.schema import (
    DataConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    ReidConfig,
    TrainConfig,
)

__all__ = [
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "ReidConfig",
    "TrainConfig",
    "config_hash",
    "flatten",
    "list_presets",
    "load_config",
    "parse_override",
    "schema_json",
    "to_dict",
    "to_yaml",
    "validate_tree",
    "with_overrides",
]
