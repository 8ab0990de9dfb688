"""data.transforms: the deterministic transforms on images, points and boxes, and their inverses."""
import numpy as np
import pytest
from fvcore.transforms import transform as fvcore_transform
from PIL import Image, ImageOps

import detkit.data.transforms as T


def _image(h, w, c=3):
    return (np.arange(h * w * c) % 251).astype(np.uint8).reshape(h, w, c)


def test_fvcore_names_are_reexported():
    for name in ("Transform", "TransformList", "NoOpTransform", "HFlipTransform", "VFlipTransform", "CropTransform",
                 "BlendTransform", "PadTransform"):
        assert getattr(T, name) is getattr(fvcore_transform, name), name
        assert name in T.__all__
    assert T.apply_transform_gens is T.apply_augmentations and T.TransformGen is T.Augmentation


def test_hflip_and_vflip_points_boxes_inverse():
    hflip = T.HFlipTransform(10)
    np.testing.assert_allclose(hflip.apply_coords(np.array([[1.0, 2.0]])), [[9, 2]])  # x -> 10 - x
    np.testing.assert_allclose(hflip.apply_box(np.array([[1.0, 2, 4, 6]])), [[6, 2, 9, 6]])
    assert isinstance(hflip.inverse(), T.HFlipTransform) and hflip.inverse().width == 10
    image = _image(3, 10)
    np.testing.assert_array_equal(hflip.apply_image(image), image[:, ::-1])
    vflip = T.VFlipTransform(8)
    np.testing.assert_allclose(vflip.apply_box(np.array([[1.0, 2, 4, 6]])), [[1, 2, 4, 6]])  # y -> 8 - y: 6, 2
    np.testing.assert_allclose(vflip.apply_box(np.array([[1.0, 1, 4, 3]])), [[1, 5, 4, 7]])


def test_resize_transform_points_boxes_image_inverse():
    tfm = T.ResizeTransform(20, 40, 10, 30)  # x * 30/40, y * 10/20
    np.testing.assert_allclose(tfm.apply_coords(np.array([[4.0, 2.0]])), [[3, 1]])
    np.testing.assert_allclose(tfm.apply_box(np.array([[4.0, 2, 8, 6]])), [[3, 1, 6, 3]])
    assert tfm.apply_image(_image(20, 40)).shape == (10, 30, 3)
    assert tfm.apply_image(_image(20, 40, 1)).shape == (10, 30, 1)
    assert tfm.apply_image(np.ones((20, 40), dtype=np.float32)).shape == (10, 30)  # float: torch path
    inv = tfm.inverse()
    assert (inv.h, inv.w, inv.new_h, inv.new_w) == (10, 30, 20, 40)
    np.testing.assert_allclose(inv.apply_box(np.array([[3.0, 1, 6, 3]])), [[4, 2, 8, 6]])
    with pytest.raises(ValueError, match="made for a 20x40 \\(HxW\\) image, got one of shape \\(21, 40, 3\\)"):
        tfm.apply_image(_image(21, 40))


def test_resize_transform_nearest_on_float_image_repeats_pixels():
    image = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    out = T.ResizeTransform(2, 2, 4, 4, Image.NEAREST).apply_image(image)
    np.testing.assert_array_equal(out, [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])


def test_crop_transform_and_its_inverse_pad():
    tfm = T.CropTransform(2, 3, 5, 4, orig_w=10, orig_h=8)
    np.testing.assert_allclose(tfm.apply_coords(np.array([[4.0, 5.0]])), [[2, 2]])
    np.testing.assert_allclose(tfm.apply_box(np.array([[2.0, 3, 7, 7]])), [[0, 0, 5, 4]])
    image = _image(8, 10)
    crop = tfm.apply_image(image)
    np.testing.assert_array_equal(crop, image[3:7, 2:7])
    inv = tfm.inverse()  # pad 2 left, 3 top, 3 right, 1 bottom
    assert isinstance(inv, T.PadTransform) and (inv.x0, inv.y0, inv.x1, inv.y1) == (2, 3, 3, 1)
    back = inv.apply_image(crop)
    assert back.shape == (8, 10, 3)
    np.testing.assert_array_equal(back[3:7, 2:7], crop)
    assert back[:3].sum() == 0 and back[:, :2].sum() == 0
    np.testing.assert_allclose(inv.apply_box(np.array([[0.0, 0, 5, 4]])), [[2, 3, 7, 7]])


def test_extent_transform_maps_the_rectangle_onto_the_output():
    # The 20x40 (WxH) rectangle at (10, 20) becomes a 10x20 image: half size, corner at the origin.
    tfm = T.ExtentTransform(src_rect=(10, 20, 30, 60), output_size=(20, 10))
    np.testing.assert_allclose(tfm.apply_coords(np.array([[10.0, 20], [30, 60], [20, 40]])),
                               [[0, 0], [10, 20], [5, 10]])
    np.testing.assert_allclose(tfm.apply_box(np.array([[12.0, 24, 16, 32]])), [[1, 2, 3, 6]])
    image = _image(64, 64)
    assert tfm.apply_image(image).shape == (20, 10, 3)
    with pytest.raises(NotImplementedError):  # as in detectron2, an extent has no inverse
        tfm.inverse()


def test_extent_transform_fills_outside_the_source():
    image = _image(4, 4) + 1  # no zero pixel
    out = T.ExtentTransform((-4, 0, 4, 4), (4, 8), interp=Image.NEAREST).apply_image(image)
    assert out.shape == (4, 8, 3)
    assert (out[:, :4] == 0).all()  # the left half of the rectangle lies left of the image
    np.testing.assert_array_equal(out[:, 4:], image)


def test_color_transforms_change_pixels_only():
    image = _image(4, 5)
    tfm = T.ColorTransform(lambda img: 255 - img)
    np.testing.assert_array_equal(tfm.apply_image(image), 255 - image)
    np.testing.assert_allclose(tfm.apply_box(np.array([[1.0, 2, 3, 4]])), [[1, 2, 3, 4]])
    assert isinstance(tfm.inverse(), T.NoOpTransform)
    pil = T.PILColorTransform(ImageOps.invert)
    np.testing.assert_array_equal(pil.apply_image(image), 255 - image)
    np.testing.assert_allclose(pil.apply_coords(np.array([[1.0, 2]])), [[1, 2]])
    with pytest.raises(ValueError, match="op must be callable"):
        T.ColorTransform(3)


def test_blend_transform_weights():
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    np.testing.assert_array_equal(T.BlendTransform(0, 0.5, 1.5).apply_image(image), 150)
    np.testing.assert_array_equal(T.BlendTransform(0, 0.0, 3.0).apply_image(image), 255)  # clipped


def test_transform_list_composes_and_inverts():
    tfms = T.TransformList([T.ResizeTransform(20, 40, 10, 20), T.HFlipTransform(20)])
    np.testing.assert_allclose(tfms.apply_box(np.array([[4.0, 2, 8, 6]])), [[16, 1, 18, 3]])  # halve, x -> 20 - x
    np.testing.assert_allclose(tfms.inverse().apply_box(np.array([[16.0, 1, 18, 3]])), [[4, 2, 8, 6]])
    polygons = tfms.apply_polygons([np.array([[4.0, 2], [8, 2], [8, 6]])])
    np.testing.assert_allclose(polygons[0], [[18, 1], [16, 1], [16, 3]])
    assert tfms.apply_image(_image(20, 40)).shape == (10, 20, 3)
