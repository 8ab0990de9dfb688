"""Dense heads: FCOSHead and StandardRPNHead."""
from .build import HEAD_REGISTRY, build_head
