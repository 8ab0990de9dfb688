"""Box heads: turn pooled RoI features into one feature vector per RoI (FastRCNNConvFCHead)."""
from typing import Sequence

import torch
from torch import nn

from detkit.config import configurable
from detkit.layers import ShapeSpec, get_norm
from detkit.layers.batch_norm import NORM_NAMES
from detkit.registry import Registry

__all__ = ["ROI_BOX_HEAD_REGISTRY", "FastRCNNConvFCHead", "build_box_head"]

ROI_BOX_HEAD_REGISTRY = Registry("ROI_BOX_HEAD")
ROI_BOX_HEAD_REGISTRY.__doc__ = """Box heads over pooled RoI features; called as ``cls(cfg, input_shape: ShapeSpec)``."""


@ROI_BOX_HEAD_REGISTRY.register()
class FastRCNNConvFCHead(nn.Sequential):
    """``len(conv_dims)`` 3x3 convs, then ``len(fc_dims)`` fully connected layers, each followed by ReLU.

    As detectron2's: a conv followed by a norm has no bias; convs start from He (fan-out) init,
    FC layers from detectron2's ``c2_xavier_fill``, biases 0. ``NUM_CONV 4, NUM_FC 1, NORM "GN"``
    is detectron2's "4conv1fc" GN head.
    """

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, conv_dims: Sequence[int], fc_dims: Sequence[int],
                 conv_norm: str = ""):
        """
        Args:
            input_shape: channels, height and width of the pooled features.
            conv_dims: output channels of each conv (may be empty).
            fc_dims: output width of each FC layer (may be empty: the head then outputs the
                flattened conv features).
            conv_norm: normalisation after each conv: "" (none) or a name ``get_norm`` knows ("GN", "BN").
        """
        super().__init__()
        if not conv_dims and not fc_dims:
            raise ValueError("FastRCNNConvFCHead needs at least one conv or FC layer "
                             "(MODEL.ROI_BOX_HEAD.NUM_CONV + NUM_FC > 0).")
        if isinstance(conv_norm, str) and conv_norm not in NORM_NAMES:
            raise ValueError(f"Unknown box head norm {conv_norm!r} (MODEL.ROI_BOX_HEAD.NORM); use one of "
                             f"{', '.join(repr(n) for n in NORM_NAMES)}.")
        self._output_size = (input_shape.channels, input_shape.height or 1, input_shape.width or 1)
        for k, dim in enumerate(conv_dims):
            norm = get_norm(conv_norm, dim)
            self.add_module(f"conv{k + 1}", nn.Conv2d(self._output_size[0], dim, 3, padding=1, bias=norm is None))
            if norm is not None:
                self.add_module(f"conv{k + 1}_norm", norm)
            self.add_module(f"conv{k + 1}_relu", nn.ReLU())
            self._output_size = (dim, self._output_size[1], self._output_size[2])
        if fc_dims:
            self.add_module("flatten", nn.Flatten())
        for k, dim in enumerate(fc_dims):
            in_features = int(torch.tensor(self._output_size).prod())
            self.add_module(f"fc{k + 1}", nn.Linear(in_features, dim))
            self.add_module(f"fc{k + 1}_relu", nn.ReLU())
            self._output_size = (dim,)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(layer, nn.Linear):
                nn.init.kaiming_uniform_(layer.weight, a=1)  # detectron2's c2_xavier_fill
            if isinstance(layer, (nn.Conv2d, nn.Linear)) and layer.bias is not None:
                nn.init.constant_(layer.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        head = cfg.MODEL.ROI_BOX_HEAD
        return {
            "input_shape": input_shape,
            "conv_dims": [head.CONV_DIM] * head.NUM_CONV,
            "fc_dims": [head.FC_DIM] * head.NUM_FC,
            "conv_norm": head.NORM,
        }

    @property
    def output_shape(self) -> ShapeSpec:
        """ShapeSpec(channels=FC width) after FC layers, or (channels, height, width) of the last conv."""
        if len(self._output_size) == 1:
            return ShapeSpec(channels=self._output_size[0])
        return ShapeSpec(channels=self._output_size[0], height=self._output_size[1], width=self._output_size[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(M, C, H, W) pooled features -> (M, FC_DIM) (or (M, C', H, W) without FC layers)."""
        for layer in self:
            x = layer(x)
        return x


def build_box_head(cfg, input_shape: ShapeSpec) -> nn.Module:
    """Build the box head named by ``cfg.MODEL.ROI_BOX_HEAD.NAME``."""
    return ROI_BOX_HEAD_REGISTRY.get(cfg.MODEL.ROI_BOX_HEAD.NAME)(cfg, input_shape)
