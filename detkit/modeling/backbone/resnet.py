"""ResNet: torchvision's resnet18/34/50/101 trunks giving c3/c4/c5 (layer2/3/4)."""
from typing import Sequence

from torchvision.models import resnet18, resnet34, resnet50, resnet101

from detkit.config import configurable
from detkit.layers import get_norm_layer

from .base import Backbone
from .build import BACKBONE_REGISTRY

__all__ = ["ResNet"]

_BUILDERS = {18: resnet18, 34: resnet34, 50: resnet50, 101: resnet101}


@BACKBONE_REGISTRY.register()
class ResNet(Backbone):
    """ResNet-18/34/50/101: c2..c5 = layer1..layer4 at strides 4/8/16/32; outputs c3-c5 by default."""

    @configurable
    def __init__(self, depth: int = 50, norm: str = "BN", freeze_at: int = 0, weights: str = "",
                 out_features: Sequence[str] = ("c3", "c4", "c5")):
        """
        Args:
            depth: 18, 34, 50 or 101.
            norm: "BN", "FrozenBN", "GN" or "SyncBN", passed to torchvision as ``norm_layer``.
            freeze_at: 0 none, 1 the stem, k > 1 the stem and the first k - 1 stages.
            weights: a torchvision weights name, a path or a URL ("" for random init).
            out_features: stages returned by ``forward``.
        """
        super().__init__()
        if depth not in _BUILDERS:
            raise ValueError(f"MODEL.RESNETS.DEPTH = {depth} is not supported; use one of {sorted(_BUILDERS)}.")
        trunk = _BUILDERS[depth](weights=None, norm_layer=get_norm_layer(norm))
        self.conv1, self.bn1, self.relu, self.maxpool = trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4
        width = 64 * (4 if depth >= 50 else 1)  # bottleneck blocks expand by 4
        channels = {f"c{i + 2}": width * 2 ** i for i in range(4)}
        stages = {f"c{i + 2}": f"layer{i + 1}" for i in range(4)}
        self._setup(["conv1", "bn1", "relu", "maxpool"], stages, channels, out_features, freeze_at, weights)

    @classmethod
    def from_config(cls, cfg):
        return {"depth": cfg.MODEL.RESNETS.DEPTH, **Backbone.trunk_config(cfg)}
