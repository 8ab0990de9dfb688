"""Transforms: exact resize and flip geometry on images and boxes, jitter, reproducibility."""
import numpy as np
import pytest

from detkit.config import get_cfg
from detkit.data.transforms import (AugmentationList, ColorJitter, RandomFlip, ResizeShortestEdge,
                                    build_augmentation)


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


BOXES = np.asarray([[1, 2, 11, 12], [0, 0, 40, 20]], dtype=np.float32)


def test_resize_shortest_edge_scales_boxes_exactly():
    image, boxes = ResizeShortestEdge(10, 1000, "choice")(_image(20, 40), BOXES, np.random.default_rng(0))
    assert image.shape == (10, 20, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(boxes, BOXES * 0.5)


def test_resize_caps_the_long_side():
    image, boxes = ResizeShortestEdge(20, 40, "choice")(_image(20, 80), [[0, 0, 80, 20]])
    assert image.shape == (10, 40, 3)
    np.testing.assert_array_equal(boxes, [[0, 0, 40, 10]])
    assert ResizeShortestEdge.get_output_shape(480, 640, 800, 1333) == (800, 1067)  # 1066.67 rounds up


def test_resize_choice_and_range_sampling():
    choice = ResizeShortestEdge((8, 16), 1000, "choice")
    sizes = {choice(_image(32, 32), None, np.random.default_rng(s))[0].shape[0] for s in range(20)}
    assert sizes == {8, 16}
    ranged = ResizeShortestEdge((8, 10), 1000, "range")
    sizes = {ranged(_image(32, 32), None, np.random.default_rng(s))[0].shape[0] for s in range(40)}
    assert sizes == {8, 9, 10}


def test_resize_zero_is_a_no_op_and_bad_args_raise():
    image = _image(5, 7)
    out, boxes = ResizeShortestEdge(0, 1000, "choice")(image, BOXES)
    assert out is image and np.array_equal(boxes, BOXES)
    with pytest.raises(ValueError, match="sample_style must be 'range' or 'choice'"):
        ResizeShortestEdge(10, 100, "uniform")
    with pytest.raises(ValueError, match="'range' needs two lengths"):
        ResizeShortestEdge((1, 2, 3), 100, "range")


def test_horizontal_flip_exact():
    image = _image(20, 40)
    out, boxes = RandomFlip(prob=1.0)(image, BOXES)
    np.testing.assert_array_equal(out, image[:, ::-1])
    np.testing.assert_array_equal(boxes, [[29, 2, 39, 12], [0, 0, 40, 20]])


def test_vertical_flip_exact():
    image = _image(20, 40)
    out, boxes = RandomFlip(1.0, horizontal=False, vertical=True)(image, BOXES)
    np.testing.assert_array_equal(out, image[::-1])
    np.testing.assert_array_equal(boxes, [[1, 8, 11, 18], [0, 0, 40, 20]])


def test_flip_probability_and_arguments():
    image = _image(4, 6)
    out, boxes = RandomFlip(prob=0.0)(image, BOXES)
    assert out is image and np.array_equal(boxes, BOXES)
    flips = [not np.array_equal(RandomFlip(0.5)(image, None, np.random.default_rng(s))[0], image) for s in range(200)]
    assert 70 < sum(flips) < 130
    with pytest.raises(ValueError, match="exactly one of horizontal=True or vertical=True"):
        RandomFlip(0.5, horizontal=True, vertical=True)
    with pytest.raises(ValueError, match="prob must be in \\[0, 1\\]"):
        RandomFlip(1.5)


def test_color_jitter():
    image = _image(8, 8)
    same, boxes = ColorJitter(0, 0, 0)(image, BOXES)
    np.testing.assert_array_equal(same, image)
    np.testing.assert_array_equal(boxes, BOXES)
    a, _ = ColorJitter(0.5, 0.5, 0.5)(image, BOXES, np.random.default_rng(3))
    b, _ = ColorJitter(0.5, 0.5, 0.5)(image, BOXES, np.random.default_rng(3))
    assert a.dtype == np.uint8 and a.shape == image.shape
    assert np.array_equal(a, b) and not np.array_equal(a, image)
    # Brightness 0.5 alone scales every pixel by one factor in [0.5, 1.5]: a grey image stays
    # uniform, between 50 and 150, and over many draws lands on both sides of 100.
    grey = np.full((2, 2, 3), 100, dtype=np.uint8)
    values = []
    for seed in range(100):
        out, _ = ColorJitter(0.5, 0, 0)(grey, None, np.random.default_rng(seed))
        assert (out == out[0, 0, 0]).all()
        values.append(int(out[0, 0, 0]))
    assert 50 <= min(values) < 70 and 130 < max(values) <= 150


def test_augmentation_list_is_reproducible_with_a_seeded_generator():
    augs = AugmentationList([ResizeShortestEdge((10, 30), 1000, "range"), RandomFlip(0.5), ColorJitter()])
    runs = [augs(_image(20, 40), BOXES, np.random.default_rng(9)) for _ in range(2)]
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])


def test_build_augmentation_from_cfg():
    cfg = get_cfg()
    cfg.INPUT.COLOR_JITTER.ENABLED = True
    train = build_augmentation(cfg, is_train=True)
    assert [type(a) for a in train] == [ResizeShortestEdge, RandomFlip, ColorJitter]
    assert train[0].short_edge_length == (800,) and train[0].max_size == 1333
    test = build_augmentation(cfg, is_train=False)
    assert [type(a) for a in test] == [ResizeShortestEdge] and test[0].short_edge_length == (800,)
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.INPUT.COLOR_JITTER.ENABLED = False
    assert [type(a) for a in build_augmentation(cfg, True)] == [ResizeShortestEdge]
    cfg.INPUT.RANDOM_FLIP = "diagonal"
    with pytest.raises(ValueError, match="INPUT.RANDOM_FLIP must be"):
        build_augmentation(cfg, True)
