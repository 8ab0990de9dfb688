"""Matchers. (stub: model-core fills in)"""
from detkit.registry import Registry

MATCHER_REGISTRY = Registry("MATCHER")
