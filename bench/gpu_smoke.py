"""The one prepared GPU call (a lent device's time is short): everything the throughput work
claims for a GPU, measured in one run, printed as one JSON line (progress on stderr).

- `orbench` (ViT-B/16, 384x128, batch 64 = P16 x K4, bf16 autocast, TF32): the training step of
  the engine (objective, backward, adaptive clipping, fused AdamW) on synthetic tensors, eager and
  through `torch.compile` (`--no-compile` skips it): step time, samples/s, peak memory,
  model-FLOPs utilisation against a bf16 matmul peak measured in this run; one step under
  `torch.cuda.set_sync_debug_mode("error")` reports whether anything in it waits for the host;
- one evaluation pass on a small synthesized tree;
- `cpu-tiny` on the GPU: the epoch time of `reid train` (`--tiny-epochs`), and 4 such runs at
  once on the one GPU against the same 4 one after another (wall times, whole processes).

Needs only the installed package and runs offline (random-init weights: nothing is downloaded).
Without a CUDA device it prints a line saying so and exits 0. A CPU dry run exercises the same
code path:

    .venv/bin/python bench/gpu_smoke.py                                 # on a CUDA machine
    .venv/bin/python bench/gpu_smoke.py --device cpu --preset micro --steps 2 --no-compile \
        --tiny-epochs 0
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CAPTION = "a man in a dark coat with a red bag and grey trousers"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: Any, n: int, runs: int) -> float:
    """Best-of-`runs` FLOP/s of an n^3 bf16 matmul (after one warm-up) on `device`."""
    import torch

    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    torch.mm(a, b)
    sync(device)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def synthetic_batch(model: Any, cfg: Any, num_classes: int, device: Any) -> Any:
    """P identities x K samples, every modality present, realistic captions."""
    import torch

    from reid_core.data.batch import ModalBatch
    from reid_core.model.summary import dummy_inputs, full_mask

    p, k = cfg.data.p, cfg.data.k
    n = p * k
    inputs = dummy_inputs(model, n)
    if "text" in {m.value for m in inputs}:
        text = next(m for m in inputs if m.value == "text")
        inputs[text] = model.tokenize([CAPTION] * n)
    labels = torch.arange(p).repeat_interleave(k) % num_classes
    batch = ModalBatch(inputs=inputs, mask=full_mask(model, n), pids=labels + 1, labels=labels)
    return batch.to(device)


def train_steps(cfg: Any, device: Any, steps: int, warmup: int, compile: bool) -> dict[str, Any]:
    import torch

    from reid_core.losses.objective import ReidObjective
    from reid_core.model import build_model
    from reid_core.model.summary import count_flops
    from reid_core.training.clipping import AdaptiveClipper
    from reid_core.training.compiling import Compiled
    from reid_core.training.setup import build_optimizer

    num_classes = 800  # ORBench has ~800 training identities
    torch.manual_seed(0)
    model = build_model(cfg, num_classes, load_pretrained=False).to(device).train()
    optimizer, _ = build_optimizer(model, cfg.optim)
    objective = ReidObjective.from_config(cfg)
    clip = cfg.optim.clip
    clipper = AdaptiveClipper(clip.quantile, clip.window, 0)  # clipping from the first step
    batch = synthetic_batch(model, cfg, num_classes, device)
    dtype = {"cuda": torch.bfloat16}.get(device.type, torch.bfloat16)

    def step() -> Any:  # the engine's step: no value is read back
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype):
            loss = objective(model, batch, 1).total
        loss.backward()
        clipper(p for g in optimizer.param_groups for p in g["params"])
        optimizer.step()
        return loss.detach()

    flops = count_flops(step)  # the counted step doubles as the first warm-up
    if compile:
        Compiled(model)
        log("compiling (the first steps)...")
    for _ in range(warmup):
        step()
    sync(device)
    syncs = "not checked (CPU)"
    if device.type == "cuda":  # anything in the step that waits for the host raises here
        torch.cuda.set_sync_debug_mode("error")
        try:
            step()
            syncs = "none"
        except RuntimeError as exc:
            syncs = str(exc).strip().splitlines()[0][:200]
        finally:
            torch.cuda.set_sync_debug_mode("default")
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    losses = [float(x) for x in [step() for _ in range(steps)]]  # read after the timed window
    sync(device)
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak_bytes = torch.cuda.max_memory_allocated(device)
    else:  # the process's peak resident set (ru_maxrss is KiB on Linux, bytes on macOS)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_bytes = rss if platform.system() == "Darwin" else rss * 1024
    return {
        "model": model,
        "compiled": compile,
        "host_syncs_in_step": syncs,
        "batch": batch.size,
        "steps": steps,
        "step_ms": 1e3 * seconds / steps,
        "samples_per_s": batch.size * steps / seconds,
        "flops_per_step": flops,
        "achieved_tflops": flops * steps / seconds / 1e12,
        "peak_memory_gib": peak_bytes / 2**30,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "losses_finite": all(x == x and abs(x) != float("inf") for x in losses),
    }


def evaluation_pass(model: Any, cfg: Any, device: Any, identities: int) -> dict[str, Any]:
    """Synthesize a small tree at the preset's image size and score its test split once."""
    from reid_core.data.synth import synthesize
    from reid_core.evaluation.evaluate import evaluate_protocol
    from reid_core.training.setup import DataBundle

    with tempfile.TemporaryDirectory(prefix="omnireid-gpu-smoke-") as tmp:
        root = Path(tmp) / "data"
        synthesize(root, identities=identities, seed=0, size=(cfg.data.height, cfg.data.width))
        data = DataBundle.load(root, cfg)
        start = time.perf_counter()
        result = evaluate_protocol(
            model, data.index.root, data.test, cfg.data, cfg.eval, device, "test"
        )
        sync(device)
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "protocol": result["protocol"],
        "gallery": result["gallery_size"],
        "sets": len(result["sets"]),
        "score": result["score"],
    }


def _tiny(data: Path, out: Path, epochs: int, env: dict[str, str]) -> Any:
    import subprocess

    args = ["train", "--preset", "cpu-tiny", "--data", str(data), "--out", str(out), "--no-track",
            "--set", f"train.epochs={epochs}", "--set", "train.eval_every=1000",
            "--set", "eval.trainval_identities=0"]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "studies.cli", *args], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def tiny_runs(device: Any, epochs: int) -> dict[str, Any]:
    """cpu-tiny on this GPU: epoch time of one run, and 4 runs at once against 4 in sequence
    (the case of `reid study run --gpus 0,0,0,0`: small trials sharing a GPU)."""
    import os

    from reid_core.data.synth import synthesize

    env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(device.index or 0)}
    with tempfile.TemporaryDirectory(prefix="omnireid-gpu-tiny-") as tmp:
        data = Path(tmp) / "data"
        synthesize(data, identities=200, seed=0, size=(64, 32))
        env["OMNIREID_CACHE"] = str(Path(tmp) / "cache")

        def run(n: int, at_once: bool) -> tuple[float, list[Path]]:
            outs = [Path(tmp) / f"run{'p' if at_once else 's'}{i}" for i in range(n)]
            start = time.perf_counter()
            procs = []
            for out in outs:
                procs.append(_tiny(data, out, epochs, env))
                if not at_once:
                    procs[-1].communicate()
            for p in procs:
                _, err = p.communicate()
                if p.returncode:
                    raise RuntimeError(f"cpu-tiny run failed: {err[-1000:]}")
            return time.perf_counter() - start, outs

        _, (first,) = run(1, False)  # builds the image cache, measures the epoch time
        rows = [json.loads(x) for x in (first / "history.jsonl").read_text().splitlines()]
        epoch_s = [r["epoch_time_s"] for r in rows if r.get("kind") == "train"]
        sequence, _ = run(4, False)
        parallel, _ = run(4, True)
    return {
        "epoch_s": epoch_s,
        "four_in_sequence_s": sequence,
        "four_at_once_s": parallel,
        "sharing_speedup": sequence / parallel,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--preset", default="orbench")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--matmul-n", type=int, default=0, help="peak GEMM size (0: 8192 / 512)")
    parser.add_argument("--eval-identities", type=int, default=24)
    parser.add_argument("--set", action="append", default=[], help="extra config override")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled steps")
    parser.add_argument("--tiny-epochs", type=int, default=2, help="cpu-tiny epochs (0: skip)")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(json.dumps({"status": "skipped", "reason": "no CUDA device available"}))
        log("gpu_smoke: no CUDA device here; nothing to measure (pass --device cpu for a dry run)")
        return 0
    device = torch.device(args.device)
    if device.type == "cuda":
        if device.index is None:  # torch.cuda.set_device wants an index
            device = torch.device("cuda", torch.cuda.current_device())
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.set_device(device)

    from reid_core.config import load_config

    overrides = ["data.num_workers=0", "model.clip.pretrained=null", *args.set]
    cfg = load_config(preset=args.preset, overrides=overrides)
    n = args.matmul_n or (8192 if device.type == "cuda" else 512)
    peak = matmul_peak(device, n, runs=10 if device.type == "cuda" else 3)
    log(f"bf16 matmul peak {peak / 1e12:.1f} TFLOP/s ({n}^3, best of runs)")
    train = train_steps(cfg, device, args.steps, args.warmup, compile=False)
    model = train.pop("model")
    log(f"{args.steps} steps: {train['samples_per_s']:.1f} samples/s (eager)")
    evaluation = evaluation_pass(model, cfg, device, args.eval_identities)
    del model
    compiled = None
    if not args.no_compile:
        compiled = train_steps(cfg, device, args.steps, args.warmup + 3, compile=True)
        compiled.pop("model")
        compiled["mfu"] = compiled["achieved_tflops"] * 1e12 / peak
        log(f"{args.steps} steps: {compiled['samples_per_s']:.1f} samples/s (compiled)")
    tiny = tiny_runs(device, args.tiny_epochs) if args.tiny_epochs else None
    report = {
        "status": "ok",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "preset": args.preset,
        "image_size": [cfg.data.height, cfg.data.width],
        "p_k": [cfg.data.p, cfg.data.k],
        "autocast": "bf16",
        "tf32": device.type == "cuda",
        **train,
        "matmul_peak_tflops": peak / 1e12,
        "matmul_n": n,
        "mfu": train["achieved_tflops"] * 1e12 / peak,
        "compiled_step": compiled,
        "eval": evaluation,
        "cpu_tiny": tiny,
        "wall_s": time.perf_counter() - started,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
