"""ShapeSpec: what a module outputs per feature (channels and stride), for wiring parts together."""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

__all__ = ["ShapeSpec", "select_shapes"]


@dataclass(frozen=True)
class ShapeSpec:
    """Channels and stride (and optionally size) of a feature map."""

    channels: Optional[int] = None
    height: Optional[int] = None
    width: Optional[int] = None
    stride: Optional[int] = None


def select_shapes(input_shape: Dict[str, ShapeSpec], in_features: Sequence[str], key: str) -> List[ShapeSpec]:
    """The ShapeSpecs of ``in_features``, in order; a name the producer lacks raises a ValueError naming ``key``."""
    missing = [f for f in in_features if f not in input_shape]
    if missing:
        raise ValueError(f"{key} names {missing}, which the neck does not produce; it outputs {sorted(input_shape)}.")
    return [input_shape[f] for f in in_features]
