"""Deterministic transforms beyond fvcore's: resize, extent (crop + scale), and colour operations.

Each is an ``fvcore.transforms.Transform``: ``apply_image`` on an (H, W) or (H, W, C) array,
``apply_coords`` on an (N, 2) float array of (x, y) points, and fvcore's ``apply_box`` (the
min/max of the four transformed corners), ``apply_polygons`` and ``apply_segmentation`` built on
them. Coordinates are continuous: an (H, W) image spans [0, W] x [0, H].
"""
import numpy as np
import torch
import torch.nn.functional as F
from fvcore.transforms.transform import NoOpTransform, Transform
from PIL import Image

__all__ = ["ExtentTransform", "ResizeTransform", "ColorTransform", "PILColorTransform"]

# PIL resampling filter -> torch interpolation mode, for float images PIL cannot resize.
_TORCH_MODES = {Image.NEAREST: "nearest", Image.BILINEAR: "bilinear", Image.BICUBIC: "bicubic"}


def _to_pil(img: np.ndarray) -> Image.Image:
    """A uint8 (H, W), (H, W, 1) or (H, W, 3/4) array as a PIL image (one channel as mode "L")."""
    if img.ndim == 3 and img.shape[2] == 1:
        return Image.fromarray(img[:, :, 0], mode="L")
    return Image.fromarray(img)


def _from_pil(pil_image: Image.Image, like: np.ndarray) -> np.ndarray:
    """Back to an array with the channel layout of ``like`` (a single channel keeps its axis)."""
    out = np.asarray(pil_image)
    return out[:, :, None] if like.ndim == 3 and like.shape[2] == 1 else out


class ExtentTransform(Transform):
    """Take the sub-rectangle ``src_rect`` of the image and scale it to ``output_size``.

    Pixels of ``src_rect`` outside the source image get ``fill``. Like PIL's EXTENT transform,
    it has no inverse (the source size is unknown to it).
    """

    def __init__(self, src_rect, output_size, interp=Image.BILINEAR, fill=0):
        """
        Args:
            src_rect: (x0, y0, x1, y1) in source coordinates.
            output_size: (h, w) of the result.
            interp: PIL resampling filter.
            fill: value of output pixels that fall outside the source image.
        """
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray, interp=None) -> np.ndarray:
        h, w = self.output_size
        out = _to_pil(img).transform(size=(w, h), method=Image.EXTENT, data=self.src_rect,
                                     resample=interp if interp else self.interp, fill=self.fill)
        return _from_pil(out, img)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        # Move the source rectangle's centre to the origin, scale to the output size, then move
        # the origin to the output image's centre.
        h, w = self.output_size
        x0, y0, x1, y1 = self.src_rect
        out = coords.astype(np.float32)  # (N, 2), updated in place step by step (float32 rounding)
        out[:, 0] -= 0.5 * (x0 + x1)
        out[:, 1] -= 0.5 * (y0 + y1)
        out[:, 0] *= w / (x1 - x0)
        out[:, 1] *= h / (y1 - y0)
        out[:, 0] += 0.5 * w
        out[:, 1] += 0.5 * h
        return out

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation, interp=Image.NEAREST)


class ResizeTransform(Transform):
    """Resize an (h, w) image to (new_h, new_w): PIL for uint8 images, torch for float ones."""

    def __init__(self, h: int, w: int, new_h: int, new_w: int, interp=None):
        """
        Args:
            h, w: the input image's size.
            new_h, new_w: the output size.
            interp: PIL resampling filter; bilinear when None.
        """
        super().__init__()
        if interp is None:
            interp = Image.BILINEAR
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray, interp=None) -> np.ndarray:
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(f"ResizeTransform was made for a {self.h}x{self.w} (HxW) image, "
                             f"got one of shape {img.shape}.")
        interp = interp if interp is not None else self.interp
        if img.dtype == np.uint8:
            return _from_pil(_to_pil(img).resize((self.new_w, self.new_h), interp), img)
        # Float images: torch's interpolate on an (N, C, H, W) view of the (H, W[, C]) array.
        shape = list(img.shape)
        x = torch.from_numpy(np.ascontiguousarray(img))
        x = x.view(shape[:2] + [1] * (4 - len(shape)) + shape[2:]).permute(2, 3, 0, 1)  # (1, C, H, W)
        mode = _TORCH_MODES[interp]
        x = F.interpolate(x, (self.new_h, self.new_w), mode=mode,
                          align_corners=None if mode == "nearest" else False)
        shape[:2] = (self.new_h, self.new_w)
        return x.permute(2, 3, 0, 1).reshape(shape).numpy()

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords[:, 0] = coords[:, 0] * (self.new_w * 1.0 / self.w)
        coords[:, 1] = coords[:, 1] * (self.new_h * 1.0 / self.h)
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation, interp=Image.NEAREST)

    def inverse(self) -> "ResizeTransform":
        return ResizeTransform(self.new_h, self.new_w, self.h, self.w, self.interp)


class ColorTransform(Transform):
    """Any photometric operation ``op(ndarray) -> ndarray``: coordinates and masks are unchanged."""

    def __init__(self, op):
        """
        Args:
            op: a callable taking and returning an image array.
        """
        if not callable(op):
            raise ValueError(f"ColorTransform: op must be callable, got {type(op).__name__}.")
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self.op(img)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def inverse(self) -> Transform:
        return NoOpTransform()


class PILColorTransform(ColorTransform):
    """A photometric operation on PIL images, ``op(PIL.Image) -> PIL.Image`` (e.g. from ImageOps)."""

    def __init__(self, op):
        """
        Args:
            op: a callable taking and returning a PIL image.
        """
        super().__init__(op)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return np.asarray(super().apply_image(Image.fromarray(img)))
