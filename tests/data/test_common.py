"""DatasetFromList, MapDataset (per-sample seeded mapping), ToIterableDataset (worker sharding), aspect grouping."""
import itertools
import pickle
import random

import numpy as np
import pytest
import torch

from detkit.data import AspectRatioGroupedDataset, DatasetFromList, MapDataset, ToIterableDataset, TrainingSampler
from detkit.structures import Boxes, Instances


def test_dataset_from_list_round_trips_and_copies():
    items = [{"file_name": f"{i}.jpg", "annotations": [{"bbox": [i, 0, 1, 1]}]} for i in range(5)]
    ds = DatasetFromList(items)
    assert len(ds) == 5 and [ds[i] for i in range(5)] == items
    ds[2]["annotations"].clear()
    assert ds[2] == items[2]  # every access is a fresh copy
    # One flat byte buffer holds every item (no per-item Python objects for workers to copy on read).
    assert isinstance(ds._buffer, np.ndarray) and ds._buffer.dtype == np.uint8 and ds._buffer.ndim == 1
    plain = DatasetFromList(items, serialize=False)
    assert [plain[i] for i in range(5)] == items and plain[0] is not items[0]


def test_map_dataset_seeds_and_restores_global_generators_per_position():
    def mapper(d):
        return (d["v"], random.random(), float(np.random.rand()), float(torch.rand(1)))

    items = DatasetFromList([{"v": 10}, {"v": 20}])
    ds = MapDataset(items, mapper, seed=1)
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    assert ds[(0, 3)] == ds[(0, 3)] != ds[(0, 4)]
    assert ds[(0, 3)][1:] == ds[(1, 3)][1:]  # the draws depend on the stream position, not on the item
    assert MapDataset(items, mapper, seed=2)[(0, 3)] != ds[(0, 3)]  # another seed, other draws
    assert np.array_equal(np.random.get_state()[1], before)
    np.random.seed(0)
    expected = float(np.random.rand())
    np.random.seed(0)
    assert ds[0][2] == expected  # a plain index (test loaders) leaves the global generators as they are


def test_instances_pickle_through_workers():
    inst = Instances((3, 4), gt_boxes=Boxes(torch.tensor([[0.0, 0, 1, 1]])), gt_classes=torch.tensor([2]))
    back = pickle.loads(pickle.dumps(inst))
    assert back.image_size == (3, 4) and back.gt_classes.tolist() == [2]
    assert back.gt_boxes.tensor.tolist() == [[0, 0, 1, 1]]


class _WhoReads(torch.utils.data.Dataset):
    """Item i is (i, id of the DataLoader worker that read it, or -1 in the main process)."""

    def __len__(self):
        return 5

    def __getitem__(self, i):
        info = torch.utils.data.get_worker_info()
        return (i, -1 if info is None else info.id)


def _batches(num_workers, chunk, n):
    sampler = TrainingSampler(5, shuffle=False, seed=0, rank=0, world_size=1)  # 0 1 2 3 4 0 1 2 ...
    loader = torch.utils.data.DataLoader(ToIterableDataset(_WhoReads(), sampler, shard_chunk_size=chunk),
                                         batch_size=chunk, num_workers=num_workers, collate_fn=list)
    return list(itertools.islice(loader, n))


def test_to_iterable_dataset_gives_the_same_stream_for_two_workers():
    one = _batches(0, 3, 4)
    assert one == [[(0, -1), (1, -1), (2, -1)], [(3, -1), (4, -1), (0, -1)],
                   [(1, -1), (2, -1), (3, -1)], [(4, -1), (0, -1), (1, -1)]]
    # Worker 0 reads chunks 0, 2, ..., worker 1 chunks 1, 3, ...; the DataLoader alternates them.
    two = _batches(2, 3, 4)
    assert [[i for i, _ in b] for b in two] == [[i for i, _ in b] for b in one]
    assert [{w for _, w in b} for b in two] == [{0}, {1}, {0}, {1}]
    # Chunks of one item, one item per batch.
    assert [b[0][0] for b in _batches(2, 1, 7)] == [0, 1, 2, 3, 4, 0, 1]


def test_to_iterable_dataset_without_sharding_and_errors():
    sampler = TrainingSampler(5, shuffle=False, seed=0, rank=0, world_size=1)
    ds = ToIterableDataset(_WhoReads(), sampler, shard_sampler=False)
    assert [i for i, _ in itertools.islice(ds, 6)] == [0, 1, 2, 3, 4, 0]
    with pytest.raises(TypeError, match="needs a torch.utils.data.Sampler, got list"):
        ToIterableDataset(_WhoReads(), [0, 1])
    with pytest.raises(TypeError, match="needs a map-style dataset"):
        ToIterableDataset(ds, sampler)


def test_aspect_ratio_grouped_dataset_batches_by_orientation():
    items = [{"i": 0, "width": 4, "height": 3}, {"i": 1, "width": 3, "height": 4}, {"i": 2, "width": 5, "height": 5},
             {"i": 3, "width": 8, "height": 2}, {"i": 4, "width": 2, "height": 9}]
    batches = [[d["i"] for d in b] for b in AspectRatioGroupedDataset(items, 2)]
    # Landscape (w > h): 0, 3; the rest (a square counts as portrait): 1, 2, 4 -> [1, 2], then 4 is left over.
    assert batches == [[1, 2], [0, 3]]


def test_map_dataset_none_skips_to_the_next_item():
    ds = MapDataset(DatasetFromList([{"v": 1}, {"v": 2}, {"v": 3}]), lambda d: None if d["v"] == 2 else d["v"])
    assert [ds[i] for i in range(3)] == [1, 3, 3]
    never = MapDataset(DatasetFromList([{"v": 1}]), lambda d: None)
    with pytest.raises(RuntimeError, match="returned None for every one of the 1 dataset items"):
        never[0]
    # Over an iterable dataset, the result is iterable and None results are dropped.
    iterable = MapDataset(AspectRatioGroupedDataset([{"width": 2, "height": 1}] * 4, 2), lambda b: len(b))
    assert isinstance(iterable, torch.utils.data.IterableDataset) and list(iterable) == [2, 2]
    assert list(MapDataset(ToIterableDataset(DatasetFromList([1, 2, 3]), _Once(3)),
                           lambda x: None if x == 2 else x)) == [1, 3]


class _Once(torch.utils.data.Sampler):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(self.n))

    def __len__(self):
        return self.n


def test_dataset_from_list_copy_flag():
    items = [{"a": [1]}]
    assert DatasetFromList(items, copy=False, serialize=False)[0] is items[0]
    copied = DatasetFromList(items, copy=True, serialize=False)[0]
    assert copied == items[0] and copied is not items[0] and copied["a"] is not items[0]["a"]
