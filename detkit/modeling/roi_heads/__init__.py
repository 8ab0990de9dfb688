"""RoI heads: StandardROIHeads with the box head and predictor."""
from .build import ROI_HEADS_REGISTRY, build_roi_heads
from .box_head import ROI_BOX_HEAD_REGISTRY, FastRCNNConvFCHead, build_box_head
from .fast_rcnn import FastRCNNOutputLayers, fast_rcnn_inference
from .roi_heads import StandardROIHeads
