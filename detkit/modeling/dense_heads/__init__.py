"""Dense heads: FCOSHead and StandardRPNHead."""
from .build import HEAD_REGISTRY, build_head
from .fcos_head import FCOSHead
from .rpn_head import StandardRPNHead
