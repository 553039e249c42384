"""What makes a logged model an OmniReID model, checked from its MLmodel file before anything of
it is loaded (docs/SERVING.md, "Only OmniReID models load")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reid_core.errors import ReidError

FORMAT_VERSION = 2  # 2: config keys model.lora and model.fusion, module `separation`
LOADER_MODULE = "experiments.pyfunc"


class ModelFormatError(ReidError):
    """A pyfunc model written by an OmniReID whose format this one cannot read, or a model that
    is not an OmniReID model at all."""


# The keys MLflow writes into the python_function flavor of a loader-module model. Anything
# else (`python_model`, `cloudpickle_version`, `artifacts`, `model_code_path`, ...) belongs to a
# model that runs code of its own when loaded.
_PYFUNC_KEYS = frozenset({"loader_module", "data", "env", "python_version", "streamable", "code"})


def check_mlmodel(doc: Any, where: str) -> None:
    """Refuse, before anything is loaded, an MLmodel document that is not an OmniReID pyfunc of
    this format version: one flavor (python_function), our loader module, no code paths, no
    pickled model, the data folder inside the model, our metadata. Reads; never imports."""
    flavors = doc.get("flavors") if isinstance(doc, dict) else None
    conf = flavors.get("python_function") if isinstance(flavors, dict) else None
    if not isinstance(conf, dict):
        raise ModelFormatError(f"{where}: not an OmniReID model (no python_function flavor)")
    if conf.get("loader_module") != LOADER_MODULE:
        raise ModelFormatError(
            f"{where}: not an OmniReID model (its loader is "
            f"{_short(conf.get('loader_module'))}, not {LOADER_MODULE}); refusing to load it"
        )
    extra = sorted(str(k) for k in conf if k not in _PYFUNC_KEYS)
    if extra or conf.get("code") or set(flavors) != {"python_function"}:
        what = extra or sorted(str(k) for k in flavors if k != "python_function") or ["code"]
        raise ModelFormatError(
            f"{where}: not an OmniReID model (it carries {_short(', '.join(what))}, which "
            "OmniReID models never do); refusing to load it"
        )
    data = conf.get("data")
    parts = Path(data).parts if isinstance(data, str) else ()
    if not parts or Path(data).is_absolute() or ".." in parts:
        raise ModelFormatError(f"{where}: model data path {_short(data)} is not inside the model")
    check_version(doc.get("metadata"), where)


def check_version(meta: Any, where: str) -> None:
    """Refuse a model whose metadata (MLmodel's, or the format file) names another format."""
    found = meta.get("format_version") if isinstance(meta, dict) else None
    if found != FORMAT_VERSION:
        version = meta.get("omnireid_version", "?") if isinstance(meta, dict) else "?"
        raise ModelFormatError(
            f"{where}: model format version {_short(found)} (written by OmniReID "
            f"{_short(version)}) cannot be read by this OmniReID, which reads format "
            f"{FORMAT_VERSION}; install the version that logged it or re-log the model"
        )


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value) if not isinstance(value, str) else value
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."
