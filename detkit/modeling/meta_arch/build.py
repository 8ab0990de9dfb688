"""META_ARCH_REGISTRY and build_model: the whole detector named by MODEL.META_ARCHITECTURE."""
import logging

import torch

from detkit.registry import Registry

logger = logging.getLogger(__name__)

META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = """Whole detectors; called as ``cls(cfg)``."""


def build_model(cfg) -> torch.nn.Module:
    """Build the detector named by ``cfg.MODEL.META_ARCHITECTURE`` on ``cfg.MODEL.DEVICE``.

    Weights are not loaded here; use ``DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)``.
    """
    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    model.to(torch.device(cfg.MODEL.DEVICE))
    logger.debug("Model:\n%s", model)
    return model
