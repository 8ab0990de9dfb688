"""Layers: norms, conv blocks, losses, thin wrappers over torchvision.ops."""
from .shape_spec import ShapeSpec

__all__ = ["ShapeSpec"]
