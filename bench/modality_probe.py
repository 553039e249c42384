"""Issue 9's hypothesis probe: train a preset with overrides, print each epoch's per-view SDM and
per-modality ID loss, then the test and trainval (36 training identities) single-set mAPs.

    .venv/bin/python bench/modality_probe.py [--every N] NAME DATA PRESET [dotted.key=value ...]
    .venv/bin/python bench/modality_probe.py conv /tmp/synth0 cpu-tiny train.epochs=8

`--every N` also scores the test split every N epochs and prints a CURVE line each time (the
per-modality learning curve; those evaluations draw from the training RNG, so the run is not the
one without them step for step).

The last lines are FIGURE lines (test and trainval mAP of nir and sk); `met` is null: a probe
compares runs, it has no target of its own. Evaluation sets the model lacks are left out.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from figures import command, figure  # noqa: E402

from reid_core.config import load_config  # noqa: E402
from reid_core.data.splits import generate_protocol  # noqa: E402
from reid_core.evaluation.evaluate import evaluate_protocol  # noqa: E402
from reid_core.training.callbacks import Callback  # noqa: E402
from reid_core.training.setup import DataBundle, build_trainer  # noqa: E402

KEYS = ("sdm/nir", "sdm/cp", "sdm/sk", "sdm/text", "sdm/nir_sk", "sdm/nir_cp_sk_text")
KEYS += ("sdm/vis_grey", "sdm/vis_edge")
KEYS += ("ce/vis", "ce/nir", "ce/cp", "ce/sk", "ce/text")


class _Lines(Callback):
    def __init__(self, name: str) -> None:
        self.name = name

    def on_train_start(self, trainer):
        self.start = time.time()
        print(f"[{self.name}] training on {trainer.device}", flush=True)

    def on_epoch_end(self, trainer, epoch, logs):
        views = " ".join(f"{k}={logs[k]:.2f}" for k in KEYS if k in logs)
        seconds = time.time() - self.start
        print(f"[{self.name}] ep{epoch + 1} {seconds:.0f}s loss={logs['loss']:.3f} {views}",
              flush=True)  # fmt: skip


def _figures(metrics: dict) -> dict[str, float]:
    """Single sets, nir_sk, the quadruple's mAP@100, MM1..MM4 and the score, rounded."""
    sets = metrics["sets"]
    out = {k: round(v["mAP"], 3) for k, v in sets.items() if k.count("_") < 1}
    out |= {k: round(sets[k]["mAP"], 3) for k in ("nir_sk",) if k in sets}
    if "nir_cp_sk_text" in sets:
        out["quad_mAP100"] = round(sets["nir_cp_sk_text"]["mAP100"], 3)
    out |= {k: round(v, 3) for k, v in metrics.get("summary", {}).items() if k[:2] == "mm"}
    out["score"] = round(metrics["score"], 3)
    return out


class _Curve(Callback):
    """Scores the test split every `every` epochs and prints a CURVE line."""

    def __init__(self, name: str, every: int, score) -> None:
        self.name, self.every, self.score = name, every, score
        self.start, self.eval_s = time.time(), 0.0

    def on_train_start(self, trainer):
        self.start = time.time()

    def on_epoch_end(self, trainer, epoch, logs):
        if (epoch + 1) % self.every == 0:
            t0 = time.time()
            figures = _figures(self.score(trainer))
            line = {"epoch": epoch + 1, "train_s": round(t0 - self.start - self.eval_s)}
            self.eval_s += time.time() - t0  # the train_s of later lines leaves evaluation out
            print(f"CURVE {self.name} " + json.dumps(line | figures), flush=True)


def main() -> None:
    args = sys.argv[1:]
    every = 0
    if args[:1] == ["--every"]:
        every, args = int(args[1]), args[2:]
    name, root, preset, *overrides = args
    cfg = load_config(preset=preset, overrides=overrides)
    data = DataBundle.load(Path(root), cfg)
    trainval = generate_protocol(data.index, data.splits.train[:36], "unordered15", 2, 123)

    def known(p):
        sets = [q for q in p.sets if all(m in cfg.data.modalities for m in q.modalities)]
        return dataclasses.replace(p, sets=tuple(sets))

    def score(trainer, proto=known(data.test), split="test"):
        return evaluate_protocol(trainer.model, data.index.root, proto, cfg.data, cfg.eval,
                                 trainer.device, split)  # fmt: skip

    callbacks = [_Lines(name)] + ([_Curve(name, every, score)] if every else [])
    trainer = build_trainer(cfg, data, callbacks, load_pretrained=False)
    trainer.evaluate_fn = None  # no val during the probe: the numbers below are the end state
    t0 = time.time()
    trainer.fit()
    seconds = time.time() - t0

    res = {"test": _figures(score(trainer))}
    res["trainval"] = _figures(score(trainer, known(trainval), "trainval"))
    print(f"RESULT {name} train_s={seconds:.0f} " + json.dumps(res), flush=True)
    cmd = command(__file__, name, root, preset, *overrides)
    for split in ("test", "trainval"):
        for mod in ("nir", "sk"):
            value = res[split].get(mod)
            figure(f"probe {name} {split} {mod} mAP", value, "mAP", "compare runs", None, cmd)


if __name__ == "__main__":
    main()
