"""FPN: a feature pyramid (1x1 laterals, nearest top-down + add, 3x3 outputs) with optional P6/P7."""
import math
from typing import Dict, List, Sequence

import torch.nn.functional as F
from torch import nn

from detkit.config import configurable
from detkit.layers import ShapeSpec, c2_xavier_fill, conv_norm_act

from .build import NECK_REGISTRY

__all__ = ["FPN", "LastLevelP6P7"]

TOP_BLOCKS = ("", "P6P7_P5", "P6P7_C5")


class LastLevelP6P7(nn.Module):
    """P6 = 3x3 stride-2 conv on its input (p5 or c5); P7 = 3x3 stride-2 conv on relu(P6)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
        for conv in (self.p6, self.p7):
            c2_xavier_fill(conv)

    def forward(self, x) -> List:
        p6 = self.p6(x)
        return [p6, self.p7(F.relu(p6))]


@NECK_REGISTRY.register()
class FPN(nn.Module):
    """Feature Pyramid Network (Lin et al.) over backbone features, outputs named p<log2(stride)>."""

    @configurable
    def __init__(self, in_features: Sequence[str], input_shape: Dict[str, ShapeSpec], out_channels: int,
                 norm: str = "", top_block: str = ""):
        """
        Args:
            in_features: backbone features to use, finest first, e.g. ["c3", "c4", "c5"]; each stride
                must be twice the previous one.
            input_shape: the backbone's ``output_shape()`` (channels and stride of each feature).
            out_channels: channels of every output level.
            norm: normalisation of the lateral and output convs ("", "GN", "BN", "FrozenBN", "SyncBN").
            top_block: "" (none), "P6P7_P5" (P6/P7 from p5) or "P6P7_C5" (from the last input feature).
        """
        super().__init__()
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise ValueError(f"MODEL.FPN.IN_FEATURES {list(in_features)}: {missing} not produced by the backbone, "
                             f"which gives {list(input_shape)}.")
        if top_block not in TOP_BLOCKS:
            raise ValueError(f"MODEL.FPN.TOP_BLOCK = {top_block!r} is unknown; use one of {TOP_BLOCKS}.")
        strides = [int(input_shape[f].stride) for f in in_features]
        for a, b in zip(strides[:-1], strides[1:]):
            if b != 2 * a:
                raise ValueError(f"FPN needs each input stride to be twice the previous one, got {strides} "
                                 f"for {list(in_features)}.")
        self.in_features = list(in_features)
        self.lateral_convs = nn.ModuleList()
        self.output_convs = nn.ModuleList()
        for f in self.in_features:
            lateral = conv_norm_act(input_shape[f].channels, out_channels, kernel_size=1, norm=norm)
            output = conv_norm_act(out_channels, out_channels, kernel_size=3, norm=norm)
            c2_xavier_fill(lateral)
            c2_xavier_fill(output)
            self.lateral_convs.append(lateral)
            self.output_convs.append(output)

        self.top_block_name = top_block
        out_strides = list(strides)
        self.top_block = None
        if top_block:
            in_ch = out_channels if top_block == "P6P7_P5" else input_shape[self.in_features[-1]].channels
            self.top_block = LastLevelP6P7(in_ch, out_channels)
            out_strides += [strides[-1] * 2, strides[-1] * 4]
        self._out_features = [f"p{int(math.log2(s))}" for s in out_strides]
        self._out_shapes = {name: ShapeSpec(channels=out_channels, stride=s)
                            for name, s in zip(self._out_features, out_strides)}
        # As detectron2: pad to the coarsest *input* stride; P6/P7 round up (ceil) on odd sizes.
        self._size_divisibility = strides[-1]

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        return {
            "in_features": cfg.MODEL.FPN.IN_FEATURES,
            "input_shape": input_shape,
            "out_channels": cfg.MODEL.FPN.OUT_CHANNELS,
            "norm": cfg.MODEL.FPN.NORM,
            "top_block": cfg.MODEL.FPN.TOP_BLOCK,
        }

    def forward(self, features: Dict) -> Dict:
        """
        Args:
            features: the backbone's outputs, {name: (B, C, H, W)}, holding every ``in_features``.

        Returns:
            {"p3": (B, out_channels, H3, W3), ...}, finest first, with "p6", "p7" for a top block.
        """
        xs = [features[f] for f in self.in_features]
        prev = self.lateral_convs[-1](xs[-1])
        results = [self.output_convs[-1](prev)]
        for idx in range(len(xs) - 2, -1, -1):
            lateral = self.lateral_convs[idx](xs[idx])
            top_down = F.interpolate(prev, size=lateral.shape[-2:], mode="nearest")
            prev = lateral + top_down
            results.insert(0, self.output_convs[idx](prev))
        if self.top_block is not None:
            source = results[-1] if self.top_block_name == "P6P7_P5" else xs[-1]
            results.extend(self.top_block(source))
        return dict(zip(self._out_features, results))

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """Channels and stride of each output level."""
        return dict(self._out_shapes)

    @property
    def size_divisibility(self) -> int:
        """Input sides must be multiples of this (the coarsest backbone stride, as detectron2)."""
        return self._size_divisibility
