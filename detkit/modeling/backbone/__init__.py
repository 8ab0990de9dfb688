"""Backbones: torchvision trunks giving {"c3", "c4", "c5"}."""
from .base import Backbone
from .build import BACKBONE_REGISTRY, build_backbone
from .regnet import RegNetX400MF
from .resnet import ResNet
from .weights import load_backbone_weights

__all__ = ["BACKBONE_REGISTRY", "Backbone", "RegNetX400MF", "ResNet", "build_backbone", "load_backbone_weights"]
