"""PROPOSAL_GENERATOR_REGISTRY and build_proposal_generator."""
from detkit.registry import Registry

PROPOSAL_GENERATOR_REGISTRY = Registry("PROPOSAL_GENERATOR")
PROPOSAL_GENERATOR_REGISTRY.__doc__ = """Proposal generators (RPN); called as ``cls(cfg, input_shape)``."""


def build_proposal_generator(cfg, input_shape):
    """Build the proposal generator named by ``cfg.MODEL.PROPOSAL_GENERATOR.NAME``."""
    return PROPOSAL_GENERATOR_REGISTRY.get(cfg.MODEL.PROPOSAL_GENERATOR.NAME)(cfg, input_shape)
