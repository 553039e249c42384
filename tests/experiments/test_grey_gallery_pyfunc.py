"""A saved model with colour dimensions (`model.head.colour_dims`: a grey gallery pass) embeds
through the pyfunc (search, serving) exactly as the evaluation does: the same vectors, grey block
included."""

from __future__ import annotations

import pandas as pd
import torch
from PIL import Image

from experiments.pyfunc import OmniReIDPyfunc, save_model_data
from reid_core.config import load_config
from reid_core.evaluation.evaluate import ProtocolEncoder
from reid_core.modality import Modality
from reid_core.model import build_model


def test_pyfunc_and_evaluation_embed_gallery_and_queries_alike(tmp_path):
    cfg = load_config(preset="micro", overrides=["model.head.colour_dims=8"])
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=3, load_pretrained=False).eval()
    paths = {}
    for i, (m, mode) in enumerate(
        ((Modality.VIS, "RGB"), (Modality.NIR, "L"), (Modality.VIS, "RGB"))
    ):
        path = tmp_path / f"{m.value}{i}.png"
        colour = (40 + 60 * i, 200 - 50 * i, 90) if mode == "RGB" else 120 + 40 * i
        Image.new(mode, (cfg.data.width, cfg.data.height), colour).save(path)
        paths[f"q{i}"] = (m, path)
    loaded = OmniReIDPyfunc.load(save_model_data(model, cfg, tmp_path / "model"))
    frame = pd.DataFrame(
        {
            "query_id": list(paths),
            "modality": [m.value for m, _ in paths.values()],
            "path": [str(p) for _, p in paths.values()],
        }
    )
    out = loaded.predict(frame)
    vectors = torch.tensor(out["bn_features"].tolist())
    assert vectors.shape == (3, model.embed_dim) and model.embed_dim == 2 * 32 - 8

    enc = ProtocolEncoder(model, tmp_path, cfg.data, cfg.eval, torch.device("cpu"))
    vis = [str(paths["q0"][1]), str(paths["q2"][1])]
    gallery = enc.fuse({Modality.VIS: enc.encode_items(Modality.VIS, vis)}, (Modality.VIS,))
    nir = enc.encode_items(Modality.NIR, [str(paths["q1"][1])])
    query = enc.fuse({Modality.NIR: nir}, (Modality.NIR,))
    torch.testing.assert_close(vectors[[0, 2]], gallery, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(vectors[1:2], query, atol=1e-5, rtol=1e-4)
    assert bool(gallery[:, 32:].abs().sum() > 0)  # the grey block is filled
    assert torch.equal(query[:, :32], torch.zeros(1, 32))  # an infrared query: grey block only
