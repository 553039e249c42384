"""Build an ORBench-format tree from a `reid data synth` tree (issue 9's ORBench target).

ORBench ships `train_annos.json` (captions of the training identities' RGB images, entries with
`id`, `file_path`, `caption`, `split`) and `test_gallery_and_queries.json` (an RGB gallery and
query sets whose names list their modalities in order, `TEXT+NIR+CP`). This script hard-links
the synth tree's images (copies across devices), keeps the captions of the non-test identities
in `train_annos.json`, and writes the 32 ordered sets (`ordered32`) over a seeded share of test
identities, the caption items inline as ORBench does. Identities and images stay the synth ones.

    .venv/bin/python bench/orbench_tree.py /tmp/synth0 /tmp/orbench0 [--test-share 0.3] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reid_core.data.dataset_index import ORBENCH_CAPTIONS, build_index  # noqa: E402
from reid_core.data.evalfile import EVAL_FILE, GALLERY_KEY, set_name  # noqa: E402
from reid_core.data.splits import generate_protocol  # noqa: E402
from reid_core.modality import IMAGE_MODALITIES, Modality  # noqa: E402


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def build(src: Path, out: Path, test_share: float, seed: int, per_identity: int) -> dict:
    """Write the ORBench-format tree `out` from the synth tree `src`; returns a summary."""
    index = build_index(src)
    pids = index.pids(Modality.VIS)
    test = sorted(random.Random(seed).sample(pids, round(len(pids) * test_share)))
    held = set(test)
    for m in IMAGE_MODALITIES:
        for pid in index.pids(m):
            for rel in index.paths(m, pid):
                _link(src / rel, out / rel)
    annos = [
        {"id": pid, "file_path": rel, "caption": cap, "split": "train"}
        for pid in pids
        if pid not in held
        for rel, cap in index.captions_of(pid)
    ]
    (out / ORBENCH_CAPTIONS).write_text(json.dumps(annos, indent=1) + "\n", encoding="utf-8")
    protocol = generate_protocol(index, test, "ordered32", per_identity, seed)
    data: dict[str, list] = {GALLERY_KEY: [list(row) for row in protocol.gallery]}
    for qs in protocol.sets:
        data[set_name(qs.modalities)] = [[q.pid, *(i.value for i in q.items)] for q in qs.queries]
    (out / EVAL_FILE).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return {
        "out": str(out),
        "train_identities": len(pids) - len(test),
        "test_identities": len(test),
        "sets": len(protocol.sets),
        "gallery": len(protocol.gallery),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--test-share", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries-per-identity", type=int, default=2)
    args = ap.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"error: {args.out} is not empty")
    summary = build(args.src, args.out, args.test_share, args.seed, args.queries_per_identity)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
