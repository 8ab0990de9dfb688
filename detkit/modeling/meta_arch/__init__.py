"""Meta-architectures: FCOS, GeneralizedRCNN, ProposalNetwork; build_model."""
from .build import META_ARCH_REGISTRY, build_model
from .processing import detector_postprocess, preprocess_images
