"""Data structures shared by every part: Boxes, Instances, ImageList."""
from .boxes import (
    Boxes, BoxMode, matched_pairwise_iou, pairwise_intersection, pairwise_ioa, pairwise_iou,
    pairwise_point_box_distance,
)
from .image_list import ImageList
from .instances import Instances

__all__ = ["Boxes", "BoxMode", "ImageList", "Instances", "pairwise_iou", "pairwise_ioa", "pairwise_intersection",
           "matched_pairwise_iou", "pairwise_point_box_distance"]
