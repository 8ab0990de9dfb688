"""Anchor generators: DefaultAnchorGenerator (RPN) and FCOS's point generator. (stub: model-core fills in)"""
from detkit.registry import Registry

ANCHOR_GENERATOR_REGISTRY = Registry("ANCHOR_GENERATOR")
