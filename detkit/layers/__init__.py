"""Layers: norms by name and BN folding, conv blocks, Caffe2-style init, NMS, RoIAlign as sparse matrix products,
ShapeSpec, cat / nonzero_tuple, and the helpers of inference-only copies (state_version, is_plain_inference)."""
from .conv import Conv2d, c2_msra_fill, c2_xavier_fill, conv_norm_act
from .nms import batched_nms, batched_nms_parallel
from .batch_norm import (FrozenBatchNorm2d, convert_frozen_batchnorm, fold_batch_norms, get_norm, get_norm_layer,
                         group_norm_groups)
from .roi_align import multilevel_roi_align, roi_align
from .shape_spec import ShapeSpec, select_shapes
from .wrappers import cat, is_graph_capture, is_plain_inference, nonzero_tuple, state_version

__all__ = [
    "ShapeSpec", "select_shapes", "Conv2d", "conv_norm_act", "c2_msra_fill", "c2_xavier_fill",
    "FrozenBatchNorm2d", "convert_frozen_batchnorm", "fold_batch_norms", "get_norm", "get_norm_layer",
    "group_norm_groups", "roi_align", "multilevel_roi_align", "batched_nms", "batched_nms_parallel", "cat", "nonzero_tuple",
    "state_version", "is_graph_capture", "is_plain_inference",
]
