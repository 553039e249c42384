"""Pruning efficiency: the same configurations in two studies, with the `demo` spec's pruner and
without one. Reports the epochs the pruned study trained as a share of the other's, and the
difference of their best val scores (targets: <= 60% of the epochs, within 0.03).

Both studies run here, one after the other, in one process (one worker each, SQLite stores in
a temporary folder), on a synthetic dataset: what is compared is measured side by side.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from figures import command, figure


def _configs(spec, n: int, seed: int) -> list[dict]:
    """The spec's enqueued configs, then random draws from its space (the same for both)."""
    import optuna

    from studies.trial import sample_params

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = [dict(c) for c in spec.enqueue]
    while len(out) < n:
        trial = study.ask()
        out.append(sample_params(trial, spec))
        study.tell(trial, 0.0)
    return out[:n]


def _run(spec_tree: dict, name: str, root: Path, work: Path) -> tuple[int, float, float]:
    """Run one study to its budget; returns (epochs trained, best val score, wall seconds)."""
    from studies.record import Placement, TrialAttr
    from studies.spec import parse_spec
    from studies.study import create
    from studies.workers import WorkerArgs
    from studies.workers import work as work_study

    spec = parse_spec({**spec_tree, "name": name}, name)
    place = Placement(
        storage=f"sqlite:///{work}/studies.db",
        data_root=root,
        tracking_uri=f"sqlite:///{work}/mlflow.db",
        checkpoints=work / "runs",
    )
    t0 = time.perf_counter()
    study = create(spec, place)
    work_study(WorkerArgs(name, place))
    wall = time.perf_counter() - t0
    trials = study.get_trials()
    epochs = sum(int(t.user_attrs.get(TrialAttr.EPOCH, 0)) for t in trials)
    best = max(t.values[0] for t in trials if t.state.name == "COMPLETE")
    for t in trials:
        state = t.state.name.lower()
        epoch = t.user_attrs.get(TrialAttr.EPOCH)
        print(f"  {name} trial {t.number}: {state} after {epoch} epochs")
    return epochs, best, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=60)
    parser.add_argument("--configs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from reid_core.data.synth import synthesize
    from studies.spec import load_spec, spec_to_dict

    spec = load_spec("demo")
    configs = _configs(spec, args.configs, args.seed)
    tree = spec_to_dict(spec)
    tree.update(enqueue=configs, budget={"n_trials": len(configs)}, description="")
    tree["sampler"] = {"type": "random", "seed": args.seed}  # every trial is an enqueued one
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / "data"
        synthesize(root, identities=args.identities, seed=args.seed, size=(64, 32))
        os.chdir(work)  # the MLflow artifacts of the trials stay in the temporary folder
        pruner = tree["pruner"]
        print(f"{len(configs)} configs, demo spec base, {args.identities} identities")
        print(f"pruner of the demo spec: {pruner}; load average {os.getloadavg()[0]:.2f}")
        pruned = _run(tree, "pruned", root, work)
        full = _run({**tree, "pruner": {"type": "none"}}, "unpruned", root, work)
    share = pruned[0] / full[0]
    gap = full[1] - pruned[1]
    print(
        f"pruned: {pruned[0]} epochs, best val/score {pruned[1]:.4f}, {pruned[2]:.0f} s\n"
        f"unpruned: {full[0]} epochs, best val/score {full[1]:.4f}, {full[2]:.0f} s\n"
        f"epochs trained: {share:.1%} of the unpruned study's; best val/score gap {gap:+.4f}"
    )
    cmd = command(__file__, *sys.argv[1:])
    figure("pruned study epochs / unpruned", share, "ratio", "<= 0.60", share <= 0.60, cmd)
    figure("best val/score, unpruned - pruned", gap, "score", "<= 0.03", gap <= 0.03, cmd)


if __name__ == "__main__":
    main()
