"""Anchor generators: DefaultAnchorGenerator (RPN anchors) and PointGenerator (FCOS locations).

``DefaultAnchorGenerator`` follows detectron2: for each level, cell anchors centred at (0, 0), one
per (size, aspect ratio) pair in that order, with area size**2 and height / width = ratio, are
shifted to every grid cell (j + offset) * stride, (i + offset) * stride. The result of a level
holds H * W * A boxes ordered location-major (row-major over y, then x), then anchor.
"""
import math
from collections import OrderedDict
from typing import List, Sequence

import torch
from torch import nn

from detkit.config import configurable
from detkit.layers import ShapeSpec
from detkit.registry import Registry
from detkit.structures import Boxes

__all__ = ["ANCHOR_GENERATOR_REGISTRY", "DefaultAnchorGenerator", "PointGenerator", "build_anchor_generator"]

ANCHOR_GENERATOR_REGISTRY = Registry("ANCHOR_GENERATOR")
ANCHOR_GENERATOR_REGISTRY.__doc__ = """Anchor / point generators, called as ``cls(cfg, input_shape: List[ShapeSpec])``."""

_CACHE_SIZE = 64  # grids kept per generator


def _broadcast_params(params, num_features: int, name: str) -> List[List[float]]:
    """Turn ``params`` (a list, or a list of lists) into one list per feature level."""
    if not isinstance(params, Sequence) or isinstance(params, str) or len(params) == 0:
        raise ValueError(f"Anchor generator {name} must be a non-empty list or list of lists, got {params!r}.")
    if not isinstance(params[0], Sequence):
        return [list(params)] * num_features
    if len(params) == 1:
        return [list(params[0])] * num_features
    if len(params) != num_features:
        raise ValueError(f"Anchor generator got {len(params)} lists of {name} for {num_features} feature levels; "
                         f"give one list per level or a single list for all (MODEL.ANCHOR_GENERATOR.{name.upper()}).")
    return [list(p) for p in params]


def _strides(input_shape: List[ShapeSpec], name: str) -> List[int]:
    """The stride of each level of ``input_shape``, a list of ShapeSpec (one per feature level, finest first)."""
    if isinstance(input_shape, dict) or not all(isinstance(x, ShapeSpec) for x in input_shape):
        raise TypeError(f"{name} is built from (cfg, input_shape) with input_shape a list of ShapeSpec, one per "
                        f"feature level, e.g. [shapes[f] for f in in_features]; got {input_shape!r}.")
    missing = [i for i, x in enumerate(input_shape) if x.stride is None]
    if missing:
        raise ValueError(f"{name} needs the stride of every level; the ShapeSpec of levels {missing} have none.")
    return [x.stride for x in input_shape]


def _grid_centres(height: int, width: int, stride: float, offset: float, device) -> torch.Tensor:
    """(H*W, 2) xy of (j + offset) * stride, (i + offset) * stride, row-major over (i, j)."""
    xs = (torch.arange(width, dtype=torch.float32, device=device) + offset) * stride  # (W,)
    ys = (torch.arange(height, dtype=torch.float32, device=device) + offset) * stride  # (H,)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
    return torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=1)


class _GridCache:
    """A small LRU of per-level grids keyed by (level, H, W, device, inference mode).

    Inference mode is part of the key: a grid made under ``torch.inference_mode()`` cannot be
    saved for backward, so training must not reuse it. Callers must not modify grids in place.
    """

    def __init__(self, size: int = _CACHE_SIZE):
        self.size = size
        self.items: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()

    def get(self, key, make):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = make()
        self.items[key] = value
        if len(self.items) > self.size:
            self.items.popitem(last=False)
        return value


@ANCHOR_GENERATOR_REGISTRY.register()
class DefaultAnchorGenerator(nn.Module):
    """Anchors of several sizes and aspect ratios at every location of every feature level."""

    box_dim: int = 4

    @configurable
    def __init__(self, sizes, aspect_ratios, strides: Sequence[int], offset: float = 0.5):
        """Build from keyword arguments (detectron2's), or as ``DefaultAnchorGenerator(cfg, input_shape)``.

        Args:
            sizes: anchor sizes (sqrt of area, input pixels) per level, a list of lists; a single
                list is used for every level.
            aspect_ratios: anchor height / width ratios per level, same broadcasting as ``sizes``.
            strides: stride of each feature level.
            offset: centre of the first anchor as a fraction of the stride, in [0, 1). 0.5 (half a
                stride, detectron2's default here) unless given; from a config it is
                MODEL.ANCHOR_GENERATOR.OFFSET, whose default is 0.0 as in detectron2.
        """
        super().__init__()
        if not 0.0 <= offset < 1.0:
            raise ValueError(f"DefaultAnchorGenerator offset must be in [0, 1), got {offset}.")
        self.strides = [int(s) for s in strides]
        self.num_features = len(self.strides)
        self.offset = float(offset)
        sizes = _broadcast_params(sizes, self.num_features, "sizes")
        aspect_ratios = _broadcast_params(aspect_ratios, self.num_features, "aspect_ratios")
        for level, (s, r) in enumerate(zip(sizes, aspect_ratios)):
            self.register_buffer(f"cell_anchors_{level}", self.generate_cell_anchors(s, r), persistent=False)
        self._cache = _GridCache()

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        """MODEL.ANCHOR_GENERATOR.{SIZES, ASPECT_RATIOS, OFFSET} over the levels of ``input_shape``."""
        return {
            "sizes": cfg.MODEL.ANCHOR_GENERATOR.SIZES,
            "aspect_ratios": cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS,
            "strides": _strides(input_shape, cls.__name__),
            "offset": cfg.MODEL.ANCHOR_GENERATOR.OFFSET,
        }

    @staticmethod
    def generate_cell_anchors(sizes: Sequence[float] = (32, 64, 128, 256, 512),
                              aspect_ratios: Sequence[float] = (0.5, 1, 2)) -> torch.Tensor:
        """(len(sizes) * len(aspect_ratios), 4) XYXY anchors centred at 0, sizes outer, ratios inner.

        For size s and ratio a: w = sqrt(s**2 / a), h = a * w, box (-w/2, -h/2, w/2, h/2).
        """
        anchors = []
        for size in sizes:
            area = float(size) ** 2
            for ratio in aspect_ratios:
                w = math.sqrt(area / ratio)
                h = ratio * w
                anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
        return torch.tensor(anchors, dtype=torch.float32)

    @property
    def cell_anchors(self) -> List[torch.Tensor]:
        """Per level, the (A, 4) cell anchors."""
        return [getattr(self, f"cell_anchors_{i}") for i in range(self.num_features)]

    @property
    def num_cell_anchors(self) -> List[int]:
        """Anchors per location, for each level."""
        return [len(c) for c in self.cell_anchors]

    @property
    def num_anchors(self) -> List[int]:
        """Same as ``num_cell_anchors`` (detectron2's alias)."""
        return self.num_cell_anchors

    def _level_anchors(self, level: int, height: int, width: int, device) -> torch.Tensor:
        cell = getattr(self, f"cell_anchors_{level}").to(device)  # (A, 4)
        centres = _grid_centres(height, width, self.strides[level], self.offset, device)  # (H*W, 2)
        shifts = centres.repeat(1, 2)  # (H*W, 4): x, y, x, y
        return (shifts[:, None, :] + cell[None, :, :]).reshape(-1, 4)  # (H*W*A, 4)

    def forward(self, features: List[torch.Tensor]) -> List[Boxes]:
        """
        Args:
            features: the feature maps, one (B, C, H_l, W_l) tensor per level, finest first.

        Returns:
            One ``Boxes`` of H_l * W_l * A_l anchors per level.
        """
        if len(features) != self.num_features:
            raise ValueError(f"DefaultAnchorGenerator was built for {self.num_features} levels (strides "
                             f"{self.strides}) but got {len(features)} feature maps.")
        out = []
        for level, f in enumerate(features):
            h, w = int(f.shape[-2]), int(f.shape[-1])
            key = (level, h, w, str(f.device), torch.is_inference_mode_enabled())
            out.append(Boxes(self._cache.get(key, lambda: self._level_anchors(level, h, w, f.device))))
        return out


@ANCHOR_GENERATOR_REGISTRY.register()
class PointGenerator(nn.Module):
    """FCOS locations: the centre of every cell of every level, ((j + 0.5) * s, (i + 0.5) * s)."""

    @configurable
    def __init__(self, strides: Sequence[int], offset: float = 0.5):
        """
        Args:
            strides: stride of each feature level.
            offset: position of the point within its cell, as a fraction of the stride.
        """
        super().__init__()
        self.strides = [int(s) for s in strides]
        self.num_features = len(self.strides)
        self.offset = float(offset)
        self._cache = _GridCache()

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        return {"strides": _strides(input_shape, cls.__name__)}

    @property
    def num_cell_anchors(self) -> List[int]:
        """One point per location on every level."""
        return [1] * self.num_features

    def forward(self, features: List[torch.Tensor]) -> List[torch.Tensor]:
        """
        Args:
            features: one (B, C, H_l, W_l) tensor per level, finest first.

        Returns:
            One (H_l * W_l, 2) float32 tensor of xy per level, row-major over (y, x).
        """
        if len(features) != self.num_features:
            raise ValueError(f"PointGenerator was built for {self.num_features} levels (strides {self.strides}) "
                             f"but got {len(features)} feature maps.")
        out = []
        for level, f in enumerate(features):
            h, w = int(f.shape[-2]), int(f.shape[-1])
            key = (level, h, w, str(f.device), torch.is_inference_mode_enabled())
            stride = self.strides[level]
            out.append(self._cache.get(key, lambda: _grid_centres(h, w, stride, self.offset, f.device)))
        return out


def build_anchor_generator(cfg, input_shape: List[ShapeSpec], name: str = None):
    """Build the generator ``name`` (default MODEL.ANCHOR_GENERATOR.NAME) for features of ``input_shape``."""
    name = name or cfg.MODEL.ANCHOR_GENERATOR.NAME
    return ANCHOR_GENERATOR_REGISTRY.get(name)(cfg, input_shape)
