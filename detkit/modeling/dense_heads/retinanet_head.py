"""RetinaNetHead: RetinaNet's classification and box subnets, shared by all feature levels."""
from typing import List, Sequence, Tuple, Union

import torch
from torch import nn

from detkit.config import configurable
from detkit.layers import ShapeSpec

from .build import DENSE_HEAD_REGISTRY
from .fcos_head import _tower, init_dense_head

__all__ = ["RetinaNetHead"]


@DENSE_HEAD_REGISTRY.register()
class RetinaNetHead(nn.Module):
    """RetinaNet's head (Lin et al., 2017), as detectron2's: two parallel subnets on every level.

    Each subnet is ``num_convs`` x (3x3 conv -> optional norm -> ReLU); a 3x3 conv then predicts
    K class logits per anchor (classification subnet) or 4 box deltas per anchor (box subnet).
    Convs start from N(0, 0.01) weights and zero biases; the class biases start at
    ``-log((1 - prior_prob) / prior_prob)`` so every anchor starts at foreground probability ``prior_prob``.
    """

    @configurable
    def __init__(self, *, input_shape: List[ShapeSpec], num_classes: int, num_anchors: int, num_convs: int = 4,
                 norm: str = "", prior_prob: float = 0.01):
        """
        Args:
            input_shape: one ShapeSpec per level the head runs on; all must have the same channels.
            num_classes: number of foreground classes (sigmoid outputs, no background class).
            num_anchors: anchors per location (the same on every level).
            num_convs: 3x3 convs in each subnet.
            norm: normalisation after each subnet conv: "GN", "BN", ... or "" for none.
            prior_prob: initial foreground probability of every class logit.
        """
        super().__init__()
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(f"RetinaNetHead needs every input level to have the same channels, got "
                             f"{sorted(channels)}; set MODEL.FPN.OUT_CHANNELS once for all levels.")
        in_channels = channels.pop()
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.norm = norm
        self.cls_subnet = _tower(in_channels, num_convs, norm)
        self.bbox_subnet = _tower(in_channels, num_convs, norm)
        self.cls_score = nn.Conv2d(in_channels, num_anchors * num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, 3, padding=1)
        init_dense_head(self, self.cls_score, prior_prob)

    @classmethod
    def from_config(cls, cfg, input_shape: Union[Sequence[ShapeSpec], dict]):
        from ..anchor_generator import build_anchor_generator

        if isinstance(input_shape, dict):
            input_shape = [input_shape[f] for f in cfg.MODEL.RETINANET.IN_FEATURES]
        num_anchors = set(build_anchor_generator(cfg, list(input_shape)).num_cell_anchors)
        if len(num_anchors) != 1:
            raise ValueError("RetinaNetHead needs the same number of anchors per location on every level; "
                             "give every level of MODEL.ANCHOR_GENERATOR.SIZES as many sizes.")
        return {
            "input_shape": list(input_shape),
            "num_classes": cfg.MODEL.RETINANET.NUM_CLASSES,
            "num_anchors": num_anchors.pop(),
            "num_convs": cfg.MODEL.RETINANET.NUM_CONVS,
            "norm": cfg.MODEL.RETINANET.NORM,
            "prior_prob": cfg.MODEL.RETINANET.PRIOR_PROB,
        }

    def forward(self, features: List[torch.Tensor]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Run both subnets on each level.

        Args:
            features: one (B, C, H_l, W_l) map per level, finest first.

        Returns:
            logits: per level, (B, A*K, H_l, W_l) class logits, anchor-major (anchor a's K classes together).
            bbox_reg: per level, (B, A*4, H_l, W_l) Box2BoxTransform deltas, anchor-major.
        """
        logits, bbox_reg = [], []
        for feature in features:
            if self.norm == "GN" and feature.device.type == "cpu":
                # GroupNorm's backward is several times slower on channels_last CPU tensors: run NCHW (as FCOSHead).
                feature = feature.contiguous()
            logits.append(self.cls_score(self.cls_subnet(feature)))
            bbox_reg.append(self.bbox_pred(self.bbox_subnet(feature)))
        return logits, bbox_reg
