"""Helpers shared by mappers, with detectron2's signatures: read an image, check its size,
transform annotations, turn them into Instances, and the default augmentations from a config."""
from typing import Any, List, Optional, Tuple, Union

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr as PathManager
from PIL import Image, ImageOps, UnidentifiedImageError

from detkit.structures import Boxes, BoxMode, Instances

from . import transforms as T

__all__ = ["read_image", "check_image_size", "transform_instance_annotations", "annotations_to_instances",
           "filter_empty_instances", "build_augmentation", "build_transform_gen",
           "BadImageError", "ImageReadError", "SizeMismatchError"]

_FORMATS = ("RGB", "BGR", "L", "YUV-BT.601")
# RGB (0-1) -> YUV, ITU-R BT.601 (SDTV): Y, U, V rows.
_M_RGB2YUV = np.array([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]])
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
        format: ``"RGB"`` or ``"BGR"`` (uint8 (H, W, 3) in that channel order), ``"L"`` (uint8
            (H, W, 1) luma), or ``"YUV-BT.601"`` (float64 (H, W, 3), Y in [0, 1]).
        image_id: the dataset's id of the image, named in errors.

    Returns:
        An (H, W, C) array in ``format``.

    Raises:
        ImageReadError: the file is missing, empty, truncated, undecodable or in an unsupported
            mode; the message names the file and ``image_id``.
    """
    if format not in _FORMATS:
        raise ValueError(f"Image format {format!r} is not supported (INPUT.FORMAT); use one of {_FORMATS}.")
    image, _ = decode_image(file_name, image_id)
    if format == "L":
        return np.asarray(image.convert("L"))[:, :, None]  # (H, W, 1)
    array = np.asarray(image)  # (H, W, 3) RGB
    if format == "BGR":
        return np.ascontiguousarray(array[:, :, ::-1])
    if format == "YUV-BT.601":
        return np.dot(array / 255.0, _M_RGB2YUV.T)
    return array


def check_image_size(dataset_dict: dict, image: np.ndarray) -> None:
    """Raise ``SizeMismatchError`` naming the file and image id if the decoded size differs from the dict's.

    As in detectron2, a dict without ``height`` / ``width`` gets the image's.
    """
    h, w = image.shape[:2]
    expected = (dataset_dict.get("height", h), dataset_dict.get("width", w))
    if (h, w) != tuple(expected):
        file_name, image_id = dataset_dict.get("file_name"), dataset_dict.get("image_id")
        raise SizeMismatchError(
            f"{_where(file_name, image_id)} decodes to "
            f"{w}x{h} (WxH) after EXIF orientation, but its dataset dict says {expected[1]}x{expected[0]}. "
            "Fix the annotation file's width/height (or the image); `python tools/check_dataset.py --dataset NAME "
            "--fix-sizes OUT.json` writes a COCO file with the decoded sizes.", file_name, image_id)
    dataset_dict.setdefault("width", w)
    dataset_dict.setdefault("height", h)


def transform_instance_annotations(annotation: dict, transforms, image_size: Tuple[int, int]) -> dict:
    """Apply ``transforms`` to one instance annotation, in place.

    The box goes through ``transforms.apply_box`` and is clipped to the transformed image;
    polygon segmentations go through ``apply_polygons`` and RLE ones through
    ``apply_segmentation``.

    Args:
        annotation: one instance annotation with ``bbox`` and ``bbox_mode``; modified in place.
        transforms: a ``TransformList`` or a list of Transforms.
        image_size: (height, width) of the transformed image.

    Returns:
        The same dict, ``bbox`` now an XYXY_ABS array and ``bbox_mode`` ``BoxMode.XYXY_ABS``.
    """
    if isinstance(transforms, (tuple, list)):
        transforms = T.TransformList(transforms)
    bbox = BoxMode.convert(annotation["bbox"], annotation.get("bbox_mode", BoxMode.XYXY_ABS), BoxMode.XYXY_ABS)
    bbox = transforms.apply_box(np.array([bbox]))[0].clip(min=0)  # (4,)
    annotation["bbox"] = np.minimum(bbox, list(image_size + image_size)[::-1])  # x <= W, y <= H
    annotation["bbox_mode"] = BoxMode.XYXY_ABS
    segm = annotation.get("segmentation")
    if isinstance(segm, list):  # polygons: [x0, y0, x1, y1, ...] each
        polygons = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in segm]
        annotation["segmentation"] = [p.reshape(-1) for p in transforms.apply_polygons(polygons)]
    elif isinstance(segm, dict):  # COCO RLE
        import pycocotools.mask as mask_util

        annotation["segmentation"] = transforms.apply_segmentation(mask_util.decode(segm))
    elif segm is not None:
        raise ValueError(f"Cannot transform a segmentation of type {type(segm).__name__}: use polygons "
                         "(a list of [x, y, ...] lists) or a COCO RLE dict.")
    return annotation


def annotations_to_instances(annos: List[dict], image_size: Tuple[int, int]) -> Instances:
    """Instance annotations of one image -> ``Instances(gt_boxes, gt_classes)``, the models' targets.

    Boxes are converted to XYXY_ABS but neither clipped nor filtered (see
    ``transform_instance_annotations`` and ``filter_empty_instances``).

    Args:
        annos: instance annotations (``bbox``, ``bbox_mode``, ``category_id``).
        image_size: (height, width).
    """
    boxes = np.asarray([BoxMode.convert(a["bbox"], a.get("bbox_mode", BoxMode.XYXY_ABS), BoxMode.XYXY_ABS)
                        for a in annos], dtype=np.float32).reshape(-1, 4)  # (N, 4)
    classes = torch.tensor([int(a["category_id"]) for a in annos], dtype=torch.int64)  # (N,)
    return Instances(image_size, gt_boxes=Boxes(torch.from_numpy(boxes)), gt_classes=classes)


def filter_empty_instances(instances: Instances, by_box: bool = True, by_mask: bool = True,
                           box_threshold: float = 1e-5, return_mask: bool = False
                           ) -> Union[Instances, Tuple[Instances, torch.Tensor]]:
    """Drop instances whose box is not wider and taller than ``box_threshold``.

    Args:
        instances: with ``gt_boxes``.
        by_box: filter on the boxes; ``by_mask``: on ``gt_masks`` when present (detkit has none).
        box_threshold: minimum width and height.
        return_mask: also return the (N,) bool mask of the kept instances.
    """
    if not (by_box or by_mask):
        raise ValueError("filter_empty_instances: set by_box or by_mask.")
    masks = []
    if by_box:
        masks.append(instances.gt_boxes.nonempty(threshold=box_threshold))
    if by_mask and instances.has("gt_masks"):
        masks.append(instances.gt_masks.nonempty())
    if not masks:
        return (instances, torch.ones(len(instances), dtype=torch.bool)) if return_mask else instances
    keep = masks[0]
    for m in masks[1:]:
        keep = keep & m
    return (instances[keep], keep) if return_mask else instances[keep]


def build_augmentation(cfg, is_train: bool) -> List[T.Augmentation]:
    """The default augmentations from ``cfg.INPUT``.

    Training: ``ResizeShortestEdge(MIN_SIZE_TRAIN, MAX_SIZE_TRAIN, MIN_SIZE_TRAIN_SAMPLING)``, a
    ``RandomFlip`` in the ``RANDOM_FLIP`` direction, and with ``COLOR_JITTER.ENABLED``
    ``RandomBrightness``, ``RandomContrast`` and ``RandomSaturation``, each over [1 - x, 1 + x].
    Test: ``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST, "choice")``.
    """
    if not is_train:
        return [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")]
    style = cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
    if style not in ("range", "choice"):
        raise ValueError(f"INPUT.MIN_SIZE_TRAIN_SAMPLING must be 'range' or 'choice', got {style!r}.")
    sizes = cfg.INPUT.MIN_SIZE_TRAIN
    if style == "range" and not isinstance(sizes, int) and len(sizes) not in (1, 2):
        raise ValueError(f"INPUT.MIN_SIZE_TRAIN_SAMPLING 'range' needs INPUT.MIN_SIZE_TRAIN = (min, max), got {sizes}.")
    augs = [T.ResizeShortestEdge(sizes, cfg.INPUT.MAX_SIZE_TRAIN, style)]
    flip = cfg.INPUT.RANDOM_FLIP
    if flip not in ("horizontal", "vertical", "none"):
        raise ValueError(f"INPUT.RANDOM_FLIP must be 'horizontal', 'vertical' or 'none', got {flip!r}.")
    if flip != "none":
        augs.append(T.RandomFlip(horizontal=flip == "horizontal", vertical=flip == "vertical"))
    jitter = cfg.INPUT.COLOR_JITTER
    if jitter.ENABLED:
        augs += [T.RandomBrightness(1 - jitter.BRIGHTNESS, 1 + jitter.BRIGHTNESS),
                 T.RandomContrast(1 - jitter.CONTRAST, 1 + jitter.CONTRAST),
                 T.RandomSaturation(1 - jitter.SATURATION, 1 + jitter.SATURATION)]
    return augs


build_transform_gen = build_augmentation
"""detectron2's older name of :func:`build_augmentation`."""
