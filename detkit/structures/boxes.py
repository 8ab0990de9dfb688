"""Boxes: an (N, 4) XYXY tensor with helpers, BoxMode, and pairwise IoU / IoA / intersection."""
from enum import IntEnum, unique
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
from torchvision.ops import box_area, box_iou

__all__ = ["Boxes", "BoxMode", "pairwise_iou", "pairwise_ioa", "pairwise_intersection", "matched_pairwise_iou",
           "pairwise_point_box_distance"]

_RawBoxType = Union[List[float], Tuple[float, ...], torch.Tensor, np.ndarray]


class _BoxModeError(AssertionError, ValueError):
    """A box or mode BoxMode.convert refuses: detectron2's AssertionError, and a ValueError for detkit's callers."""


class _RotatedBoxModeError(NotImplementedError, ValueError):
    """XYWHA_ABS, out of detkit's scope: detectron2's NotImplementedError, and a ValueError for detkit's callers."""


@unique
class BoxMode(IntEnum):
    """How a box's numbers are to be read; detectron2's members and values.

    Only the absolute axis-aligned modes convert: the relative modes raise, as in detectron2,
    and ``XYWHA_ABS`` (rotated boxes) is out of detkit's scope.
    """

    XYXY_ABS = 0  # (x0, y0, x1, y1) in pixels
    XYWH_ABS = 1  # (x0, y0, w, h) in pixels
    XYXY_REL = 2  # (x0, y0, x1, y1) relative to the image size; not supported by convert
    XYWH_REL = 3  # (x0, y0, w, h) relative to the image size; not supported by convert
    XYWHA_ABS = 4  # (xc, yc, w, h, angle) of a rotated box; out of detkit's scope

    @staticmethod
    def convert(box: _RawBoxType, from_mode: Union["BoxMode", int], to_mode: Union["BoxMode", int]) -> _RawBoxType:
        """Convert boxes between ``XYXY_ABS`` and ``XYWH_ABS``.

        Args:
            box: one box as a list or tuple of four numbers, or an (N, 4) numpy array or tensor.
            from_mode: the mode ``box`` is in (a BoxMode or its int value).
            to_mode: the mode to convert to (a BoxMode or its int value).

        Returns:
            The converted box(es) of the same type: a list or tuple of four floats, or an array /
            tensor of the same dtype and shape (a copy; the input is not modified). When the two
            modes are equal an array or tensor is returned as it is.

        Raises:
            AssertionError: a relative mode (as detectron2), or a list / tuple that is not four numbers.
            NotImplementedError: ``XYWHA_ABS`` (rotated boxes are out of detkit's scope).
            ValueError: an array or tensor whose last dimension is not 4, an unknown mode; the two
                errors above are ValueErrors too.
        """
        from_mode, to_mode = BoxMode(from_mode), BoxMode(to_mode)
        if from_mode != to_mode:
            relative = (BoxMode.XYXY_REL, BoxMode.XYWH_REL)
            if from_mode in relative or to_mode in relative:
                raise _BoxModeError("Relative mode not yet supported! (BoxMode.convert handles XYXY_ABS and "
                                    "XYWH_ABS.)")
            if BoxMode.XYWHA_ABS in (from_mode, to_mode):
                raise _RotatedBoxModeError(f"Conversion from {from_mode!r} to {to_mode!r} is not supported: rotated "
                                           "boxes (XYWHA_ABS) are out of detkit's scope.")
        single_box = isinstance(box, (list, tuple))
        if single_box:
            if len(box) != 4 or any(np.ndim(v) != 0 for v in box):
                raise _BoxModeError(f"BoxMode.convert takes one box as a list / tuple of 4 numbers or an (N, 4) "
                                    f"array / tensor; got {box!r}. Convert several boxes as an (N, 4) array.")
            values = [float(v) for v in box]
            if from_mode == to_mode:
                return type(box)(values)
        elif not isinstance(box, (np.ndarray, torch.Tensor)):
            raise TypeError(f"BoxMode.convert takes a list, tuple, numpy array or tensor, got {type(box).__name__}.")
        elif from_mode == to_mode:
            return box
        elif box.ndim == 0 or box.shape[-1] != 4:
            raise ValueError(f"BoxMode.convert needs boxes of 4 numbers in the last dimension, "
                             f"got shape {tuple(box.shape)}.")

        if single_box:
            x0, y0, a, b = values
            sign = 1.0 if to_mode == BoxMode.XYXY_ABS else -1.0
            return type(box)([x0, y0, a + sign * x0, b + sign * y0])
        out = box.copy() if isinstance(box, np.ndarray) else box.clone()  # (..., 4)
        if to_mode == BoxMode.XYXY_ABS:  # from XYWH_ABS
            out[..., 2:] += out[..., :2]
        else:  # XYXY_ABS -> XYWH_ABS
            out[..., 2:] -= out[..., :2]
        return out


class Boxes:
    """A list of N boxes as an (N, 4) float tensor in (x0, y0, x1, y1) pixels (``.tensor``)."""

    def __init__(self, tensor: Union[torch.Tensor, Sequence]):
        if not isinstance(tensor, torch.Tensor):
            tensor = torch.as_tensor(tensor, dtype=torch.float32)
        elif not tensor.is_floating_point():  # integer boxes: area / IoU / scale need floats
            tensor = tensor.float()
        if tensor.numel() == 0:
            tensor = tensor.reshape(0, 4).to(dtype=torch.float32 if not tensor.is_floating_point() else tensor.dtype)
        if tensor.dim() != 2 or tensor.size(-1) != 4:
            raise ValueError(f"Boxes expects an (N, 4) tensor, got shape {tuple(tensor.shape)}.")
        self.tensor = tensor

    def clone(self) -> "Boxes":
        """A copy that shares no storage."""
        return Boxes(self.tensor.clone())

    def to(self, *args, **kwargs) -> "Boxes":
        """The boxes moved as ``tensor.to`` moves them, e.g. ``boxes.to(device="cuda")``."""
        return Boxes(self.tensor.to(*args, **kwargs))

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    def area(self) -> torch.Tensor:
        """(N,) areas."""
        b = self.tensor
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])

    def clip(self, box_size: Tuple[int, int]) -> None:
        """Clip in place to an image of size (height, width)."""
        h, w = box_size
        x0 = self.tensor[:, 0].clamp(min=0, max=w)
        y0 = self.tensor[:, 1].clamp(min=0, max=h)
        x1 = self.tensor[:, 2].clamp(min=0, max=w)
        y1 = self.tensor[:, 3].clamp(min=0, max=h)
        self.tensor = torch.stack((x0, y0, x1, y1), dim=-1)

    def nonempty(self, threshold: float = 0.0) -> torch.Tensor:
        """(N,) bool: boxes whose width and height both exceed ``threshold``."""
        b = self.tensor
        return ((b[:, 2] - b[:, 0]) > threshold) & ((b[:, 3] - b[:, 1]) > threshold)

    def get_centers(self) -> torch.Tensor:
        """(N, 2) box centres (x, y)."""
        return (self.tensor[:, :2] + self.tensor[:, 2:]) / 2

    def scale(self, scale_x: float, scale_y: float) -> None:
        """Scale in place by per-axis factors."""
        self.tensor[:, 0::2] *= scale_x
        self.tensor[:, 1::2] *= scale_y

    def inside_box(self, box_size: Tuple[int, int], boundary_threshold: int = 0) -> torch.Tensor:
        """(N,) bool: boxes inside an image of size (height, width).

        A box is outside when it extends beyond the image by more than ``boundary_threshold``
        pixels: x0, y0 >= -threshold and x1 < width + threshold, y1 < height + threshold.
        """
        height, width = box_size
        t = self.tensor
        return ((t[..., 0] >= -boundary_threshold) & (t[..., 1] >= -boundary_threshold)
                & (t[..., 2] < width + boundary_threshold) & (t[..., 3] < height + boundary_threshold))

    def __getitem__(self, item) -> "Boxes":
        """``boxes[3]`` (one box), ``boxes[2:10]``, ``boxes[bool_mask]`` or ``boxes[long_index]``; may share storage."""
        if isinstance(item, int):
            return Boxes(self.tensor[item].view(1, -1))
        b = self.tensor[item]
        if b.dim() != 2:
            raise IndexError(f"Indexing Boxes with {item!r} did not give an (N, 4) matrix; index with an int, "
                             "a slice, a bool mask or a 1-d index tensor.")
        return Boxes(b)

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __iter__(self):
        """Yield one (4,) tensor per box."""
        yield from self.tensor

    def __repr__(self) -> str:
        return f"Boxes({self.tensor})"

    @classmethod
    def cat(cls, boxes_list: List["Boxes"]) -> "Boxes":
        """Concatenate a list of Boxes into one (never sharing storage); an empty list gives (0, 4)."""
        if not isinstance(boxes_list, (list, tuple)):
            raise TypeError(f"Boxes.cat takes a list of Boxes, got {type(boxes_list).__name__}.")
        if len(boxes_list) == 0:
            return cls(torch.empty(0, 4))
        if not all(isinstance(b, Boxes) for b in boxes_list):
            raise TypeError(f"Boxes.cat takes a list of Boxes, got {[type(b).__name__ for b in boxes_list]}.")
        return cls(torch.cat([b.tensor for b in boxes_list], dim=0))


def _as_tensor(boxes: Union[Boxes, torch.Tensor]) -> torch.Tensor:
    return boxes.tensor if isinstance(boxes, Boxes) else boxes


def pairwise_intersection(boxes1: Union[Boxes, torch.Tensor], boxes2: Union[Boxes, torch.Tensor]) -> torch.Tensor:
    """(N, M) intersection area between every box of ``boxes1`` (N) and of ``boxes2`` (M), both XYXY."""
    b1, b2 = _as_tensor(boxes1), _as_tensor(boxes2)
    wh = (torch.min(b1[:, None, 2:], b2[:, 2:]) - torch.max(b1[:, None, :2], b2[:, :2])).clamp(min=0)  # (N, M, 2)
    return wh.prod(dim=2)


def pairwise_iou(boxes1: Union[Boxes, torch.Tensor], boxes2: Union[Boxes, torch.Tensor]) -> torch.Tensor:
    """(N, M) IoU between every box of ``boxes1`` (N, 4) and of ``boxes2`` (M, 4), both XYXY.

    Pairs with no overlap have IoU 0, also when both boxes are empty (torchvision gives 0/0 = NaN there).
    """
    return box_iou(_as_tensor(boxes1), _as_tensor(boxes2)).nan_to_num(nan=0.0)


def pairwise_ioa(boxes1: Union[Boxes, torch.Tensor], boxes2: Union[Boxes, torch.Tensor]) -> torch.Tensor:
    """(N, M) intersection over the area of the ``boxes2`` box (IoA), for every pair; 0 where they do not overlap."""
    inter = pairwise_intersection(boxes1, boxes2)  # (N, M)
    area2 = box_area(_as_tensor(boxes2))  # (M,)
    return torch.where(inter > 0, inter / area2, torch.zeros((), dtype=inter.dtype, device=inter.device))


def matched_pairwise_iou(boxes1: Union[Boxes, torch.Tensor], boxes2: Union[Boxes, torch.Tensor]) -> torch.Tensor:
    """(N,) IoU of the i-th box of ``boxes1`` with the i-th of ``boxes2`` (the diagonal of ``pairwise_iou``)."""
    b1, b2 = _as_tensor(boxes1), _as_tensor(boxes2)
    if len(b1) != len(b2):
        raise ValueError(f"matched_pairwise_iou needs as many boxes on both sides, got {len(b1)} and {len(b2)}.")
    wh = (torch.min(b1[:, 2:], b2[:, 2:]) - torch.max(b1[:, :2], b2[:, :2])).clamp(min=0)  # (N, 2)
    inter = wh.prod(dim=1)
    return inter / (box_area(b1) + box_area(b2) - inter)


def pairwise_point_box_distance(points: torch.Tensor, boxes: Union[Boxes, torch.Tensor]) -> torch.Tensor:
    """(N, M, 4) distances (left, top, right, bottom) from each of N (x, y) points to the sides of each of M boxes.

    All four are positive when the point lies inside the box.
    """
    b = _as_tensor(boxes)
    x, y = points[:, 0, None], points[:, 1, None]  # (N, 1)
    x0, y0, x1, y1 = b[None, :, 0], b[None, :, 1], b[None, :, 2], b[None, :, 3]  # (1, M)
    return torch.stack((x - x0, y - y0, x1 - x, y1 - y), dim=2)
