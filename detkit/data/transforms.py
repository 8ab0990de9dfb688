"""Augmentations that change an image and its boxes together: resize, flip, colour jitter.

Each augmentation is called as ``image, boxes = aug(image, boxes, rng)`` on an (H, W, 3) uint8
image and an (N, 4) float XYXY_ABS box array, and draws its randomness only from ``rng`` (a
``numpy.random.Generator``), so a seeded generator reproduces the exact same augmentation.
"""
import sys
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

__all__ = ["Augmentation", "ResizeShortestEdge", "RandomFlip", "ColorJitter", "AugmentationList",
           "build_augmentation"]


def _rng(rng: Optional[np.random.Generator]) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng()


def _as_boxes(boxes) -> np.ndarray:
    if boxes is None:
        return np.zeros((0, 4), dtype=np.float32)
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


class Augmentation:
    """Base class: ``__call__(image, boxes, rng=None) -> (image, boxes)``."""

    def __call__(self, image: np.ndarray, boxes=None,
                 rng: Optional[np.random.Generator] = None) -> Tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class ResizeShortestEdge(Augmentation):
    """Resize so the shorter side is a sampled length, capping the longer side at ``max_size``."""

    def __init__(self, short_edge_length: Union[int, Sequence[int]], max_size: int = sys.maxsize,
                 sample_style: str = "range", interp: int = Image.BILINEAR):
        """
        Args:
            short_edge_length: one length, or several: with ``"choice"`` one is picked per image;
                with ``"range"`` (exactly two values) an integer in [min, max] is drawn. 0 leaves
                the image as it is. One length with ``"range"`` means exactly that length.
            max_size: cap on the longer side after resizing.
            sample_style: ``"range"`` or ``"choice"``.
            interp: PIL interpolation for the image.
        """
        if sample_style not in ("range", "choice"):
            raise ValueError(f"ResizeShortestEdge: sample_style must be 'range' or 'choice', got {sample_style!r}.")
        if isinstance(short_edge_length, (int, np.integer)):
            short_edge_length = (short_edge_length,)
        short_edge_length = tuple(int(s) for s in short_edge_length)
        if sample_style == "range" and len(short_edge_length) == 1:
            short_edge_length = short_edge_length * 2
        if sample_style == "range" and len(short_edge_length) != 2:
            raise ValueError(f"ResizeShortestEdge: sample_style 'range' needs two lengths (min, max), "
                             f"got {short_edge_length}.")
        self.short_edge_length = short_edge_length
        self.max_size = max_size
        self.sample_style = sample_style
        self.interp = interp

    @staticmethod
    def get_output_shape(h: int, w: int, short_edge: int, max_size: int) -> Tuple[int, int]:
        """(new_h, new_w) for an (h, w) image resized to ``short_edge`` with the longer side capped."""
        scale = short_edge / min(h, w)
        new_h, new_w = h * scale, w * scale
        if max(new_h, new_w) > max_size:
            scale = max_size / max(new_h, new_w)
            new_h, new_w = new_h * scale, new_w * scale
        return int(new_h + 0.5), int(new_w + 0.5)

    def __call__(self, image, boxes=None, rng=None):
        boxes = _as_boxes(boxes)
        if self.sample_style == "range":
            size = int(_rng(rng).integers(self.short_edge_length[0], self.short_edge_length[1] + 1))
        else:
            size = int(self.short_edge_length[_rng(rng).integers(len(self.short_edge_length))])
        if size == 0:
            return image, boxes
        h, w = image.shape[:2]
        new_h, new_w = self.get_output_shape(h, w, size, self.max_size)
        if (new_h, new_w) == (h, w):
            return image, boxes
        image = np.asarray(Image.fromarray(image).resize((new_w, new_h), self.interp))
        boxes = boxes * np.asarray([new_w / w, new_h / h, new_w / w, new_h / h], dtype=np.float32)
        return image, boxes


class RandomFlip(Augmentation):
    """Flip the image (and boxes) horizontally or vertically with probability ``prob``."""

    def __init__(self, prob: float = 0.5, horizontal: bool = True, vertical: bool = False):
        if horizontal == vertical:
            raise ValueError("RandomFlip: set exactly one of horizontal=True or vertical=True.")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomFlip: prob must be in [0, 1], got {prob}.")
        self.prob = prob
        self.horizontal = horizontal
        self.vertical = vertical

    def __call__(self, image, boxes=None, rng=None):
        boxes = _as_boxes(boxes)
        if not _rng(rng).random() < self.prob:
            return image, boxes
        h, w = image.shape[:2]
        if self.horizontal:  # x -> W - x, so x0' = W - x1 and x1' = W - x0
            return np.ascontiguousarray(image[:, ::-1]), np.stack(
                [w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
        return np.ascontiguousarray(image[::-1]), np.stack(
            [boxes[:, 0], h - boxes[:, 3], boxes[:, 2], h - boxes[:, 1]], axis=1)


class ColorJitter(Augmentation):
    """Random brightness, contrast and saturation changes (boxes unchanged).

    Each factor is drawn uniformly from [1 - x, 1 + x]: brightness scales the pixels, contrast
    blends with the mean grey level, saturation blends with the grey image.
    """

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2):
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation

    def __call__(self, image, boxes=None, rng=None):
        rng = _rng(rng)
        b, c, s = rng.uniform(-1, 1, size=3) * [self.brightness, self.contrast, self.saturation] + 1.0
        img = image.astype(np.float32) * b
        grey = img @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)  # (H, W)
        img = (img - grey.mean()) * c + grey.mean()
        grey = img @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
        img = (img - grey[..., None]) * s + grey[..., None]
        return np.clip(img + 0.5, 0, 255).astype(np.uint8), _as_boxes(boxes)


class AugmentationList(Augmentation):
    """Apply several augmentations in order, all drawing from the same generator."""

    def __init__(self, augmentations: List[Augmentation]):
        self.augmentations = list(augmentations)

    def __call__(self, image, boxes=None, rng=None):
        rng = _rng(rng)
        boxes = _as_boxes(boxes)
        for aug in self.augmentations:
            image, boxes = aug(image, boxes, rng)
        return image, boxes


def build_augmentation(cfg, is_train: bool) -> List[Augmentation]:
    """The default augmentations from ``cfg.INPUT``: resize, then (training only) flip and jitter."""
    if is_train:
        augs = [ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN,
                                   cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING)]
        flip = cfg.INPUT.RANDOM_FLIP
        if flip not in ("horizontal", "vertical", "none"):
            raise ValueError(f"INPUT.RANDOM_FLIP must be 'horizontal', 'vertical' or 'none', got {flip!r}.")
        if flip != "none":
            augs.append(RandomFlip(horizontal=flip == "horizontal", vertical=flip == "vertical"))
        jitter = cfg.INPUT.COLOR_JITTER
        if jitter.ENABLED:
            augs.append(ColorJitter(jitter.BRIGHTNESS, jitter.CONTRAST, jitter.SATURATION))
        return augs
    return [ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")]
