"""Samplers: the seeded infinite training stream, aspect-ratio batching, and the sharded test order.

The training stream is a pure function of ``(seed, position)``: epoch ``e`` is a permutation
drawn from a generator seeded by ``(seed, e)``. So any position can be reached without the past,
every rank computes the same global stream, and rank ``r`` of ``W`` takes positions
``r, r + W, r + 2W, ...`` of it.
"""
import itertools
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from torch.utils.data import Sampler

from detkit.utils import comm

__all__ = ["TrainingSampler", "InferenceSampler", "AspectRatioGroupedBatchSampler"]


class TrainingSampler(Sampler):
    """An infinite stream of dataset indices, shuffled per epoch with a seeded generator.

    Iterating yields this rank's indices; ``positions()`` yields them with their global stream
    position, which the train loader uses to seed each sample's augmentation.
    """

    def __init__(self, size: int, shuffle: bool = True, seed: Optional[int] = None, *,
                 rank: Optional[int] = None, world_size: Optional[int] = None):
        """
        Args:
            size: dataset length (> 0).
            shuffle: shuffle each epoch; otherwise 0..size-1 repeated.
            seed: stream seed; ``None`` draws one shared by all ranks (``comm.shared_random_seed``).
            rank, world_size: this process's shard; default from ``detkit.utils.comm``.
        """
        if size <= 0:
            raise ValueError(f"TrainingSampler needs a non-empty dataset, got size={size}.")
        self._size = int(size)
        self._shuffle = shuffle
        self.seed = int(comm.shared_random_seed() if seed is None else seed)
        self._rank = comm.get_rank() if rank is None else int(rank)
        self._world_size = comm.get_world_size() if world_size is None else int(world_size)
        if not 0 <= self._rank < self._world_size:
            raise ValueError(f"TrainingSampler: rank {self._rank} is outside world size {self._world_size}.")

    def _epoch(self, epoch: int) -> np.ndarray:
        if not self._shuffle:
            return np.arange(self._size)
        return np.random.default_rng([self.seed, epoch]).permutation(self._size)

    def positions(self, start: int = 0) -> Iterator[Tuple[int, int]]:
        """Yield ``(global_position, dataset_index)`` for this rank, from its ``start``-th item on."""
        pos = self._rank + int(start) * self._world_size
        epoch, perm = -1, None
        while True:
            e = pos // self._size
            if e != epoch:
                epoch, perm = e, self._epoch(e)
            yield pos, int(perm[pos % self._size])
            pos += self._world_size

    def __iter__(self) -> Iterator[int]:
        for _, idx in self.positions():
            yield idx


class InferenceSampler(Sampler):
    """Indices 0..size-1 split into contiguous, order-preserving shards, one per rank.

    The shards cover every index exactly once; the first ``size % world_size`` ranks get one more.
    """

    def __init__(self, size: int, *, rank: Optional[int] = None, world_size: Optional[int] = None):
        self._size = int(size)
        rank = comm.get_rank() if rank is None else int(rank)
        world_size = comm.get_world_size() if world_size is None else int(world_size)
        shard, extra = divmod(self._size, world_size)
        begin = shard * rank + min(rank, extra)
        self._indices = range(begin, begin + shard + (1 if rank < extra else 0))

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices)

    def __len__(self) -> int:
        return len(self._indices)


class AspectRatioGroupedBatchSampler:
    """Batches of ``(dataset_index, global_position)`` from a ``TrainingSampler``.

    With ``group_ids`` (e.g. 0 for landscape, 1 for portrait images), an index waits in its
    group's bucket and a batch is emitted when a bucket fills, so a batch never mixes groups.
    Everything is decided from the index stream alone, so the batches are the same for any
    number of workers, and ``start_batch`` skips the first batches exactly (by replaying indices;
    no image is read).
    """

    def __init__(self, sampler: TrainingSampler, group_ids: Optional[Sequence[int]], batch_size: int,
                 start_batch: int = 0):
        """
        Args:
            sampler: the index stream.
            group_ids: one group id per dataset index, or ``None`` for plain batching.
            batch_size: items per batch on this rank.
            start_batch: batches to skip.
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.sampler = sampler
        self.group_ids = None if group_ids is None else np.asarray(group_ids)
        self.batch_size = int(batch_size)
        self.start_batch = int(start_batch)

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        if self.group_ids is None:  # plain batching: jump straight to the start
            stream = ((idx, pos) for pos, idx in self.sampler.positions(self.start_batch * self.batch_size))
            while True:
                yield list(itertools.islice(stream, self.batch_size))
        buckets: Dict[int, List[Tuple[int, int]]] = {}
        emitted = 0
        for pos, idx in self.sampler.positions():
            group = int(self.group_ids[idx])
            bucket = buckets.setdefault(group, [])
            bucket.append((idx, pos))
            if len(bucket) == self.batch_size:
                buckets[group] = []
                emitted += 1
                if emitted > self.start_batch:
                    yield bucket
