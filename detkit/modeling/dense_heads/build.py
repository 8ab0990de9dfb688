"""The dense-head registries: one-stage detection heads and RPN heads, each with its builder."""
from detkit.registry import Registry

__all__ = ["DENSE_HEAD_REGISTRY", "RPN_HEAD_REGISTRY", "build_dense_head", "build_rpn_head"]

DENSE_HEAD_REGISTRY = Registry("DENSE_HEAD")
DENSE_HEAD_REGISTRY.__doc__ = """One-stage detection heads (FCOSHead, RetinaNetHead) shared across feature levels;
called as ``cls(cfg, input_shape)`` with one ShapeSpec per level."""

RPN_HEAD_REGISTRY = Registry("RPN_HEAD")
RPN_HEAD_REGISTRY.__doc__ = """RPN heads (StandardRPNHead, detectron2's name): per-level objectness and
anchor deltas; called as ``cls(cfg, input_shape)`` with one ShapeSpec per level."""


def build_dense_head(cfg, name: str, input_shape):
    """Build the one-stage head registered in DENSE_HEAD_REGISTRY as ``name`` over ``input_shape``."""
    return DENSE_HEAD_REGISTRY.get(name)(cfg, input_shape)


def build_rpn_head(cfg, input_shape):
    """Build the RPN head named by ``MODEL.RPN.HEAD_NAME`` (RPN_HEAD_REGISTRY) over ``input_shape``."""
    return RPN_HEAD_REGISTRY.get(cfg.MODEL.RPN.HEAD_NAME)(cfg, input_shape)
