"""StandardRPNHead: a 3x3 conv, then objectness and anchor-delta 1x1 convs, shared over levels."""
from typing import List, Sequence, Tuple

import torch
from torch import nn

from detkit.config import configurable
from detkit.layers import ShapeSpec

from .build import RPN_HEAD_REGISTRY

__all__ = ["StandardRPNHead"]


@RPN_HEAD_REGISTRY.register()
class StandardRPNHead(nn.Module):
    """The RPN head of Faster R-CNN: per location and anchor, one objectness logit and 4 deltas."""

    @configurable
    def __init__(self, *, in_channels: int, num_anchors: int, box_dim: int = 4, conv_dims: Sequence[int] = (-1,)):
        """
        Args:
            in_channels: channels of every input level (they must be equal).
            num_anchors: anchors per location (the same on every level).
            box_dim: numbers per box delta (4).
            conv_dims: channels of the 3x3 convs before the predictors; -1 means ``in_channels``.
        """
        super().__init__()
        convs = []
        channels = in_channels
        for dim in conv_dims:
            dim = in_channels if dim == -1 else dim
            if dim <= 0:
                raise ValueError(f"StandardRPNHead conv_dims must be positive or -1, got {list(conv_dims)}.")
            convs += [nn.Conv2d(channels, dim, kernel_size=3, padding=1), nn.ReLU()]
            channels = dim
        self.conv = nn.Sequential(*convs)
        self.objectness_logits = nn.Conv2d(channels, num_anchors, kernel_size=1)
        self.anchor_deltas = nn.Conv2d(channels, num_anchors * box_dim, kernel_size=1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        from ..anchor_generator import build_anchor_generator

        in_channels = {s.channels for s in input_shape}
        if len(in_channels) != 1:
            raise ValueError(f"StandardRPNHead needs the same channels on every level of MODEL.RPN.IN_FEATURES, "
                             f"got {[s.channels for s in input_shape]}.")
        anchor_generator = build_anchor_generator(cfg, input_shape)
        num_anchors = set(anchor_generator.num_cell_anchors)
        if len(num_anchors) != 1:
            raise ValueError("StandardRPNHead needs the same number of anchors per location on every level; "
                             f"MODEL.ANCHOR_GENERATOR gives {list(anchor_generator.num_cell_anchors)}.")
        return {"in_channels": in_channels.pop(), "num_anchors": num_anchors.pop(),
                "box_dim": len(cfg.MODEL.RPN.BBOX_REG_WEIGHTS)}

    def forward(self, features: List[torch.Tensor]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """
        Args:
            features: one (B, C, Hl, Wl) map per level.

        Returns:
            pred_objectness_logits: one (B, A, Hl, Wl) tensor per level.
            pred_anchor_deltas: one (B, A * box_dim, Hl, Wl) tensor per level.
        """
        logits, deltas = [], []
        for x in features:
            t = self.conv(x)
            logits.append(self.objectness_logits(t))
            deltas.append(self.anchor_deltas(t))
        return logits, deltas
