"""Issue 9: which attributes does a trained model *see* in each modality, and which does it *align*
with RGB? Linear probes on the retrieval vectors of a synthetic tree.

For each image modality, every image of the training and of the test identities is embedded alone
(the retrieval vector the evaluation ranks with). A multinomial logistic regression per attribute
(synth_identity's pattern, bag, cap, hair length, lower garment shape and both garment colours)
is fitted on training identities and scored on test identities, two ways:

- `own`: fitted on the modality's own training embeddings. Low means the encoder does not
  perceive the attribute on people it has not seen: a perception (generalisation) failure.
- `from_vis`: fitted on the RGB training embeddings, scored on the modality's test embeddings.
  High `own` with low `from_vis` means the modality sees the attribute but puts it somewhere RGB
  does not: an alignment failure.

Scores are balanced accuracies (mean per-class recall: 1/classes is chance whatever the class
frequencies).

    .venv/bin/python bench/attribute_probe.py CHECKPOINT DATA [--seed 0]

DATA must be the tree `reid data synth DATA --seed SEED` wrote, which the checkpoint trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reid_core.config.load import validate_tree  # noqa: E402
from reid_core.data.synth_identity import Identity, identity  # noqa: E402
from reid_core.evaluation.evaluate import ProtocolEncoder  # noqa: E402
from reid_core.modality import Modality  # noqa: E402
from reid_core.model import build_model  # noqa: E402
from reid_core.training.checkpoint import load_checkpoint, load_model_state  # noqa: E402
from reid_core.training.setup import DataBundle  # noqa: E402

MODALITIES = (Modality.VIS, Modality.NIR, Modality.SK, Modality.CP)
ATTRIBUTES = {
    "pattern": lambda p: p.pattern,
    "bag": lambda p: p.bag,
    "cap": lambda p: p.hat,
    "long_hair": lambda p: p.long_hair,
    "lower_type": lambda p: p.lower_type,
    "upper_colour": lambda p: p.colours[0],
    "lower_colour": lambda p: p.colours[1],
}


def _label_map(people: list[Identity], name: str) -> dict[object, int]:
    values = {ATTRIBUTES[name](p) for p in people}
    return {v: i for i, v in enumerate(sorted(values, key=str))}


def _labels(people: list[Identity], name: str, classes: dict[object, int]) -> torch.Tensor:
    return torch.tensor([classes[ATTRIBUTES[name](p)] for p in people])


def fit_probe(x: torch.Tensor, y: torch.Tensor, classes: int, steps: int = 300) -> torch.nn.Linear:
    """A multinomial logistic regression, class-balanced, lightly weight-decayed, full batch."""
    torch.manual_seed(0)
    probe = torch.nn.Linear(x.shape[1], classes)
    counts = torch.bincount(y, minlength=classes).clamp_min(1).float()
    weight = counts.sum() / (classes * counts)
    opt = torch.optim.LBFGS(probe.parameters(), lr=0.5, max_iter=steps)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(probe(x), y, weight=weight)
        loss = loss + 1e-3 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return probe


def balanced_accuracy(pred: torch.Tensor, y: torch.Tensor, classes: int) -> float:
    recalls = [(pred[y == c] == c).float().mean() for c in range(classes) if bool((y == c).any())]
    return float(torch.stack(recalls).mean())


def probe(checkpoint: Path, root: Path, seed: int) -> dict[str, dict[str, dict[str, float]]]:
    state = load_checkpoint(checkpoint)
    cfg = validate_tree(state["config"], f"{checkpoint} config")
    data = DataBundle.load(root, cfg)
    model = build_model(cfg, len(state["train_pids"]), load_pretrained=False)
    load_model_state(model, state["model"], str(checkpoint))
    model.eval()
    device = torch.device("cpu")
    enc = ProtocolEncoder(model, data.index.root, cfg.data, cfg.eval, device)
    emb: dict[tuple[Modality, str], tuple[torch.Tensor, list[Identity]]] = {}
    with torch.no_grad():
        for m in MODALITIES:
            for split in ("train", "test"):
                pids = [p for p in data.splits.of(split) if data.index.has(m, p)]
                paths = [(p, path) for p in pids for path in data.index.paths(m, p)]
                feats = enc.encode_items(m, [path for _, path in paths])
                vectors = enc.fuse({m: feats}, (m,))
                emb[(m, split)] = (vectors, [identity(seed, p) for p, _ in paths])
    everyone = [p for _, people in emb.values() for p in people]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in ATTRIBUTES:
        classes = _label_map(everyone, name)
        n = len(classes)
        x_vis, people_vis = emb[(Modality.VIS, "train")]
        from_vis = fit_probe(x_vis, _labels(people_vis, name, classes), n)
        row: dict[str, dict[str, float]] = {}
        for m in MODALITIES:
            x_train, people_train = emb[(m, "train")]
            own = fit_probe(x_train, _labels(people_train, name, classes), n)
            x_test, people_test = emb[(m, "test")]
            y_test = _labels(people_test, name, classes)
            with torch.no_grad():
                row[m.value] = {
                    "own": round(balanced_accuracy(own(x_test).argmax(1), y_test, n), 3),
                    "from_vis": round(balanced_accuracy(from_vis(x_test).argmax(1), y_test, n), 3),
                }
        row["chance"] = {"own": round(1 / n, 3), "from_vis": round(1 / n, 3)}
        out[name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a run's checkpoints/best.pt or last.pt")
    parser.add_argument("data", type=Path, help="the synthetic tree it trained on")
    parser.add_argument("--seed", type=int, default=0, help="the seed the tree was written with")
    args = parser.parse_args()
    result = probe(args.checkpoint, args.data, args.seed)
    mods = [m.value for m in MODALITIES]
    print(f"{'attribute':<14}" + "".join(f"{m + ' own/vis':>16}" for m in mods) + f"{'chance':>8}")
    for name, row in result.items():
        cells = "".join(f"{row[m]['own']:>9.2f}/{row[m]['from_vis']:.2f}" for m in mods)
        print(f"{name:<14}{cells}{row['chance']['own']:>8.2f}")
    print("PROBE " + json.dumps({"checkpoint": str(args.checkpoint), "balanced_accuracy": result}))


if __name__ == "__main__":
    main()
