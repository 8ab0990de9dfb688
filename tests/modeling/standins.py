"""Stand-in backbone and neck for meta-arch tests (a module of its own: test modules cannot import conftest)."""
from typing import List

import torch.nn.functional as F
from torch import nn

from detkit.layers import ShapeSpec


class IdentityTrunk(nn.Module):
    """Stand-in backbone: hands the image on as a single feature."""

    size_divisibility = 0

    def forward(self, x):
        return {"x": x}


class PoolNeck(nn.Module):
    """Stand-in neck: one 1x1 conv, then average pooling by each level's stride."""

    def __init__(self, strides: List[int], channels: int = 8):
        super().__init__()
        self.strides = strides
        self.channels = channels
        self.proj = nn.Conv2d(3, channels, 1)
        self.size_divisibility = max(strides)

    def output_shape(self):
        return {f"p{i + 3}": ShapeSpec(channels=self.channels, stride=s) for i, s in enumerate(self.strides)}

    def forward(self, feats):
        x = self.proj(feats["x"])
        return {f"p{i + 3}": F.avg_pool2d(x, s) for i, s in enumerate(self.strides)}
