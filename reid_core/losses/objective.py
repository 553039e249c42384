"""The training objective: CE(ID) + lambda(epoch) * SDM alignment + feature-norm band penalty.

Every part is returned separately; nothing is summed by matching key names. The objective runs in
two steps, `encode` (the backbone passes) then `loss` (fusion, head and losses on the features),
so that data-parallel training can gather the features of every rank in between.

Views (`reid_core.losses.plan`): one fused embedding per (view, sample); the RGB view, every
combination of the query modalities present, and with colour dimensions (`model.head.colour_dims`)
a grey pass of the RGB images that infrared/sketch-only views align with. All views are fused in
one call, pass the BNNeck together, and every SDM term comes from one batched product; the plan
that says which rows are which is made on the host, so the step never waits for the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from reid_core.config.schema import LossConfig, ReidConfig
from reid_core.data.batch import ModalBatch
from reid_core.losses.plan import GALLERY, GREY_VIEW, Plan, make_plan
from reid_core.losses.sdm import sdm_terms
from reid_core.modality import Modality
from reid_core.model.recolour import channel_image

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
    # per-view diagnostics, detached, as one tensor and its names: `sdm/<view>` the alignment
    # loss of each query view (`sdm/nir`, `sdm/nir_sk`), `ce/<view>` the ID loss of the RGB and
    # single views
    view_names: list[str] = field(default_factory=list)
    view_values: torch.Tensor | None = None

    @property
    def views(self) -> dict[str, torch.Tensor]:
        if self.view_values is None:
            return {}
        return dict(zip(self.view_names, self.view_values.unbind(), strict=True))

    def log_values(self) -> tuple[list[str], torch.Tensor]:
        """Every logged part as one detached 1-D tensor and its names (reading it is a device
        sync: the engine does it once per logging interval)."""
        head = [self.total, self.ce, self.sdm, self.norm, self.feature_norm]
        values = torch.stack([t.detach().float() for t in head])
        if self.view_values is not None:
            values = torch.cat([values, self.view_values])
        names = ["loss", "ce", "sdm", "norm_penalty", "feature_norm", *self.view_names]
        return names, values

    def scalars(self) -> dict[str, torch.Tensor]:
        """Detached parts by name (still tensors: reading them is a device sync)."""
        names, values = self.log_values()
        return dict(zip(names, values.unbind(), strict=True))


@dataclass
class Encoded:
    """What `ReidObjective.encode` returns: per-modality features packed like the batch's
    inputs, and the extra passes of the RGB images (`[N_vis, D]`, the RGB rows) by name."""

    features: dict[Modality, torch.Tensor]
    anchors: dict[str, torch.Tensor] = field(default_factory=dict)


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


class ReidObjective:
    """Callable `(model, batch, epoch) -> LossParts` for the engine: `loss(model, batch,
    encode(model, batch.inputs), epoch)`. `grey_anchor`: the colour-dimension objective (a grey
    pass of the RGB images that infrared/sketch-only views align with)."""

    gallery = GALLERY

    def __init__(self, cfg: LossConfig, grey_anchor: bool = False) -> None:
        self.cfg = cfg
        self.grey_anchor = grey_anchor

    @classmethod
    def from_config(cls, cfg: ReidConfig) -> ReidObjective:
        """The objective of a whole config: the grey pass comes with colour dimensions."""
        return cls(cfg.loss, grey_anchor=cfg.model.head.colour_dims > 0)

    def __call__(self, model: OmniReID, batch: ModalBatch, epoch: int) -> LossParts:
        return self.loss(model, batch, self.encode(model, batch.inputs), epoch)

    def plan(self, batch: ModalBatch) -> Plan:
        return make_plan(batch.host_mask(), self.grey_anchor, self.cfg.id.views)

    def encode(self, model: OmniReID, inputs: dict[Modality, torch.Tensor]) -> Encoded:
        """The backbone passes, in one: every modality of `inputs`, and the grey pass of the RGB
        images when the objective has one (a second segment routed as RGB)."""
        order = [m for m in model.modalities if m in inputs]
        segments = [(m, inputs[m]) for m in order]
        if self.grey_anchor and GALLERY in inputs:
            segments.append((GALLERY, channel_image(inputs[GALLERY])))
        feats = model.encode_segments(segments)
        anchors = {GREY_VIEW: feats[-1]} if len(feats) > len(order) else {}
        return Encoded(dict(zip(order, feats, strict=False)), anchors)

    def loss(self, model: OmniReID, batch: ModalBatch, encoded: Encoded, epoch: int) -> LossParts:
        """Fusion, BNNeck and the losses on `encoded` (which holds `batch`'s samples)."""
        plan = self.plan(batch)
        t = plan.to(batch.labels.device)
        blocks = [encoded.features[m] for m in plan.table]
        if plan.grey:
            blocks.append(encoded.anchors[GREY_VIEW])
        fused = model.fusion.rows(torch.cat(blocks), t["index"], t["present"])  # [R, D]
        # one BNNeck pass: its statistics see every view; each row's mask is its view's
        bn, logits = model.head(fused, t["present"], colourless=t["colourless"])
        labels = batch.labels[t["rows"]]
        ce_all = F.cross_entropy(
            logits.float(), labels, label_smoothing=self.cfg.id.label_smoothing, reduction="none"
        )
        ce = (ce_all * t["id_rows"]).sum() / int(plan.id_rows.sum())
        terms = self._alignment(bn, batch.labels, t)
        sdm_cfg = self.cfg.sdm
        lam = alignment_weight(epoch, sdm_cfg.weight, sdm_cfg.off_epochs, sdm_cfg.ramp_end_epoch)
        sdm = terms.mean() if len(plan.terms) else bn.sum() * 0.0
        norm = norm_band_penalty(fused, self.cfg.norm.target, self.cfg.norm.band)
        total = self.cfg.id.weight * ce + lam * sdm + self.cfg.norm.weight * norm
        feature_norm = fused.detach().float().norm(dim=1).mean()
        names, values = self._diagnostics(plan, t, ce_all.detach(), terms.detach())
        return LossParts(total, ce, sdm, norm, feature_norm, lam, names, values)

    def _alignment(
        self, bn: torch.Tensor, labels: torch.Tensor, t: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """SDM between each view but the RGB view and its anchor: `[T]`, one per term."""
        padded = torch.cat([bn, bn.new_zeros(1, bn.shape[1])])  # a zero row for absent samples
        by_view = padded[t["view_rows"]]  # [V, B, D]
        there = t["view_rows"] < bn.shape[0]  # [V, B]
        query, anchor = t["terms"][:, 0], t["terms"][:, 1]
        sdm = self.cfg.sdm
        return sdm_terms(
            by_view[anchor], by_view[query], there[anchor], there[query], labels,
            sdm.temperature, sdm.margin, sdm.smoothing,
        )  # fmt: skip

    @staticmethod
    def _diagnostics(
        plan: Plan, t: dict[str, torch.Tensor], ce_all: torch.Tensor, terms: torch.Tensor
    ) -> tuple[list[str], torch.Tensor]:
        """`sdm/<view>` per term and `ce/<view>` per single view, as one tensor."""
        sums = ce_all.new_zeros(len(plan.views)).index_add_(0, t["owner"], ce_all)
        ce_views = sums[t["singles"]] / t["single_rows"]
        names = [f"sdm/{n}" for n in plan.term_names]
        names += [f"ce/{plan.views[i].name}" for i in plan.singles]
        return names, torch.cat([terms.float(), ce_views.float()])
