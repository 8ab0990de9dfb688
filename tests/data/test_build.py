"""Loaders: dataset dict assembly, batch sizes, sharding, exact resume, workers, the test loader."""
import hashlib
import itertools

import pytest
import torch

from detkit.config import get_cfg
from detkit.data import (DatasetCatalog, InferenceSampler, ToIterableDataset, TrainingSampler,
                         build_detection_test_loader, build_detection_train_loader, get_detection_dataset_dicts)
from detkit.data.datasets import register_shapes
from detkit.structures import BoxMode


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    name = "shapes_tiny_build_test"
    register_shapes(name, 10, 64, seed=11, root=str(tmp_path_factory.mktemp("root")))
    DatasetCatalog.get(name)  # generate once
    return name


def _cfg(name, **overrides):
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = (name,)
    cfg.INPUT.MIN_SIZE_TRAIN = (48, 80)
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "range"
    cfg.INPUT.MAX_SIZE_TRAIN = 100
    cfg.INPUT.MIN_SIZE_TEST = 64
    cfg.INPUT.COLOR_JITTER.ENABLED = True
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SEED = 42
    for k, v in overrides.items():
        cfg.merge_from_list([k, v])
    return cfg


def _sig(batch):
    """What a batch is: each image's file, pixels (after augmentation) and boxes."""
    return [(d["file_name"], hashlib.md5(d["image"].numpy().tobytes()).hexdigest(),
             d["instances"].gt_boxes.tensor.tolist(), d["instances"].gt_classes.tolist()) for d in batch]


def _take(loader_or_iter, n):
    return [_sig(b) for b in itertools.islice(loader_or_iter, n)]


def _register(unique_name, dicts):
    name = unique_name()
    DatasetCatalog.register(name, lambda: dicts)
    return name


def _ann():
    return {"bbox": [0, 0, 1, 1], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0}


def test_names_tuple_list_or_bare_string(unique_name):
    a = _register(unique_name, [{"file_name": "a", "annotations": [_ann()]}])
    b = _register(unique_name, [{"file_name": "b", "annotations": [_ann()]}])
    assert [d["file_name"] for d in get_detection_dataset_dicts(a)] == ["a"]  # not iterated per character
    assert [d["file_name"] for d in get_detection_dataset_dicts([a, b])] == ["a", "b"]
    assert [d["file_name"] for d in get_detection_dataset_dicts((b, a))] == ["b", "a"]


def test_filter_empty_annotations(unique_name):
    name = _register(unique_name, [{"file_name": "a", "annotations": []},
                                   {"file_name": "b", "annotations": [dict(_ann(), iscrowd=1)]},
                                   {"file_name": "c", "annotations": [_ann()]}])
    assert [d["file_name"] for d in get_detection_dataset_dicts(name)] == ["c"]
    assert len(get_detection_dataset_dicts(name, filter_empty=False)) == 3


def test_dataset_dict_errors(unique_name):
    empty = _register(unique_name, [])
    with pytest.raises(ValueError, match=f"Dataset '{empty}' is empty"):
        get_detection_dataset_dicts(empty)
    bare = _register(unique_name, [{"file_name": "a", "annotations": []}])
    with pytest.raises(ValueError, match="has annotations; nothing to train on"):
        get_detection_dataset_dicts([bare])
    with pytest.raises(ValueError, match="No dataset names given; set DATASETS.TRAIN"):
        get_detection_dataset_dicts(())
    with pytest.raises(ValueError, match="precomputed proposals \\(proposal_files\\) are not supported"):
        get_detection_dataset_dicts(bare, proposal_files=["p.pkl"])


def test_datasets_with_different_classes_are_refused(unique_name):
    from detkit.data import MetadataCatalog

    a = _register(unique_name, [{"file_name": "a", "annotations": [_ann()]}])
    b = _register(unique_name, [{"file_name": "b", "annotations": [_ann()]}])
    MetadataCatalog.get(a).thing_classes = ["cat", "dog"]
    MetadataCatalog.get(b).thing_classes = ["dog", "cat"]
    with pytest.raises(ValueError, match=f"Datasets '{a}' and '{b}' have different thing_classes"):
        get_detection_dataset_dicts([a, b])
    assert len(get_detection_dataset_dicts([a, b], check_consistency=False)) == 2


def test_train_batches_per_process(tiny_shapes):
    loader = build_detection_train_loader(_cfg(tiny_shapes), rank=0, world_size=2)
    batch = next(iter(loader))
    assert len(batch) == 2  # IMS_PER_BATCH 4 over 2 processes
    d = batch[0]
    assert set(d) == {"image", "height", "width", "image_id", "file_name", "instances"}
    assert d["image"].shape[0] == 3 and 48 <= min(d["image"].shape[1:]) <= 80
    assert d["instances"].image_size == tuple(d["image"].shape[1:])
    with pytest.raises(ValueError, match="IMS_PER_BATCH \\(4\\) must be divisible by the number of processes \\(3\\)"):
        build_detection_train_loader(_cfg(tiny_shapes), rank=0, world_size=3)


def test_ranks_take_their_slice_of_the_stream(tiny_shapes):
    cfg = _cfg(tiny_shapes, **{"DATALOADER.ASPECT_RATIO_GROUPING": "False"})
    dicts = get_detection_dataset_dicts(tiny_shapes)
    stream = list(itertools.islice(iter(TrainingSampler(len(dicts), seed=42, rank=0, world_size=1)), 24))
    files = {}
    for rank in (0, 1):
        loader = build_detection_train_loader(cfg, rank=rank, world_size=2)
        files[rank] = [d["file_name"] for b in itertools.islice(loader, 6) for d in b]
    assert files[0] == [dicts[i]["file_name"] for i in stream[0::2]]
    assert files[1] == [dicts[i]["file_name"] for i in stream[1::2]]


def test_exact_resume_on_a_new_loader(tiny_shapes):
    cfg = _cfg(tiny_shapes)
    first = build_detection_train_loader(cfg)
    it = iter(first)
    _take(it, 3)
    state = first.state_dict()
    assert state == {"seed": 42, "batches": 3, "batch_size": 4, "world_size": 1, "skipped_images": 0}
    expected = _take(it, 3)
    resumed = build_detection_train_loader(cfg)
    resumed.load_state_dict(state)
    assert _take(resumed, 3) == expected
    assert resumed.state_dict()["batches"] == 6


def test_resume_with_a_drawn_seed_and_workers(tiny_shapes):
    cfg = _cfg(tiny_shapes, SEED="-1")
    first = build_detection_train_loader(cfg)
    it = iter(first)
    _take(it, 2)
    state = first.state_dict()
    expected = _take(it, 3)
    resumed = build_detection_train_loader(_cfg(tiny_shapes, SEED="-1", **{"DATALOADER.NUM_WORKERS": "2"}))
    resumed.load_state_dict(state)
    assert resumed.seed == state["seed"]  # the state's seed replaces the loader's own draw
    assert _take(resumed, 3) == expected  # same images and augmentation with 2 workers as with none


def test_load_state_dict_mid_iteration_rewinds(tiny_shapes):
    loader = build_detection_train_loader(_cfg(tiny_shapes))
    it = iter(loader)
    start = loader.state_dict()
    expected = _take(it, 4)
    loader.load_state_dict(start)
    assert _take(it, 4) == expected


def test_different_seeds_give_different_batches(tiny_shapes):
    a = _take(build_detection_train_loader(_cfg(tiny_shapes, SEED="1")), 2)
    b = _take(build_detection_train_loader(_cfg(tiny_shapes, SEED="2")), 2)
    assert a != b


def test_train_loader_honours_filter_empty(unique_name, tiny_shapes):
    dicts = [dict(d) for d in DatasetCatalog.get(tiny_shapes)[:3]]
    dicts[0]["annotations"] = []
    name = _register(unique_name, dicts)
    files = {d["file_name"] for b in itertools.islice(build_detection_train_loader(_cfg(name)), 3) for d in b}
    assert files == {dicts[1]["file_name"], dicts[2]["file_name"]}
    cfg = _cfg(name, **{"DATALOADER.FILTER_EMPTY_ANNOTATIONS": "False"})
    files = {d["file_name"] for b in itertools.islice(build_detection_train_loader(cfg), 3) for d in b}
    assert dicts[0]["file_name"] in files


def test_test_loader_is_ordered_and_sharded(tiny_shapes):
    cfg = _cfg(tiny_shapes)
    dicts = DatasetCatalog.get(tiny_shapes)
    shards = []
    for rank in (0, 1, 2):
        loader = build_detection_test_loader(cfg, tiny_shapes, batch_size=2, rank=rank, world_size=3)
        batches = list(loader)
        assert all(set(d) == {"image", "height", "width", "image_id", "file_name"} for b in batches for d in b)
        shards.append([d["image_id"] for b in batches for d in b])
    assert shards == [[1, 2, 3, 4], [5, 6, 7], [8, 9, 10]]
    assert [d["image_id"] for d in dicts] == list(range(1, 11))
    single = list(build_detection_test_loader(cfg, tiny_shapes))
    assert len(single) == 10 and single[0][0]["image"].shape == (3, 64, 64)


def test_loaders_leave_the_global_torch_rng_alone(tiny_shapes):
    import torch

    cfg = _cfg(tiny_shapes, **{"DATALOADER.NUM_WORKERS": "1"})
    state = torch.get_rng_state()
    _take(build_detection_train_loader(cfg), 1)
    list(build_detection_test_loader(cfg, tiny_shapes))
    assert torch.equal(torch.get_rng_state(), state)


def _times_ten(d):
    return d["v"] * 10


def _shapes(n):
    """Dataset dicts v = 0..n-1; even v landscape (4x3), odd v portrait (3x4)."""
    return [{"v": v, "width": 4 if v % 2 == 0 else 3, "height": 3 if v % 2 == 0 else 4} for v in range(n)]


def test_explicit_train_loader_from_a_list_is_resumable():
    from detkit.data import TrainDataLoader

    sampler = TrainingSampler(4, shuffle=False, seed=0, rank=0, world_size=1)  # 0 1 2 3 0 1 2 3 ...
    loader = build_detection_train_loader(_shapes(4), mapper=_times_ten, sampler=sampler, total_batch_size=2)
    assert isinstance(loader, TrainDataLoader)
    # Grouped by orientation: 0 waits, 1 waits, 2 completes [0, 2], 3 completes [1, 3].
    assert list(itertools.islice(loader, 3)) == [[0, 20], [10, 30], [0, 20]]
    assert loader.state_dict()["batches"] == 3
    plain = build_detection_train_loader(_shapes(4), mapper=_times_ten, sampler=sampler, total_batch_size=2,
                                         aspect_ratio_grouping=False, collate_fn=sum)
    assert list(itertools.islice(plain, 3)) == [10, 50, 10]  # [0, 10], [20, 30], [0, 10], summed


class _Dicts(torch.utils.data.Dataset):
    def __init__(self, n):
        self.dicts = _shapes(n)

    def __len__(self):
        return len(self.dicts)

    def __getitem__(self, i):
        return self.dicts[i]


def test_explicit_train_loader_from_a_torch_dataset():
    sampler = TrainingSampler(5, shuffle=False, seed=0, rank=0, world_size=1)
    for workers in (0, 2):  # the sampler is sharded over the workers; the batches stay in its order
        loader = build_detection_train_loader(_Dicts(5), mapper=_times_ten, sampler=sampler, total_batch_size=2,
                                              aspect_ratio_grouping=False, num_workers=workers)
        assert list(itertools.islice(loader, 4)) == [[0, 10], [20, 30], [40, 0], [10, 20]]
    grouped = build_detection_train_loader(_Dicts(5), mapper=None, sampler=sampler, total_batch_size=2)
    assert [[d["v"] for d in b] for b in itertools.islice(grouped, 3)] == [[0, 2], [1, 3], [4, 0]]
    iterable = ToIterableDataset(_Dicts(5), sampler)
    with pytest.raises(ValueError, match="A sampler was given with an IterableDataset"):
        build_detection_train_loader(iterable, mapper=None, sampler=sampler, total_batch_size=2)


def test_explicit_test_loader():
    loader = build_detection_test_loader(_shapes(5), mapper=_times_ten, batch_size=2)
    assert list(loader) == [[0, 10], [20, 30], [40]]
    assert list(build_detection_test_loader(_Dicts(3), mapper=None))[2] == [{"v": 2, "width": 4, "height": 3}]
    shard = build_detection_test_loader(_shapes(5), mapper=_times_ten, sampler=InferenceSampler(5, rank=1,
                                                                                                  world_size=2))
    assert list(shard) == [[30], [40]]  # rank 1 of 2 takes indices 3, 4


def test_cfg_form_takes_overrides_and_the_repeat_factor_sampler(tiny_shapes):
    from detkit.data import RepeatFactorTrainingSampler

    cfg = _cfg(tiny_shapes, **{"DATALOADER.SAMPLER_TRAIN": "RepeatFactorTrainingSampler",
                               "DATALOADER.REPEAT_THRESHOLD": "0.5"})
    loader = build_detection_train_loader(cfg)
    assert isinstance(loader.sampler, RepeatFactorTrainingSampler) and loader.sampler.seed == 42
    it = iter(loader)
    _take(it, 1)
    state = loader.state_dict()
    expected = _take(it, 2)
    resumed = build_detection_train_loader(cfg)
    resumed.load_state_dict(state)
    assert _take(resumed, 2) == expected
    # The cfg form with a given dataset and mapper, as detectron2's.
    dicts = _shapes(4)
    over = build_detection_train_loader(_cfg(tiny_shapes), mapper=_times_ten, dataset=dicts)
    assert sorted(v for b in itertools.islice(over, 2) for v in b) == [0, 0, 10, 10, 20, 20, 30, 30]
    with pytest.raises(ValueError, match="DATALOADER.SAMPLER_TRAIN 'Nope' is unknown"):
        build_detection_train_loader(_cfg(tiny_shapes, **{"DATALOADER.SAMPLER_TRAIN": "Nope"}))


def test_worker_init_reset_seed_seeds_from_torch_seed_plus_worker_id():
    import random

    import numpy as np

    from detkit.data.build import worker_init_reset_seed

    torch.manual_seed(123)
    worker_init_reset_seed(2)
    assert float(np.random.rand()) == float(np.random.RandomState(125).rand())
    assert random.random() == random.Random(125).random()
    assert torch.initial_seed() == 125
