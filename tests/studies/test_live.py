"""The line-per-event view of a study (no terminal): what each trial line says."""

from __future__ import annotations

from types import SimpleNamespace

from studies.live import TrialView
from studies.spec import load_spec


def _trial(number, state, values, val_score, epoch):
    return SimpleNamespace(
        number=number,
        state=SimpleNamespace(name=state),
        values=values,
        user_attrs={"val_score": val_score, "epoch": epoch},
        intermediate_values={},
        params={"model.lora.rank": 4},
    )


def test_a_complete_trial_line_shows_the_value_optuna_ranks_beside_the_latest_score(capsys):
    view = TrialView(load_spec("demo"))
    view.update(
        [
            _trial(0, "COMPLETE", [0.56], 0.55, 6),  # best epoch before the last
            _trial(1, "PRUNED", [0.17], 0.17, 2),
            _trial(2, "RUNNING", None, 0.30, 3),
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "trial 0 complete epoch 6 val/score=0.55 val/best_score=0.56 (best 0.56) [rank=4]"
    )
    assert "best_score" not in lines[1] and lines[1].startswith("trial 1 pruned epoch 2")
    assert "best_score" not in lines[2] and "val/score=0.3 " in lines[2]
