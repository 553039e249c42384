"""The training objective: CE(ID) + lambda(epoch) * SDM alignment + feature-norm band penalty.

Every part is returned separately; nothing is summed by matching key names.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from reid_core.config.schema import LossConfig
from reid_core.data.batch import ModalBatch
from reid_core.losses.sdm import sdm_loss
from reid_core.modality import ALL_MODALITIES, Modality, set_key

if TYPE_CHECKING:
    from reid_core.model import OmniReID


@dataclass
class LossParts:
    total: torch.Tensor
    ce: torch.Tensor
    sdm: torch.Tensor
    norm: torch.Tensor
    feature_norm: torch.Tensor  # mean L2 norm of the fused (pre-BNNeck) features, detached
    sdm_weight: float
    # per-view diagnostics, detached: `sdm/<view>` the alignment loss of each query view
    # (`sdm/nir`, `sdm/nir_sk`), `ce/<modality>` the ID loss of the gallery and single views
    views: dict[str, torch.Tensor] = field(default_factory=dict)

    def scalars(self) -> dict[str, torch.Tensor]:
        """Detached parts for logging (still tensors: reading them is a device sync)."""
        return {
            "loss": self.total.detach(),
            "ce": self.ce.detach(),
            "sdm": self.sdm.detach(),
            "norm_penalty": self.norm.detach(),
            "feature_norm": self.feature_norm,
            **self.views,
        }


def alignment_weight(epoch: int, weight: float, off_epochs: int, ramp_end_epoch: int) -> float:
    """lambda(epoch), 0-based epochs: 0 before `off_epochs`, a linear ramp that reaches `weight`
    at `ramp_end_epoch`, constant after."""
    if epoch < off_epochs:
        return 0.0
    if epoch >= ramp_end_epoch:
        return weight
    return weight * (epoch - off_epochs + 1) / (ramp_end_epoch - off_epochs + 1)


def norm_band_penalty(features: torch.Tensor, target: float, band: float) -> torch.Tensor:
    """Mean squared distance of each feature norm to the band [target - band, target + band]."""
    norms = features.float().norm(dim=1)
    return F.relu((norms - target).abs() - band).pow(2).mean()


def select_rows(
    features: dict[Modality, torch.Tensor], mask: torch.Tensor, combo: tuple[Modality, ...]
) -> tuple[dict[Modality, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Samples holding every modality of `combo`: their packed features, mask and row selector."""
    cols = [m.column for m in combo]
    rows = mask[:, cols].all(dim=1)
    sub_mask = torch.zeros_like(mask)
    sub_mask[:, cols] = mask[:, cols]
    sub = {m: features[m][rows[mask[:, m.column]]] for m in combo}
    return sub, sub_mask[rows], rows


def query_combinations(present: list[Modality], gallery: Modality) -> list[tuple[Modality, ...]]:
    """Every non-empty combination of the query-side modalities present, singles first."""
    query = [m for m in ALL_MODALITIES if m in present and m is not gallery]
    return [c for r in range(1, len(query) + 1) for c in itertools.combinations(query, r)]


class ReidObjective:
    """Callable `(model, batch, epoch) -> LossParts` for the engine."""

    def __init__(self, cfg: LossConfig, gallery: Modality = Modality.VIS) -> None:
        self.cfg = cfg
        self.gallery = gallery

    def __call__(self, model: OmniReID, batch: ModalBatch, epoch: int) -> LossParts:
        features = model.encode(batch.inputs)
        # One fused embedding per (combination, sample): the gallery view {gallery} first, then
        # every query combination present. Fusion is cheap next to the backbone passes above.
        combos = [(self.gallery,), *query_combinations(batch.present(), self.gallery)]
        fused, ids, owners = [], [], []
        kept: list[tuple[Modality, ...]] = []  # the views present, in owner order
        for combo in combos:
            sub, sub_mask, rows = select_rows(features, batch.mask, combo)
            if not bool(rows.any()):
                continue
            fused.append(model.fuse(sub, sub_mask))
            ids.append(batch.labels[rows])
            owners.append(torch.full((int(rows.sum()),), len(kept), device=rows.device))
            kept.append(combo)
        all_fused = torch.cat(fused)
        bn, logits = model.head(all_fused)  # one BNNeck pass: its statistics see every view
        labels = torch.cat(ids)
        owner = torch.cat(owners)
        ce_all = F.cross_entropy(
            logits.float(), labels, label_smoothing=self.cfg.id.label_smoothing, reduction="none"
        )
        ce = ce_all[self._id_rows(owner, kept)].mean()
        sdm, views = self._alignment(bn, labels, owner, kept)
        lam = alignment_weight(
            epoch, self.cfg.sdm.weight, self.cfg.sdm.off_epochs, self.cfg.sdm.ramp_end_epoch
        )
        norm = norm_band_penalty(all_fused, self.cfg.norm.target, self.cfg.norm.band)
        total = self.cfg.id.weight * ce + lam * sdm + self.cfg.norm.weight * norm
        feature_norm = all_fused.detach().float().norm(dim=1).mean()
        per_view = {f"sdm/{set_key(c)}": v.detach() for c, v in views.items()}
        for i, combo in enumerate(kept):  # the ID loss of the gallery and each single view
            if len(combo) == 1:
                per_view[f"ce/{combo[0].value}"] = ce_all[owner == i].detach().mean()
        return LossParts(total, ce, sdm, norm, feature_norm, lam, per_view)

    def _id_rows(self, owner: torch.Tensor, views: list[tuple[Modality, ...]]) -> torch.Tensor:
        """Rows the ID loss sees: every view (`loss.id.views: all`), views of one modality
        (`singles`) or the gallery view (`gallery`, owner 0)."""
        if self.cfg.id.views == "all":
            return torch.ones_like(owner, dtype=torch.bool)
        if self.cfg.id.views == "gallery":
            return owner == 0
        singles = [i for i, combo in enumerate(views) if len(combo) == 1]
        return torch.isin(owner, torch.tensor(singles, device=owner.device))

    def _alignment(
        self,
        bn: torch.Tensor,
        labels: torch.Tensor,
        owner: torch.Tensor,
        views: list[tuple[Modality, ...]],
    ) -> tuple[torch.Tensor, dict[tuple[Modality, ...], torch.Tensor]]:
        """SDM between the gallery view (owner 0) and each query view, and their reduction:
        the mean over views (`mean`), or the sum over view sizes of each size's mean (`groups`)."""
        rgb, rgb_ids = bn[owner == 0], labels[owner == 0]
        sdm = self.cfg.sdm
        per_view: dict[tuple[Modality, ...], torch.Tensor] = {}
        for i in range(1, len(views)):
            sel = owner == i
            per_view[views[i]] = sdm_loss(
                rgb, bn[sel], rgb_ids, labels[sel], sdm.temperature, sdm.margin, sdm.smoothing
            )
        if not per_view:
            return bn.sum() * 0.0, per_view
        if self.cfg.sdm.reduction == "mean":
            return torch.stack(list(per_view.values())).mean(), per_view
        sizes = sorted({len(c) for c in per_view})
        groups = [
            torch.stack([v for c, v in per_view.items() if len(c) == n]).mean() for n in sizes
        ]
        return torch.stack(groups).sum(), per_view
