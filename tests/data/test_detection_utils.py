"""Mapper helpers: EXIF-aware reading, formats, size check, transformed annotations -> Instances, augmentations."""
import numpy as np
import pytest
import torch
from PIL import Image

import detkit.data.transforms as T
from detkit.config import get_cfg
from detkit.data.detection_utils import (annotations_to_instances, build_augmentation,
                                         check_image_size, filter_empty_instances, read_image,
                                         transform_instance_annotations)
from detkit.structures import Boxes, BoxMode, Instances

from .conftest import write_image


def test_read_image_rgb_and_bgr(tmp_path):
    path = str(tmp_path / "a.png")
    pixels = write_image(path, 6, 4, fmt="PNG")
    rgb = read_image(path, "RGB")
    assert rgb.shape == (4, 6, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, pixels)
    np.testing.assert_array_equal(read_image(path, "BGR"), pixels[:, :, ::-1])
    with pytest.raises(ValueError, match="Image format 'HSV' is not supported \\(INPUT.FORMAT\\); use one of "
                                         "\\('RGB', 'BGR', 'L', 'YUV-BT.601'\\)"):
        read_image(path, "HSV")


def test_read_image_l_and_yuv(tmp_path):
    path = str(tmp_path / "rgb.png")
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)  # (1, 4, 3)
    Image.fromarray(pixels).save(path)
    luma = read_image(path, "L")
    # PIL's L = (19595 R + 38470 G + 7471 B + 2^15) >> 16: 76.7, 150.2, 29.6, 255 truncated.
    assert luma.shape == (1, 4, 1) and luma.dtype == np.uint8
    assert luma[0, :, 0].tolist() == [76, 150, 29, 255]
    yuv = read_image(path, "YUV-BT.601")
    assert yuv.shape == (1, 4, 3) and yuv.dtype == np.float64
    np.testing.assert_allclose(yuv[0, 0], [0.299, -0.14713, 0.615])  # pure red: the first column of the matrix
    np.testing.assert_allclose(yuv[0, 2], [0.114, 0.436, -0.10001])
    # White: each row of the matrix summed; BT.601's rounded U row sums to 1e-5, not 0.
    np.testing.assert_allclose(yuv[0, 3], [1.0, 1e-5, 0.0], atol=1e-12)


def test_read_image_applies_exif_orientation(tmp_path):
    path = str(tmp_path / "rot.png")
    pixels = write_image(path, 6, 4, fmt="PNG", exif_orientation=6)  # 6: rotate 90 degrees clockwise to view
    image = read_image(path)
    assert image.shape == (6, 4, 3)
    np.testing.assert_array_equal(image, np.rot90(pixels, k=-1))


def test_check_image_size_names_file_and_id():
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    check_image_size({"file_name": "a.jpg", "image_id": 3, "height": 4, "width": 6}, image)
    with pytest.raises(ValueError, match="Image 'a.jpg' \\(image_id 3\\) decodes to 6x4 \\(WxH\\) after EXIF "
                                         "orientation, but its dataset dict says 4x6"):
        check_image_size({"file_name": "a.jpg", "image_id": 3, "height": 6, "width": 4}, image)
    d = {"file_name": "a.jpg"}
    check_image_size(d, image)  # as in detectron2, a dict without a size gets the image's
    assert (d["height"], d["width"]) == (4, 6)


def test_transform_instance_annotations_box_and_polygons():
    tfms = T.TransformList([T.HFlipTransform(40), T.ResizeTransform(20, 40, 10, 20)])
    anno = {"bbox": [4, 2, 10, 6], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 3,
            "segmentation": [[4, 2, 14, 2, 14, 8]]}
    out = transform_instance_annotations(anno, tfms, (10, 20))
    assert out is anno and out["bbox_mode"] == BoxMode.XYXY_ABS
    # XYXY (4, 2, 14, 8) -> flipped in 40 px: (26, 2, 36, 8) -> halved: (13, 1, 18, 4).
    np.testing.assert_allclose(out["bbox"], [13, 1, 18, 4])
    np.testing.assert_allclose(out["segmentation"][0], [18, 1, 13, 1, 13, 4])
    # A list of transforms works too; the box is clipped to the (h, w) = (10, 20) image.
    clipped = transform_instance_annotations({"bbox": [-5, 3, 30, 12], "bbox_mode": BoxMode.XYXY_ABS},
                                             [T.NoOpTransform()], (10, 20))
    np.testing.assert_allclose(clipped["bbox"], [0, 3, 20, 10])
    with pytest.raises(ValueError, match="Cannot transform a segmentation of type str"):
        transform_instance_annotations({"bbox": [0, 0, 1, 1], "bbox_mode": BoxMode.XYXY_ABS, "segmentation": "x"},
                                       [T.NoOpTransform()], (10, 20))


def test_annotations_to_instances_converts_without_filtering():
    annos = [{"bbox": [1, 2, 3, 4], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 2},
             {"bbox": np.array([5.0, 6, 5, 8]), "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0}]
    inst = annotations_to_instances(annos, (10, 12))
    assert inst.image_size == (10, 12)
    assert inst.gt_boxes.tensor.tolist() == [[1, 2, 4, 6], [5, 6, 5, 8]]  # the empty box is kept here
    assert inst.gt_boxes.tensor.dtype == torch.float32
    assert inst.gt_classes.tolist() == [2, 0] and inst.gt_classes.dtype == torch.int64
    empty = annotations_to_instances([], (10, 12))
    assert empty.gt_boxes.tensor.shape == (0, 4) and empty.gt_classes.shape == (0,)


def test_filter_empty_instances():
    boxes = torch.tensor([[0, 0, 5, 5], [3, 3, 3, 8], [0, 0, 1e-6, 4], [1, 1, 1.5, 1.5]])
    inst = Instances((10, 10), gt_boxes=Boxes(boxes), gt_classes=torch.tensor([0, 1, 2, 3]))
    assert filter_empty_instances(inst).gt_classes.tolist() == [0, 3]  # width 0 and 1e-6 are empty (<= 1e-5)
    kept, mask = filter_empty_instances(inst, box_threshold=0.5, return_mask=True)
    assert kept.gt_classes.tolist() == [0] and mask.tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="set by_box or by_mask"):
        filter_empty_instances(inst, by_box=False, by_mask=False)


def test_build_augmentation_from_cfg():
    cfg = get_cfg()
    cfg.INPUT.COLOR_JITTER.ENABLED = True
    cfg.INPUT.COLOR_JITTER.CONTRAST = 0.3
    train = build_augmentation(cfg, is_train=True)
    assert [type(a) for a in train] == [T.ResizeShortestEdge, T.RandomFlip, T.RandomBrightness, T.RandomContrast,
                                        T.RandomSaturation]
    assert train[0].short_edge_length == (800,) and train[0].max_size == 1333 and not train[0].is_range
    assert train[1].horizontal and not train[1].vertical and train[1].prob == 0.5
    assert (train[2].intensity_min, train[2].intensity_max) == pytest.approx((0.8, 1.2))
    assert (train[3].intensity_min, train[3].intensity_max) == pytest.approx((0.7, 1.3))
    test = build_augmentation(cfg, is_train=False)
    assert [type(a) for a in test] == [T.ResizeShortestEdge] and test[0].short_edge_length == (800, 800)
    cfg.INPUT.RANDOM_FLIP = "vertical"
    cfg.INPUT.MIN_SIZE_TRAIN = (600,)
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "range"
    cfg.INPUT.COLOR_JITTER.ENABLED = False
    resize, flip = build_augmentation(cfg, True)
    assert resize.short_edge_length == (600, 600) and resize.is_range and flip.vertical  # one length: exactly it
    cfg.INPUT.RANDOM_FLIP = "none"
    assert [type(a) for a in build_augmentation(cfg, True)] == [T.ResizeShortestEdge]
    cfg.INPUT.RANDOM_FLIP = "diagonal"
    with pytest.raises(ValueError, match="INPUT.RANDOM_FLIP must be 'horizontal', 'vertical' or 'none', got 'diagonal'"):
        build_augmentation(cfg, True)
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.INPUT.MIN_SIZE_TRAIN = (1, 2, 3)
    with pytest.raises(ValueError, match="'range' needs INPUT.MIN_SIZE_TRAIN = \\(min, max\\), got \\(1, 2, 3\\)"):
        build_augmentation(cfg, True)
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "uniform"
    with pytest.raises(ValueError, match="INPUT.MIN_SIZE_TRAIN_SAMPLING must be 'range' or 'choice', got 'uniform'"):
        build_augmentation(cfg, True)
