"""The training objective: CE(ID) + lambda(epoch) * SDM alignment + feature-norm band penalty.

Every part is returned separately; nothing is summed by matching key names. The objective runs in
two steps, `encode` (the backbone passes) then `loss` (fusion, head and losses on the features),
so that data-parallel training can gather the features of every rank in between.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from reid_core.config.schema import LossConfig
from reid_core.data.batch import ModalBatch
from reid_core.errors import ReidError
from reid_core.losses.sdm import sdm_loss
from reid_core.modality import ALL_MODALITIES, Modality, set_key
from reid_core.model.recolour import channel_image, edge_drawing, grey_image, pseudo_image

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


# `loss.sdm.anchor` -> the extra passes of the gallery images it encodes, by name
ANCHOR_PASSES = {"colour": (), "grey": ("grey",), "drawn": ("grey", "edge")}
# `loss.sdm.grey` -> how the grey anchor pass is rendered; the outline pass is an edge drawing
_GREY = {"luma": grey_image, "channel": channel_image}
# query modalities that carry no colour: views made of these alone align with a colourless anchor
COLOURLESS = frozenset({Modality.NIR, Modality.SK})


@dataclass
class Encoded:
    """What `ReidObjective.encode` returns: per-modality features packed like the batch's
    inputs, and each extra pass of the gallery images (`[N_gallery, D]`, the gallery's rows):
    the anchor passes by name (`grey`, `edge`) and the pseudo queries by view name
    (`nir_pseudo`, `sk_pseudo`)."""

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
    """Callable `(model, batch, epoch) -> LossParts` for the engine: `loss(model, batch,
    encode(model, batch.inputs), epoch)`."""

    def __init__(self, cfg: LossConfig, gallery: Modality = Modality.VIS) -> None:
        self.cfg = cfg
        self.gallery = gallery
        self.passes = ANCHOR_PASSES[cfg.sdm.anchor]
        self._render = {"grey": _GREY[cfg.sdm.grey], "edge": edge_drawing}  # by pass name
        self._pass_views = {f"{gallery.value}_{name}" for name in self.passes}
        # `loss.sdm.pseudo` -> the pseudo query views, by name (`sk_pseudo`)
        self.pseudo = {f"{m}_pseudo": Modality(m) for m in cfg.sdm.pseudo}
        if self.pseudo and gallery.channels != 3:
            raise ReidError(
                f"loss.sdm.pseudo needs a colour gallery modality, got {gallery.value!r}"
            )
        if self.passes and gallery.channels != 3:
            raise ReidError(
                f"loss.sdm.anchor {cfg.sdm.anchor!r} needs a colour gallery modality, "
                f"got {gallery.value!r}"
            )

    def __call__(self, model: OmniReID, batch: ModalBatch, epoch: int) -> LossParts:
        return self.loss(model, batch, self.encode(model, batch.inputs), epoch)

    def encode(self, model: OmniReID, inputs: dict[Modality, torch.Tensor]) -> Encoded:
        """The backbone passes: every modality of `inputs`, then each anchor pass
        (`loss.sdm.anchor`) of the gallery images."""
        features = model.encode(inputs)
        anchors = {}
        if self.gallery in inputs:
            for name in self.passes:
                image = self._render[name](inputs[self.gallery])
                anchors[name] = model.encode({self.gallery: image})[self.gallery]
            for name, m in self.pseudo.items():
                image = pseudo_image(inputs[self.gallery], m)
                anchors[name] = model.encode({m: image})[m]
        return Encoded(features, anchors)

    def loss(self, model: OmniReID, batch: ModalBatch, encoded: Encoded, epoch: int) -> LossParts:
        """Fusion, BNNeck and the losses on `encoded` (which holds `batch`'s samples)."""
        # One fused embedding per (combination, sample): the gallery view {gallery} first, then
        # every query combination present, then the anchor passes of the gallery images. Fusion
        # is cheap next to the backbone passes.
        combos = [(self.gallery,), *query_combinations(batch.present(), self.gallery)]
        # (view name, the modalities that select its rows, their features, the modality a pseudo
        # query's rows are fused as)
        sources: list[tuple[str, tuple[Modality, ...], dict, Modality | None]]
        sources = [(set_key(c), c, encoded.features, None) for c in combos]
        sources += [
            (f"{self.gallery.value}_{name}", (self.gallery,), {self.gallery: feats}, None)
            for name, feats in encoded.anchors.items()
            if name in self.passes
        ]
        sources += [  # pseudo queries: the gallery's rows, fused as the modality they render
            (name, (self.gallery,), {self.gallery: encoded.anchors[name]}, m)
            for name, m in self.pseudo.items()
            if name in encoded.anchors
        ]
        fused, ids, owners, masks, no_colour = [], [], [], [], []
        kept: list[tuple[str, tuple[Modality, ...]]] = []  # the views present, in owner order
        for name, combo, features, fuse_as in sources:
            sub, sub_mask, rows = select_rows(features, batch.mask, combo)
            if not bool(rows.any()):
                continue
            if fuse_as is not None:
                sub, combo = {fuse_as: sub[self.gallery]}, (fuse_as,)
                sub_mask = torch.zeros_like(sub_mask)
                sub_mask[:, fuse_as.column] = True
            fused.append(model.fuse(sub, sub_mask))
            masks.append(sub_mask)
            ids.append(batch.labels[rows])
            owners.append(torch.full((int(rows.sum()),), len(kept), device=rows.device))
            # a grey or outline pass of RGB images carries no colour (model.head.colour_dims)
            no_colour.append(
                torch.full_like(owners[-1], name in self._pass_views, dtype=torch.bool)
            )
            kept.append((name, combo))
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
        for i, (name, combo) in enumerate(kept):  # the ID loss of the RGB and each single view
            if len(combo) == 1:
                per_view[f"ce/{name}"] = ce_all[owner == i].detach().mean()
        return LossParts(total, ce, sdm, norm, feature_norm, lam, per_view)

    def _is_gallery(self, combo: tuple[Modality, ...]) -> bool:
        return combo == (self.gallery,)

    def _id_rows(
        self, owner: torch.Tensor, views: list[tuple[str, tuple[Modality, ...]]]
    ) -> torch.Tensor:
        """Rows the ID loss sees: every view (`loss.id.views: all`), views of one modality
        (`singles`) or the gallery view and its anchor passes (`gallery`)."""
        if self.cfg.id.views == "all":
            return torch.ones_like(owner, dtype=torch.bool)
        if self.cfg.id.views == "gallery":
            chosen = [i for i, (_, combo) in enumerate(views) if self._is_gallery(combo)]
        else:
            chosen = [i for i, (_, combo) in enumerate(views) if len(combo) == 1]
        return torch.isin(owner, torch.tensor(chosen, device=owner.device))

    def _anchor_for(self, combo: tuple[Modality, ...]) -> str:
        """The view a query view aligns with (`loss.sdm.anchor`): the gallery view, or the
        name of an anchor pass of it."""
        rgb = self.gallery.value
        if not set(combo) <= COLOURLESS or not self.passes:
            return rgb
        if combo == (Modality.SK,) and "edge" in self.passes:
            return f"{rgb}_edge"
        return f"{rgb}_grey"

    def _alignment(
        self,
        bn: torch.Tensor,
        labels: torch.Tensor,
        owner: torch.Tensor,
        views: list[tuple[str, tuple[Modality, ...]]],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """SDM between each query view and its anchor (the gallery view, owner 0, or an anchor
        pass), and between each anchor pass and the gallery view; then their reduction: the mean
        over them (`mean`), or the sum over view sizes of each size's mean (`groups`, the anchor
        passes a group of their own)."""
        index = {name: i for i, (name, _) in enumerate(views)}
        sdm = self.cfg.sdm
        per_view: dict[str, torch.Tensor] = {}
        groups: dict[int, list[torch.Tensor]] = {}
        for i, (name, combo) in enumerate(views):
            if i == 0:
                continue
            # a query view aligns with its anchor; an anchor pass with the colour view (owner 0).
            # Anchor passes hold the gallery view's rows: both are present or neither.
            anchor_name = self.gallery.value if self._is_gallery(combo) else self._anchor_for(combo)
            target = index.get(anchor_name, 0)
            query, anchor = owner == i, owner == target
            per_view[name] = sdm_loss(
                bn[anchor], bn[query], labels[anchor], labels[query],
                sdm.temperature, sdm.margin, sdm.smoothing,
            )  # fmt: skip
            groups.setdefault(0 if self._is_gallery(combo) else len(combo), []).append(
                per_view[name]
            )
        if not per_view:
            return bn.sum() * 0.0, per_view
        if self.cfg.sdm.reduction == "mean":
            return torch.stack(list(per_view.values())).mean(), per_view
        means = [torch.stack(groups[n]).mean() for n in sorted(groups)]
        return torch.stack(means).sum(), per_view
