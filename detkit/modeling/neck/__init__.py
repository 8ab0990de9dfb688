"""Necks: the FPN."""
from .build import NECK_REGISTRY, build_neck
from .fpn import FPN

__all__ = ["NECK_REGISTRY", "FPN", "build_neck"]
