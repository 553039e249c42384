"""The pyfunc model takes query ids as integers or strings (MLflow used to refuse int64 ids)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from experiments.pyfunc import parse_rows, query_id
from reid_core.errors import DataError


@pytest.mark.parametrize(
    ("given", "kept"),
    [("q1", "q1"), (7, 7), (np.int64(7), 7), (7.0, 7), (np.int32(0), 0)],
)
def test_query_ids_are_strings_or_integers(given, kept):
    out = query_id(given, 0)
    assert out == kept and type(out) is type(kept)


@pytest.mark.parametrize("bad", [None, float("nan"), 1.5, True, [1]])
def test_other_query_ids_are_refused_in_one_line(bad):
    with pytest.raises(DataError, match="row 3: query_id must be a string or an integer"):
        query_id(bad, 3)


def test_integer_and_string_ids_group_rows_alike():
    frame = pd.DataFrame(
        {"query_id": [1, 1, 2], "modality": ["nir", "text", "vis"], "path": ["a", None, "c"]}
    )
    frame["text"] = [None, "a man", None]
    rows = parse_rows(frame)
    assert [r.query_id for r in rows] == [1, 1, 2]


def _frame(root, ids):
    nir = sorted((root / "nir").rglob("*.jpg"))[0]
    vis = sorted((root / "vis").rglob("*.jpg"))[:2]
    return pd.DataFrame(
        {
            "query_id": ids,
            "modality": ["nir", "text", "vis", "vis"],
            "path": [str(nir), None, str(vis[0]), str(vis[1])],
            "text": [None, "a person in a dark jacket", None, None],
        }
    )


def test_logged_model_predicts_with_integer_and_string_ids(mlflow_env):
    import mlflow

    model = mlflow.pyfunc.load_model("models:/omnireid/1")
    schema = json.loads(model.metadata.get_input_schema().to_json())
    assert {"type": "any", "name": "query_id", "required": True} in schema
    by_int = model.predict(_frame(mlflow_env.root, [10, 10, 11, 12]))  # int64 column
    by_str = model.predict(_frame(mlflow_env.root, ["10", "10", "11", "12"]))
    assert by_int["query_id"].tolist() == [10, 11, 12]
    assert by_str["query_id"].tolist() == ["10", "11", "12"]
    a = np.stack(by_int["bn_features"].map(np.asarray))
    b = np.stack(by_str["bn_features"].map(np.asarray))
    assert a.shape == (3, b.shape[1]) and np.allclose(a, b, atol=1e-6)
