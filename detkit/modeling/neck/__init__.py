"""Necks: the FPN."""
from .build import NECK_REGISTRY, build_neck
