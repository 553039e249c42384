from __future__ import annotations

import math

import pytest
import torch

from reid_core.losses import alignment_weight, norm_band_penalty, query_combinations, sdm_loss
from reid_core.modality import Modality


def _reference_sdm(r, x, rid, xid, t, m, s=0.0):
    """Per-row loops, straight from the definition (KL(p||q), eps 1e-8, both directions; the
    target row mixed with a uniform one by `s`)."""
    r = torch.nn.functional.normalize(r, dim=1)
    x = torch.nn.functional.normalize(x, dim=1)
    total = 0.0
    for a, b, aid, bid in ((r, x, rid, xid), (x, r, xid, rid)):
        rows = []
        for i in range(a.shape[0]):
            pos = [float(aid[i] == bid[j]) for j in range(b.shape[0])]
            if sum(pos) == 0:
                continue
            cos = [float(a[i] @ b[j]) - m * pos[j] for j in range(b.shape[0])]
            z = [c / t for c in cos]
            mx = max(z)
            lse = mx + math.log(sum(math.exp(v - mx) for v in z))
            q = [(1 - s) * p / sum(pos) + s / len(pos) for p in pos]
            rows.append(
                sum(
                    math.exp(v - lse) * ((v - lse) - math.log(qq + 1e-8))
                    for v, qq in zip(z, q, strict=True)
                )
            )
        total += sum(rows) / len(rows)
    return total


@pytest.mark.parametrize(("margin", "smoothing"), [(0.0, 0.0), (0.2, 0.0), (0.0, 0.1), (0.2, 0.3)])
def test_sdm_matches_definition(margin, smoothing):
    g = torch.Generator().manual_seed(0)
    r, x = torch.randn(6, 5, generator=g), torch.randn(4, 5, generator=g)
    rid, xid = torch.tensor([0, 0, 1, 1, 2, 3]), torch.tensor([0, 1, 1, 2])
    got = sdm_loss(r, x, rid, xid, temperature=0.1, margin=margin, smoothing=smoothing)
    want = _reference_sdm(r, x, rid, xid, 0.1, margin, smoothing)
    assert got.item() == pytest.approx(want, rel=1e-4)


def test_sdm_smoothing_softens_the_penalty_on_look_alikes():
    # x0 looks like identity 1 as much as like its own: a smoothed target charges less for it
    r = torch.tensor([[1.0, 0.0], [0.9, 0.1]])
    x = torch.tensor([[0.95, 0.05]])
    rid, xid = torch.tensor([0, 1]), torch.tensor([0])
    hard = sdm_loss(r, x, rid, xid, temperature=0.1)
    soft = sdm_loss(r, x, rid, xid, temperature=0.1, smoothing=0.2)
    assert soft < hard / 2


def test_sdm_is_low_for_aligned_features_and_has_gradient():
    ids = torch.arange(4).repeat_interleave(2)
    base = torch.nn.functional.one_hot(ids, 8).float()
    aligned = sdm_loss(base, base.clone(), ids, ids, temperature=0.05)
    shuffled = sdm_loss(
        base, base[torch.randperm(8, generator=torch.Generator().manual_seed(1))], ids, ids, 0.05
    )
    assert aligned < shuffled
    x = torch.randn(8, 8, requires_grad=True)
    sdm_loss(base, x, ids, ids, 0.05).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_sdm_without_positives_is_zero_not_nan():
    loss = sdm_loss(
        torch.randn(3, 4), torch.randn(2, 4), torch.tensor([0, 1, 2]), torch.tensor([5, 6]), 0.1
    )
    assert loss.item() == 0.0


def test_alignment_weight_schedule():
    w = [alignment_weight(e, 2.0, off_epochs=2, ramp_end_epoch=5) for e in range(8)]
    assert w[:2] == [0.0, 0.0]
    assert w[2] < w[3] < w[4] < w[5] == 2.0 == w[7]
    assert alignment_weight(0, 1.0, 0, 0) == 1.0


def test_norm_band_penalty_zero_inside_band():
    f = torch.nn.functional.normalize(torch.randn(5, 8), dim=1) * 10
    assert norm_band_penalty(f, target=10, band=1).item() == pytest.approx(0.0, abs=1e-6)
    assert norm_band_penalty(f * 2, target=10, band=1).item() == pytest.approx(81.0, rel=1e-4)


def test_query_combinations_cover_all_present():
    combos = query_combinations([Modality.VIS, Modality.NIR, Modality.SK, Modality.TEXT])
    assert len(combos) == 7 and combos[0] == (Modality.NIR,)
    assert (Modality.NIR, Modality.SK, Modality.TEXT) in combos
    assert all(Modality.VIS not in c for c in combos)


def _objective_parts(*overrides: str, seed: int = 0, with_model: bool = False, train: bool = True):
    """One objective call on a micro model and a random full batch (every modality present)."""
    from reid_core.config import load_config
    from reid_core.data.batch import ModalBatch
    from reid_core.losses import ReidObjective
    from reid_core.model import build_model
    from tests.model.conftest import make_batch

    cfg = load_config(preset="micro", overrides=list(overrides))
    torch.manual_seed(seed)
    model = build_model(cfg, num_classes=4, load_pretrained=False).train(train)
    mask = torch.ones(8, len(Modality), dtype=torch.bool)
    labels = torch.arange(4).repeat_interleave(2)
    batch = ModalBatch(make_batch(model, mask, seed), mask, labels + 10, labels)
    parts = ReidObjective.from_config(cfg)(model, batch, epoch=5)
    return (parts, model) if with_model else parts


def test_objective_logs_every_view_and_takes_their_mean():
    mean = _objective_parts()
    views = {k[4:]: v for k, v in mean.views.items() if k.startswith("sdm/")}
    assert len(views) == 15 and {"nir", "sk", "nir_sk", "nir_cp_sk_text"} <= set(views)
    assert mean.sdm.item() == pytest.approx(torch.stack(list(views.values())).mean().item())
    assert {f"ce/{m}" for m in ("vis", "nir", "cp", "sk", "text")} <= set(mean.views)
    assert {"sdm/nir", "ce/sk"} <= set(mean.scalars())


def _sk_stem_grad_norm(loss: torch.Tensor, model) -> float:
    stems = [p for n, p in model.named_parameters() if n.startswith("backbone.stems.sk.")]
    grads = torch.autograd.grad(loss, stems, allow_unused=True, retain_graph=True)
    return sum(float(g.norm()) for g in grads if g is not None)


def test_id_loss_on_the_gallery_view_only():
    gallery = _objective_parts("loss.id.views=gallery")
    assert gallery.ce.item() == pytest.approx(gallery.views["ce/vis"].item(), rel=1e-6)
    # With the BNNeck's running statistics (in training its batch statistics couple every
    # view's rows) the sketch stem learns from the alignment loss alone, not from the ID loss.
    parts, model = _objective_parts("loss.id.views=gallery", with_model=True, train=False)
    assert _sk_stem_grad_norm(parts.ce, model) == 0.0
    assert _sk_stem_grad_norm(parts.sdm, model) > 0
    every, model = _objective_parts(with_model=True, train=False)
    assert _sk_stem_grad_norm(every.ce, model) > 0


def test_colour_dims_align_colourless_views_with_a_grey_pass_of_the_rgb_images():
    # Running BNNeck statistics (eval mode): each row's embedding depends on its own view only,
    # so views whose anchor and gating did not change keep their alignment loss exactly.
    colour = _objective_parts(train=False)
    grey = _objective_parts("model.head.colour_dims=16", "loss.id.views=gallery", train=False)
    sdm = {name: {k[4:]: v.item() for k, v in p.views.items() if k.startswith("sdm/")}
           for name, p in (("colour", colour), ("grey", grey))}  # fmt: skip
    assert set(sdm["grey"]) - set(sdm["colour"]) == {"vis_grey"}
    for view in ("cp", "text", "nir_cp", "sk_text", "nir_cp_sk_text"):  # a colour view: unchanged
        assert sdm["grey"][view] == pytest.approx(sdm["colour"][view], rel=1e-6), view
    for view in ("nir", "sk", "nir_sk"):  # infrared and/or sketch alone: the grey anchor
        assert sdm["grey"][view] != pytest.approx(sdm["colour"][view], rel=1e-3), view
    assert grey.sdm.item() == pytest.approx(sum(sdm["grey"].values()) / 16, rel=1e-5)
    # the ID loss sees the RGB view and its grey pass (8 rows each)
    ce_rgb = (grey.views["ce/vis"] + grey.views["ce/vis_grey"]) / 2
    assert grey.ce.item() == pytest.approx(ce_rgb.item(), rel=1e-5)


def test_grey_image_is_the_luma_of_each_rgb_image():
    from reid_core.model.recolour import grey_image

    x = torch.randn(3, 3, 8, 4)
    grey = grey_image(x)
    assert grey.shape == x.shape
    assert torch.allclose(grey[:, 0] * 0.26862954 + 0.48145466, grey[:, 1] * 0.26130258 + 0.4578275)
