"""Issue 9's hypothesis probe: train a preset with overrides, print each epoch's per-view SDM and
per-modality ID loss, then the test and trainval (36 training identities) single-set mAPs.

    .venv/bin/python bench/modality_probe.py NAME DATA PRESET [dotted.key=value ...]
    .venv/bin/python bench/modality_probe.py conv /tmp/synth0 cpu-tiny train.epochs=8

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
from reid_core.evaluation.runner import evaluate_protocol  # noqa: E402
from reid_core.training.callbacks import Callback  # noqa: E402
from reid_core.training.setup import DataBundle, build_trainer  # noqa: E402

KEYS = ("sdm/nir", "sdm/cp", "sdm/sk", "sdm/text", "sdm/nir_sk", "sdm/nir_cp_sk_text")
KEYS += ("ce/vis", "ce/nir", "ce/cp", "ce/sk", "ce/text")


class _Lines(Callback):
    def __init__(self, name: str) -> None:
        self.name = name

    def on_epoch_end(self, trainer, epoch, logs):
        views = " ".join(f"{k}={logs[k]:.2f}" for k in KEYS if k in logs)
        print(f"[{self.name}] ep{epoch + 1} loss={logs['loss']:.3f} {views}", flush=True)


def main() -> None:
    name, root, preset, *overrides = sys.argv[1:]
    cfg = load_config(preset=preset, overrides=overrides)
    data = DataBundle.load(Path(root), cfg)
    trainer = build_trainer(cfg, data, [_Lines(name)], load_pretrained=False)
    trainer.evaluate_fn = None  # no val during the probe: the numbers below are the end state
    trainval = generate_protocol(data.index, data.splits.train[:36], "unordered15", 2, 123)
    t0 = time.time()
    trainer.fit()
    seconds = time.time() - t0

    def known(p):
        sets = [q for q in p.sets if all(m in cfg.data.modalities for m in q.modalities)]
        return dataclasses.replace(p, sets=tuple(sets))

    res = {}
    for split, proto in (("test", known(data.test)), ("trainval", known(trainval))):
        m = evaluate_protocol(trainer.model, data.index.root, proto, cfg.data, cfg.eval,
                              trainer.device, split)  # fmt: skip
        res[split] = {k: round(v["mAP"], 3) for k, v in m["sets"].items() if k.count("_") < 1}
        res[split] |= {k: round(m["sets"][k]["mAP"], 3) for k in ("nir_sk",) if k in m["sets"]}
        quad = m["sets"].get("nir_cp_sk_text")
        if quad is not None:
            res[split]["quad_mAP100"] = round(quad["mAP100"], 3)
        res[split] |= {k: round(v, 3) for k, v in m.get("summary", {}).items() if k[:2] == "mm"}
        res[split]["score"] = round(m["score"], 3)
    print(f"RESULT {name} train_s={seconds:.0f} " + json.dumps(res), flush=True)
    cmd = command(__file__, name, root, preset, *overrides)
    for split in ("test", "trainval"):
        for mod in ("nir", "sk"):
            value = res[split].get(mod)
            figure(f"probe {name} {split} {mod} mAP", value, "mAP", "compare runs", None, cmd)


if __name__ == "__main__":
    main()
