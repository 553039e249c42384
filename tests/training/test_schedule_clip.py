from __future__ import annotations

import pytest
import torch

from reid_core.config.schema import SchedulerConfig
from reid_core.training.clipping import AdaptiveClipper
from reid_core.training.schedule import LrSchedule


def _opt():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    return torch.optim.SGD([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 1e-2}])


def test_warmup_then_cosine_keeps_group_ratio():
    opt = _opt()
    s = LrSchedule(
        opt,
        SchedulerConfig(name="cosine", warmup_epochs=1, warmup_factor=0.1, min_lr_factor=0.0),
        epochs=5,
        steps=10,
    )
    s.step(0)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)
    s.step(10)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)
    s.step(50)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    s.step(30)
    assert opt.param_groups[1]["lr"] / opt.param_groups[0]["lr"] == pytest.approx(10.0)


def test_step_multistep_and_plateau():
    opt = _opt()
    s = LrSchedule(
        opt,
        SchedulerConfig(name="multistep", warmup_epochs=0, milestones=(2, 4), gamma=0.5),
        epochs=6,
        steps=1,
    )
    s.step(3)
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-4)
    s.step(4)
    assert opt.param_groups[0]["lr"] == pytest.approx(2.5e-4)
    opt = _opt()
    s = LrSchedule(
        opt,
        SchedulerConfig(name="plateau", warmup_epochs=0, patience=1, gamma=0.1),
        epochs=6,
        steps=1,
    )
    for metric in (0.5, 0.4, 0.4):
        s.observe(metric)
    s.step(0)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)
    restored = LrSchedule(_opt(), s.cfg, 6, 1)
    restored.load_state_dict(s.state_dict())
    assert restored.factor(0) == s.factor(0)


def test_adaptive_clipper_counts_spikes_and_round_trips():
    p = torch.nn.Parameter(torch.zeros(3))
    clip = AdaptiveClipper(quantile=0.5, window=8, warmup_steps=4)
    for _ in range(6):
        p.grad = torch.ones(3)
        clip([p])
    assert clip.spikes == 0
    p.grad = torch.ones(3) * 100
    norm = clip([p])
    assert norm == pytest.approx(100 * 3**0.5)
    assert clip.spikes == 1
    assert p.grad.norm().item() == pytest.approx(3**0.5, rel=1e-5)
    other = AdaptiveClipper(0.5, 8, 4)
    other.load_state_dict(clip.state_dict())
    assert other.spikes == 1 and list(other.norms) == list(clip.norms)
