"""Samplers: seeded determinism, per-epoch permutations, DDP sharding, aspect grouping, skipping."""
import itertools

import numpy as np
import pytest

from detkit.data import AspectRatioGroupedBatchSampler, InferenceSampler, TrainingSampler


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
