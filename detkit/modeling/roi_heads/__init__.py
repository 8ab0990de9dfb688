"""RoI heads: StandardROIHeads with the box head and predictor."""
from .build import ROI_HEADS_REGISTRY, build_roi_heads
