"""Meta-architectures: DetectorBase (the input/output contract), FCOS, RetinaNet, GeneralizedRCNN, ProposalNetwork;
build_model."""
from .base import DetectorBase
from .build import META_ARCH_REGISTRY, build_model
from .dense_postprocess import dense_detections
from .fcos import FCOS
from .processing import detector_postprocess, preprocess_images
from .rcnn import GeneralizedRCNN, ProposalNetwork
from .retinanet import RetinaNet
