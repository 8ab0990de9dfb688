"""Boxes: an (N, 4) XYXY tensor with helpers, BoxMode, and pairwise IoU."""
from enum import IntEnum
from typing import List, Sequence, Tuple, Union

import torch
from torchvision.ops import box_iou

__all__ = ["Boxes", "BoxMode", "pairwise_iou"]


class BoxMode(IntEnum):
    """How a box's four numbers are to be read (values match detectron2's)."""

    XYXY_ABS = 0  # (x0, y0, x1, y1) in pixels
    XYWH_ABS = 1  # (x0, y0, w, h) in pixels

    @staticmethod
    def convert(box: Sequence[float], from_mode: "BoxMode", to_mode: "BoxMode") -> List[float]:
        """Convert one box (a sequence of four numbers) between modes."""
        from_mode, to_mode = BoxMode(from_mode), BoxMode(to_mode)
        if from_mode == to_mode:
            return list(box)
        x0, y0, a, b = [float(v) for v in box]
        if from_mode == BoxMode.XYWH_ABS:
            return [x0, y0, x0 + a, y0 + b]
        return [x0, y0, a - x0, b - y0]


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
        return Boxes(self.tensor.clone())

    def to(self, *args, **kwargs) -> "Boxes":
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

    def __getitem__(self, item) -> "Boxes":
        if isinstance(item, int):
            return Boxes(self.tensor[item].view(1, -1))
        return Boxes(self.tensor[item])

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __iter__(self):
        yield from self.tensor

    def __repr__(self) -> str:
        return f"Boxes({self.tensor})"

    @classmethod
    def cat(cls, boxes_list: List["Boxes"]) -> "Boxes":
        if len(boxes_list) == 0:
            return cls(torch.empty(0, 4))
        return cls(torch.cat([b.tensor for b in boxes_list], dim=0))


def _as_tensor(boxes: Union[Boxes, torch.Tensor]) -> torch.Tensor:
    return boxes.tensor if isinstance(boxes, Boxes) else boxes


def pairwise_iou(boxes1: Union[Boxes, torch.Tensor], boxes2: Union[Boxes, torch.Tensor]) -> torch.Tensor:
    """(N, M) IoU between every box of ``boxes1`` (N, 4) and of ``boxes2`` (M, 4), both XYXY.

    Pairs with no overlap have IoU 0, also when both boxes are empty (torchvision gives 0/0 = NaN there).
    """
    return box_iou(_as_tensor(boxes1), _as_tensor(boxes2)).nan_to_num(nan=0.0)
