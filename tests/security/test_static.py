"""Static checks over the source: checkpoints and configs are read without running code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("reid_core", "experiments", "studies", "bench")


def _sources() -> list[Path]:
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
    assert len(files) > 20  # the scan really sees the code
    return files


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _calls(path: Path):
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Call):
            yield node


def _torch_load_names(tree: ast.Module) -> set[str]:
    """Names `torch.load` goes by in a module (`import torch as t`, `from torch import load`)."""
    names = {"torch.load"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {f"{a.asname or a.name}.load" for a in node.names if a.name == "torch"}
        elif isinstance(node, ast.ImportFrom) and node.module == "torch":
            names |= {a.asname or a.name for a in node.names if a.name == "load"}
    return names


def _name(func: ast.expr) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def test_every_torch_load_passes_weights_only_true():
    offenders, seen = [], 0
    for path in _sources():
        tree = _tree(path)
        names = _torch_load_names(tree)
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            if _name(call.func) in names:
                seen += 1
                flag = _keyword(call, "weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    offenders.append(f"{path.relative_to(REPO)}:{call.lineno}")
    assert seen >= 1  # the checkpoint loader itself is found
    assert not offenders, f"torch.load without weights_only=True: {offenders}"


SAFEIO = REPO / "reid_core" / "safeio.py"


def test_yaml_is_read_only_through_the_bounded_reader():
    """Every YAML read goes through `reid_core.safeio` (safe constructor, no aliases, a depth
    and size limit); nothing calls PyYAML's loaders directly, safe or not."""
    loaders = {f"yaml.{kind}load{tail}" for kind in ("", "safe_", "unsafe_", "full_")
               for tail in ("", "_all")}  # fmt: skip
    offenders = []
    for path in _sources():
        if path.relative_to(REPO).parts[0] == "bench":
            continue  # benchmarks read only text they wrote themselves (a spec round trip)
        for call in _calls(path):
            name = _name(call.func)
            if name in loaders:
                offenders.append(f"{path.relative_to(REPO)}:{call.lineno} {name}")
    assert not offenders, f"YAML read outside reid_core.safeio: {offenders}"
    text = SAFEIO.read_text(encoding="utf-8")
    assert "SafeConstructor" in text and "AliasEvent" in text and "MAX_DEPTH" in text


def test_the_bounded_reader_refuses_aliases_and_unsafe_tags():
    from reid_core.errors import ReidError
    from reid_core.safeio import parse_yaml

    with pytest.raises(ReidError, match="alias"):
        parse_yaml("a: &x [1]\nb: *x\n", "t", ReidError)
    with pytest.raises(ReidError, match="constructor"):
        parse_yaml("a: !!python/object/apply:os.system [echo]\n", "t", ReidError)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_pickle_loading_in_the_code(package):
    offenders = []
    for path in (REPO / package).rglob("*.py"):
        for call in _calls(path):
            if _name(call.func) in ("pickle.load", "pickle.loads", "cloudpickle.load",
                                    "cloudpickle.loads", "dill.load", "dill.loads"):  # fmt: skip
                offenders.append(f"{path.relative_to(REPO)}:{call.lineno}")
    assert not offenders
