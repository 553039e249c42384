"""Issue 9 hypothesis probe: align infrared and sketch with a grey pass of the RGB anchors.

An experiment, not a product option. The objective below is `ReidObjective` with one change:
every RGB anchor is encoded a second time as its grey luma image; query views made of infrared
and/or sketch only are aligned (SDM) with that grey anchor, colour pencil and text views with the
colour one; the ID loss sees both RGB views, and an extra SDM term ties grey to colour. It runs
`bench/modality_probe.py` with this objective:

    .venv/bin/python bench/matched_anchor_probe.py NAME DATA PRESET [dotted.key=value ...]
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import reid_core.training.setup as setup  # noqa: E402
from reid_core.losses import objective as base  # noqa: E402
from reid_core.losses.sdm import sdm_loss  # noqa: E402
from reid_core.modality import Modality, set_key  # noqa: E402
from reid_core.model.recolour import random_grey  # noqa: E402

GREY_SEES = {Modality.NIR, Modality.SK}


class MatchedAnchorObjective(base.ReidObjective):
    def __call__(self, model, batch, epoch):
        features = model.encode(batch.inputs)
        grey_rgb = random_grey(batch.inputs[self.gallery], 1.0)
        grey = {self.gallery: model.encode({self.gallery: grey_rgb})[self.gallery]}
        combos = [(self.gallery,), *base.query_combinations(batch.present(), self.gallery)]
        fused, ids, owners, kept = [], [], [], []
        for combo, feats in [*((c, features) for c in combos), ((self.gallery,), grey)]:
            sub, sub_mask, rows = base.select_rows(feats, batch.mask, combo)
            if bool(rows.any()):
                fused.append(model.fuse(sub, sub_mask))
                ids.append(batch.labels[rows])
                owners.append(torch.full((int(rows.sum()),), len(kept)))
                kept.append(combo)
        grey_owner = len(kept) - 1
        all_fused = torch.cat(fused)
        bn, logits = model.head(all_fused)
        labels, owner = torch.cat(ids), torch.cat(owners)
        ce_rows = (owner == 0) | (owner == grey_owner)
        smoothing = self.cfg.id.label_smoothing
        ce = F.cross_entropy(logits.float()[ce_rows], labels[ce_rows], label_smoothing=smoothing)
        views = self._matched(bn, labels, owner, kept, grey_owner)
        sdm = torch.stack(list(views.values())).mean()
        s = self.cfg.sdm
        lam = base.alignment_weight(epoch, s.weight, s.off_epochs, s.ramp_end_epoch)
        norm = base.norm_band_penalty(all_fused, self.cfg.norm.target, self.cfg.norm.band)
        total = self.cfg.id.weight * ce + lam * sdm + self.cfg.norm.weight * norm
        logs = {f"sdm/{name}": v.detach() for name, v in views.items()}
        feature_norm = all_fused.detach().float().norm(dim=1).mean()
        return base.LossParts(total, ce, sdm, norm, feature_norm, lam, logs)

    def _matched(self, bn, labels, owner, kept, grey_owner):
        s = self.cfg.sdm
        colour = (bn[owner == 0], labels[owner == 0])
        grey = (bn[owner == grey_owner], labels[owner == grey_owner])
        views = {}
        for i, combo in enumerate(kept[1:grey_owner], start=1):
            anchor, anchor_ids = grey if set(combo) <= GREY_SEES else colour
            sel = owner == i
            views[set_key(combo)] = sdm_loss(
                anchor, bn[sel], anchor_ids, labels[sel], s.temperature, s.margin, s.smoothing
            )
        views["grey_rgb"] = sdm_loss(*colour[:1], grey[0], colour[1], grey[1],
                                     s.temperature, s.margin, s.smoothing)  # fmt: skip
        return views


if __name__ == "__main__":
    setup.ReidObjective = MatchedAnchorObjective  # build_trainer's objective
    sys.argv = [str(REPO / "bench" / "modality_probe.py"), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
