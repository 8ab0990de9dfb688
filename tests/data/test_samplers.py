"""Samplers: seeded determinism, per-epoch permutations, DDP sharding, aspect grouping, skipping."""
import itertools

import numpy as np
import pytest
import torch

from detkit.data.samplers import (AspectRatioGroupedBatchSampler, GroupedBatchSampler, InferenceSampler,
                                  RepeatFactorTrainingSampler, TrainingSampler)


def _take(it, n):
    return list(itertools.islice(it, n))


def test_training_sampler_is_deterministic_and_seeded():
    a = _take(iter(TrainingSampler(10, seed=3)), 50)
    assert a == _take(iter(TrainingSampler(10, seed=3)), 50)
    assert a != _take(iter(TrainingSampler(10, seed=4)), 50)
    for epoch in range(5):  # each epoch is a permutation, and epochs differ
        assert sorted(a[10 * epoch:10 * epoch + 10]) == list(range(10))
    assert a[:10] != a[10:20]


def test_training_sampler_without_shuffle():
    assert _take(iter(TrainingSampler(3, shuffle=False, seed=0)), 7) == [0, 1, 2, 0, 1, 2, 0]


def test_two_ranks_split_the_global_stream_without_overlap():
    full = _take(TrainingSampler(7, seed=5, rank=0, world_size=1).positions(), 40)
    r0 = _take(TrainingSampler(7, seed=5, rank=0, world_size=2).positions(), 20)
    r1 = _take(TrainingSampler(7, seed=5, rank=1, world_size=2).positions(), 20)
    assert r0 == full[0::2] and r1 == full[1::2]
    assert sorted(p for p, _ in r0 + r1) == list(range(40))  # every position exactly once
    first_epoch = [i for p, i in r0 + r1 if p < 7]
    assert sorted(first_epoch) == list(range(7))


def test_positions_start_skips_exactly():
    s = TrainingSampler(5, seed=1, rank=1, world_size=3)
    assert _take(s.positions(start=4), 6) == _take(s.positions(), 10)[4:]


def test_training_sampler_argument_errors():
    with pytest.raises(ValueError, match="non-empty dataset, got size=0"):
        TrainingSampler(0, seed=1)
    with pytest.raises(ValueError, match="rank 2 is outside world size 2"):
        TrainingSampler(3, seed=1, rank=2, world_size=2)


def test_training_sampler_default_seed_is_drawn(monkeypatch):
    """seed=None takes the seed all ranks share (comm.shared_random_seed), and streams from it."""
    import detkit.utils.comm as comm

    monkeypatch.setattr(comm, "shared_random_seed", lambda: 1234)
    drawn = TrainingSampler(7)
    assert drawn.seed == 1234
    assert _take(drawn.positions(), 14) == _take(TrainingSampler(7, seed=1234).positions(), 14)


@pytest.mark.parametrize("size,world,expected", [
    (7, 3, [[0, 1, 2], [3, 4], [5, 6]]),
    (2, 3, [[0], [1], []]),
    (6, 2, [[0, 1, 2], [3, 4, 5]]),
])
def test_inference_sampler_shards(size, world, expected):
    shards = [list(InferenceSampler(size, rank=r, world_size=world)) for r in range(world)]
    assert shards == expected
    assert [len(InferenceSampler(size, rank=r, world_size=world)) for r in range(world)] == [len(s) for s in expected]
    assert list(InferenceSampler(size)) == list(range(size))


def test_grouped_batches_never_mix_groups_and_follow_the_stream():
    groups = np.asarray([0, 1, 0, 1, 0, 0, 1, 1, 0])
    sampler = TrainingSampler(9, seed=2, rank=0, world_size=1)
    batches = _take(iter(AspectRatioGroupedBatchSampler(sampler, groups, 2)), 20)
    assert all(len(b) == 2 and groups[b[0][0]] == groups[b[1][0]] for b in batches)
    for b in batches:  # items carry their stream positions
        assert all(idx == dict(_take(sampler.positions(), 100))[pos] for idx, pos in b)
    flat_positions = sorted(p for b in batches for _, p in b)
    assert flat_positions[:30] == list(range(30))  # nothing skipped early in the stream


def test_grouped_batches_start_batch_replays_exactly():
    groups = np.asarray([0, 1, 1, 0, 0, 1, 0])
    sampler = TrainingSampler(7, seed=8, rank=1, world_size=2)
    full = _take(iter(AspectRatioGroupedBatchSampler(sampler, groups, 3)), 12)
    assert _take(iter(AspectRatioGroupedBatchSampler(sampler, groups, 3, start_batch=5)), 7) == full[5:]
    plain = _take(iter(AspectRatioGroupedBatchSampler(sampler, None, 3)), 12)
    assert _take(iter(AspectRatioGroupedBatchSampler(sampler, None, 3, start_batch=4)), 8) == plain[4:]
    assert [p for b in plain for _, p in b] == list(range(1, 72, 2))  # plain batching is the stream in order


# An LVIS-style histogram over 10 images: category 1 is in 8 images (f = 0.8), 2 in 1 (f = 0.1),
# 3 in 4 (f = 0.4) and 4 in 2 (f = 0.2); images 8 and 9 have no annotations.
_CATS_PER_IMAGE = [[1, 2, 2], [1, 4], [1, 3, 4], [1, 3], [1, 3], [1, 3], [1], [1], [], []]
_HIST_DICTS = [{"annotations": [{"category_id": c} for c in cats]} for cats in _CATS_PER_IMAGE]


def test_repeat_factors_from_a_category_histogram():
    # t = 0.4: r_c = max(1, sqrt(t / f_c)) = 1, 2, 1, sqrt(2); an image takes its rarest category's factor.
    factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(_HIST_DICTS, 0.4)
    assert factors.dtype == torch.float32
    assert factors.tolist() == pytest.approx([2.0, 2 ** 0.5, 2 ** 0.5, 1, 1, 1, 1, 1, 1, 1])
    # Without the square root: t / f_c = 0.5 -> 1, 4, 1, 2.
    linear = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(_HIST_DICTS, 0.4, sqrt=False)
    assert linear.tolist() == [4.0, 2.0, 2.0, 1, 1, 1, 1, 1, 1, 1]


def test_repeat_factor_stream_rounds_stochastically_as_detectron2():
    sampler = RepeatFactorTrainingSampler(torch.tensor([2.0, 0.5, 1.0]), shuffle=False, seed=0, rank=0, world_size=1)
    # detectron2's draws: one generator seeded with the seed; per epoch, one uniform per image,
    # and image i is kept floor(r_i) + (u_i < frac(r_i)) times.
    g = torch.Generator().manual_seed(0)
    expected = []
    for _ in range(3):
        u = torch.rand(3, generator=g).tolist()
        expected += [0, 0] + ([1] if u[1] < 0.5 else []) + [2]
    assert _take(iter(sampler), len(expected)) == expected
    # Shuffled, each epoch's repeated indices are then permuted by a randperm from the same generator.
    shuffled = RepeatFactorTrainingSampler(torch.tensor([2.0, 0.5, 1.0]), seed=3, rank=0, world_size=1)
    g = torch.Generator().manual_seed(3)
    expected = []
    for _ in range(3):
        u = torch.rand(3, generator=g).tolist()
        epoch = torch.tensor([0, 0] + ([1] if u[1] < 0.5 else []) + [2])
        expected += epoch[torch.randperm(len(epoch), generator=g)].tolist()
    assert _take(iter(shuffled), len(expected)) == expected


def test_repeat_factor_stream_resumes_and_shards():
    factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(_HIST_DICTS, 0.4)
    full = _take(RepeatFactorTrainingSampler(factors, seed=5, rank=0, world_size=1).positions(), 60)
    assert [p for p, _ in full] == list(range(60))
    r1 = RepeatFactorTrainingSampler(factors, seed=5, rank=1, world_size=2)
    assert _take(r1.positions(), 20) == full[1::2][:20]
    assert _take(r1.positions(start=7), 10) == full[1::2][7:17]  # resume past whole epochs without the past
    with pytest.raises(ValueError, match="non-empty 1-D tensor of repeat factors"):
        RepeatFactorTrainingSampler(torch.ones(2, 2), seed=0)


def test_inference_sampler_local_indices():
    get = InferenceSampler._get_local_indices
    assert [get(10, 3, r) for r in range(3)] == [range(0, 4), range(4, 7), range(7, 10)]
    assert [get(2, 4, r) for r in range(4)] == [range(0, 1), range(1, 2), range(2, 2), range(2, 2)]
    assert get(5, 1, 0) == range(0, 5)


class _ListSampler(torch.utils.data.Sampler):
    def __init__(self, indices):
        self.indices = indices

    def __iter__(self):
        return iter(self.indices)


def test_grouped_batch_sampler_never_mixes_groups():
    groups = [0, 1, 0, 0, 1, 1, 0, 1]
    batches = [b for b in GroupedBatchSampler(_ListSampler(range(8)), groups, 2)]  # list() would ask len()
    # 0 waits; 1 waits; 2 completes [0, 2]; 3 waits; 4 completes [1, 4]; 6 completes [3, 6]; 7 completes [5, 7].
    assert batches == [[0, 2], [1, 4], [3, 6], [5, 7]]
    # Incomplete buffers at the end are never emitted.
    assert [b for b in GroupedBatchSampler(_ListSampler([0, 1, 2, 4]), groups, 2)] == [[0, 2], [1, 4]]
    with pytest.raises(ValueError, match="sampler should be a torch.utils.data.Sampler"):
        GroupedBatchSampler([0, 1], groups, 2)
    with pytest.raises(NotImplementedError):
        len(GroupedBatchSampler(_ListSampler(range(8)), groups, 2))
