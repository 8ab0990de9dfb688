"""FCOSHead: the FCOS head shared by all feature levels (class logits, LTRB regression, centerness)."""
import logging
import math
from typing import List, Sequence, Tuple, Union

import torch
from torch import nn

from detkit.config import configurable
from detkit.layers import ShapeSpec, get_norm

from .build import DENSE_HEAD_REGISTRY

__all__ = ["FCOSHead", "Scale"]

logger = logging.getLogger(__name__)


class Scale(nn.Module):
    """A learnable scalar that multiplies its input (one per feature level in FCOS)."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def init_dense_head(head: nn.Module, cls_layer: nn.Conv2d, prior_prob: float) -> None:
    """One-stage head init (FCOS, RetinaNet): every conv N(0, 0.01) with zero bias, and the class
    layer's bias at -log((1 - p) / p), so every location starts scoring ``prior_prob``."""
    for module in head.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.01)
            if module.bias is not None:
                nn.init.constant_(module.bias, 0.0)
    nn.init.constant_(cls_layer.bias, -math.log((1 - prior_prob) / prior_prob))


def _tower(in_channels: int, num_convs: int, norm: str) -> nn.Sequential:
    """``num_convs`` x (3x3 conv -> optional norm -> ReLU), channels kept at ``in_channels``."""
    layers = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=not norm))
        if norm:
            layers.append(get_norm(norm, in_channels))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


@DENSE_HEAD_REGISTRY.register()
class FCOSHead(nn.Module):
    """The FCOS head, shared by every feature level.

    A classification tower feeds the class logits; a box tower feeds the LTRB regression and the
    centerness logit. The regression is ``relu(scale_l * conv(x))``: non-negative LTRB distances in
    units of the level's stride (the meta-architecture multiplies by the stride to decode).
    """

    @configurable
    def __init__(self, *, input_shape: List[ShapeSpec], num_classes: int, num_convs: int = 4,
                 norm: str = "GN", prior_prob: float = 0.01, use_scale: bool = True):
        """
        Args:
            input_shape: one ShapeSpec per level the head runs on; all must have the same channels.
            num_classes: number of foreground classes (sigmoid outputs, no background class).
            num_convs: 3x3 convs in each of the classification and box towers.
            norm: normalisation after each tower conv: "GN", "BN", ... or "" for none.
            prior_prob: initial foreground probability of every class logit.
            use_scale: multiply each level's regression by a learnable scalar (initialised to 1).
        """
        super().__init__()
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(f"FCOSHead needs every input level to have the same channels, got {sorted(channels)}; "
                             "set MODEL.FPN.OUT_CHANNELS once for all levels.")
        in_channels = channels.pop()
        self.num_classes = num_classes
        self.cls_tower = _tower(in_channels, num_convs, norm)
        self.bbox_tower = _tower(in_channels, num_convs, norm)
        self.cls_logits = nn.Conv2d(in_channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.ctrness = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in input_shape]) if use_scale else None

        init_dense_head(self, self.cls_logits, prior_prob)

    @classmethod
    def from_config(cls, cfg, input_shape: Union[Sequence[ShapeSpec], dict]):
        if isinstance(input_shape, dict):
            input_shape = [input_shape[f] for f in cfg.MODEL.FCOS.IN_FEATURES]
        return {
            "input_shape": list(input_shape),
            "num_classes": cfg.MODEL.FCOS.NUM_CLASSES,
            "num_convs": cfg.MODEL.FCOS.NUM_CONVS,
            "norm": cfg.MODEL.FCOS.HEAD_NORM,
            "prior_prob": cfg.MODEL.FCOS.PRIOR_PROB,
            "use_scale": cfg.MODEL.FCOS.USE_SCALE,
        }

    def forward(self, features: List[torch.Tensor]
                ) -> Tuple[List[torch.Tensor], List[torch.Tensor], List[torch.Tensor]]:
        """Run the head on each level.

        Args:
            features: one (B, C, H_l, W_l) map per level, finest first.

        Returns:
            logits: per level, (B, K, H_l, W_l) class logits.
            bbox_reg: per level, (B, 4, H_l, W_l) non-negative LTRB distances in strides.
            ctrness: per level, (B, 1, H_l, W_l) centerness logits.
        """
        if self.scales is not None and len(features) != len(self.scales):
            raise ValueError(f"FCOSHead was built for {len(self.scales)} levels but got {len(features)} feature maps; "
                             "check MODEL.FCOS.IN_FEATURES.")
        logits, bbox_reg, ctrness = [], [], []
        for level, feature in enumerate(features):
            if feature.device.type == "cpu":
                # The towers' GroupNorm backward is ~5x slower on channels_last than on NCHW CPU
                # tensors (bf16 or fp32), and the 3x3 convs here gain nothing from it: run the head NCHW.
                feature = feature.contiguous()
            cls_feat = self.cls_tower(feature)
            box_feat = self.bbox_tower(feature)
            logits.append(self.cls_logits(cls_feat))  # (B, K, H, W)
            reg = self.bbox_pred(box_feat)  # (B, 4, H, W)
            if self.scales is not None:
                reg = self.scales[level](reg)
            bbox_reg.append(torch.relu(reg))
            ctrness.append(self.ctrness(box_feat))  # (B, 1, H, W)
        return logits, bbox_reg, ctrness
