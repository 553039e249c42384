"""How long `build_index` takes on an ORBench-size tree (target: "indexes in seconds").

Generates, in a temporary folder, ~45,000 RGB and ~62,000 other images (the same tiny JPEG bytes
in every file) over 1,000 identities, with `train_annos.json` captions and an evaluation file,
then times a cold build (no cache), a build that writes the disk cache, a memo hit, a warm
build from the disk cache in this process and in a fresh process.

    .venv/bin/python bench/index_bench.py [--identities 1000] [--scale 1.0] [--keep]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PER_IDENTITY = {"vis": 45, "nir": 21, "cp": 21, "sk": 20}  # ORBench: ~45k RGB, ~62k others
QUERY_SETS = ("NIR", "CP", "SK", "TEXT")


def tiny_jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 16), color=(120, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


def generate(root: Path, identities: int, scale: float) -> dict[str, int]:
    """Write the tree; returns images per modality."""
    blob = tiny_jpeg()
    counts = {m: max(1, round(n * scale)) for m, n in PER_IDENTITY.items()}
    annos, first = [], {}
    test_from = identities - identities // 5
    for pid in range(1, identities + 1):
        for m, n in counts.items():
            folder = root / m / f"{pid:04d}"
            folder.mkdir(parents=True)
            for i in range(n):
                name = f"{pid:04d}_c{i % 6 + 1}_{i:04d}.jpg"
                (folder / name).write_bytes(blob)
                first.setdefault((m, pid), f"{m}/{pid:04d}/{name}")
                if m == "vis":
                    split = "test" if pid > test_from else "train"
                    caption = f"person {pid} in picture {i}, dark coat, grey trousers, backpack"
                    rel = f"vis/{pid:04d}/{name}"
                    annos.append({"id": pid, "file_path": rel, "caption": caption, "split": split})
    (root / "train_annos.json").write_text(json.dumps(annos), encoding="utf-8")
    write_eval_file(root, range(test_from + 1, identities + 1), counts["vis"], first)
    return {m: n * identities for m, n in counts.items()}


def write_eval_file(root: Path, pids: range, n_vis: int, first: dict) -> None:
    """All 15 unordered sets, one query per test identity each, gallery = their RGB images."""
    data: dict[str, list] = {"RGB_GALLERY": []}
    for pid in pids:
        data["RGB_GALLERY"] += [
            [pid, f"vis/{pid:04d}/{pid:04d}_c{i % 6 + 1}_{i:04d}.jpg"] for i in range(n_vis)
        ]
    for size in range(1, 5):
        for names in combinations(QUERY_SETS, size):
            data["+".join(names)] = [
                [
                    pid,
                    *(
                        f"caption of {pid}" if n == "TEXT" else first[(n.lower(), pid)]
                        for n in names
                    ),
                ]
                for pid in pids
            ]
    (root / "test_gallery_and_queries.json").write_text(json.dumps(data), encoding="utf-8")


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


CHILD = """
import sys, time
sys.path.insert(0, {repo!r})
start = time.perf_counter()
from reid_core.data.dataset_index import build_index
idx = build_index({root!r})
print(time.perf_counter() - start, len(idx.captions))
"""


def fresh_process(root: Path, env: dict[str, str]) -> float:
    code = CHILD.format(repo=str(REPO), root=str(root))
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return float(out.stdout.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--scale", type=float, default=1.0, help="images per identity multiplier")
    parser.add_argument("--keep", action="store_true", help="keep the generated tree")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="omnireid-index-bench-"))
    os.environ["OMNIREID_CACHE"] = str(work / "cache")
    from reid_core.data import dataset_index as index_mod

    try:
        gen_s, counts = timed(lambda: generate(work / "data", args.identities, args.scale))
        root = work / "data"
        print(f"tree: {args.identities} identities, images {counts}, written in {gen_s:.1f}s")
        cold, idx = timed(lambda: index_mod.build_index(root, cache=False), repeat=3)
        sig, _ = timed(lambda: index_mod._signature(root.resolve()), repeat=3)
        store, _ = timed(lambda: index_mod.build_index(root))
        memo, _ = timed(lambda: index_mod.build_index(root), repeat=3)

        def warm_disk():
            index_mod.clear_index_memo()
            return index_mod.build_index(root)

        disk, warm = timed(warm_disk, repeat=3)
        assert warm == idx, "disk cache returned a different index"
        child = fresh_process(root, dict(os.environ))
        sets = len(idx.eval_protocol.sets) if idx.eval_protocol else 0
        print(f"index: {sum(counts.values())} images, {len(idx.captions)} captions, {sets} sets")
        print(f"cold build (cache=False, best of 3)    {cold:7.3f} s")
        print(f"build + write disk cache              {store:7.3f} s")
        print(f"signature only (best of 3)            {sig:7.3f} s")
        print(f"memo hit (best of 3)                  {memo:7.3f} s")
        print(f"warm from disk cache (best of 3)      {disk:7.3f} s")
        print(f"warm from disk cache, fresh process   {child:7.3f} s (incl. imports)")

        from figures import command, figure, script_args

        images = sum(counts.values())
        cmd = command(__file__, *script_args())
        figure(
            f"data index cold build ({images} images, {args.identities} ids)",
            cold, "s", "< 10 (in seconds)", cold < 10, cmd,
        )  # fmt: skip
        figure("data index warm (disk cache) / cold build", disk / cold, "ratio", "-", None, cmd)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
