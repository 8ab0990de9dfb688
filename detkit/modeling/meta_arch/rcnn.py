"""Two-stage meta-architectures: GeneralizedRCNN (Faster R-CNN) and ProposalNetwork (RPN only)."""
import logging
from typing import Dict, List, Optional

from torch import nn

from detkit.config import configurable
from detkit.modeling.proposal_generator import build_proposal_generator
from detkit.modeling.roi_heads import build_roi_heads
from detkit.structures import Instances

from .base import DetectorBase
from .build import META_ARCH_REGISTRY

__all__ = ["GeneralizedRCNN", "ProposalNetwork"]

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class GeneralizedRCNN(DetectorBase):
    """Backbone -> FPN -> proposal generator (RPN) -> RoI heads.

    Inputs and outputs follow :class:`DetectorBase`'s contract; training returns the RPN's and the
    RoI heads' losses. Box decoding and class scores are computed in float32 under autocast.
    """

    @configurable
    def __init__(self, *, backbone: nn.Module, neck: nn.Module, proposal_generator: nn.Module,
                 roi_heads: nn.Module, **base_kwargs):
        """
        Args:
            backbone: image -> {"c3", "c4", "c5"}.
            neck: backbone features -> {"p3", ...} with ``output_shape()``.
            proposal_generator: (images, features, gt) -> (proposals, losses), e.g. RPN.
            roi_heads: (images, features, proposals, gt) -> (detections, losses), e.g. StandardROIHeads.
            base_kwargs: ``pixel_mean``, ``pixel_std``, ``input_format``, ``channels_last`` and
                ``amp_inference``, as :class:`DetectorBase` takes them.
        """
        super().__init__(backbone=backbone, neck=neck, **base_kwargs)
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads

    @classmethod
    def from_config(cls, cfg):
        base = DetectorBase.base_config(cfg)
        shapes = base["neck"].output_shape()
        return {
            **base,
            "proposal_generator": build_proposal_generator(cfg, shapes),
            "roi_heads": build_roi_heads(cfg, shapes),
        }

    def forward(self, batched_inputs: List[Dict]):
        """Losses in training mode, one {"instances": Instances} per image in eval mode (original size)."""
        if not self.training:
            return self.inference(batched_inputs)
        gt_instances = self.ground_truth(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        features = self.extract_features(images)
        proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        _, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
        return {**proposal_losses, **detector_losses}

    def inference(self, batched_inputs: List[Dict], do_postprocess: bool = True) -> List:
        """Detections per image: rescaled dicts {"instances"} (``do_postprocess``) or raw Instances."""
        images = self.preprocess_image(batched_inputs)
        with self.network_autocast():
            features = self.extract_features(images)
            proposals, _ = self.proposal_generator(images, features, None)
            results, _ = self.roi_heads(images, features, proposals, None)
        return self.postprocess(results, batched_inputs) if do_postprocess else results


@META_ARCH_REGISTRY.register()
class ProposalNetwork(DetectorBase):
    """Backbone -> FPN -> RPN; eval returns [{"proposals": Instances(proposal_boxes, objectness_logits)}]."""

    @configurable
    def __init__(self, *, backbone: nn.Module, neck: nn.Module, proposal_generator: nn.Module, **base_kwargs):
        """
        Args:
            backbone, neck, proposal_generator, base_kwargs: as for GeneralizedRCNN.
        """
        super().__init__(backbone=backbone, neck=neck, **base_kwargs)
        self.proposal_generator = proposal_generator

    @classmethod
    def from_config(cls, cfg):
        base = DetectorBase.base_config(cfg)
        return {**base, "proposal_generator": build_proposal_generator(cfg, base["neck"].output_shape())}

    def forward(self, batched_inputs: List[Dict]):
        """RPN losses in training mode; per image {"proposals": Instances} (original size) in eval mode."""
        gt_instances: Optional[List[Instances]] = self.ground_truth(batched_inputs) if self.training else None
        images = self.preprocess_image(batched_inputs)
        with self.network_autocast():
            features = self.extract_features(images)
            proposals, losses = self.proposal_generator(images, features, gt_instances)
        return losses if self.training else self.postprocess(proposals, batched_inputs, field="proposals")
