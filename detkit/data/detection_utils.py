"""Helpers shared by mappers: read an image, check its size, turn annotations into Instances."""
from typing import Any, List, Optional, Tuple

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr as PathManager
from PIL import Image, ImageOps, UnidentifiedImageError

from detkit.structures import Boxes, BoxMode, Instances

__all__ = ["read_image", "check_image_size", "annotations_to_arrays", "annotations_to_instances",
           "BadImageError", "ImageReadError", "SizeMismatchError"]

_FORMATS = ("RGB", "BGR")
# Modes PIL converts to RGB as they are; 16/32-bit integer greyscale is rescaled to 8 bits first.
_CONVERTIBLE = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
_WIDE_GREY = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_HOW_TO_FIX = ("Replace or remove the file; `python tools/check_dataset.py --dataset NAME` lists every bad image "
               "of a dataset, and DATALOADER.ON_BAD_IMAGE skip trains past them.")


def _where(file_name: Optional[str], image_id: Any) -> str:
    return f"Image '{file_name}'" + ("" if image_id is None else f" (image_id {image_id})")


class BadImageError(Exception):
    """An image that cannot be used: its message names the file and the image id.

    The constructor takes one message string (so the error crosses DataLoader worker processes
    intact); ``file_name`` and ``image_id`` are attributes for code that wants them.
    """

    def __init__(self, message: str, file_name: Optional[str] = None, image_id: Any = None,
                 reason: Optional[str] = None):
        super().__init__(message)
        self.file_name = file_name
        self.image_id = image_id
        self.reason = reason or message


class ImageReadError(BadImageError, OSError):
    """An image file is missing, empty, truncated, undecodable or in an unsupported mode."""


class SizeMismatchError(BadImageError, ValueError):
    """An image decodes (after EXIF orientation) to another size than its dataset dict says."""


def _reason(e: BaseException, file_name: str) -> str:
    """What went wrong, in words, from the exception PIL or the file system raised."""
    if isinstance(e, FileNotFoundError):
        return "the file does not exist"
    if isinstance(e, UnidentifiedImageError):
        try:
            with PathManager.open(file_name, "rb") as f:
                empty = f.read(1) == b""
        except OSError:
            empty = False
        return "the file is empty (0 bytes)" if empty else \
            "it is not an image PIL can decode (unknown or corrupt format)"
    text = str(e)
    if "truncated" in text.lower() or "broken data stream" in text or isinstance(e, (EOFError, SyntaxError)):
        return f"the file is truncated or corrupt ({text})"
    return f"{type(e).__name__}: {text}"


def _to_rgb(image: Image.Image, file_name: str, image_id: Any) -> Image.Image:
    mode = image.mode
    if mode in _WIDE_GREY:
        wide = np.asarray(image, dtype=np.int64)  # (H, W) 16- or 32-bit grey
        shift = 8 if mode != "I" or wide.max(initial=0) <= 65535 else 24
        return Image.fromarray(np.clip(wide >> shift, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode not in _CONVERTIBLE:
        raise ImageReadError(f"{_where(file_name, image_id)} has PIL mode '{mode}', which detkit cannot convert "
                             f"to RGB (supported: {', '.join(sorted(_CONVERTIBLE | _WIDE_GREY))}). Re-save it as "
                             "an 8-bit RGB or greyscale image.", file_name, image_id,
                             f"PIL mode '{mode}' has no RGB conversion")
    return image.convert("RGB")


def decode_image(file_name: str, image_id: Any = None) -> Tuple[Image.Image, str]:
    """Open and fully decode ``file_name`` (EXIF orientation applied, converted to RGB).

    Returns:
        (the RGB PIL image, the file's original PIL mode).

    Raises:
        ImageReadError: naming the file and ``image_id`` for a missing, empty, truncated or
            undecodable file, or a mode that has no RGB conversion.
    """
    try:
        with PathManager.open(file_name, "rb") as f:
            image = Image.open(f)
            mode = image.mode
            image.load()  # decode every byte now: a truncated file fails here, not in a transform
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image, file_name, image_id), mode
    except BadImageError:
        raise
    except (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError) as e:
        reason = _reason(e, file_name)
        raise ImageReadError(f"{_where(file_name, image_id)} cannot be read: {reason}. {_HOW_TO_FIX}",
                             file_name, image_id, reason) from e


def read_image(file_name: str, format: str = "RGB", *, image_id: Any = None) -> np.ndarray:
    """Read an image with PIL, applying its EXIF orientation: the one place detkit reads images.

    Greyscale, RGBA, palette, CMYK and 16-bit images are converted (16-bit values keep their top
    8 bits).

    Args:
        file_name: any iopath path.
        format: ``"RGB"`` or ``"BGR"``: the channel order of the result.
        image_id: the dataset's id of the image, named in errors.

    Returns:
        An (H, W, 3) uint8 array.

    Raises:
        ImageReadError: the file is missing, empty, truncated, undecodable or in an unsupported
            mode; the message names the file and ``image_id``.
    """
    if format not in _FORMATS:
        raise ValueError(f"Image format {format!r} is not supported (INPUT.FORMAT); use one of {_FORMATS}.")
    image, _ = decode_image(file_name, image_id)
    array = np.asarray(image)
    return np.ascontiguousarray(array[:, :, ::-1]) if format == "BGR" else array


def check_image_size(dataset_dict: dict, image: np.ndarray) -> None:
    """Raise ``SizeMismatchError`` naming the file and image id if the decoded size differs from the dict's."""
    h, w = image.shape[:2]
    expected = (dataset_dict.get("height", h), dataset_dict.get("width", w))
    if (h, w) != tuple(expected):
        file_name, image_id = dataset_dict.get("file_name"), dataset_dict.get("image_id")
        raise SizeMismatchError(
            f"{_where(file_name, image_id)} decodes to "
            f"{w}x{h} (WxH) after EXIF orientation, but its dataset dict says {expected[1]}x{expected[0]}. "
            "Fix the annotation file's width/height (or the image); `python tools/check_dataset.py --dataset NAME "
            "--fix-sizes OUT.json` writes a COCO file with the decoded sizes.", file_name, image_id)


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
