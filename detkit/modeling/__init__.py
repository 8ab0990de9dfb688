"""Modeling: every registered part of a detector, and build_model."""
from detkit.layers import ShapeSpec

from .anchor_generator import ANCHOR_GENERATOR_REGISTRY, build_anchor_generator
from .backbone import BACKBONE_REGISTRY, build_backbone
from .box_coder import BOX_CODER_REGISTRY
from .dense_heads import DENSE_HEAD_REGISTRY, RPN_HEAD_REGISTRY, build_dense_head, build_rpn_head
from .matcher import MATCHER_REGISTRY
from .meta_arch import META_ARCH_REGISTRY, build_model, detector_postprocess
from .neck import NECK_REGISTRY, build_neck
from .proposal_generator import PROPOSAL_GENERATOR_REGISTRY, build_proposal_generator
from .roi_heads import ROI_BOX_HEAD_REGISTRY, ROI_HEADS_REGISTRY, build_box_head, build_roi_heads

__all__ = [k for k in globals() if not k.startswith("_")]
