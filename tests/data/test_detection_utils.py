"""Mapper helpers: EXIF-aware reading, channel order, size check, annotations -> Instances."""
import numpy as np
import pytest

from detkit.data.detection_utils import (annotations_to_arrays, annotations_to_instances, check_image_size,
                                         read_image)
from detkit.structures import BoxMode

from .conftest import write_image


def test_read_image_rgb_and_bgr(tmp_path):
    path = str(tmp_path / "a.png")
    pixels = write_image(path, 6, 4, fmt="PNG")
    rgb = read_image(path, "RGB")
    assert rgb.shape == (4, 6, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, pixels)
    np.testing.assert_array_equal(read_image(path, "BGR"), pixels[:, :, ::-1])
    with pytest.raises(ValueError, match="Image format 'L' is not supported \\(INPUT.FORMAT\\)"):
        read_image(path, "L")


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


def test_annotations_to_arrays_converts_and_skips_crowd():
    anns = [{"bbox": [1, 2, 3, 4], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 2},
            {"bbox": [0, 0, 5, 5], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1, "iscrowd": 1},
            {"bbox": [5, 6, 7, 8], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "iscrowd": 0}]
    boxes, classes = annotations_to_arrays(anns)
    np.testing.assert_array_equal(boxes, [[1, 2, 4, 6], [5, 6, 7, 8]])
    assert classes.dtype == np.int64 and classes.tolist() == [2, 0]
    empty_boxes, empty_classes = annotations_to_arrays(None)
    assert empty_boxes.shape == (0, 4) and empty_classes.shape == (0,)


def test_annotations_to_instances_clips_and_drops_degenerate():
    boxes = np.asarray([[-2, 1, 5, 30], [12, 0, 20, 5], [3, 3, 3, 8]], dtype=np.float32)
    inst = annotations_to_instances(boxes, np.asarray([0, 1, 2]), (10, 12))
    assert inst.image_size == (10, 12)
    assert inst.gt_boxes.tensor.tolist() == [[0, 1, 5, 10]]  # 2nd is clipped to zero width, 3rd is a line
    assert inst.gt_classes.tolist() == [0] and str(inst.gt_classes.dtype) == "torch.int64"
