"""Index samplers: the seeded infinite training stream, its repeat-factor variant, the sharded test order.

A training stream is a pure function of its seed. ``TrainingSampler``'s epoch ``e`` is a
permutation drawn from a generator seeded by ``(seed, e)``, so any position can be reached
without the past; ``RepeatFactorTrainingSampler`` draws its epochs as detectron2 does and
replays them (cheap: no image is read) to reach a position. Every rank computes the same global
stream, and rank ``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...`` of it. Like
detectron2's, these samplers do not shard across DataLoader workers; ``ToIterableDataset`` does.
"""
import copy
import itertools
import logging
import math
import numbers
from collections import defaultdict
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Sampler

from detkit.utils import comm

__all__ = ["TrainingSampler", "RepeatFactorTrainingSampler", "InferenceSampler"]

logger = logging.getLogger(__name__)


def _rank_and_world(rank: Optional[int], world_size: Optional[int], who: str) -> Tuple[int, int]:
    rank = comm.get_rank() if rank is None else int(rank)
    world_size = comm.get_world_size() if world_size is None else int(world_size)
    if not 0 <= rank < world_size:
        raise ValueError(f"{who}: rank {rank} is outside world size {world_size}.")
    return rank, world_size


class _StreamSampler(Sampler):
    """A seeded infinite stream of indices, of which this rank takes every ``world_size``-th."""

    _seed: int
    _rank: int
    _world_size: int

    @property
    def seed(self) -> int:
        """The stream's seed (the same on every rank)."""
        return self._seed

    def with_seed(self, seed: int) -> "_StreamSampler":
        """The same sampler with another stream seed."""
        other = copy.copy(self)
        other._seed = int(seed)
        return other

    def _global_indices(self, start: int = 0) -> Iterator[int]:
        """The global stream from position ``start`` on."""
        raise NotImplementedError

    def positions(self, start: int = 0) -> Iterator[Tuple[int, int]]:
        """Yield ``(global_position, dataset_index)`` for this rank, from its ``start``-th item on."""
        first = self._rank + int(start) * self._world_size
        stream = itertools.islice(self._global_indices(first), None, None, self._world_size)
        return zip(itertools.count(first, self._world_size), stream)

    def __iter__(self) -> Iterator[int]:
        for _, idx in self.positions():
            yield idx


class TrainingSampler(_StreamSampler):
    """An infinite stream of dataset indices, shuffled per epoch with a seeded generator.

    Iterating yields this rank's indices (detectron2's ``indices[rank::world_size]`` of
    ``shuffle(range(size)) + shuffle(range(size)) + ...``); ``positions()`` yields them with their
    global stream position, which the train loader uses to seed each sample's augmentation.
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
        if not isinstance(size, numbers.Integral) or isinstance(size, bool):
            raise TypeError(f"TrainingSampler(size=) expects an int, got {type(size).__name__}.")
        if size <= 0:
            raise ValueError(f"TrainingSampler needs a non-empty dataset, got size={size}.")
        self._size = int(size)
        self._shuffle = shuffle
        self._seed = int(comm.shared_random_seed() if seed is None else seed)
        self._rank, self._world_size = _rank_and_world(rank, world_size, "TrainingSampler")

    def _epoch(self, epoch: int) -> np.ndarray:
        if not self._shuffle:
            return np.arange(self._size)
        return np.random.default_rng([self._seed, epoch]).permutation(self._size)

    def _global_indices(self, start: int = 0) -> Iterator[int]:
        epoch, offset = divmod(int(start), self._size)
        while True:
            yield from self._epoch(epoch)[offset:].tolist()
            epoch, offset = epoch + 1, 0


class RepeatFactorTrainingSampler(_StreamSampler):
    """Like ``TrainingSampler``, but image ``i`` appears about ``repeat_factors[i]`` times per epoch.

    Each epoch rounds the factors stochastically (image ``i`` appears ``floor(r_i)`` times, plus
    once more with probability ``r_i - floor(r_i)``), then shuffles the repeated indices. The
    draws use one torch generator seeded with ``seed``, in detectron2's order, so the stream is
    detectron2's for the same seed. Suited to class-imbalanced datasets such as LVIS.
    """

    def __init__(self, repeat_factors: torch.Tensor, *, shuffle: bool = True, seed: Optional[int] = None,
                 rank: Optional[int] = None, world_size: Optional[int] = None):
        """
        Args:
            repeat_factors: (N,) float repeat factor of each dataset index (all ones is a
                ``TrainingSampler``); see ``repeat_factors_from_category_frequency``.
            shuffle: shuffle each epoch.
            seed: stream seed; ``None`` draws one shared by all ranks.
            rank, world_size: this process's shard; default from ``detkit.utils.comm``.
        """
        repeat_factors = torch.as_tensor(repeat_factors, dtype=torch.float32)
        if repeat_factors.ndim != 1 or len(repeat_factors) == 0:
            raise ValueError("RepeatFactorTrainingSampler needs a non-empty 1-D tensor of repeat factors, got shape "
                             f"{tuple(repeat_factors.shape)}.")
        if bool((repeat_factors < 0).any()):
            raise ValueError("RepeatFactorTrainingSampler: repeat factors must be >= 0.")
        self._shuffle = shuffle
        self._seed = int(comm.shared_random_seed() if seed is None else seed)
        self._rank, self._world_size = _rank_and_world(rank, world_size, "RepeatFactorTrainingSampler")
        self._int_part = torch.trunc(repeat_factors)  # (N,)
        self._frac_part = repeat_factors - self._int_part  # (N,)

    @staticmethod
    def repeat_factors_from_category_frequency(dataset_dicts: List[dict], repeat_thresh: float,
                                               sqrt: bool = True) -> torch.Tensor:
        """Per-image repeat factors from category frequency (LVIS paper, v2, appendix B.2).

        With ``f_c`` the fraction of images that contain category ``c``, the category's factor is
        ``r_c = max(1, sqrt(t / f_c))`` (``t / f_c`` if ``sqrt`` is False), and an image's factor is
        the largest ``r_c`` of its categories (1 for an image without annotations).

        Args:
            dataset_dicts: dataset dicts with ``annotations`` (``category_id``).
            repeat_thresh: the frequency ``t`` under which images get repeated.
            sqrt: take the square root of ``t / f_c``.

        Returns:
            A float32 tensor (N,): the repeat factor of each image.
        """
        if not dataset_dicts:
            raise ValueError("repeat_factors_from_category_frequency needs at least one dataset dict.")
        per_image = [{ann["category_id"] for ann in d.get("annotations", [])} for d in dataset_dicts]
        counts = defaultdict(int)
        for cats in per_image:
            for c in cats:
                counts[c] += 1
        category_rep = {}
        for c, n in sorted(counts.items()):
            freq = n / len(dataset_dicts)
            category_rep[c] = max(1.0, math.sqrt(repeat_thresh / freq) if sqrt else repeat_thresh / freq)
            logger.info("Category %s: frequency %.4f, repeat factor %.2f.", c, freq, category_rep[c])
        return torch.tensor([max((category_rep[c] for c in cats), default=1.0) for cats in per_image],
                            dtype=torch.float32)

    def _get_epoch_indices(self, generator: torch.Generator) -> torch.Tensor:
        """One epoch's dataset indices, each repeated by its stochastically rounded factor."""
        rands = torch.rand(len(self._frac_part), generator=generator)  # (N,)
        reps = (self._int_part + (rands < self._frac_part).float()).long()  # (N,)
        return torch.repeat_interleave(torch.arange(len(reps)), reps)

    def _global_indices(self, start: int = 0) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self._seed)
        to_skip = int(start)
        while True:
            indices = self._get_epoch_indices(g)
            if self._shuffle:
                indices = indices[torch.randperm(len(indices), generator=g)]
            if to_skip >= len(indices):  # replay an epoch that lies wholly before start
                to_skip -= len(indices)
                continue
            yield from indices[to_skip:].tolist()
            to_skip = 0


class InferenceSampler(Sampler):
    """Indices 0..size-1 split into contiguous, order-preserving shards, one per rank.

    The shards cover every index exactly once; the first ``size % world_size`` ranks get one more.
    """

    def __init__(self, size: int, *, rank: Optional[int] = None, world_size: Optional[int] = None):
        """
        Args:
            size: dataset length.
            rank, world_size: this process's shard; default from ``detkit.utils.comm``.
        """
        self._size = int(size)
        self._rank, self._world_size = _rank_and_world(rank, world_size, "InferenceSampler")
        self._local_indices = self._get_local_indices(self._size, self._world_size, self._rank)

    @staticmethod
    def _get_local_indices(total_size: int, world_size: int, rank: int) -> range:
        """The contiguous ``range`` of indices that ``rank`` of ``world_size`` evaluates."""
        shard, extra = divmod(total_size, world_size)
        begin = shard * rank + min(rank, extra)
        return range(begin, begin + shard + (1 if rank < extra else 0))

    def __iter__(self) -> Iterator[int]:
        return iter(self._local_indices)

    def __len__(self) -> int:
        return len(self._local_indices)
