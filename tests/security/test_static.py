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


def test_yaml_is_read_with_the_safe_loader_only():
    offenders, seen = [], 0
    for path in _sources():
        for call in _calls(path):
            name = _name(call.func)
            if name in ("yaml.safe_load", "yaml.safe_load_all"):
                seen += 1
            if name in ("yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load",
                        "yaml.full_load_all"):  # fmt: skip
                offenders.append(f"{path.relative_to(REPO)}:{call.lineno} {name}")
            if name in ("yaml.load", "yaml.load_all"):
                loader = _keyword(call, "Loader") or (call.args[1] if len(call.args) > 1 else None)
                if not (
                    loader is not None and _name(loader).endswith(("SafeLoader", "CSafeLoader"))
                ):
                    offenders.append(f"{path.relative_to(REPO)}:{call.lineno} {name}")
    assert seen >= 2  # configs and study specs
    assert not offenders, f"unsafe YAML loading: {offenders}"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_pickle_loading_in_the_code(package):
    offenders = []
    for path in (REPO / package).rglob("*.py"):
        for call in _calls(path):
            if _name(call.func) in ("pickle.load", "pickle.loads", "cloudpickle.load",
                                    "cloudpickle.loads", "dill.load", "dill.loads"):  # fmt: skip
                offenders.append(f"{path.relative_to(REPO)}:{call.lineno}")
    assert not offenders
