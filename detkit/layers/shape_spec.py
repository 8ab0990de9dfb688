"""ShapeSpec: what a module outputs per feature (channels and stride), for wiring parts together."""
from dataclasses import dataclass
from typing import Optional

__all__ = ["ShapeSpec"]


@dataclass(frozen=True)
class ShapeSpec:
    """Channels and stride (and optionally size) of a feature map."""

    channels: Optional[int] = None
    height: Optional[int] = None
    width: Optional[int] = None
    stride: Optional[int] = None
