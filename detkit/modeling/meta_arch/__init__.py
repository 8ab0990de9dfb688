"""Meta-architectures: FCOS, GeneralizedRCNN, ProposalNetwork; build_model."""
from .build import META_ARCH_REGISTRY, build_model
from .fcos import FCOS
from .processing import detector_postprocess, preprocess_images
from .rcnn import GeneralizedRCNN, ProposalNetwork
