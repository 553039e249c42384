"""Issue 9: how well could a perfect reader of the attributes a modality carries do?

`reid data synth` draws each identity's attributes (reid_core/data/synth_identity.py) and renders
only some of them in each modality: a sketch keeps the torso pattern, the bag, the cap, the hair
length and the lower garment's shape; infrared keeps those, each garment's lightness (and the
near-infrared brightness of green, teal and red dyes) and the grey levels of hair and cap. This
scores the test protocol of a synthetic tree with an oracle that knows those attributes exactly:
a query's similarity to a gallery image is the number of its modality's attributes the two
identities share (ties broken at random, mean over 20 draws). It is the ceiling of a model that
reads attributes and nothing else (the pose and background carry no identity), so it tells
whether a target on a modality is within what the data allows.

    .venv/bin/python bench/attribute_ceiling.py DATA [--seed 0] [--preset cpu-tiny]

DATA must be a tree `reid data synth DATA --seed SEED` wrote (the seed names the attributes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reid_core.config import load_config  # noqa: E402
from reid_core.data.synth_identity import COLOURS, IR_BRIGHT, Identity, identity  # noqa: E402
from reid_core.evaluation.metrics import retrieval_metrics  # noqa: E402
from reid_core.modality import Modality  # noqa: E402
from reid_core.training.setup import DataBundle  # noqa: E402


def _ir_level(ident: Identity, i: int) -> float:
    return (0.3 if ident.dark[i] else 0.76) + IR_BRIGHT.get(COLOURS[ident.colours[i]], 0.0)


def attributes(ident: Identity, modality: Modality) -> dict[str, object]:
    """The attributes `modality` renders (synth_render's styles), by name."""
    shape = {
        "pattern": ident.pattern,
        "bag": ident.bag,
        "hat": ident.hat,
        "long_hair": ident.long_hair,
        "lower_type": ident.lower_type,
    }
    if modality is Modality.SK:
        return shape
    if modality is Modality.NIR:
        grey = {"hair": sum(ident.looks["hair"]), "upper": _ir_level(ident, 0)}
        grey |= {"lower": _ir_level(ident, 1)}
        if ident.hat:
            grey["hat_grey"] = sum(ident.looks["hat"])
        return shape | grey
    raise ValueError(f"no attribute list for {modality.value}")


def ceiling(root: Path, seed: int, preset: str, draws: int = 20) -> dict[str, float]:
    cfg = load_config(preset=preset)
    data = DataBundle.load(root, cfg)
    gallery = np.array([pid for pid, _ in data.test.gallery])
    people = {int(pid): identity(seed, int(pid)) for pid in data.test.pids()}
    rng = np.random.default_rng(0)
    out = {}
    for qs in data.test.sets:
        if not set(qs.modalities) <= {Modality.NIR, Modality.SK}:
            continue
        qids = np.array([q.pid for q in qs.queries])
        seen = {}  # the union of what the query's modalities show
        for pid, ident in people.items():
            seen[pid] = {}
            for m in qs.modalities:
                seen[pid] |= attributes(ident, m)
        sim = np.array(
            [[sum(seen[q][k] == seen[g].get(k) for k in seen[q]) for g in gallery] for q in qids],
            dtype=np.float64,
        )
        maps = [
            retrieval_metrics(sim + rng.uniform(0, 0.5, sim.shape), qids, gallery)["mAP"]
            for _ in range(draws)
        ]
        out[qs.key] = round(float(np.mean(maps)), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a tree `reid data synth` wrote")
    parser.add_argument("--seed", type=int, default=0, help="the seed it was written with")
    parser.add_argument("--preset", default="cpu-tiny", help="the preset whose splits to use")
    args = parser.parse_args()
    result = ceiling(args.data, args.seed, args.preset)
    print("CEILING " + json.dumps({"preset": args.preset, "test_mAP": result}))


if __name__ == "__main__":
    main()
