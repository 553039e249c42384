"""P x K identity-balanced batch sampling over training anchors.

Each batch holds P distinct identities with K anchors each. An epoch is one pass over the anchors:
every identity's anchors are shuffled and cut into chunks of K (a last partial chunk is filled
with other anchors of the same identity), and batches take one chunk from each of P identities
chosen with probability proportional to their remaining chunks, so identities with many anchors
are spread over the whole epoch. Identities with fewer than K anchors repeat anchors.

Under data-parallel training every rank draws the same global batches and keeps its own share:
rank r of N takes identities r*P/N .. (r+1)*P/N - 1 of each batch, so the N ranks together see
exactly the batch a single process would.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from reid_core.data.dropout import seeded_rng
from reid_core.errors import DataError

# K = 1 leaves an anchor without a same-identity partner in its batch. K = 2 with twice the
# identities (16 x 2) aligned better than 8 x 4 at the same batch size (docs/MODALITIES.md).
MIN_RECOMMENDED_K = 2


class PKBatchSampler(Sampler[list[int]]):
    """Batches of `p` distinct identities x `k` anchor indices into `anchor_pids`.

    Batches depend only on `(seed, epoch)`; call `set_epoch` before iterating. The number of
    batches is `len(anchor_pids) // (p * k)` (at least 1) with `drop_last`, else rounded up;
    every batch is full. Identities with fewer than `k` anchors are drawn with replacement: they
    are listed in `replacement_pids`, and `replacement_draws` counts such chunks in the last epoch.
    With `world_size` > 1 it yields this `rank`'s P / world_size identities of each batch.
    """

    def __init__(
        self,
        anchor_pids: Sequence[int],
        p: int,
        k: int,
        seed: int,
        drop_last: bool = True,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        if p < 1 or k < 1:
            raise ValueError(f"p and k must be >= 1, got p={p}, k={k}")
        if p % world_size:
            raise DataError(
                f"data.p = {p} identities per batch do not split evenly over {world_size} "
                f"processes; choose a multiple of {world_size}"
            )
        self.rank, self.world_size = rank, world_size
        self.anchor_pids = [int(pid) for pid in anchor_pids]
        self.p, self.k, self.seed, self.drop_last = p, k, seed, drop_last
        self.epoch = 0
        by_pid: dict[int, list[int]] = defaultdict(list)
        for i, pid in enumerate(self.anchor_pids):
            by_pid[pid].append(i)
        self._pids = sorted(by_pid)
        self._indices = [np.asarray(by_pid[pid], dtype=np.int64) for pid in self._pids]
        if len(self._pids) < p:
            raise DataError(
                f"{len(self._pids)} training identities, fewer than P = {p} identities per batch; "
                "lower data.p or add identities"
            )
        self.replacement_pids = tuple(
            pid for pid, idx in zip(self._pids, self._indices, strict=True) if len(idx) < k
        )
        self.replacement_draws = 0
        self._warn()

    def _warn(self) -> None:
        if self.k < MIN_RECOMMENDED_K:
            warnings.warn(
                f"K = {self.k} anchors per identity is below {MIN_RECOMMENDED_K}: "
                "no anchor has a same-identity partner in its batch, which weakens "
                "identity-level alignment",
                stacklevel=3,
            )
        if self.replacement_pids:
            warnings.warn(
                f"{len(self.replacement_pids)} of {len(self._pids)} identities have fewer than "
                f"K = {self.k} anchors and are drawn with replacement",
                stacklevel=3,
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n, per_batch = len(self.anchor_pids), self.p * self.k
        return max(1, n // per_batch) if self.drop_last else math.ceil(n / per_batch)

    def _chunks(self, j: int, rng: np.random.Generator) -> list[np.ndarray]:
        """Identity `j`'s anchors shuffled and cut into chunks of K for one pass."""
        idx, k = self._indices[j], self.k
        if len(idx) < k:
            self.replacement_draws += 1
            return [rng.choice(idx, size=k, replace=True)]
        perm = rng.permutation(idx)
        chunks = [perm[s : s + k] for s in range(0, len(perm) - k + 1, k)]
        rest = perm[len(chunks) * k :]
        if len(rest):
            # Fill the last chunk from this identity's other anchors: every anchor is visited
            # once per pass and no anchor repeats inside a batch.
            fill = rng.choice(perm[: len(chunks) * k], size=k - len(rest), replace=False)
            chunks.append(np.concatenate([rest, fill]))
        return chunks

    def __iter__(self) -> Iterator[list[int]]:
        share = self.p // self.world_size * self.k
        for batch in self.global_batches():
            yield batch[self.rank * share : (self.rank + 1) * share]

    def global_batches(self) -> Iterator[list[int]]:
        """The whole batches of this epoch (every rank's share), identity by identity."""
        rng = seeded_rng(self.seed, self.epoch)
        self.replacement_draws = 0
        queues = [self._chunks(j, rng) for j in range(len(self._pids))]
        counts = np.array([len(q) for q in queues], dtype=np.float64)
        for _ in range(len(self)):
            if np.count_nonzero(counts) < self.p:
                # Fewer than P identities left in this pass: start their next pass early.
                for j in np.flatnonzero(counts == 0):
                    queues[j] = self._chunks(int(j), rng)
                    counts[j] = len(queues[j])
            chosen = rng.choice(len(queues), size=self.p, replace=False, p=counts / counts.sum())
            counts[chosen] -= 1
            yield [int(i) for j in chosen for i in queues[j].pop()]


def first_batches_composition(sampler: PKBatchSampler, n: int = 2) -> list[dict[int, int]]:
    """Identity ids and their anchor counts in the sampler's first `n` batches, for logging."""
    out: list[dict[int, int]] = []
    for batch in sampler.global_batches():
        out.append(dict(Counter(sampler.anchor_pids[i] for i in batch)))
        if len(out) >= n:
            break
    return out
