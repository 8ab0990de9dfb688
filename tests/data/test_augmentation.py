"""data.transforms augmentations: the AugInput API, printing, and the random draws of each augmentation.

Each seeded test replays detectron2's documented draw sequence on a separate ``RandomState``
with the same seed, so an augmentation that draws in another order (or from another
generator) gives other crops and fails.
"""
import numpy as np
import pytest

import detkit.data.transforms as T

SEEDS = range(8)


def _image(h, w, c=3):
    return (np.arange(h * w * c) % 251).astype(np.uint8).reshape(h, w, c)


def _draw(seed, aug, image):
    np.random.seed(seed)
    return aug.get_transform(image)


class _ImageAndBoxes(T.Augmentation):
    def __init__(self):
        self.seen = None

    def get_transform(self, image, boxes):
        self.seen = (image.shape, boxes.tolist())
        return T.HFlipTransform(image.shape[1])


class _NeedsMissing(T.Augmentation):
    def get_transform(self, image, nonexist):
        return T.NoOpTransform()


class _OneArgument(T.Augmentation):
    def get_transform(self, img):  # one parameter: it gets the image, whatever its name
        return T.ResizeTransform(img.shape[0], img.shape[1], 5, 5)


def test_get_transform_parameters_choose_the_input_attributes():
    aug_input = T.AugInput(_image(4, 10), boxes=np.array([[1.0, 1, 3, 2]]))
    aug = _ImageAndBoxes()
    tfm = aug(aug_input)
    assert aug.seen == ((4, 10, 3), [[1.0, 1, 3, 2]])
    assert isinstance(tfm, T.HFlipTransform)
    np.testing.assert_allclose(aug_input.boxes, [[7, 1, 9, 2]])  # transformed in place
    with pytest.raises(AttributeError, match="_NeedsMissing.get_transform needs the input attribute 'nonexist'"):
        _NeedsMissing()(aug_input)
    _OneArgument()(aug_input)
    assert aug_input.image.shape == (5, 5, 3)


def test_aug_input_transforms_image_boxes_and_sem_seg():
    sem_seg = np.zeros((4, 8), dtype=np.uint8)
    sem_seg[:, :2] = 7
    aug_input = T.AugInput(_image(4, 8), boxes=np.array([[0.0, 0, 2, 4]]), sem_seg=sem_seg)
    tfms = aug_input.apply_augmentations([T.Resize((2, 4)), T.HFlipTransform(4)])
    assert isinstance(tfms, T.TransformList) and len(tfms) == 2
    np.testing.assert_allclose(aug_input.boxes, [[3, 0, 4, 2]])  # halved to (0, 0, 1, 2), then x -> 4 - x
    np.testing.assert_array_equal(aug_input.sem_seg, [[0, 0, 0, 7], [0, 0, 0, 7]])  # nearest, then flipped
    with pytest.raises(TypeError, match="numpy array"):
        T.AugInput([[1, 2]])


def test_augmentation_lists_nest_and_apply_augmentations_takes_an_image():
    inner = T.AugmentationList([T.Resize((10, 20)), T.HFlipTransform(20)])
    image, tfms = T.apply_augmentations([inner, T.Resize(5)], _image(40, 40))
    assert image.shape == (5, 5, 3)
    np.testing.assert_allclose(tfms.apply_box(np.array([[0.0, 0, 8, 8]])), [[4, 0, 5, 1]])  # (0,0,4,2), flip, quarter-half
    aug_input = T.AugInput(_image(40, 40))
    same, tfms2 = T.apply_transform_gens([inner], aug_input)
    assert same is aug_input and aug_input.image.shape == (10, 20, 3) and len(tfms2) == 2


def test_rand_range_draws_uniform_from_the_global_generator():
    aug = T.RandomFlip()
    np.random.seed(3)
    values = aug._rand_range(2.0, 5.0, size=4)
    np.testing.assert_allclose(values, 2.0 + 3.0 * np.random.RandomState(3).random_sample(4))
    np.random.seed(3)
    assert aug._rand_range() == np.random.RandomState(3).random_sample()  # [0, 1)
    np.random.seed(3)
    assert aug._rand_range(4.0) == 4.0 * np.random.RandomState(3).random_sample()  # [0, 4)


def test_repr_lists_arguments_that_are_not_the_default():
    assert repr(T.RandomFlip()) == "RandomFlip()"
    # detectron2 compares with `is`: a 0.5 passed by the caller is another object, so it is listed.
    assert repr(T.RandomFlip(prob=0.5)) == "RandomFlip(prob=0.5)"
    assert str(T.RandomCrop("relative", (100, 100))) == "RandomCrop(crop_type='relative', crop_size=(100, 100))"
    assert repr(T.ResizeShortestEdge(800, 1333)) == "ResizeShortestEdge(short_edge_length=(800, 800), max_size=1333)"
    assert repr(T.Resize(3)) == "Resize(shape=(3, 3))"
    assert str(T.AugmentationList([T.RandomFlip(), T.Resize(3)])) == "AugmentationList[RandomFlip(), Resize(shape=(3, 3))]"


def test_random_apply_checks_prob_first_then_draws_once():
    with pytest.raises(AssertionError, match="prob must be between 0.0 and 1.0, got 1.5"):
        T.RandomApply(None, prob=1.5)  # the probability is checked before the wrapped object
    with pytest.raises(AssertionError, match="got -0.01"):
        T.RandomApply(T.NoOpTransform(), prob=-0.01)
    for p in (0.0, 0.5, 1.0):
        T.RandomApply(T.NoOpTransform(), prob=p)
    image = _image(4, 6)
    for seed in SEEDS:
        applied = np.random.RandomState(seed).random_sample() < 0.3
        tfm = _draw(seed, T.RandomApply(T.HFlipTransform(6), prob=0.3), image)
        assert isinstance(tfm, T.HFlipTransform if applied else T.NoOpTransform), seed


def test_random_flip_draws_one_uniform():
    image = _image(4, 6)
    kinds = []
    for seed in range(20):
        flip = np.random.RandomState(seed).random_sample() < 0.5
        tfm = _draw(seed, T.RandomFlip(), image)
        assert isinstance(tfm, T.HFlipTransform if flip else T.NoOpTransform), seed
        kinds.append(flip)
        vertical = _draw(seed, T.RandomFlip(vertical=True, horizontal=False), image)
        assert isinstance(vertical, T.VFlipTransform if flip else T.NoOpTransform) and (not flip or vertical.height == 4)
    assert any(kinds) and not all(kinds)
    with pytest.raises(ValueError, match="cannot both be True"):
        T.RandomFlip(horizontal=True, vertical=True)
    with pytest.raises(ValueError, match="set horizontal=True or vertical=True"):
        T.RandomFlip(horizontal=False)
    with pytest.raises(ValueError, match="prob must be in \\[0, 1\\], got 1.5"):
        T.RandomFlip(1.5)


def test_resize_shortest_edge_sizes_and_draws():
    assert T.ResizeShortestEdge.get_output_shape(480, 640, 800, 1333) == (800, 1067)  # 1066.67 rounds up
    assert T.ResizeShortestEdge.get_output_shape(20, 80, 20, 40) == (10, 40)  # 20x80 -> long side capped at 40
    image = _image(20, 40)
    for seed in SEEDS:
        size = np.random.RandomState(seed).randint(10, 31)  # "range": randint(min, max + 1)
        tfm = _draw(seed, T.ResizeShortestEdge((10, 30), 1000, "range"), image)
        assert (tfm.new_h, tfm.new_w) == (size, 2 * size), seed
        choice = np.random.RandomState(seed).choice((8, 16))
        tfm = _draw(seed, T.ResizeShortestEdge((8, 16), 1000, "choice"), image)
        assert (tfm.new_h, tfm.new_w) == (choice, 2 * choice), seed
    assert isinstance(T.ResizeShortestEdge(0, 1000, "choice").get_transform(image), T.NoOpTransform)
    with pytest.raises(ValueError, match="sample_style must be 'range' or 'choice', got 'uniform'"):
        T.ResizeShortestEdge(10, 100, "uniform")
    with pytest.raises(ValueError, match="needs two lengths \\(min, max\\), got \\(1, 2, 3\\)"):
        T.ResizeShortestEdge((1, 2, 3), 100, "range")


def test_resize_and_resize_scale():
    tfm = T.Resize((6, 9)).get_transform(_image(20, 40))
    assert (tfm.h, tfm.w, tfm.new_h, tfm.new_w) == (20, 40, 6, 9)
    image = _image(100, 200)
    for seed in SEEDS:
        scale = np.random.RandomState(seed).uniform(0.5, 2.0)
        # Fit 100x200 inside (64 * scale)^2: the width limits, ratio 64 * scale / 200.
        tfm = _draw(seed, T.ResizeScale(0.5, 2.0, 64, 64), image)
        assert (tfm.new_h, tfm.new_w) == (round(32 * scale), round(64 * scale)), seed


def test_random_crop_draws_size_then_y_then_x():
    image = _image(20, 40)
    for seed in SEEDS:
        rs = np.random.RandomState(seed)
        tfm = _draw(seed, T.RandomCrop("relative", (0.5, 0.25)), image)  # a 10x10 window
        assert (tfm.y0, tfm.x0, tfm.h, tfm.w) == (rs.randint(11), rs.randint(31), 10, 10), seed

        rs = np.random.RandomState(seed)
        rel = 0.5 + rs.rand(2) * 0.5
        ch, cw = int(20 * rel[0] + 0.5), int(40 * rel[1] + 0.5)
        tfm = _draw(seed, T.RandomCrop("relative_range", (0.5, 0.5)), image)
        assert (tfm.h, tfm.w, tfm.y0, tfm.x0) == (ch, cw, rs.randint(20 - ch + 1), rs.randint(40 - cw + 1)), seed

        rs = np.random.RandomState(seed)
        tfm = _draw(seed, T.RandomCrop("absolute", (8, 50)), image)  # the width is capped at 40
        assert (tfm.h, tfm.w, tfm.y0, tfm.x0) == (8, 40, rs.randint(13), 0), seed

        rs = np.random.RandomState(seed)
        ch, cw = rs.randint(5, 16), rs.randint(5, 16)
        tfm = _draw(seed, T.RandomCrop("absolute_range", (5, 15)), image)
        assert (tfm.h, tfm.w, tfm.y0, tfm.x0) == (ch, cw, rs.randint(20 - ch + 1), rs.randint(40 - cw + 1)), seed
    with pytest.raises(ValueError, match="crop_type must be one of"):
        T.RandomCrop("fraction", (0.5, 0.5))


def test_random_extent_draws_scale_then_shifts():
    image = _image(20, 40)
    for seed in SEEDS:
        rs = np.random.RandomState(seed)
        scale, u, v = rs.uniform(0.5, 1.5), rs.rand(), rs.rand()
        # The image rectangle centred at (20, 10), scaled, then moved by (40 * 0.2 * (u - .5), 20 * 0.4 * (v - .5)).
        cx, cy = 20 + 8 * (u - 0.5), 10 + 8 * (v - 0.5)
        expected = (cx - 20 * scale, cy - 10 * scale, cx + 20 * scale, cy + 10 * scale)
        tfm = _draw(seed, T.RandomExtent((0.5, 1.5), (0.2, 0.4)), image)
        np.testing.assert_allclose(tfm.src_rect, expected)
        assert tfm.output_size == (int(expected[3] - expected[1]), int(expected[2] - expected[0]))


def test_fixed_size_crop_places_the_window_with_one_uniform_and_pads():
    image = _image(30, 50)
    for seed in SEEDS:
        u = np.random.RandomState(seed).uniform(0.0, 1.0)
        tfms = _draw(seed, T.FixedSizeCrop((20, 20)), image)
        crop = tfms[0]
        assert (crop.y0, crop.x0, crop.h, crop.w) == (round(10 * u), round(30 * u), 20, 20), seed
    small = T.FixedSizeCrop((20, 20)).get_transform(_image(10, 50))
    out = small.apply_image(_image(10, 50))
    assert out.shape == (20, 20, 3) and (out[10:] == 128).all()  # bottom padded with pad_value
    assert len(T.FixedSizeCrop((20, 20), pad=False).get_transform(_image(10, 50)).transforms) == 1


def test_photometric_augmentations_draw_one_weight():
    image = np.stack([np.full((2, 3), v, dtype=np.uint8) for v in (200, 100, 40)], axis=-1)  # (2, 3, 3)
    mean = image.mean()  # 340 / 3
    grey = 0.299 * 200 + 0.587 * 100 + 0.114 * 40  # 123.02
    cases = [
        (T.RandomBrightness(0.5, 1.5), lambda w: w * image),
        (T.RandomContrast(0.5, 1.5), lambda w: w * image + (1 - w) * mean),
        (T.RandomSaturation(0.5, 1.5), lambda w: w * image + (1 - w) * grey),
    ]
    for aug, blend in cases:
        for seed in SEEDS:
            w = np.random.RandomState(seed).uniform(0.5, 1.5)
            out = _draw(seed, aug, image).apply_image(image)
            expected = np.clip(blend(w), 0, 255)
            assert out.dtype == np.uint8 and np.all(np.abs(out - expected) < 1.0001), (aug, seed)


def test_random_lighting_adds_the_pca_offset():
    image = np.zeros((2, 2, 3), dtype=np.float32)
    vecs = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])
    vals = np.array([0.2175, 0.0188, 0.0045])
    weights = np.random.RandomState(5).normal(scale=10.0, size=3)
    out = _draw(5, T.RandomLighting(10.0), image).apply_image(image)
    np.testing.assert_allclose(out[1, 1], vecs @ (weights * vals), rtol=1e-6)


def test_seeded_pipeline_gives_detectron2s_crop_and_flip():
    # ResizeShortestEdge "range" draws the size, RandomCrop "absolute" the y then x offset, RandomFlip one uniform.
    augs = [T.ResizeShortestEdge((20, 40), 1000, "range"), T.RandomCrop("absolute", (16, 16)), T.RandomFlip()]
    box = np.array([[10.0, 10, 30, 20]])
    for seed in SEEDS:
        rs = np.random.RandomState(seed)
        size = rs.randint(20, 41)  # 40x80 -> size x 2 * size, scale size / 40
        y0, x0 = rs.randint(size - 16 + 1), rs.randint(2 * size - 16 + 1)
        flip = rs.random_sample() < 0.5
        s = size / 40
        x_0, y_0, x_1, y_1 = 10 * s - x0, 10 * s - y0, 30 * s - x0, 20 * s - y0
        expected = [16 - x_1, y_0, 16 - x_0, y_1] if flip else [x_0, y_0, x_1, y_1]
        np.random.seed(seed)
        aug_input = T.AugInput(_image(40, 80), boxes=box.copy())
        aug_input.apply_augmentations(augs)
        assert aug_input.image.shape == (16, 16, 3)
        np.testing.assert_allclose(aug_input.boxes, [expected], rtol=1e-6, atol=1e-6)
