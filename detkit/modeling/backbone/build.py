"""BACKBONE_REGISTRY and build_backbone: pick the trunk named by MODEL.BACKBONE.NAME."""
from detkit.registry import Registry

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = """Backbones: called as ``cls(cfg)``; return a dict of features {"c3", "c4", "c5"}."""


def build_backbone(cfg):
    """Build the backbone named by ``cfg.MODEL.BACKBONE.NAME``."""
    return BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)(cfg)
