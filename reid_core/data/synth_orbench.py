"""The ORBench layout of a synthesized tree (`reid data synth --layout orbench`).

ORBench ships `train_annos.json` (captions of the training identities' RGB images, entries with
`id`, `file_path`, `caption`, `split`) and `test_gallery_and_queries.json` (an RGB gallery and
query sets whose names list their modalities in order, `TEXT+NIR+CP`, caption items inline).
This turns a tree `reid data synth` wrote into that layout in place: the seed's
`text_annos.json` becomes `train_annos.json` without a seeded share of test identities, which
get the 32 ordered query sets (`ordered32`). Images and identities stay as synthesized, so the
file-protocol path (evaluation file, ordered sets, inline captions) runs end to end on any
machine.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from reid_core.data.captions import ORBENCH_CAPTIONS, SEED_CAPTIONS
from reid_core.data.dataset_index import build_index
from reid_core.data.evalfile import EVAL_FILE, GALLERY_KEY, set_name
from reid_core.data.splits import generate_protocol
from reid_core.fileio import atomic_path
from reid_core.modality import Modality


def to_orbench(root: Path, test_share: float, seed: int, per_identity: int) -> dict[str, Any]:
    """Rewrite the annotations of the synthesized tree `root` in the ORBench layout; returns a
    summary (identities per split, query sets, gallery size)."""
    index = build_index(root, cache=False)
    pids = index.pids(Modality.VIS)
    test = sorted(random.Random(seed).sample(pids, round(len(pids) * test_share)))
    held = set(test)
    annos = [
        {"id": pid, "file_path": rel, "caption": cap, "split": "train"}
        for pid in pids
        if pid not in held
        for rel, cap in index.captions_of(pid)
    ]
    protocol = generate_protocol(index, test, "ordered32", per_identity, seed)
    data: dict[str, list] = {GALLERY_KEY: [list(row) for row in protocol.gallery]}
    for qs in protocol.sets:
        data[set_name(qs.modalities)] = [[q.pid, *(i.value for i in q.items)] for q in qs.queries]
    for name, obj in ((ORBENCH_CAPTIONS, annos), (EVAL_FILE, data)):
        with atomic_path(Path(root) / name) as tmp:
            tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    (Path(root) / SEED_CAPTIONS).unlink(missing_ok=True)
    return {
        "layout": "orbench",
        "train_identities": len(pids) - len(test),
        "test_identities": len(test),
        "query_sets": len(protocol.sets),
        "gallery": len(protocol.gallery),
    }
