"""Box coders. (stub: model-core fills in)"""
from detkit.registry import Registry

BOX_CODER_REGISTRY = Registry("BOX_CODER")
