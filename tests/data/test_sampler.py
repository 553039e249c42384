"""P x K identity-balanced batch sampling."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest
from torch.utils.data import DataLoader

from reid_core.data.sampler import PKBatchSampler, first_batches_composition
from reid_core.errors import DataError

# 12 identities with 4..9 anchors each (pid 100 + j has 4 + j % 6 anchors), interleaved.
ANCHOR_PIDS = [100 + j for j in range(12) for _ in range(4 + j % 6)]


def _quiet(*args, **kwargs) -> PKBatchSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PKBatchSampler(*args, **kwargs)


def _epoch(sampler: PKBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_every_batch_of_an_epoch_is_p_distinct_ids_times_k_anchors():
    p, k = 3, 4
    sampler = PKBatchSampler(ANCHOR_PIDS, p=p, k=k, seed=0)
    batches = _epoch(sampler, 0)
    assert len(batches) == len(sampler) == len(ANCHOR_PIDS) // (p * k)
    for batch in batches:
        counts = Counter(ANCHOR_PIDS[i] for i in batch)
        assert len(counts) == p and set(counts.values()) == {k}
        assert len(set(batch)) == p * k  # every identity has >= K anchors: no repeats
    visited = {i for b in batches for i in b}
    assert len(visited) >= 0.75 * len(ANCHOR_PIDS)  # one pass over the anchors
    assert sampler.replacement_pids == () and sampler.replacement_draws == 0


def test_batches_depend_only_on_seed_and_epoch():
    a = _epoch(PKBatchSampler(ANCHOR_PIDS, p=3, k=4, seed=7), 2)
    b = _epoch(PKBatchSampler(ANCHOR_PIDS, p=3, k=4, seed=7), 2)
    assert a == b
    assert a != _epoch(PKBatchSampler(ANCHOR_PIDS, p=3, k=4, seed=8), 2)
    assert a != _epoch(PKBatchSampler(ANCHOR_PIDS, p=3, k=4, seed=7), 3)


def test_drop_last_rounds_the_epoch_length():
    n = len(ANCHOR_PIDS)
    assert len(PKBatchSampler(ANCHOR_PIDS, p=5, k=4, seed=0)) == n // 20
    assert len(PKBatchSampler(ANCHOR_PIDS, p=5, k=4, seed=0, drop_last=False)) == -(-n // 20)


def test_identities_with_fewer_than_k_anchors_are_drawn_with_replacement_and_warned():
    pids = [1] * 6 + [2] * 5 + [3] * 1 + [4] * 2 + [5] * 7
    with pytest.warns(UserWarning, match="2 of 5 identities have fewer than K = 4"):
        sampler = PKBatchSampler(pids, p=2, k=4, seed=0)
    assert sampler.replacement_pids == (3, 4)
    seen_short = False
    for epoch in range(3):
        for batch in _epoch(sampler, epoch):
            counts = Counter(pids[i] for i in batch)
            assert len(counts) == 2 and set(counts.values()) == {4}
            seen_short |= bool({3, 4} & set(counts))
    assert seen_short
    assert sampler.replacement_draws >= 2  # each short identity's pass is one replaced chunk


def test_k_of_one_warns():
    with pytest.warns(UserWarning, match="K = 1"):
        PKBatchSampler(ANCHOR_PIDS, p=3, k=1, seed=0)


@pytest.mark.parametrize("k", [2, 4])
def test_no_warning_for_balanced_data_and_k_from_2(k):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PKBatchSampler(ANCHOR_PIDS, p=3, k=k, seed=0)


def test_fewer_identities_than_p_names_both_numbers():
    with pytest.raises(DataError, match=r"12 training identities.*P = 13"):
        _quiet(ANCHOR_PIDS, p=13, k=4, seed=0)


def test_first_batches_composition_lists_ids_and_their_k():
    sampler = PKBatchSampler(ANCHOR_PIDS, p=3, k=4, seed=1)
    comp = first_batches_composition(sampler, n=2)
    assert len(comp) == 2
    assert all(len(c) == 3 and set(c.values()) == {4} for c in comp)
    first = _epoch(sampler, 0)[:2]
    assert comp == [dict(Counter(ANCHOR_PIDS[i] for i in b)) for b in first]


def test_works_as_a_dataloader_batch_sampler():
    sampler = PKBatchSampler(ANCHOR_PIDS, p=3, k=4, seed=0)
    loader = DataLoader(list(range(len(ANCHOR_PIDS))), batch_sampler=sampler)
    batches = [b.tolist() for b in loader]
    assert batches == _epoch(sampler, 0)


def test_ranks_split_each_batch_by_identity_and_together_make_the_whole_batch():
    whole = _epoch(PKBatchSampler(ANCHOR_PIDS, p=4, k=4, seed=5), 1)
    shares = [
        _epoch(PKBatchSampler(ANCHOR_PIDS, p=4, k=4, seed=5, rank=r, world_size=2), 1)
        for r in range(2)
    ]
    assert len(shares[0]) == len(shares[1]) == len(whole)
    for batch, first, second in zip(whole, *shares, strict=True):
        assert first + second == batch  # rank order is batch order
        ids = [{ANCHOR_PIDS[i] for i in share} for share in (first, second)]
        assert len(ids[0]) == len(ids[1]) == 2 and not ids[0] & ids[1]


def test_p_that_does_not_split_over_the_ranks_is_one_clear_error():
    with pytest.raises(DataError, match=r"data.p = 3 .* 2 processes; choose a multiple of 2"):
        _quiet(ANCHOR_PIDS, p=3, k=4, seed=0, rank=1, world_size=2)
