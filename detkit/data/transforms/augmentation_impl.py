"""The builtin augmentations: flips, resizes, crops, extents and photometric changes.

Every random choice is drawn from numpy's global generator, in the order each class's docstring
gives, so ``np.random.seed(s)`` reproduces the same flips, sizes and crops as detectron2's
augmentations of the same names.
"""
import sys
from typing import Sequence, Tuple

import numpy as np
from fvcore.transforms.transform import (BlendTransform, CropTransform, HFlipTransform, NoOpTransform, PadTransform,
                                         Transform, TransformList, VFlipTransform)
from PIL import Image

from .augmentation import Augmentation, _transform_to_aug
from .transform import ExtentTransform, ResizeTransform

__all__ = ["FixedSizeCrop", "RandomApply", "RandomBrightness", "RandomContrast", "RandomCrop", "RandomExtent",
           "RandomFlip", "RandomSaturation", "RandomLighting", "Resize", "ResizeScale", "ResizeShortestEdge",
           "RandomResize"]


class RandomApply(Augmentation):
    """Apply a transform or augmentation with probability ``prob``.

    Draws: one ``uniform(0, 1)``; the wrapped augmentation's draws follow only if it is applied.
    """

    def __init__(self, tfm_or_aug, prob: float = 0.5):
        """
        Args:
            tfm_or_aug: a Transform or an Augmentation.
            prob: probability in [0, 1] of applying it.
        """
        assert 0.0 <= prob <= 1.0, f"RandomApply: prob must be between 0.0 and 1.0, got {prob}."
        super().__init__()
        self.aug = _transform_to_aug(tfm_or_aug)
        self.prob = prob

    def get_transform(self, *args) -> Transform:
        if self._rand_range() < self.prob:
            return self.aug.get_transform(*args)
        return NoOpTransform()

    def __call__(self, aug_input) -> Transform:
        if self._rand_range() < self.prob:
            return self.aug(aug_input)
        return NoOpTransform()


class RandomFlip(Augmentation):
    """Flip horizontally (or vertically) with probability ``prob``. Draws: one ``uniform(0, 1)``."""

    def __init__(self, prob: float = 0.5, *, horizontal: bool = True, vertical: bool = False):
        """
        Args:
            prob: probability of flipping.
            horizontal, vertical: the direction; exactly one must be True.
        """
        super().__init__()
        if horizontal and vertical:
            raise ValueError("RandomFlip: horizontal and vertical cannot both be True; use two RandomFlip.")
        if not horizontal and not vertical:
            raise ValueError("RandomFlip: set horizontal=True or vertical=True.")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomFlip: prob must be in [0, 1], got {prob}.")
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        if self._rand_range() < self.prob:
            return HFlipTransform(w) if self.horizontal else VFlipTransform(h)
        return NoOpTransform()


class Resize(Augmentation):
    """Resize to a fixed (h, w). No draws."""

    def __init__(self, shape, interp=Image.BILINEAR):
        """
        Args:
            shape: (h, w), or one int for a square.
            interp: PIL resampling filter.
        """
        if isinstance(shape, int):
            shape = (shape, shape)
        shape = tuple(shape)
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        return ResizeTransform(image.shape[0], image.shape[1], self.shape[0], self.shape[1], self.interp)


class ResizeShortestEdge(Augmentation):
    """Scale the shorter side to a sampled length, keeping the aspect ratio, longer side <= max_size.

    Draws: ``randint(min, max + 1)`` with ``"range"``, ``choice(lengths)`` with ``"choice"``.
    A length of 0 leaves the image as it is.
    """

    def __init__(self, short_edge_length, max_size: int = sys.maxsize, sample_style: str = "range",
                 interp=Image.BILINEAR):
        """
        Args:
            short_edge_length: with ``"range"``, (min, max) of the sampled length; with
                ``"choice"``, the lengths to choose from. One int means exactly that length.
            max_size: cap on the longer side.
            sample_style: ``"range"`` or ``"choice"``.
            interp: PIL resampling filter.
        """
        super().__init__()
        if sample_style not in ("range", "choice"):
            raise ValueError(f"ResizeShortestEdge: sample_style must be 'range' or 'choice', got {sample_style!r}.")
        self.is_range = sample_style == "range"
        if isinstance(short_edge_length, (int, np.integer)):
            short_edge_length = (short_edge_length, short_edge_length)
        elif self.is_range and len(short_edge_length) == 1:  # one length: the range [s, s]
            short_edge_length = tuple(short_edge_length) * 2
        if self.is_range and len(short_edge_length) != 2:
            raise ValueError(f"ResizeShortestEdge: sample_style 'range' needs two lengths (min, max), "
                             f"got {short_edge_length}.")
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        if self.is_range:
            size = np.random.randint(self.short_edge_length[0], self.short_edge_length[1] + 1)
        else:
            size = np.random.choice(self.short_edge_length)
        if size == 0:
            return NoOpTransform()
        new_h, new_w = ResizeShortestEdge.get_output_shape(h, w, size, self.max_size)
        return ResizeTransform(h, w, new_h, new_w, self.interp)

    @staticmethod
    def get_output_shape(oldh: int, oldw: int, short_edge_length: int, max_size: int) -> Tuple[int, int]:
        """(new_h, new_w) for an (oldh, oldw) image, each rounded half up."""
        size = short_edge_length * 1.0
        scale = size / min(oldh, oldw)
        new_h, new_w = (size, scale * oldw) if oldh < oldw else (scale * oldh, size)
        if max(new_h, new_w) > max_size:
            scale = max_size * 1.0 / max(new_h, new_w)
            new_h, new_w = new_h * scale, new_w * scale
        return int(new_h + 0.5), int(new_w + 0.5)


class ResizeScale(Augmentation):
    """Fit the image inside (target_height, target_width) times a random scale, aspect kept.

    Draws: one ``uniform(min_scale, max_scale)``. The output size is rounded to the nearest pixel.
    """

    def __init__(self, min_scale: float, max_scale: float, target_height: int, target_width: int,
                 interp: int = Image.BILINEAR):
        super().__init__()
        self._init(locals())

    def _get_resize(self, image: np.ndarray, scale: float) -> Transform:
        in_h, in_w = image.shape[:2]
        target_h, target_w = np.multiply((self.target_height, self.target_width), scale)
        ratio = np.minimum(target_h / in_h, target_w / in_w)
        out_h, out_w = np.round(np.multiply((in_h, in_w), ratio)).astype(int)
        return ResizeTransform(in_h, in_w, int(out_h), int(out_w), self.interp)

    def get_transform(self, image: np.ndarray) -> Transform:
        return self._get_resize(image, np.random.uniform(self.min_scale, self.max_scale))


class FixedSizeCrop(Augmentation):
    """Crop a random ``crop_size`` window where the image is larger, and pad right/bottom where smaller.

    Draws: one ``uniform(0, 1)``, which places the window: offset = round(u * (size - crop)).
    """

    def __init__(self, crop_size: Tuple[int, int], pad: bool = True, pad_value: float = 128.0,
                 seg_pad_value: int = 255):
        """
        Args:
            crop_size: (height, width) of the output.
            pad: pad an image smaller than ``crop_size`` up to it.
            pad_value: the image's padding value; ``seg_pad_value``: the segmentation's.
        """
        super().__init__()
        self._init(locals())

    def _get_crop(self, image: np.ndarray) -> Transform:
        in_size = image.shape[:2]
        max_offset = np.maximum(np.subtract(in_size, self.crop_size), 0)  # (dy, dx)
        offset = np.round(np.multiply(max_offset, np.random.uniform(0.0, 1.0))).astype(int)
        return CropTransform(offset[1], offset[0], self.crop_size[1], self.crop_size[0], in_size[1], in_size[0])

    def _get_pad(self, image: np.ndarray) -> Transform:
        in_size = image.shape[:2]
        pad = np.maximum(np.subtract(self.crop_size, in_size), 0)  # (bottom, right)
        kept = np.minimum(in_size, self.crop_size)
        return PadTransform(0, 0, pad[1], pad[0], kept[1], kept[0], self.pad_value, self.seg_pad_value)

    def get_transform(self, image: np.ndarray) -> TransformList:
        tfms = [self._get_crop(image)]
        if self.pad:
            tfms.append(self._get_pad(image))
        return TransformList(tfms)


class RandomCrop(Augmentation):
    """Crop a random window out of the image.

    ``crop_type``:
      - ``"relative"``: a (H * crop_size[0], W * crop_size[1]) window, crop_size in (0, 1].
      - ``"relative_range"``: relative sizes drawn uniformly in [crop_size[0], 1] and [crop_size[1], 1].
      - ``"absolute"``: a (crop_size[0], crop_size[1]) window, capped at the image size.
      - ``"absolute_range"``: H_crop drawn in [crop_size[0], min(H, crop_size[1])], then W_crop
        likewise in [crop_size[0], min(W, crop_size[1])].

    Draws: the size (``rand(2)`` for relative_range; ``randint`` for H then W for absolute_range),
    then ``y0 = randint(H - h + 1)``, then ``x0 = randint(W - w + 1)``.
    """

    CROP_TYPES = ("relative_range", "relative", "absolute", "absolute_range")

    def __init__(self, crop_type: str, crop_size):
        """
        Args:
            crop_type: one of ``CROP_TYPES``.
            crop_size: two numbers, read as the crop type says.
        """
        super().__init__()
        if crop_type not in self.CROP_TYPES:
            raise ValueError(f"RandomCrop: crop_type must be one of {self.CROP_TYPES}, got {crop_type!r}.")
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        croph, cropw = self.get_crop_size((h, w))
        if not (h >= croph and w >= cropw):
            raise ValueError(f"{self} computed a {croph}x{cropw} crop for a {h}x{w} image.")
        h0 = np.random.randint(h - croph + 1)
        w0 = np.random.randint(w - cropw + 1)
        return CropTransform(w0, h0, cropw, croph)

    def get_crop_size(self, image_size: Tuple[int, int]) -> Tuple[int, int]:
        """(crop height, crop width) in pixels for an image of size (height, width)."""
        h, w = image_size
        if self.crop_type == "relative":
            ch, cw = self.crop_size
            return int(h * ch + 0.5), int(w * cw + 0.5)
        if self.crop_type == "relative_range":
            crop_size = np.asarray(self.crop_size, dtype=np.float32)
            ch, cw = crop_size + np.random.rand(2) * (1 - crop_size)
            return int(h * ch + 0.5), int(w * cw + 0.5)
        if self.crop_type == "absolute":
            return min(self.crop_size[0], h), min(self.crop_size[1], w)
        if self.crop_size[0] > self.crop_size[1]:
            raise ValueError(f"RandomCrop absolute_range: crop_size must be (min, max), got {self.crop_size}.")
        ch = np.random.randint(min(h, self.crop_size[0]), min(h, self.crop_size[1]) + 1)
        cw = np.random.randint(min(w, self.crop_size[0]), min(w, self.crop_size[1]) + 1)
        return ch, cw


class RandomExtent(Augmentation):
    """Take a randomly scaled and shifted sub-rectangle of the image (pixels outside it are 0).

    Draws: ``uniform(*scale_range)`` for the scale, then ``rand()`` for the x shift and ``rand()``
    for the y shift: the rectangle moves by (W * shift_range[0] * (u - 0.5), H * shift_range[1] * (v - 0.5)).
    """

    def __init__(self, scale_range: Sequence[float], shift_range: Sequence[float]):
        """
        Args:
            scale_range: (low, high) of the rectangle's size relative to the image.
            shift_range: (x, y) of the relative shift; 0 keeps the rectangle centred.
        """
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        img_h, img_w = image.shape[:2]
        rect = np.array([-0.5 * img_w, -0.5 * img_h, 0.5 * img_w, 0.5 * img_h])  # centred on the origin
        rect *= np.random.uniform(self.scale_range[0], self.scale_range[1])
        rect[0::2] += self.shift_range[0] * img_w * (np.random.rand() - 0.5)
        rect[1::2] += self.shift_range[1] * img_h * (np.random.rand() - 0.5)
        rect[0::2] += 0.5 * img_w  # back to image coordinates
        rect[1::2] += 0.5 * img_h
        return ExtentTransform(src_rect=(rect[0], rect[1], rect[2], rect[3]),
                               output_size=(int(rect[3] - rect[1]), int(rect[2] - rect[0])))


class RandomContrast(Augmentation):
    """Blend with the image's mean: w * img + (1 - w) * mean. Draws: ``uniform(min, max)`` for w."""

    def __init__(self, intensity_min: float, intensity_max: float):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        w = np.random.uniform(self.intensity_min, self.intensity_max)
        return BlendTransform(src_image=image.mean(), src_weight=1 - w, dst_weight=w)


class RandomBrightness(Augmentation):
    """Scale the pixels: w * img (blend with black). Draws: ``uniform(min, max)`` for w."""

    def __init__(self, intensity_min: float, intensity_max: float):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        w = np.random.uniform(self.intensity_min, self.intensity_max)
        return BlendTransform(src_image=0, src_weight=1 - w, dst_weight=w)


class RandomSaturation(Augmentation):
    """Blend an RGB image with its grey version (0.299 R + 0.587 G + 0.114 B): w * img + (1 - w) * grey.

    Draws: ``uniform(min, max)`` for w.
    """

    def __init__(self, intensity_min: float, intensity_max: float):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        if image.shape[-1] != 3:
            raise ValueError(f"RandomSaturation needs an (H, W, 3) RGB image, got shape {image.shape}.")
        w = np.random.uniform(self.intensity_min, self.intensity_max)
        grey = image.dot([0.299, 0.587, 0.114])[:, :, np.newaxis]  # (H, W, 1)
        return BlendTransform(src_image=grey, src_weight=1 - w, dst_weight=w)


class RandomLighting(Augmentation):
    """AlexNet's PCA lighting noise on an RGB image, with ImageNet's eigenvectors.

    Draws: ``normal(scale=scale, size=3)`` for the weights of the three principal components.
    """

    def __init__(self, scale: float):
        """
        Args:
            scale: standard deviation of the component weights.
        """
        super().__init__()
        self._init(locals())
        self.eigen_vecs = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140],
                                    [-0.5836, -0.6948, 0.4203]])
        self.eigen_vals = np.array([0.2175, 0.0188, 0.0045])

    def get_transform(self, image: np.ndarray) -> Transform:
        if image.shape[-1] != 3:
            raise ValueError(f"RandomLighting needs an (H, W, 3) RGB image, got shape {image.shape}.")
        weights = np.random.normal(scale=self.scale, size=3)
        return BlendTransform(src_image=self.eigen_vecs.dot(weights * self.eigen_vals), src_weight=1.0,
                              dst_weight=1.0)


class RandomResize(Augmentation):
    """Resize to one (h, w) of ``shape_list``. Draws: ``randint(0, len(shape_list))``."""

    def __init__(self, shape_list, interp=Image.BILINEAR):
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = self.shape_list[np.random.randint(low=0, high=len(self.shape_list))]
        return ResizeTransform(image.shape[0], image.shape[1], h, w, self.interp)
