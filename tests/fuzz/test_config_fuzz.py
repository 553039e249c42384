"""Random and mutated YAML configs and `--set` overrides through `reid_core.config.load_config`."""

from __future__ import annotations

import yaml
from hypothesis import given
from hypothesis import strategies as st

from reid_core.config import ReidConfig, load_config
from reid_core.config.load import preset_dict
from reid_core.errors import ConfigError
from tests.fuzz.conftest import FUZZ, JSON_VALUES, accepted_or_one_line, count, mutate

MICRO_TEXT = yaml.safe_dump(preset_dict("micro"), sort_keys=False)
YAML_CHARS = " \n\t:-[]{},#&*!|>'\"%@`?0123456789abcdefxyz._=~"
SECTIONS = ["data", "model", "loss", "optim", "train", "eval"]
KEYS = [
    *SECTIONS,
    "data.p",
    "data.k",
    "data.height",
    "data.modalities",
    "data.on_bad_image",
    "model.lora.rank",
    "model.mer.mode",  # retired: must fail in one line too
    "optim.lr.head",
    "train.epochs",
    "eval.protocol",
    "loss.sdm.temperature",
    "nope.key",
]


def _check(result) -> None:
    assert isinstance(result, ReidConfig | ConfigError), type(result)


@FUZZ
@given(data=st.data())
def test_mutated_preset_yaml(tmp_path, data):
    count("config: mutated YAML files")
    path = tmp_path / "cfg.yaml"
    path.write_text(mutate(data, MICRO_TEXT, YAML_CHARS), encoding="utf-8")
    _check(accepted_or_one_line(load_config, config_file=path))


@FUZZ
@given(tree=st.dictionaries(st.sampled_from([*SECTIONS, "extra"]), JSON_VALUES, max_size=4))
def test_random_yaml_trees(tmp_path, tree):
    count("config: random YAML trees")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    _check(accepted_or_one_line(load_config, preset="micro", config_file=path))


@FUZZ
@given(raw=st.binary(max_size=200))
def test_random_bytes_as_a_config_file(tmp_path, raw):
    count("config: random bytes")
    path = tmp_path / "cfg.yaml"
    path.write_bytes(raw)
    _check(accepted_or_one_line(load_config, config_file=path))


@FUZZ
@given(key=st.sampled_from(KEYS) | st.text(max_size=12), value=st.text(YAML_CHARS, max_size=16))
def test_random_overrides(key, value):
    count("config: --set overrides")
    _check(accepted_or_one_line(load_config, preset="micro", overrides=[f"{key}={value}"]))


def test_a_bad_value_inside_a_list_is_named():
    error = accepted_or_one_line(
        load_config, preset="micro", overrides=["data.modalities=[vis, thermal]"]
    )
    assert isinstance(error, ConfigError)
    assert "data.modalities" in str(error) and "'thermal'" in str(error)
    assert "'nir'" in str(error)  # and what is allowed
