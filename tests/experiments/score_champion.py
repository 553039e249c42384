"""Run in a fresh process: load a registered model through MLflow, embed the test split of a
dataset with its `predict`, and print the challenge score as JSON (tests compare it with the
score the training run logged)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def protocol_frame(root: Path, protocol) -> pd.DataFrame:
    """Gallery rows (`g{i}`, vis alone) and one query per (set, query) with its items."""
    rows = [
        {"query_id": f"g{i}", "modality": "vis", "path": str(root / p)}
        for i, (_, p) in enumerate(protocol.gallery)
    ]
    for qs in protocol.sets:
        for n, q in enumerate(qs.queries):
            for item in q.items:
                kind = "text" if item.modality.value == "text" else "path"
                value = item.value if kind == "text" else str(root / item.value)
                rows.append(
                    {"query_id": f"{qs.key}:{n}", "modality": item.modality.value, kind: value}
                )
    return pd.DataFrame(rows)


def main(model_uri: str, data_root: str) -> None:
    import mlflow

    from reid_core.config import validate_tree
    from reid_core.config.load import file_dict
    from reid_core.evaluation.metrics import retrieval_metrics_from_features, summarize
    from reid_core.training.setup import DataBundle

    model = mlflow.pyfunc.load_model(model_uri)
    local = Path(mlflow.artifacts.download_artifacts(model_uri))
    cfg = validate_tree(file_dict(local / "data" / "omnireid" / "config.yaml"))
    data = DataBundle.load(Path(data_root), cfg)
    protocol = data.test
    out = model.predict(protocol_frame(data.index.root, protocol))
    feats = dict(
        zip(
            out["query_id"],
            (np.asarray(v, dtype=np.float32) for v in out["bn_features"]),
            strict=True,
        )
    )
    import torch

    g = torch.from_numpy(np.stack([feats[f"g{i}"] for i in range(len(protocol.gallery))]))
    g_ids = torch.tensor([pid for pid, _ in protocol.gallery])
    per_set = {}
    for qs in protocol.sets:
        q = torch.from_numpy(np.stack([feats[f"{qs.key}:{n}"] for n in range(len(qs.queries))]))
        q_ids = torch.tensor([x.pid for x in qs.queries])
        per_set[qs.key] = retrieval_metrics_from_features(q, g, q_ids, g_ids, k=100)
    summary = summarize(per_set, {qs.key: qs.size for qs in protocol.sets})
    print(json.dumps({"score": summary["score"], "protocol": protocol.name}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
