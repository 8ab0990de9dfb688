"""NECK_REGISTRY and build_neck: the feature pyramid on top of the backbone."""
from detkit.registry import Registry

NECK_REGISTRY = Registry("NECK")
NECK_REGISTRY.__doc__ = """Necks: called as ``cls(cfg, input_shape)``; return {"p3", "p4", "p5"[, "p6", "p7"]}."""


def build_neck(cfg, input_shape, name: str = "FPN"):
    """Build the neck ``name`` over a backbone whose ``output_shape()`` is ``input_shape``."""
    return NECK_REGISTRY.get(name)(cfg, input_shape)
