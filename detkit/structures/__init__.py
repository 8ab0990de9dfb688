"""Data structures shared by every part: Boxes, Instances, ImageList."""
from .boxes import Boxes, BoxMode, pairwise_iou
from .image_list import ImageList
from .instances import Instances

__all__ = ["Boxes", "BoxMode", "ImageList", "Instances", "pairwise_iou"]
