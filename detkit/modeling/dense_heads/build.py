"""HEAD_REGISTRY: dense per-location heads (FCOSHead, StandardRPNHead)."""
from detkit.registry import Registry

HEAD_REGISTRY = Registry("HEAD")
HEAD_REGISTRY.__doc__ = """Dense heads shared across feature levels; called as ``cls(cfg, input_shape)``."""


def build_head(cfg, name: str, input_shape):
    """Build the dense head registered as ``name`` over features of ``input_shape``."""
    return HEAD_REGISTRY.get(name)(cfg, input_shape)
