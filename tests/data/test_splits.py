"""Identity splits, generated protocols and protocol resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from reid_core.config import DataConfig, EvalConfig
from reid_core.data.dataset_index import build_index
from reid_core.data.splits import (
    generate_protocol,
    make_splits,
    query_sets,
    resolve_protocol,
)
from reid_core.errors import DataError
from reid_core.modality import Modality


def _cfg(**kw) -> DataConfig:
    base = {"p": 2, "k": 2, "val_share": 0.2, "test_share": 0.3}
    return DataConfig(**{**base, **kw})


def test_seeded_splits_partition_gallery_identities(tree) -> None:
    idx = build_index(tree(identities=20), cache=False)
    s = make_splits(idx, _cfg())
    assert set(s.train) | set(s.val) | set(s.test) == set(range(1, 21))
    assert not (set(s.train) & set(s.val) or set(s.train) & set(s.test) or set(s.val) & set(s.test))
    assert s.sizes() == {"train": 11, "val": 3, "test": 6}
    assert list(s.train) == sorted(s.train)
    assert make_splits(idx, _cfg()) == s
    assert make_splits(idx, _cfg(split_seed=1)) != s


def test_identities_without_gallery_images_are_left_out(tree) -> None:
    idx = build_index(tree(identities=10, lacking={"vis": (4,)}), cache=False)
    s = make_splits(idx, _cfg())
    assert 4 not in set(s.train) | set(s.val) | set(s.test)


def test_eval_file_identities_are_test(orbench_tree: Path) -> None:
    idx = build_index(orbench_tree, cache=False)
    s = make_splits(idx, _cfg(test_share=0.9))
    assert s.test == (9, 10, 11, 12)
    assert len(s.val) == 2 and len(s.train) == 6


def test_fewer_train_identities_than_p(tree) -> None:
    idx = build_index(tree(identities=6), cache=False)
    with pytest.raises(DataError, match=r"train split has 3 identities, fewer than data.p=8"):
        make_splits(idx, _cfg(p=8))
    assert len(make_splits(idx, _cfg(p=8), min_train=False).train) == 3


def test_query_set_orders() -> None:
    u = query_sets("unordered15")
    assert [len(s) for s in u] == [1] * 4 + [2] * 6 + [3] * 4 + [4]
    assert u[4] == (Modality.NIR, Modality.CP) and u[-1] == (
        Modality.NIR, Modality.CP, Modality.SK, Modality.TEXT)  # fmt: skip
    o = query_sets("ordered32")
    assert len(o) == 32 and len(set(o)) == 32
    assert [len(s) for s in o] == [1] * 4 + [2] * 12 + [3] * 12 + [4] * 4
    assert o[4:6] == ((Modality.NIR, Modality.CP), (Modality.CP, Modality.NIR))
    assert o[-1] == (Modality.TEXT, Modality.NIR, Modality.CP, Modality.SK)
    with pytest.raises(DataError, match="unknown protocol"):
        query_sets("ordered99")  # type: ignore[arg-type]


def test_generated_protocol(tree) -> None:
    idx = build_index(tree(identities=6, lacking={"sk": (2,)}), cache=False)
    p = generate_protocol(idx, [1, 2, 3], "unordered15", queries_per_identity=2, seed=0)
    assert p.name == "unordered15" and len(p.sets) == 15
    assert [pid for pid, _ in p.gallery] == [1] * 3 + [2] * 3 + [3] * 3
    by_key = {s.key: s for s in p.sets}
    assert [q.pid for q in by_key["nir"].queries] == [1, 1, 2, 2, 3, 3]
    assert {q.pid for q in by_key["sk"].queries} == {1, 3}
    for qs in p.sets:
        for q in qs.queries:
            for item in q.items:
                if item.modality is Modality.TEXT:
                    assert item.value in dict(idx.captions_of(q.pid)).values()
                else:
                    assert item.value in idx.paths(item.modality, q.pid)
    again = generate_protocol(idx, [3, 2, 1], "unordered15", queries_per_identity=2, seed=0)
    assert again == p
    assert generate_protocol(idx, [1, 2, 3], "ordered32", 1, seed=0).sets[5].key == "cp_nir"


def test_generated_protocol_seed_changes_draws(tree) -> None:
    idx = build_index(tree(identities=4, per_modality={"vis": 5, "nir": 5}), cache=False)
    a = generate_protocol(idx, [1, 2, 3, 4], "unordered15", 3, seed=0)
    b = generate_protocol(idx, [1, 2, 3, 4], "unordered15", 3, seed=1)
    assert a.sets[0] != b.sets[0]
    assert all(not qs.queries for qs in a.sets if Modality.CP in qs.modalities)


def test_resolve_protocol(orbench_tree: Path) -> None:
    idx = build_index(orbench_tree, cache=False)
    s = make_splits(idx, _cfg())
    assert resolve_protocol(idx, "test", s, EvalConfig(), seed=0) is idx.eval_protocol
    val = resolve_protocol(idx, "val", s, EvalConfig(), seed=0)
    assert val.name == "unordered15" and {pid for pid, _ in val.gallery} == set(s.val)
    forced = resolve_protocol(idx, "test", s, EvalConfig(protocol="ordered32"), seed=0)
    assert forced.name == "ordered32" and len(forced.sets) == 32
    assert {pid for pid, _ in forced.gallery} == {9, 10, 11, 12}


def test_resolve_protocol_without_eval_file_and_empty_split(seed_tree: Path) -> None:
    idx = build_index(seed_tree, cache=False)
    s = make_splits(idx, _cfg())
    assert resolve_protocol(idx, "test", s, EvalConfig(), seed=0).name == "unordered15"
    empty = make_splits(idx, _cfg(val_share=0.0))
    with pytest.raises(DataError, match="val split has no identities"):
        resolve_protocol(idx, "val", empty, EvalConfig(), seed=0)
