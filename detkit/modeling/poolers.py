"""ROIPooler: RoIAlign of boxes from a feature pyramid, each box pooled from one level.

A box goes to the level picked by the canonical FPN rule (Lin et al., eq. 1)::

    level = floor(canonical_level + log2(sqrt(box_area) / canonical_box_size))

clamped to the levels given, or, when the caller passes ``level_ids``, to the level it names
(the level that proposed it). Pooling is one ``detkit.layers.multilevel_roi_align`` call over the
boxes of all images and levels at once.
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from detkit.layers import multilevel_roi_align
from detkit.structures import Boxes

__all__ = ["ROIPooler", "assign_boxes_to_levels", "convert_boxes_to_pooler_format"]

POOLER_TYPES = {"ROIAlign": False, "ROIAlignV2": True}  # name -> roi_align's `aligned`


def assign_boxes_to_levels(box_lists: List[Boxes], min_level: int, max_level: int,
                           canonical_box_size: float, canonical_level: int) -> torch.Tensor:
    """Level of each box by the canonical FPN rule, clamped to [min_level, max_level].

    Args:
        box_lists: one Boxes per image; their boxes are taken in order, image after image.
        min_level, max_level: the finest and coarsest level given (e.g. 3 and 5 for p3-p5).
        canonical_box_size: box side (sqrt of area, input pixels) that maps to ``canonical_level``.
        canonical_level: the level such boxes go to (4 in the FPN paper).

    Returns:
        (M,) int64: each box's level minus ``min_level``, i.e. an index into the levels given.
    """
    box_sizes = torch.sqrt(Boxes.cat(box_lists).area())  # (M,)
    levels = torch.floor(canonical_level + torch.log2(box_sizes / canonical_box_size + 1e-8))
    return levels.clamp(min=min_level, max=max_level).to(torch.int64) - min_level


def convert_boxes_to_pooler_format(box_lists: List[Boxes]) -> torch.Tensor:
    """(M, 5) rois ``(image index, x0, y0, x1, y1)`` as ``roi_align`` wants them."""
    boxes = Boxes.cat(box_lists).tensor  # (M, 4)
    counts = torch.as_tensor([len(b) for b in box_lists], device=boxes.device)
    image_index = torch.repeat_interleave(torch.arange(len(box_lists), device=boxes.device), counts)
    return torch.cat([image_index[:, None].to(boxes.dtype), boxes], dim=1)


class ROIPooler(nn.Module):
    """Pool a fixed-size feature for each box from the level of a feature pyramid it belongs to."""

    def __init__(self, output_size: Union[int, Tuple[int, int]], scales: Sequence[float], sampling_ratio: int,
                 pooler_type: str, canonical_box_size: int = 224, canonical_level: int = 4):
        """
        Args:
            output_size: side (or (h, w)) of each pooled feature, e.g. 7.
            scales: 1 / stride of each feature level, finest first (e.g. 1/8, 1/16, 1/32).
            sampling_ratio: roi_align's sampling points per bin; 0 adapts to the box size.
            pooler_type: "ROIAlign" (unaligned, as in detectron2) or "ROIAlignV2" (aligned by half a pixel).
            canonical_box_size, canonical_level: the canonical level rule (see module docstring).
        """
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        if pooler_type not in POOLER_TYPES:
            raise ValueError(f"Unknown pooler_type '{pooler_type}' (MODEL.ROI_BOX_HEAD.POOLER_TYPE); "
                             f"use one of {sorted(POOLER_TYPES)}.")
        levels = [-math.log2(s) for s in scales]
        if any(abs(lv - round(lv)) > 1e-6 for lv in levels) or any(
                round(b) - round(a) != 1 for a, b in zip(levels, levels[1:])):
            raise ValueError(f"ROIPooler needs scales 1/2**k of consecutive levels, finest first; got {list(scales)}.")
        self.output_size = tuple(output_size)
        self.scales = [float(s) for s in scales]
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = POOLER_TYPES[pooler_type]
        self.min_level = int(round(levels[0]))
        self.max_level = int(round(levels[-1]))
        self.canonical_box_size = canonical_box_size
        self.canonical_level = canonical_level

    def forward(self, x: List[torch.Tensor], box_lists: List[Boxes],
                level_ids: Optional[Union[torch.Tensor, List[torch.Tensor]]] = None) -> torch.Tensor:
        """
        Args:
            x: one (B, C, Hl, Wl) feature map per level, in the order of ``scales``.
            box_lists: one Boxes per image (B of them), in input-image pixels.
            level_ids: optional per-box level index into ``x`` (a tensor over all boxes, image
                after image, or one tensor per image); a negative entry means "assign by size".
                None assigns every box by size.

        Returns:
            (M, C, output_h, output_w) pooled features, boxes in the order of ``box_lists``.
        """
        if len(x) != len(self.scales):
            raise ValueError(f"ROIPooler was built for {len(self.scales)} levels but got {len(x)} feature maps.")
        if len(box_lists) != x[0].shape[0]:
            raise ValueError(f"ROIPooler got {len(box_lists)} box lists for a batch of {x[0].shape[0]} images.")
        rois = convert_boxes_to_pooler_format(box_lists)  # (M, 5)
        levels = None  # one level: every box pools from it
        if len(self.scales) > 1:
            levels = assign_boxes_to_levels(box_lists, self.min_level, self.max_level,
                                            self.canonical_box_size, self.canonical_level)  # (M,)
            if level_ids is not None:
                if isinstance(level_ids, (list, tuple)):
                    level_ids = torch.cat(list(level_ids))
                level_ids = level_ids.to(levels.device, torch.int64)
                levels = torch.where(level_ids >= 0, level_ids.clamp(max=len(x) - 1), levels)
        return multilevel_roi_align(x, rois, levels, self.output_size, self.scales, self.sampling_ratio, self.aligned)
