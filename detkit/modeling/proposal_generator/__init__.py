"""Proposal generators: the RPN."""
from .build import PROPOSAL_GENERATOR_REGISTRY, build_proposal_generator
