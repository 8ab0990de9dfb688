"""Proposal generators: the RPN; RPN_HEAD_REGISTRY and StandardRPNHead re-exported here, as in detectron2."""
from ..dense_heads import RPN_HEAD_REGISTRY, StandardRPNHead, build_rpn_head
from .build import PROPOSAL_GENERATOR_REGISTRY, build_proposal_generator
from .proposal_utils import add_ground_truth_to_proposals, find_top_rpn_proposals
from .rpn import RPN
