"""The batch every model and loss consumes: modalities packed, presence in a mask.

A missing modality is a masked slot, never a zero tensor: `inputs[m]` holds rows only for the
samples whose `mask[:, m.column]` is true, in ascending sample order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from reid_core.modality import ALL_MODALITIES, Modality


@dataclass
class ModalBatch:
    """`inputs[m]`: images `[N_m, C, H, W]` (float) or text token ids `[N_m, L]` (long);
    `mask`: `[B, len(Modality)]` bool, columns in `Modality` order; `pids`: original identity ids
    `[B]`; `labels`: contiguous training labels `[B]` (-1 outside training)."""

    inputs: dict[Modality, torch.Tensor]
    mask: torch.Tensor
    pids: torch.Tensor
    labels: torch.Tensor
    paths: list[str] = field(default_factory=list)  # anchor path per sample, for logging
    bad: list[str] = field(default_factory=list)  # undecodable paths skipped in this batch
    # the mask on the host: what the step plans with, without reading device memory
    host: np.ndarray | None = field(default=None, repr=False)
    validate: bool = field(default=True, repr=False)
    # images still uint8, with their random-erasing boxes `[N_m, 5]`: `to` finishes them on
    # the device (normalised, erased) for the whole batch at once
    erase: dict[Modality, torch.Tensor] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.host is None and self.mask.device.type == "cpu":
            self.host = self.mask.numpy().copy()
        if self.validate:
            self._validate()

    def host_mask(self) -> np.ndarray:
        """The modality mask as a host array (a device sync only for a batch made on a device
        without one)."""
        if self.host is None:
            self.host = self.mask.cpu().numpy()
        return self.host

    def _validate(self) -> None:
        if self.mask.dtype != torch.bool or self.mask.dim() != 2:
            raise ValueError(f"mask must be a [B, {len(ALL_MODALITIES)}] bool tensor")
        for m, x in self.inputs.items():
            n = int(self.mask[:, m.column].sum())
            if x.shape[0] != n:
                raise ValueError(f"inputs[{m.value}] has {x.shape[0]} rows, mask says {n}")
        if not bool(self.mask.any(dim=1).all()):
            raise ValueError("every sample needs at least one modality")

    @property
    def size(self) -> int:
        return int(self.mask.shape[0])

    def present(self) -> list[Modality]:
        host = self.host_mask()
        return [m for m in ALL_MODALITIES if host[:, m.column].any()]

    def pin_memory(self) -> ModalBatch:
        """Page-locked copies for non-blocking transfers (the DataLoader's pin_memory)."""
        return ModalBatch(
            inputs={m: x.pin_memory() for m, x in self.inputs.items()},
            mask=self.mask.pin_memory(),
            pids=self.pids.pin_memory(),
            labels=self.labels.pin_memory(),
            paths=self.paths,
            bad=self.bad,
            host=self.host_mask(),
            validate=False,
            erase=None
            if self.erase is None
            else {m: e.pin_memory() for m, e in self.erase.items()},
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ModalBatch:
        """The batch on `device`, its uint8 images finished there (validated once, where it was
        made: no check reads the copy)."""
        inputs = {m: x.to(device, non_blocking=non_blocking) for m, x in self.inputs.items()}
        if self.erase is not None:
            from reid_core.data.transforms import finish_batch

            for m, boxes in self.erase.items():
                inputs[m] = finish_batch(inputs[m], boxes.to(device, non_blocking=non_blocking), m)
        return ModalBatch(
            inputs=inputs,
            mask=self.mask.to(device, non_blocking=non_blocking),
            pids=self.pids.to(device, non_blocking=non_blocking),
            labels=self.labels.to(device, non_blocking=non_blocking),
            paths=self.paths,
            host=self.host_mask(),
            validate=False,
        )

    def select(self, modalities: tuple[Modality, ...] | list[Modality]) -> ModalBatch:
        """The same samples restricted to `modalities`; samples left with none are dropped."""
        keep_cols = torch.zeros(len(ALL_MODALITIES), dtype=torch.bool, device=self.mask.device)
        for m in modalities:
            keep_cols[m.column] = True
        mask = self.mask & keep_cols
        rows = mask.any(dim=1)
        inputs = {}
        for m in modalities:
            if m not in self.inputs:
                continue
            present = self.mask[:, m.column]
            kept = rows[present]
            if bool(kept.any()):
                inputs[m] = self.inputs[m][kept]
        return ModalBatch(
            inputs=inputs,
            mask=mask[rows],
            pids=self.pids[rows],
            labels=self.labels[rows],
            paths=[p for p, r in zip(self.paths, rows.tolist(), strict=False) if r],
        )
