"""DatasetFromList (one serialized buffer) and MapDataset (per-sample seeded mapping)."""
import pickle
import random

import numpy as np
import torch

from detkit.data import DatasetFromList, MapDataset
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


def test_map_dataset_passes_a_position_seeded_rng():
    seen = []

    def mapper(d, rng=None):
        seen.append(rng)
        return d["v"] + (float(rng.random()) if rng is not None else 0.0)

    ds = MapDataset(DatasetFromList([{"v": 10}, {"v": 20}]), mapper, seed=5)
    a, b = ds[(1, 7)], ds[(1, 7)]
    assert a == b and 20 < a < 21 and isinstance(seen[-1], np.random.Generator)
    assert ds[(0, 7)] - 10 == a - 20  # the draw depends on the stream position, not on the item
    assert ds[(1, 8)] != a  # another stream position, another draw
    assert MapDataset(DatasetFromList([{"v": 10}, {"v": 20}]), mapper, seed=6)[(1, 7)] != a  # another seed
    assert ds[0] == 10 and seen[-1] is None  # plain indices (test loaders): no rng


def test_map_dataset_seeds_and_restores_global_generators_for_plain_mappers():
    def mapper(d):
        return (random.random(), float(np.random.rand()), float(torch.rand(1)))

    ds = MapDataset(DatasetFromList([{}]), mapper, seed=1)
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    assert ds[(0, 3)] == ds[(0, 3)] != ds[(0, 4)]
    assert np.array_equal(np.random.get_state()[1], before)


def test_instances_pickle_through_workers():
    inst = Instances((3, 4), gt_boxes=Boxes(torch.tensor([[0.0, 0, 1, 1]])), gt_classes=torch.tensor([2]))
    back = pickle.loads(pickle.dumps(inst))
    assert back.image_size == (3, 4) and back.gt_classes.tolist() == [2]
    assert back.gt_boxes.tensor.tolist() == [[0, 0, 1, 1]]
