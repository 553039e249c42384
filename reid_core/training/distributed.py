"""Data-parallel training under torchrun: one process per device, one global P x K batch.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; a process started without them (or with
WORLD_SIZE=1) is a single process and nothing here changes what it does. Under torchrun:

- every rank draws the same global batch from the seeded sampler and loads its own share of
  the P identities (`PKBatchSampler(rank=, world_size=)`);
- each rank encodes its share, the features of every rank are gathered, and every rank computes
  the objective over the whole global batch, so the in-batch SDM softmax and the BNNeck
  statistics see all P x K anchors exactly as in a single process (`DistributedObjective`);
- DistributedDataParallel averages the gradients; the reported losses are averaged over ranks;
- rank 0 alone logs, writes checkpoints and evaluates; stop requests, non-finite losses and
  evaluation results are shared so that every rank stops (or continues) at the same step.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from reid_core.data.batch import ModalBatch
from reid_core.errors import ReidError
from reid_core.losses.objective import Encoded
from reid_core.modality import ALL_MODALITIES, Modality

if TYPE_CHECKING:
    from reid_core.model import OmniReID

T = TypeVar("T")

# Rank 0 evaluates alone while the other ranks wait in a broadcast: the collective timeout has to
# outlast an evaluation. A rank that dies does not leave the others waiting this long: torchrun
# stops every worker as soon as one of them fails.
TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: `world_size` processes, this one is `rank` (`local_rank` on
    its machine). The methods are collectives under torchrun and plain identities otherwise,
    so the engine calls them unconditionally."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, base: torch.device) -> torch.device:
        """`cuda:LOCAL_RANK` for a CUDA run under torchrun, else `base`."""
        if self.enabled and base.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return base

    def all_true(self, flag: bool) -> bool:
        """Whether `flag` holds on every rank (a CPU-device sync point under torchrun)."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)], device=_comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def first_step(self, step: int | None) -> int | None:
        """The smallest of every rank's `step` (None: none had one), the same on every rank."""
        if not self.enabled:
            return step
        t = torch.tensor([2**62 if step is None else step], device=_comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        value = int(t.item())
        return None if value == 2**62 else value

    def mean_logs(self, logs: dict[str, float], summed: Sequence[str] = ()) -> dict[str, float]:
        """Step logs averaged over ranks (`summed` keys added up); every rank has the same keys
        because every rank computes the objective of the same global batch."""
        if not self.enabled:
            return logs
        keys = sorted(logs)
        t = torch.tensor([logs[k] for k in keys], dtype=torch.float64, device=_comm_device())
        dist.all_reduce(t)
        return {
            k: v if k in summed else v / self.world_size
            for k, v in zip(keys, t.tolist(), strict=True)
        }

    def broadcast(self, obj: T) -> T:
        """Rank 0's `obj` on every rank (pickled)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's `obj`, in rank order (pickled)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def sync_stop(self, reason: str | None) -> str | None:
        """A stop reason on every rank when any rank asked to stop (rank 0's reason when it
        has one), else None: all ranks leave the loop at the same step."""
        if not self.enabled:
            return reason
        if self.all_true(reason is None):
            return None
        shared = self.broadcast(reason)
        return shared or reason or "stop requested on another rank"


SINGLE = DistContext()


def _comm_device() -> torch.device:
    """Where small control tensors live: NCCL only moves CUDA tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def launched() -> DistContext:
    """This process's place in a torchrun launch, from its environment (no communication)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    rank = int(os.environ["RANK"])
    return DistContext(world, rank, int(os.environ.get("LOCAL_RANK", rank)))


def current() -> DistContext:
    """The initialised process group's context, else what the environment says."""
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
        return DistContext(world, rank, int(os.environ.get("LOCAL_RANK", rank)))
    return launched()


def init_from_env(device: torch.device) -> DistContext:
    """Join the torchrun process group (gloo on CPU, NCCL on CUDA) once; a no-op otherwise."""
    ctx = current()
    if not ctx.enabled or dist.is_initialized():
        return ctx
    cuda = device.type == "cuda"
    if cuda:
        if ctx.local_rank >= torch.cuda.device_count():
            raise ReidError(
                f"LOCAL_RANK {ctx.local_rank} but {torch.cuda.device_count()} CUDA device(s) "
                "visible: start at most one process per GPU (torchrun --nproc-per-node)"
            )
        torch.cuda.set_device(ctx.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return current()


def shutdown() -> None:
    """Leave the process group (local: waits for no other rank)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------------ the global batch
class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by `factor`.

    Every rank computes the same global loss L, but only its own rows of the gathered features
    carry a gradient to its encoder. DDP then averages: (1/N) sum_r dL/dF_r dF_r/dtheta, N times
    too small; scaling each rank's own rows by N restores the single-process gradient without
    a collective in the backward pass (which could deadlock when ranks differ in which
    modalities they hold)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.factor, None


def _gather_rows(x: torch.Tensor, sizes: Sequence[int]) -> list[torch.Tensor]:
    """Every rank's `x` (`sizes[r]` rows each, the other dims equal), in rank order, detached."""
    pad = max(sizes) - x.shape[0]
    padded = torch.cat([x.detach(), x.new_zeros((pad, *x.shape[1:]))]).contiguous()
    out = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(out, padded)
    return [o[:n] for o, n in zip(out, sizes, strict=True)]


def gather_batch(batch: ModalBatch, ctx: DistContext) -> tuple[ModalBatch, list[torch.Tensor]]:
    """The global batch's mask, pids and labels (no inputs: the images stay on their ranks),
    and each rank's mask, in rank order."""
    n = torch.tensor([batch.size], device=batch.mask.device)
    sizes = [int(s) for s in _gather_rows(n, [1] * ctx.world_size)]
    # one int64 table per rank: [label, pid, mask columns...]
    meta = torch.cat([batch.labels[:, None], batch.pids[:, None], batch.mask.long()], dim=1)
    tables = _gather_rows(meta, sizes)
    masks = [t[:, 2:].bool() for t in tables]
    table = torch.cat(tables)
    mask = table[:, 2:].bool()
    # the global mask on the host, read once per step: the objective plans from it
    whole = ModalBatch(
        inputs={}, mask=mask, pids=table[:, 1], labels=table[:, 0],
        host=mask.cpu().numpy(), validate=False,
    )  # fmt: skip
    return whole, masks


def gather_features(
    local: dict[Modality, torch.Tensor], masks: list[torch.Tensor], ctx: DistContext
) -> dict[Modality, torch.Tensor]:
    """Per-modality features of the global batch, packed in global sample order like a single
    process's `model.encode`; this rank's rows keep their gradient (scaled by the world size)."""
    own = [local[m] for m in ALL_MODALITIES if m in local]
    dtype = own[0].dtype  # every rank holds RGB anchors, so `own` is never empty
    flat = torch.cat([x.float() for x in own])  # fp32 on the wire: bf16/fp16 round-trip exactly
    counts = [[int(mask[:, m.column].sum()) for m in ALL_MODALITIES] for mask in masks]
    if flat.shape[0] != sum(counts[ctx.rank]):
        raise RuntimeError("encoded features do not match the batch's modality mask")
    ranks = _gather_rows(flat, [sum(c) for c in counts])
    ranks[ctx.rank] = _ScaleGrad.apply(flat, float(ctx.world_size))
    pieces: dict[Modality, list[torch.Tensor]] = {m: [] for m in ALL_MODALITIES}
    for rows, per_modality in zip(ranks, counts, strict=True):
        for m, part in zip(ALL_MODALITIES, rows.split(per_modality), strict=True):
            pieces[m].append(part)
    return {m: torch.cat(p).to(dtype) for m, p in pieces.items() if sum(len(x) for x in p)}


class _GlobalLoss(nn.Module):
    """DDP's unit of work: this rank's share in, the global batch's loss parts out. The objective
    encodes this rank's share (`objective.encode`), the features of every rank are gathered, and
    the objective's `loss` runs on the global batch."""

    def __init__(self, model: OmniReID, objective: Any, ctx: DistContext) -> None:
        super().__init__()
        self.model: OmniReID = model
        self.objective, self.ctx = objective, ctx

    def forward(self, batch: ModalBatch, epoch: int) -> Any:
        whole, masks = gather_batch(batch, self.ctx)
        local = self.objective.encode(self.model, batch.inputs)
        features = gather_features(local.features, masks, self.ctx)
        # an anchor pass holds the gallery images' rows: gathered like a gallery-only batch
        gallery = self.objective.gallery
        only = [torch.zeros_like(m) for m in masks]
        for keep, mask in zip(only, masks, strict=True):
            keep[:, gallery.column] = mask[:, gallery.column]
        anchors = {
            name: gather_features({gallery: feats}, only, self.ctx)[gallery]
            for name, feats in local.anchors.items()
        }
        return self.objective.loss(self.model, whole, Encoded(features, anchors), epoch)


class DistributedObjective:
    """The engine's objective under torchrun: `objective(model, batch, epoch)` evaluated on the
    global batch through DistributedDataParallel (gradients averaged in its backward)."""

    def __init__(self, model: OmniReID, objective: Any, ctx: DistContext) -> None:
        self.model = model
        # device_ids=None: the engine moves each batch itself (DDP's own move does not know
        # ModalBatch); that is the documented form for single-device modules too.
        # find_unused_parameters: each rank encodes only the modalities its share holds, so which
        # parameters get a gradient differs between ranks and steps. It costs a graph traversal
        # per step, and DDP warns once per process when a step happens to use all of them.
        self.ddp: nn.Module = nn.parallel.DistributedDataParallel(
            _GlobalLoss(model, objective, ctx), find_unused_parameters=True
        )

    def __call__(self, model: nn.Module, batch: ModalBatch, epoch: int) -> Any:
        if model is not self.model:
            raise RuntimeError("DistributedObjective was built for another model")
        return self.ddp(batch, epoch)
