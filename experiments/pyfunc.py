"""The OmniReID pyfunc model: weights (safetensors) plus the resolved config, no pickled code.

It is an MLflow "loader module" model: the model folder holds `data/` (weights, config, format
file) and names this module, whose `_load_pyfunc(data_path)` rebuilds the network from the config
and loads the weights. `predict` takes a DataFrame of rows `{modality, path | image_b64 | text,
query_id}` and returns one L2-normalised `bn_features` vector per query_id: the rows sharing a
query_id fuse into one query; a query of `vis` rows alone is a gallery embedding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.model_format import (  # noqa: F401 (re-exported: the model's format)
    FORMAT_VERSION,
    LOADER_MODULE,
    ModelFormatError,
    check_mlmodel,
    check_version,
)
from reid_core.errors import DataError, ReidError

FORMAT_FILE = "omnireid.json"
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.yaml"
FORMAT_MAX_BYTES = 64 << 10  # omnireid.json is a few hundred bytes
VALUE_COLUMNS = ("path", "image_b64", "text")
INPUT_COLUMNS = ("query_id", "modality", *VALUE_COLUMNS)


# --------------------------------------------------------------------------------------- save
def save_model_data(model: Any, cfg: Any, directory: Path) -> Path:
    """Write weights, config and format file of `model` (an OmniReID) into `directory`."""
    from safetensors.torch import save_model

    from reid_core import __version__
    from reid_core.config import config_hash, to_yaml

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_model(model, str(directory / WEIGHTS_FILE))  # handles shared tensors
    (directory / CONFIG_FILE).write_text(to_yaml(cfg), encoding="utf-8")
    meta = {
        "format_version": FORMAT_VERSION,
        "omnireid_version": __version__,
        "num_classes": int(model.num_classes),
        "embed_dim": int(model.embed_dim),
        "config_hash": config_hash(cfg),
    }
    (directory / FORMAT_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return directory


def read_format(data_path: Path) -> dict[str, Any]:
    """The format file of a saved model; a missing or newer format is a ModelFormatError."""
    from reid_core.safeio import read_json

    path = Path(data_path) / FORMAT_FILE
    if not path.is_file():
        raise ModelFormatError(f"{data_path}: not an OmniReID pyfunc model (no {FORMAT_FILE})")
    meta = read_json(path, ModelFormatError, limit=FORMAT_MAX_BYTES, what="a model format file")
    if not isinstance(meta, dict):
        raise ModelFormatError(f"{path}: not an OmniReID format file (not a JSON object)")
    check_version(meta, str(data_path))
    return meta


# --------------------------------------------------------------------------------------- load
def _load_pyfunc(data_path: str) -> OmniReIDPyfunc:
    """MLflow's loader-module entry point."""
    return OmniReIDPyfunc.load(Path(data_path))


@dataclass
class _Row:
    query_id: str | int
    modality: Any  # Modality
    kind: str  # path | image_b64 | text
    value: str
    slot: int = -1  # position among the rows of its modality


class OmniReIDPyfunc:
    """A loaded model; `predict(frame)` embeds queries (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        cfg: Any,
        meta: dict[str, Any],
        device: Any,
        data_path: Path | None = None,
    ) -> None:
        self.model = model.eval()
        self.cfg = cfg
        self.meta = meta
        self.device = device
        self.data_path = data_path
        self._transforms: dict[Any, Any] = {}
        self._digest: str | None = None

    def get_raw_model(self) -> OmniReIDPyfunc:
        """Itself: what MLflow's `PyFuncModel.get_raw_model()` hands out for this model."""
        return self

    def weights_digest(self) -> str:
        """sha256 of the weights file and the config: equal digests embed identically."""
        if self._digest is None:
            if self.data_path is None:
                raise ReidError("this model was not loaded from a folder: no weights digest")
            self._digest = content_digest(
                [self.data_path / WEIGHTS_FILE, self.data_path / CONFIG_FILE]
            )
        return self._digest

    @classmethod
    def load(cls, data_path: Path, device: str = "cpu") -> OmniReIDPyfunc:
        import torch
        from safetensors.torch import load_model

        from reid_core.config import validate_tree
        from reid_core.config.load import file_dict
        from reid_core.model import build_model

        meta = read_format(data_path)
        cfg = validate_tree(file_dict(data_path / CONFIG_FILE), "pyfunc model config")
        model = build_model(cfg, meta["num_classes"], load_pretrained=False)
        load_model(model, str(data_path / WEIGHTS_FILE), strict=True)
        dev = torch.device(device)
        return cls(model.to(dev), cfg, meta, dev, Path(data_path))

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None):
        ids, features = self.embed(model_input)
        return pd.DataFrame({"query_id": ids, "bn_features": [row.tolist() for row in features]})

    def embed(self, frame: pd.DataFrame) -> tuple[list[str | int], Any]:
        """Query ids in first-appearance order and their `[Q, D]` float32 numpy features."""
        import torch

        from reid_core.evaluation.evaluate import ProtocolEncoder

        rows = parse_rows(frame)
        queries: dict[str | int, dict[Any, _Row]] = {}
        for row in rows:
            items = queries.setdefault(row.query_id, {})
            if row.modality in items:
                raise DataError(f"query {row.query_id!r} has two {row.modality.value} rows")
            items[row.modality] = row
        enc = ProtocolEncoder(self.model, Path("."), self.cfg.data, self.cfg.eval, self.device)
        table = self._encode_items(enc, rows)
        out = torch.empty(len(queries), self.model.embed_dim)
        by_set: dict[tuple[Any, ...], list[int]] = {}
        items_of = list(queries.values())
        for i, items in enumerate(items_of):
            key = tuple(sorted(items, key=lambda m: m.column))
            by_set.setdefault(key, []).append(i)
        for modalities, positions in by_set.items():
            feats = {
                m: table[m][torch.tensor([items_of[i][m].slot for i in positions])]
                for m in modalities
            }
            out[positions] = enc.fuse(feats, modalities).float().cpu()
        return list(queries), out.numpy()

    def _encode_items(self, enc: Any, rows: Sequence[_Row]) -> dict[Any, Any]:
        """Per modality: features of every item, indexed by position in the modality's rows."""
        import torch

        from reid_core.modality import Modality

        table: dict[Any, Any] = {}
        per_modality: dict[Any, list[_Row]] = {}
        for row in rows:
            per_modality.setdefault(row.modality, []).append(row)
        for modality, items in per_modality.items():
            for pos, row in enumerate(items):
                row.slot = pos
            if modality is Modality.TEXT:
                table[modality] = enc.encode_items(modality, [r.value for r in items])
                continue
            bs = self.cfg.eval.batch_size
            chunks = []
            with torch.no_grad():
                for i in range(0, len(items), bs):
                    x = torch.stack([self._image(r) for r in items[i : i + bs]]).to(self.device)
                    with enc._autocast():
                        chunks.append(self.model.encode_item(modality, x).float())
            table[modality] = torch.cat(chunks)
        return table

    def _image(self, row: _Row) -> Any:
        from reid_core.data.images import load_image

        if row.modality not in self._transforms:
            from reid_core.data.transforms import build_transform

            self._transforms[row.modality] = build_transform(
                row.modality, self.cfg.data, train=False
            )
        if row.kind == "path":
            img = load_image(Path(row.value))
        else:
            try:
                data = base64.b64decode(row.value, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise DataError(
                    f"query {row.query_id!r}: image_b64 is not base64 ({exc})"
                ) from None
            img = load_image(data, f"query {row.query_id!r} {row.modality.value} image_b64")
        return self._transforms[row.modality](img)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and value != value)


def parse_rows(frame: pd.DataFrame) -> list[_Row]:
    """Validate the input frame: one value per row, matching its modality."""
    from reid_core.modality import Modality

    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    missing = [c for c in ("query_id", "modality") if c not in frame.columns]
    if missing:
        raise DataError(f"input needs columns query_id and modality (missing: {missing})")
    if frame.empty:
        raise DataError("input has no rows")
    rows = []
    for n, rec in enumerate(frame.to_dict("records")):
        given = [c for c in VALUE_COLUMNS if c in rec and _present(rec[c])]
        qid = query_id(rec["query_id"], n)
        if len(given) != 1:
            raise DataError(f"row {n} (query {qid!r}): give exactly one of path, image_b64, text")
        try:
            modality = Modality.parse(str(rec["modality"]))
        except ReidError as exc:
            raise DataError(f"row {n} (query {qid!r}): {exc}") from None
        kind = given[0]
        if (kind == "text") != (modality is Modality.TEXT):
            raise DataError(
                f"row {n} (query {qid!r}): modality {modality.value} cannot take a {kind}"
            )
        rows.append(_Row(qid, modality, kind, str(rec[kind])))
    return rows


def query_id(value: Any, row: int) -> str | int:
    """A query id as given: a string or an integer (numpy integers and integral floats, which
    pandas makes of integer columns with gaps, become int); anything else is a DataError."""
    import numbers

    import numpy as np

    if isinstance(value, str):
        return value
    integral = isinstance(value, numbers.Integral) or (
        isinstance(value, numbers.Real) and float(value).is_integer()
    )
    if integral and not isinstance(value, bool | np.bool_):
        return int(value)
    raise DataError(f"row {row}: query_id must be a string or an integer, not {value!r}")


def image_b64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def example_frame(image: Path) -> pd.DataFrame:
    """An input example: an infrared + text query and a one-image gallery entry."""
    b64 = image_b64(image)
    return pd.DataFrame(
        [
            {"query_id": "q1", "modality": "nir", "path": None, "image_b64": b64, "text": None},
            {
                "query_id": "q1",
                "modality": "text",
                "path": None,
                "image_b64": None,
                "text": "a person in a dark jacket",
            },
            {"query_id": "g1", "modality": "vis", "path": None, "image_b64": b64, "text": None},
        ],
        columns=list(INPUT_COLUMNS),
    )


def _example_image(cfg: Any, directory: Path) -> Path:
    from PIL import Image

    path = directory / "example.png"
    Image.new("RGB", (cfg.data.width, cfg.data.height), (90, 90, 90)).save(path)
    return path


def log_pyfunc(model: Any, cfg: Any, registered_name: str | None, name: str = "model") -> Any:
    """Log `model` into the active run as the logged model `name` (and register it)."""
    import tempfile

    import mlflow

    from reid_core import __version__

    with tempfile.TemporaryDirectory() as tmp:
        data = save_model_data(model, cfg, Path(tmp) / "omnireid")
        example = example_frame(_example_image(cfg, Path(tmp)))
        # MLflow validates the example against the model (a load and a predict) while logging.
        return mlflow.pyfunc.log_model(
            name=name,
            loader_module="experiments.pyfunc",
            data_path=str(data),
            signature=signature(),
            input_example=example,
            pip_requirements=_requirements(),
            registered_model_name=registered_name,
            metadata={"omnireid_version": __version__, "format_version": FORMAT_VERSION},
        )


def signature() -> Any:
    """Rows of `{query_id, modality, path | image_b64 | text}` in; `{query_id, bn_features}` out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import AnyType, Array

    # query_id is a string or an integer (checked by parse_rows); a string column would make
    # MLflow refuse integer ids ("Can not safely convert int64 to <U0").
    inputs = [ColSpec(AnyType(), "query_id"), ColSpec(DataType.string, "modality")]
    inputs += [ColSpec(DataType.string, name, required=False) for name in VALUE_COLUMNS]
    outputs = [
        ColSpec(AnyType(), "query_id"),
        ColSpec(Array(DataType.double), "bn_features"),
    ]
    return ModelSignature(Schema(inputs), Schema(outputs))


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("omnireid", "torch", "torchvision", "open_clip_torch", "mlflow", "safetensors"):
        try:
            out.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            out.append(dist)
    return out


def content_digest(paths: Sequence[Path]) -> str:
    """sha256 over the bytes of `paths` (with their order)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(hashlib.sha256(Path(p).read_bytes()).digest())
    return h.hexdigest()
