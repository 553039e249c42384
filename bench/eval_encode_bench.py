"""Evaluation: each query item encoded once (ProtocolEncoder) vs naive per-set encoding.

Same model, same protocol, same process: the naive side encodes, for every query set, every item
of every one of its modalities again (an item shared by 8 of the 15 unordered sets is encoded 8
times), then fuses exactly like the real path; the results must agree. Prints the encoder calls
(forward passes of one modality's tower over one batch) and items encoded by each side, their
wall times (best of `--repeats`, interleaved) and the ratios.

    .venv/bin/python bench/eval_encode_bench.py [--preset cpu-tiny] [--identities 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from reid_core.config import load_config
from reid_core.data.synth import synthesize
from reid_core.evaluation.evaluate import ProtocolEncoder
from reid_core.model import build_model
from reid_core.training.setup import DataBundle


class Counting:
    """Wraps `model.encode`: counts calls (one modality, one batch each here) and items."""

    def __init__(self, model) -> None:
        self.model, self.inner = model, model.encode
        self.calls = self.items = 0
        model.encode = self

    def __call__(self, inputs, *args, **kwargs):
        self.calls += len(inputs)
        self.items += sum(int(x.shape[0]) for x in inputs.values())
        return self.inner(inputs, *args, **kwargs)

    def reset(self) -> None:
        self.calls = self.items = 0


def naive_queries(enc: ProtocolEncoder, protocol) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per set: encode that set's items of each modality (no sharing across sets), then fuse."""
    out = []
    for qs in protocol.sets:
        ids = torch.tensor([q.pid for q in qs.queries], dtype=torch.long)
        feats = {
            m: enc.encode_items(m, [q.items[pos].value for q in qs.queries])
            for pos, m in enumerate(qs.modalities)
        }
        out.append((enc.fuse(feats, qs.modalities), ids))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-tiny")
    parser.add_argument("--identities", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = load_config(preset=args.preset, overrides=["data.num_workers=0"])
    with tempfile.TemporaryDirectory(prefix="eval-encode-bench-") as tmp:
        root = Path(tmp) / "data"
        synthesize(root, identities=args.identities, seed=0, size=(128, 64))
        data = DataBundle.load(root, cfg)
        protocol = data.test
        model = build_model(cfg, len(data.splits.train), load_pretrained=False).eval()
        counter = Counting(model)
        enc = ProtocolEncoder(model, data.index.root, cfg.data, cfg.eval, torch.device("cpu"))
        queries = sum(len(qs.queries) for qs in protocol.sets)
        print(
            f"preset {args.preset}, {args.identities} identities, protocol {protocol.name}: "
            f"{len(protocol.sets)} sets, {queries} queries, threads {torch.get_num_threads()}"
        )
        best = {"once": float("inf"), "naive": float("inf")}
        counts, results = {}, {}
        for rep in range(args.repeats):
            order = ("once", "naive") if rep % 2 == 0 else ("naive", "once")
            for side in order:
                counter.reset()
                fn = enc.queries if side == "once" else lambda p: naive_queries(enc, p)
                start = time.perf_counter()
                results[side] = fn(protocol)
                best[side] = min(best[side], time.perf_counter() - start)
                counts[side] = (counter.calls, counter.items)
    worst = max(
        float((a[0] - b[0]).abs().max())
        for a, b in zip(results["once"], results["naive"], strict=True)
        if a[0].numel()
    )
    assert worst < 1e-4, f"the two paths disagree by {worst}"
    for side in ("once", "naive"):
        calls, items = counts[side]
        print(f"{side:>6}: {best[side]:7.3f} s best of {args.repeats}, {calls} encoder calls, "
              f"{items} items encoded")  # fmt: skip
    time_ratio = best["naive"] / best["once"]
    call_ratio = counts["naive"][0] / counts["once"][0]
    item_ratio = counts["naive"][1] / counts["once"][1]
    print(f"naive / once: time {time_ratio:.2f}x, calls {call_ratio:.2f}x, items "
          f"{item_ratio:.2f}x; embeddings agree to {worst:.1e}")  # fmt: skip

    from figures import command, figure

    cmd = command(__file__, *sys.argv[1:])
    figure(
        f"evaluation naive per-set / encode-once, wall time ({args.preset}, {protocol.name})",
        time_ratio, "x", "> 1", time_ratio > 1, cmd,
    )  # fmt: skip
    figure(
        f"evaluation naive per-set / encode-once, encoder calls ({args.preset}, {protocol.name})",
        call_ratio, "x", "> 1", call_ratio > 1, cmd,
    )  # fmt: skip


if __name__ == "__main__":
    main()
