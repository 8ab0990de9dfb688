"""Loaders: dataset dict assembly, batch sizes, sharding, exact resume, workers, the test loader."""
import hashlib
import itertools

import pytest

from detkit.config import get_cfg
from detkit.data import (DatasetCatalog, TrainingSampler, build_detection_test_loader,
                         build_detection_train_loader, get_detection_dataset_dicts)
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
