"""Helpers shared by mappers: read an image, check its size, turn annotations into Instances."""
from typing import List, Optional, Tuple

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr as PathManager
from PIL import Image, ImageOps

from detkit.structures import Boxes, BoxMode, Instances

__all__ = ["read_image", "check_image_size", "annotations_to_arrays", "annotations_to_instances"]

_FORMATS = ("RGB", "BGR")


def read_image(file_name: str, format: str = "RGB") -> np.ndarray:
    """Read an image with PIL, applying its EXIF orientation.

    Args:
        file_name: any iopath path.
        format: ``"RGB"`` or ``"BGR"``: the channel order of the result.

    Returns:
        An (H, W, 3) uint8 array.
    """
    if format not in _FORMATS:
        raise ValueError(f"Image format {format!r} is not supported (INPUT.FORMAT); use one of {_FORMATS}.")
    with PathManager.open(file_name, "rb") as f:
        image = Image.open(f)
        image = ImageOps.exif_transpose(image).convert("RGB")
    array = np.asarray(image)
    return np.ascontiguousarray(array[:, :, ::-1]) if format == "BGR" else array


def check_image_size(dataset_dict: dict, image: np.ndarray) -> None:
    """Raise ``ValueError`` naming the file and image id if the decoded size differs from the dict's."""
    h, w = image.shape[:2]
    expected = (dataset_dict.get("height", h), dataset_dict.get("width", w))
    if (h, w) != tuple(expected):
        raise ValueError(
            f"Image '{dataset_dict.get('file_name')}' (image_id {dataset_dict.get('image_id')}) decodes to "
            f"{w}x{h} (WxH) after EXIF orientation, but its dataset dict says {expected[1]}x{expected[0]}. "
            "Fix the annotation file's width/height (or the image).")


def annotations_to_arrays(annotations: Optional[List[dict]]) -> Tuple[np.ndarray, np.ndarray]:
    """Non-crowd annotations -> ((N, 4) float32 XYXY_ABS boxes, (N,) int64 classes)."""
    anns = [a for a in (annotations or []) if int(a.get("iscrowd", 0)) == 0]
    if not anns:
        return np.zeros((0, 4), dtype=np.float32), np.zeros((0,), dtype=np.int64)
    boxes = np.asarray([BoxMode.convert(a["bbox"], a.get("bbox_mode", BoxMode.XYXY_ABS), BoxMode.XYXY_ABS)
                        for a in anns], dtype=np.float32)  # (N, 4)
    classes = np.asarray([a["category_id"] for a in anns], dtype=np.int64)  # (N,)
    return boxes, classes


def annotations_to_instances(boxes: np.ndarray, classes: np.ndarray, image_size: Tuple[int, int]) -> Instances:
    """Boxes in the (transformed) image -> Instances(gt_boxes, gt_classes), clipped, degenerate dropped.

    Args:
        boxes: (N, 4) XYXY boxes in the image of size ``image_size``.
        classes: (N,) contiguous class ids.
        image_size: (height, width) of that image.
    """
    gt_boxes = Boxes(torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4))
    gt_boxes.clip(image_size)
    keep = gt_boxes.nonempty()  # (N,) boxes squashed to a line by clipping or resizing go away
    return Instances(image_size, gt_boxes=gt_boxes[keep],
                     gt_classes=torch.as_tensor(np.asarray(classes, dtype=np.int64))[keep])
