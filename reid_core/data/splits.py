"""Identity-level splits and the query protocols generated for them (DESIGN.md, "Data").

`test` is the evaluation file's identities when there is one, else a seeded held-out share;
`val` is a seeded share of the remaining identities; `train` is the rest. Only identities with
gallery-modality images take part.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Literal

from reid_core.data.dataset_index import DatasetIndex
from reid_core.data.protocol import Protocol, Query, QueryItem, QuerySet
from reid_core.errors import DataError
from reid_core.modality import QUERY_MODALITIES, Modality, set_key

if TYPE_CHECKING:
    from reid_core.config import DataConfig, EvalConfig

ProtocolKind = Literal["unordered15", "ordered32"]


@dataclass(frozen=True)
class Splits:
    """Sorted identity ids of each split; the three are disjoint."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]

    def of(self, split: str) -> tuple[int, ...]:
        if split not in ("train", "val", "test"):
            raise DataError(f"unknown split {split!r} (allowed: train, val, test)")
        return getattr(self, split)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _share(pids: list[int], share: float, rng: random.Random) -> tuple[list[int], list[int]]:
    """Split off round(share * n) ids (at least one when share > 0 and two or more remain)."""
    n = round(len(pids) * share)
    if share > 0 and n == 0 and len(pids) >= 2:
        n = 1
    shuffled = list(pids)
    rng.shuffle(shuffled)
    return sorted(shuffled[:n]), sorted(shuffled[n:])


def make_splits(index: DatasetIndex, data_cfg: DataConfig, *, min_train: bool = True) -> Splits:
    """Seeded (`data.split_seed`) identity splits; a train split with fewer identities than
    `data.p` is a DataError unless `min_train` is False."""
    pids = index.pids(Modality.VIS)
    if not pids:
        raise DataError(f"{index.root}: no identity has vis (RGB) images")
    rng = random.Random(data_cfg.split_seed)
    if index.eval_protocol is not None:
        test = sorted(index.eval_protocol.pids())
        held = set(test)
        rest = [p for p in pids if p not in held]
    else:
        test, rest = _share(pids, data_cfg.test_share, rng)
    val, train = _share(rest, data_cfg.val_share, rng)
    splits = Splits(tuple(train), tuple(val), tuple(test))
    if min_train and len(train) < data_cfg.p:
        raise DataError(
            f"{index.root}: the train split has {len(train)} identities, fewer than data.p="
            f"{data_cfg.p} ({len(pids)} in all, {len(test)} test, {len(val)} val)"
        )
    return splits


def query_sets(kind: ProtocolKind) -> tuple[tuple[Modality, ...], ...]:
    """`unordered15`: the 15 combinations of {nir, cp, sk, text} by size, then canonical order;
    `ordered32`: each of them once per primary modality (primary first, rest canonical)."""
    if kind not in ("unordered15", "ordered32"):
        raise DataError(f"unknown protocol {kind!r} (allowed: unordered15, ordered32)")
    unordered = [c for n in range(1, 5) for c in combinations(QUERY_MODALITIES, n)]
    if kind == "unordered15":
        return tuple(unordered)
    return tuple(
        (primary, *(m for m in combo if m is not primary))
        for combo in unordered
        for primary in combo
    )


def _draw(index: DatasetIndex, pid: int, m: Modality, rng: random.Random) -> QueryItem:
    if m is Modality.TEXT:
        return QueryItem(m, rng.choice(index.captions_of(pid))[1])
    return QueryItem(m, rng.choice(index.paths(m, pid)))


def generate_protocol(
    index: DatasetIndex,
    pids: tuple[int, ...] | list[int],
    kind: ProtocolKind,
    queries_per_identity: int,
    seed: int,
) -> Protocol:
    """A seeded protocol over `pids`: gallery = every RGB image of them; each set holds
    `queries_per_identity` queries per identity that has all of the set's modalities."""
    if queries_per_identity < 1:
        raise DataError(f"queries_per_identity must be >= 1 (got {queries_per_identity})")
    ids = sorted(set(pids))
    gallery = tuple((pid, path) for pid in ids for path in index.paths(Modality.VIS, pid))
    sets = []
    for mods in query_sets(kind):
        queries = []
        for pid in ids:
            if not all(index.has(m, pid) for m in mods):
                continue
            # a string seed is hashed with sha512: the same draw in every process and order
            rng = random.Random(f"{seed}:{kind}:{set_key(mods)}:{pid}")
            for _ in range(queries_per_identity):
                queries.append(Query(pid, tuple(_draw(index, pid, m, rng) for m in mods)))
        sets.append(QuerySet(mods, tuple(queries)))
    return Protocol(name=kind, gallery=gallery, sets=tuple(sets))


def resolve_protocol(
    index: DatasetIndex,
    split: Literal["val", "test"],
    splits: Splits,
    eval_cfg: EvalConfig,
    seed: int,
) -> Protocol:
    """The protocol a split is scored with: `auto` uses the evaluation file for `test` when it
    exists, else a generated unordered15; `unordered15`/`ordered32` force a generated one."""
    if split not in ("val", "test"):
        raise DataError(f"cannot evaluate split {split!r} (allowed: val, test)")
    if eval_cfg.protocol == "auto" and split == "test" and index.eval_protocol is not None:
        return index.eval_protocol
    pids = splits.of(split)
    if not pids:
        raise DataError(f"{index.root}: the {split} split has no identities to evaluate")
    kind: ProtocolKind = "unordered15" if eval_cfg.protocol == "auto" else eval_cfg.protocol
    return generate_protocol(index, pids, kind, eval_cfg.queries_per_identity, seed)


def trainval_protocol(
    index: DatasetIndex, splits: Splits, eval_cfg: EvalConfig, seed: int
) -> Protocol | None:
    """A generated protocol over a fixed seeded sample of `eval.trainval_identities` training
    identities (split name `trainval`): the val metrics on data the model was fitted to. None
    when the option is 0. Ordered sets when `eval.protocol` is `ordered32`, else unordered15."""
    n = min(eval_cfg.trainval_identities, len(splits.train))
    if n == 0:
        return None
    pids = sorted(random.Random(f"{seed}:trainval").sample(list(splits.train), n))
    kind: ProtocolKind = "ordered32" if eval_cfg.protocol == "ordered32" else "unordered15"
    return generate_protocol(index, pids, kind, eval_cfg.queries_per_identity, seed)
