"""MER LoRA cost and model-FLOPs utilisation of one training step.

One step = forward of a P x K batch with every modality present (4 image modalities + text), CE on
the logits, backward, AdamW step. For each size and backbone setting the LoRA model and the same
model with the adapters removed (`model.lora.targets=[]`) are stepped alternately (interleaved,
order flipped every repetition) and the medians compared; MFU = counted FLOPs of the step / median
step time / peak, where peak is the best of 5 runs of a 4096^3 fp32 matmul in this process.

    .venv/bin/python bench/lora_bench.py                       # cpu-tiny and ViT-B/16 (~8 min)
    .venv/bin/python bench/lora_bench.py --sizes cpu-tiny --reps 9
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reid_core.config import load_config
from reid_core.modality import Modality
from reid_core.model import OmniReID, build_model
from reid_core.model.summary import count_flops, dummy_inputs, full_mask

SIZES = {  # preset and overrides: ViT-B/16 at 256x128 with batch 8 (P=2 x K=4)
    "cpu-tiny": ("cpu-tiny", []),
    "vit-b16": ("vit-b16", ["data.p=2", "data.k=4"]),
}
TARGETS = {("cpu-tiny", False): 1.10, ("vit-b16", False): 1.10, ("vit-b16", True): 1.20}


@dataclass
class Case:
    size: str
    freeze: bool

    @property
    def label(self) -> str:
        return f"{self.size} {'frozen' if self.freeze else 'trainable'}"


def _model(size: str, freeze: bool, lora: bool) -> tuple[OmniReID, torch.optim.Optimizer]:
    preset, overrides = SIZES[size]
    extra = [f"model.backbone.freeze={str(freeze).lower()}"]
    if not lora:
        extra.append("model.lora.targets=[]")
    cfg = load_config(preset=preset, overrides=[*overrides, *extra])
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=100, load_pretrained=False).train()
    lr = {**cfg.optim.lr.model_dump(), "text": cfg.optim.lr.backbone}
    groups = [{"params": ps, "lr": lr[g]} for g, ps in model.param_groups().items() if ps]
    # fused: one kernel per tensor; the default CPU AdamW loops ~10 ops over each of the 576 small
    # adapter tensors of ViT-B/16 (the engine should pass fused=True on CPU too)
    opt = torch.optim.AdamW(groups, weight_decay=cfg.optim.weight_decay, fused=True)
    return model, opt


def _batch(model: OmniReID, size: str) -> tuple[dict, torch.Tensor, torch.Tensor]:
    preset, overrides = SIZES[size]
    batch = load_config(preset=preset, overrides=overrides).data.batch_size
    torch.manual_seed(1)
    inputs = dummy_inputs(model, batch)
    if Modality.TEXT in inputs:  # a realistic caption (12 tokens), not the whole context
        inputs[Modality.TEXT] = model.tokenize(["a man in a dark coat with a red bag"] * batch)
    return inputs, full_mask(model, batch), torch.randint(0, model.num_classes, (batch,))


def _step(model, opt, inputs, mask, labels) -> None:
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(inputs, mask).logits, labels).backward()
    opt.step()


def _timed(model, opt, batch) -> float:
    start = time.perf_counter()
    _step(model, opt, *batch)
    return time.perf_counter() - start


def peak_flops(runs: int = 5, n: int = 4096) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def measure(case: Case, warmup: int, reps: int) -> dict:
    lora = _model(case.size, case.freeze, True)
    base = _model(case.size, case.freeze, False)
    batch = _batch(lora[0], case.size)
    flops = {
        k: count_flops(lambda m=m: _step(*m, *batch)) for k, m in (("lora", lora), ("base", base))
    }
    for _ in range(warmup):
        _timed(*lora, batch), _timed(*base, batch)
    times: dict[str, list[float]] = {"lora": [], "base": []}
    for rep in range(reps):  # interleaved, order flipped each repetition
        order = (
            (("lora", lora), ("base", base)) if rep % 2 == 0 else (("base", base), ("lora", lora))
        )
        for key, m in order:
            times[key].append(_timed(*m, batch))
    med = {k: statistics.median(v) for k, v in times.items()}
    paired = statistics.median(a / b for a, b in zip(times["lora"], times["base"], strict=True))
    return {
        "case": case,
        "median": med,
        "paired": paired,
        "min_ratio": min(times["lora"]) / min(times["base"]),
        "flops": flops,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="cpu-tiny,vit-b16")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3, help="measured steps per model (ViT-B/16)")
    ap.add_argument("--tiny-reps", type=int, default=15, help="measured steps per model (cpu-tiny)")
    args = ap.parse_args()
    peak = peak_flops()
    print(
        f"threads {torch.get_num_threads()}, fp32 matmul peak {peak / 1e9:.1f} GFLOP/s "
        f"(best of 5, 4096^3)"
    )
    head = (
        f"{'case':<28}{'LoRA s':>9}{'base s':>9}{'ratio':>7}{'paired':>7}{'min':>7}"
        f"{'target':>7}{'GFLOP':>8}{'MFU':>6}"
    )
    print(head)
    results = []
    for size in args.sizes.split(","):
        reps = args.tiny_reps if size == "cpu-tiny" else args.reps
        for freeze in (False, True):
            r = measure(Case(size, freeze), args.warmup, reps)
            ratio = r["median"]["lora"] / r["median"]["base"]
            target = TARGETS.get((size, freeze))
            mfu = r["flops"]["lora"] / r["median"]["lora"] / peak
            results.append((r, ratio, target, mfu))
            print(
                f"{r['case'].label:<28}{r['median']['lora']:>9.3f}"
                f"{r['median']['base']:>9.3f}{ratio:>7.3f}{r['paired']:>7.3f}"
                f"{r['min_ratio']:>7.3f}{'<=' + str(target) if target else '-':>7}"
                f"{r['flops']['lora'] / 1e9:>8.1f}{mfu:>6.0%}",
                flush=True,
            )
    print_figures(results)


def print_figures(results: list) -> None:
    """FIGURE lines: the LoRA ratio of every case, MFU of the default (trainable) cases."""
    import sys

    from figures import command, figure

    cmd = command(__file__, *sys.argv[1:])
    for r, ratio, target, mfu in results:
        case = r["case"]
        figure(
            f"MER LoRA step time / no-LoRA ({case.label})",
            ratio, "ratio", f"<= {target}" if target else "-",
            ratio <= target if target else None, cmd,
        )  # fmt: skip
        if not case.freeze:
            goal = 0.60 if case.size == "vit-b16" else None
            figure(
                f"training-step MFU vs fp32 matmul peak, same process ({case.label})",
                100 * mfu, "%", ">= 60" if goal else "-", mfu >= goal if goal else None, cmd,
            )  # fmt: skip


if __name__ == "__main__":
    main()
