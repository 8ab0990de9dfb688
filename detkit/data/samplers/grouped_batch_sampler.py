"""Batch samplers that never mix groups (e.g. landscape and portrait images) within a batch."""
import itertools
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from torch.utils.data import BatchSampler, Sampler

__all__ = ["GroupedBatchSampler", "AspectRatioGroupedBatchSampler"]


class GroupedBatchSampler(BatchSampler):
    """Batches of indices from ``sampler`` in which every index has the same group id.

    Each index waits in its group's buffer; a batch is emitted as soon as a buffer holds
    ``batch_size`` indices, so batches follow the sampler's order as closely as grouping allows.
    Incomplete buffers are never emitted (as in detectron2).
    """

    def __init__(self, sampler: Sampler, group_ids: Sequence[int], batch_size: int):
        """
        Args:
            sampler: the index stream (a ``torch.utils.data.Sampler``).
            group_ids: one int group id per dataset index the sampler can yield.
            batch_size: indices per batch.
        """
        if not isinstance(sampler, Sampler):
            raise ValueError(f"sampler should be a torch.utils.data.Sampler, but got sampler={sampler!r}.")
        group_ids = np.asarray(group_ids)
        if group_ids.ndim != 1:
            raise ValueError(f"group_ids must be a flat list of ints (one per index), got shape {group_ids.shape}.")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.sampler = sampler
        self.group_ids = group_ids
        self.batch_size = int(batch_size)
        self.buffer_per_group: Dict[int, List[int]] = {int(k): [] for k in np.unique(group_ids).tolist()}

    def __iter__(self) -> Iterator[List[int]]:
        for idx in self.sampler:
            buffer = self.buffer_per_group[int(self.group_ids[idx])]
            buffer.append(idx)
            if len(buffer) == self.batch_size:
                batch = buffer[:]
                del buffer[:]  # clear before yielding: code after a yield may never run
                yield batch

    def __len__(self) -> int:
        raise NotImplementedError("len() of GroupedBatchSampler is not well-defined.")


class AspectRatioGroupedBatchSampler:
    """Batches of ``(dataset_index, global_position)`` from a seeded training stream.

    The stream is a ``TrainingSampler`` or ``RepeatFactorTrainingSampler`` (anything with
    ``positions(start)``). With ``group_ids`` (e.g. 0 for landscape, 1 for portrait images), an
    index waits in its group's bucket and a batch is emitted when a bucket fills, so a batch
    never mixes groups. Everything is decided from the index stream alone, so the batches are
    the same for any number of workers, and ``start_batch`` skips the first batches exactly (by
    replaying indices; no image is read).
    """

    def __init__(self, sampler, group_ids: Optional[Sequence[int]], batch_size: int, start_batch: int = 0):
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
