"""Synthetic shapes: determinism across counts, valid boxes, atomic generation, registration."""
import json
import multiprocessing as mp
import os

import numpy as np
import pytest

from detkit.data import DatasetCatalog, MetadataCatalog
from detkit.data.datasets import (SHAPES_CLASSES, SHAPES_TRAIN_SEED, draw_shapes_image, generate_shapes,
                                  register_shapes, shapes_folder)
from detkit.data.datasets import shapes as shapes_module


def _read(folder):
    with open(os.path.join(folder, "annotations.json")) as f:
        return json.load(f)


def test_first_images_do_not_depend_on_the_count(tmp_path):
    small = generate_shapes(str(tmp_path / "a"), 2, 96, seed=7)
    large = generate_shapes(str(tmp_path / "b"), 4, 96, seed=7)
    a, b = _read(small), _read(large)
    assert a["images"] == b["images"][:2]
    assert a["annotations"] == [x for x in b["annotations"] if x["image_id"] <= 2]
    for name in ("000000.jpg", "000001.jpg"):
        with open(os.path.join(small, "images", name), "rb") as f1:
            with open(os.path.join(large, "images", name), "rb") as f2:
                assert f1.read() == f2.read()


def test_another_seed_gives_other_images():
    img_a, objs_a = draw_shapes_image(7, 0, 96)
    img_b, objs_b = draw_shapes_image(8, 0, 96)
    assert not np.array_equal(img_a, img_b)
    img_a2, objs_a2 = draw_shapes_image(7, 0, 96)
    assert np.array_equal(img_a, img_a2) and objs_a == objs_a2


def test_objects_are_valid_and_varied():
    objects = [o for i in range(40) for o in draw_shapes_image(SHAPES_TRAIN_SEED, i, 320)[1]]
    boxes = np.asarray([o["bbox"] for o in objects], dtype=float)  # (N, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes >= 0).all() and (boxes <= 320).all() and (w > 0).all() and (h > 0).all()
    assert all(o["area"] <= bw * bh for o, bw, bh in zip(objects, w, h))  # visible pixels fit in the box
    assert {o["category_id"] for o in objects} == {0, 1, 2}
    assert 2 <= len(objects) / 40 <= 8  # several per image
    assert min(w.max(), h.max()) >= 100 and np.minimum(w, h).min() <= 16  # big and small objects
    assert ((boxes[:, :2] == 0) | (boxes[:, 2:] == 320)).any()  # some touch the border


def test_boxes_are_tight_around_object_pixels(monkeypatch):
    # With the background and noise switched off, every non-zero pixel belongs to an object: each
    # box of an object that overlaps no other box must have object pixels on all four of its edges.
    monkeypatch.setattr(shapes_module, "_background", lambda rng, size: np.zeros((size, size, 3), np.float32))
    monkeypatch.setattr(shapes_module, "_NOISE_STD", 0.0)
    monkeypatch.setattr(shapes_module, "_MAX_OBJECTS", 2)
    checked = 0
    for i in range(30):
        img, objs = draw_shapes_image(21, i, 96)
        painted = img.any(axis=2)  # (H, W)
        boxes = [o["bbox"] for o in objs]
        outside = painted.copy()
        for x0, y0, x1, y1 in boxes:
            outside[y0:y1, x0:x1] = False
        assert not outside.any()  # every object pixel lies in a box
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            others = [b for j, b in enumerate(boxes) if j != k]
            if any(not (b[2] <= x0 or b[0] >= x1 or b[3] <= y0 or b[1] >= y1) for b in others):
                continue  # boxes overlap: the pixels cannot be told apart here
            inside = painted[y0:y1, x0:x1]
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            checked += 1
    assert checked >= 20


def _generate(args):
    folder, n = args
    return generate_shapes(folder, n, 64, seed=3)


def test_concurrent_generation_is_atomic(tmp_path):
    folder = str(tmp_path / "race" / "shapes_x_6_64_3")
    with mp.get_context("fork").Pool(3) as pool:
        assert pool.map(_generate, [(folder, 6)] * 3) == [folder] * 3
    assert sorted(os.listdir(os.path.join(folder, "images"))) == [f"{i:06d}.jpg" for i in range(6)]
    assert os.listdir(tmp_path / "race") == ["shapes_x_6_64_3"]  # no temp folder left behind
    assert len(_read(folder)["images"]) == 6


def test_losing_the_rename_race_uses_the_winner(tmp_path, monkeypatch):
    folder = str(tmp_path / "lose" / "shapes_y_2_64_3")
    real_write = shapes_module._write_dataset

    def write_while_another_process_wins(tmp, n, size, seed):
        real_write(tmp, n, size, seed)
        real_write(folder, n, size, seed)  # the "other process" finishes first
        with open(os.path.join(folder, "winner"), "w"):
            pass

    monkeypatch.setattr(shapes_module, "_write_dataset", write_while_another_process_wins)
    assert generate_shapes(folder, 2, 64, seed=3) == folder
    assert os.path.exists(os.path.join(folder, "winner"))
    assert os.listdir(tmp_path / "lose") == ["shapes_y_2_64_3"]


def test_register_then_load_through_coco(tmp_path, unique_name):
    name = unique_name("shapes")
    register_shapes(name, 3, 64, seed=5, root=str(tmp_path))
    folder = shapes_folder(name, 3, 64, 5, str(tmp_path))
    meta = MetadataCatalog.get(name)
    assert meta.json_file == os.path.join(folder, "annotations.json") and not os.path.exists(meta.json_file)
    assert meta.thing_classes == list(SHAPES_CLASSES) and meta.evaluator_type == "coco"
    dicts = DatasetCatalog.get(name)
    assert os.path.exists(meta.json_file)
    assert [d["image_id"] for d in dicts] == [1, 2, 3]
    assert dicts[2]["file_name"] == os.path.join(folder, "images", "000002.jpg")
    expected = draw_shapes_image(5, 2, 64)[1]
    assert [a["bbox"] for a in dicts[2]["annotations"]] == [[float(v) for v in o["bbox"]] for o in expected]
    assert [a["category_id"] for a in dicts[2]["annotations"]] == [o["category_id"] for o in expected]


def test_register_again_same_args_is_a_noop_other_args_an_error(tmp_path, unique_name):
    name = unique_name("shapes")
    register_shapes(name, 4, 64, seed=5, root=str(tmp_path))
    register_shapes(name, 4, 64, seed=5, root=str(tmp_path))
    with pytest.raises(KeyError, match=f"'{name}' is already registered"):
        register_shapes(name, 5, 64, seed=5, root=str(tmp_path))
