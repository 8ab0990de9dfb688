"""Backbones: torchvision trunks giving {"c3", "c4", "c5"}."""
from .build import BACKBONE_REGISTRY, build_backbone
