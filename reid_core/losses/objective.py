"""The training objective: CE(ID) + lambda(epoch) * SDM alignment + feature-norm band penalty.

Every part is returned separately; nothing is summed by matching key names. The objective runs in
two steps, `encode` (the backbone passes) then `loss` (fusion, head and losses on the features),
so that data-parallel training can gather the features of every rank in between.

Views: one fused embedding per (view, sample). The RGB view `vis` first, then every combination
of the query modalities present, then, with colour dimensions (`model.head.colour_dims`), the
grey pass `vis_grey` of the RGB images. Each query view aligns (SDM) with the RGB view, except a
view of infrared and/or sketch alone, which aligns with the grey pass when there is one; the grey
pass aligns with the RGB view.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from reid_core.config.schema import LossConfig, ReidConfig
from reid_core.data.batch import ModalBatch
from reid_core.losses.sdm import sdm_loss
from reid_core.modality import ALL_MODALITIES, Modality, set_key
from reid_core.model.recolour import channel_image

if TYPE_CHECKING:
    from reid_core.model import OmniReID

GALLERY = Modality.VIS
GREY_VIEW = f"{GALLERY.value}_grey"
# query modalities that carry no colour: views made of these alone align with the grey pass
COLOURLESS = frozenset({Modality.NIR, Modality.SK})


@dataclass
class LossParts:
    total: torch.Tensor
    ce: torch.Tensor
    sdm: torch.Tensor
    norm: torch.Tensor
    feature_norm: torch.Tensor  # mean L2 norm of the fused (pre-BNNeck) features, detached
    sdm_weight: float
    # per-view diagnostics, detached: `sdm/<view>` the alignment loss of each query view
    # (`sdm/nir`, `sdm/nir_sk`), `ce/<modality>` the ID loss of the RGB and single views
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


@dataclass
class Encoded:
    """What `ReidObjective.encode` returns: per-modality features packed like the batch's
    inputs, and the extra passes of the RGB images (`[N_vis, D]`, the RGB rows) by name."""

    features: dict[Modality, torch.Tensor]
    anchors: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class View:
    name: str
    combo: tuple[Modality, ...]  # the modalities that select its rows and are fused
    colourless: bool = False  # a grey pass: no colour (model.head.colour_dims)


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


def query_combinations(present: list[Modality]) -> list[tuple[Modality, ...]]:
    """Every non-empty combination of the query-side modalities present, singles first."""
    query = [m for m in ALL_MODALITIES if m in present and m is not GALLERY]
    return [c for r in range(1, len(query) + 1) for c in itertools.combinations(query, r)]


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

    def encode(self, model: OmniReID, inputs: dict[Modality, torch.Tensor]) -> Encoded:
        """The backbone passes: every modality of `inputs`, then the grey pass of the RGB
        images when the objective has one."""
        features = model.encode(inputs)
        anchors = {}
        if self.grey_anchor and GALLERY in inputs:
            grey = channel_image(inputs[GALLERY])
            anchors[GREY_VIEW] = model.encode({GALLERY: grey})[GALLERY]
        return Encoded(features, anchors)

    def views(self, batch: ModalBatch, encoded: Encoded) -> list[tuple[View, dict]]:
        """Every view of the batch with the features it fuses from, in owner order."""
        combos = [(GALLERY,), *query_combinations(batch.present())]
        out = [(View(set_key(c), c), encoded.features) for c in combos]
        if GREY_VIEW in encoded.anchors:
            out.append((View(GREY_VIEW, (GALLERY,), True), {GALLERY: encoded.anchors[GREY_VIEW]}))
        return out

    def loss(self, model: OmniReID, batch: ModalBatch, encoded: Encoded, epoch: int) -> LossParts:
        """Fusion, BNNeck and the losses on `encoded` (which holds `batch`'s samples)."""
        fused, ids, owners, masks, no_colour = [], [], [], [], []
        kept: list[View] = []  # the views present, in owner order
        for view, features in self.views(batch, encoded):
            sub, sub_mask, rows = select_rows(features, batch.mask, view.combo)
            if not bool(rows.any()):
                continue
            fused.append(model.fuse(sub, sub_mask))
            masks.append(sub_mask)
            ids.append(batch.labels[rows])
            owners.append(torch.full((int(rows.sum()),), len(kept), device=rows.device))
            no_colour.append(torch.full_like(owners[-1], view.colourless, dtype=torch.bool))
            kept.append(view)
        all_fused = torch.cat(fused)
        # one BNNeck pass: its statistics see every view; each row's mask is its view's
        bn, logits = model.head(all_fused, torch.cat(masks), colourless=torch.cat(no_colour))
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
        per_view = {f"sdm/{name}": v.detach() for name, v in views.items()}
        for i, view in enumerate(kept):  # the ID loss of the RGB and each single view
            if len(view.combo) == 1:
                per_view[f"ce/{view.name}"] = ce_all[owner == i].detach().mean()
        return LossParts(total, ce, sdm, norm, feature_norm, lam, per_view)

    def _id_rows(self, owner: torch.Tensor, views: list[View]) -> torch.Tensor:
        """Rows the ID loss sees: every view (`loss.id.views: all`), or the RGB view and its
        grey pass (`gallery`)."""
        if self.cfg.id.views == "all":
            return torch.ones_like(owner, dtype=torch.bool)
        chosen = [i for i, view in enumerate(views) if view.combo == (GALLERY,)]
        return torch.isin(owner, torch.tensor(chosen, device=owner.device))

    def _anchor_for(self, view: View) -> str:
        """The view `view` aligns with: the grey pass for infrared/sketch-only views when there
        is one, else the RGB view."""
        if self.grey_anchor and not view.colourless and set(view.combo) <= COLOURLESS:
            return GREY_VIEW
        return GALLERY.value

    def _alignment(
        self, bn: torch.Tensor, labels: torch.Tensor, owner: torch.Tensor, views: list[View]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """SDM between each view (but the RGB view, owner 0) and its anchor, and their mean."""
        index = {view.name: i for i, view in enumerate(views)}
        sdm = self.cfg.sdm
        per_view: dict[str, torch.Tensor] = {}
        for i, view in enumerate(views[1:], start=1):
            # the RGB view and its grey pass hold the same rows: both are present or neither
            query, anchor = owner == i, owner == index[self._anchor_for(view)]
            per_view[view.name] = sdm_loss(
                bn[anchor], bn[query], labels[anchor], labels[query],
                sdm.temperature, sdm.margin, sdm.smoothing,
            )  # fmt: skip
        if not per_view:
            return bn.sum() * 0.0, per_view
        return torch.stack(list(per_view.values())).mean(), per_view
