"""RegNetX400MF: torchvision's regnet_x_400mf trunk (stem + trunk_output) giving c3/c4/c5."""
from typing import Sequence

from torchvision.models import regnet_x_400mf

from detkit.config import configurable
from detkit.layers import get_norm_layer

from .base import Backbone
from .build import BACKBONE_REGISTRY

__all__ = ["RegNetX400MF"]


@BACKBONE_REGISTRY.register()
class RegNetX400MF(Backbone):
    """RegNetX-400MF: c2..c5 at strides 4/8/16/32 with 32/64/160/400 channels; outputs c3-c5 by default."""

    @configurable
    def __init__(self, norm: str = "BN", freeze_at: int = 0, weights: str = "",
                 out_features: Sequence[str] = ("c3", "c4", "c5")):
        """
        Args:
            norm: "BN", "FrozenBN", "GN" or "SyncBN", passed to torchvision as ``norm_layer``.
            freeze_at: 0 none, 1 the stem, k > 1 the stem and the first k - 1 stages.
            weights: a torchvision weights name, a path or a URL ("" for random init).
            out_features: stages returned by ``forward``.
        """
        super().__init__()
        trunk = regnet_x_400mf(weights=None, norm_layer=get_norm_layer(norm))
        self.stem = trunk.stem
        self.trunk_output = trunk.trunk_output  # blocks 1-4: c2-c5
        stages = {f"c{i + 2}": f"trunk_output.block{i + 1}" for i in range(4)}
        channels = {"c2": 32, "c3": 64, "c4": 160, "c5": 400}
        self._setup(["stem"], stages, channels, out_features, freeze_at, weights)

    @classmethod
    def from_config(cls, cfg):
        return Backbone.trunk_config(cfg)
