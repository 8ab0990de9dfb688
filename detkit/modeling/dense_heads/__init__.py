"""Dense heads: FCOSHead, RetinaNetHead (DENSE_HEAD_REGISTRY) and StandardRPNHead (RPN_HEAD_REGISTRY)."""
from .build import DENSE_HEAD_REGISTRY, RPN_HEAD_REGISTRY, build_dense_head, build_rpn_head
from .fcos_head import FCOSHead
from .retinanet_head import RetinaNetHead
from .rpn_head import StandardRPNHead
