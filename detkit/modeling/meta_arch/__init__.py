"""Meta-architectures: DetectorBase (the input/output contract), FCOS, GeneralizedRCNN, ProposalNetwork; build_model."""
from .base import DetectorBase
from .build import META_ARCH_REGISTRY, build_model
from .fcos import FCOS
from .processing import detector_postprocess, preprocess_images
from .rcnn import GeneralizedRCNN, ProposalNetwork
