"""ROI_HEADS_REGISTRY and build_roi_heads."""
from detkit.registry import Registry

ROI_HEADS_REGISTRY = Registry("ROI_HEADS")
ROI_HEADS_REGISTRY.__doc__ = """Second-stage heads over proposals; called as ``cls(cfg, input_shape)``."""


def build_roi_heads(cfg, input_shape):
    """Build the RoI heads named by ``cfg.MODEL.ROI_HEADS.NAME``."""
    return ROI_HEADS_REGISTRY.get(cfg.MODEL.ROI_HEADS.NAME)(cfg, input_shape)
