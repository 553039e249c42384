"""Random and mutated study specs through the lead's `studies.spec.load_spec` (skipped while
studies/spec.py does not exist)."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from reid_core.errors import ReidError
from tests.fuzz.conftest import FUZZ, JSON_VALUES, accepted_or_one_line, count, mutate

spec_module = pytest.importorskip("studies.spec", reason="studies/spec.py not written yet")
load_spec = getattr(spec_module, "load_spec", None)
if load_spec is None:
    pytest.skip("studies.spec has no load_spec yet", allow_module_level=True)

SHIPPED = sorted(
    e.read_text(encoding="utf-8")
    for e in (resources.files("studies") / "specs").iterdir()
    if e.name.endswith(".yaml")
)
YAML_CHARS = " \n\t:-[]{},#&*!|>'\"0123456789.abcdefxyz_=~"
TOP = ["name", "description", "base", "space", "enqueue", "sampler", "pruner", "budget",
       "objective", "storage", "extra"]  # fmt: skip


def _check(result) -> None:
    assert isinstance(result, ReidError) or type(result).__name__ == "StudySpec", type(result)


@pytest.mark.skipif(not SHIPPED, reason="no shipped specs to mutate")
@FUZZ
@given(data=st.data())
def test_mutated_shipped_specs(tmp_path, data):
    count("spec: mutated shipped YAML")
    path = tmp_path / "spec.yaml"
    path.write_text(mutate(data, data.draw(st.sampled_from(SHIPPED)), YAML_CHARS), "utf-8")
    _check(accepted_or_one_line(load_spec, path))


@FUZZ
@given(tree=st.dictionaries(st.sampled_from(TOP), JSON_VALUES, max_size=5))
def test_random_spec_trees(tmp_path, tree):
    count("spec: random YAML trees")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    _check(accepted_or_one_line(load_spec, path))
