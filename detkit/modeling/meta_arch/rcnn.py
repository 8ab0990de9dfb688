"""Two-stage meta-architectures: GeneralizedRCNN (Faster R-CNN) and ProposalNetwork (RPN only)."""
import logging
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from detkit.config import configurable
from detkit.modeling.backbone import build_backbone
from detkit.modeling.neck import build_neck
from detkit.modeling.proposal_generator import build_proposal_generator
from detkit.modeling.roi_heads import build_roi_heads
from detkit.structures import ImageList, Instances

from .build import META_ARCH_REGISTRY
from .processing import detector_postprocess, inference_autocast, preprocess_images

__all__ = ["GeneralizedRCNN", "ProposalNetwork"]

logger = logging.getLogger(__name__)


class _TwoStageBase(nn.Module):
    """Shared plumbing: normalisation buffers, padding, backbone + neck features, ground truth."""

    def _init_base(self, backbone: nn.Module, neck: nn.Module, pixel_mean: Sequence[float],
                   pixel_std: Sequence[float], input_format: str) -> None:
        self.backbone = backbone
        self.neck = neck
        self.input_format = input_format
        strides = [int(s.stride) for s in neck.output_shape().values()]
        self.size_divisibility = max(int(getattr(backbone, "size_divisibility", 0) or 0),
                                     int(getattr(neck, "size_divisibility", 0) or 0), max(strides))
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(f"MODEL.PIXEL_MEAN {list(pixel_mean)} and MODEL.PIXEL_STD {list(pixel_std)} "
                             "must have the same length.")
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        """Normalise and pad the input images into one ImageList."""
        return preprocess_images(batched_inputs, self.pixel_mean, self.pixel_std, self.size_divisibility,
                                 channels_last=getattr(self, "channels_last", False))

    def _gt_instances(self, batched_inputs: List[Dict]) -> List[Instances]:
        missing = [i for i, x in enumerate(batched_inputs) if "instances" not in x]
        if missing:
            ids = [batched_inputs[i].get("image_id", i) for i in missing]
            raise ValueError(f"{type(self).__name__} in training mode needs 'instances' (gt_boxes, gt_classes) in "
                             f"every input; images {ids} have none. Use DatasetMapper(cfg, is_train=True), "
                             "or call model.eval().")
        return [x["instances"].to(self.device) for x in batched_inputs]


@META_ARCH_REGISTRY.register()
class GeneralizedRCNN(_TwoStageBase):
    """Backbone -> FPN -> proposal generator (RPN) -> RoI heads.

    Input / output follow DESIGN.md (the same as FCOS): a list of dicts with "image" (uint8,
    C x H x W), "height", "width" and, in training, "instances" (gt_boxes, gt_classes). Training
    returns the RPN's and the RoI heads' losses; eval returns [{"instances": Instances(pred_boxes,
    scores, pred_classes)}] rescaled to each image's "height" x "width".
    """

    @configurable
    def __init__(self, *, backbone: nn.Module, neck: nn.Module, proposal_generator: nn.Module,
                 roi_heads: nn.Module, pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 input_format: str = "RGB", channels_last: bool = False, amp_inference: bool = False):
        """
        Args:
            backbone: image -> {"c3", "c4", "c5"}.
            neck: backbone features -> {"p3", ...} with ``output_shape()``.
            proposal_generator: (images, features, gt) -> (proposals, losses), e.g. RPN.
            roi_heads: (images, features, proposals, gt) -> (detections, losses), e.g. StandardROIHeads.
            pixel_mean, pixel_std: per-channel normalisation in the input's channel order.
            input_format: channel order of the input images ("RGB" or "BGR"), for visualisation.
            channels_last: run the network in channels_last memory format (MODEL.CHANNELS_LAST).
            amp_inference: run inference under autocast (bf16 on CPU, fp16 on CUDA; TEST.AMP.ENABLED);
                box decoding and class scores are computed in float32.
        """
        super().__init__()
        self._init_base(backbone, neck, pixel_mean, pixel_std, input_format)
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads
        self.channels_last = bool(channels_last)
        self.amp_inference = bool(amp_inference)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        neck = build_neck(cfg, backbone.output_shape())
        shapes = neck.output_shape()
        return {
            "backbone": backbone,
            "neck": neck,
            "proposal_generator": build_proposal_generator(cfg, shapes),
            "roi_heads": build_roi_heads(cfg, shapes),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "input_format": cfg.INPUT.FORMAT,
            "channels_last": cfg.MODEL.CHANNELS_LAST,
            "amp_inference": cfg.TEST.AMP.ENABLED,
        }

    def forward(self, batched_inputs: List[Dict]):
        """Losses in training mode, one {"instances": Instances} per image in eval mode (original size)."""
        if not self.training:
            return self.inference(batched_inputs)
        gt_instances = self._gt_instances(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        features = self.neck(self.backbone(images.tensor))
        proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        _, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
        return {**proposal_losses, **detector_losses}

    def inference(self, batched_inputs: List[Dict], do_postprocess: bool = True) -> List:
        """Detections per image: rescaled dicts {"instances"} (``do_postprocess``) or raw Instances."""
        images = self.preprocess_image(batched_inputs)
        with inference_autocast(self.device, self.amp_inference):
            features = self.neck(self.backbone(images.tensor))
            proposals, _ = self.proposal_generator(images, features, None)
            results, _ = self.roi_heads(images, features, proposals, None)
        if not do_postprocess:
            return results
        return [{"instances": detector_postprocess(r, x.get("height", r.image_size[0]), x.get("width", r.image_size[1]))}
                for r, x in zip(results, batched_inputs)]


@META_ARCH_REGISTRY.register()
class ProposalNetwork(_TwoStageBase):
    """Backbone -> FPN -> RPN; eval returns [{"proposals": Instances(proposal_boxes, objectness_logits)}]."""

    @configurable
    def __init__(self, *, backbone: nn.Module, neck: nn.Module, proposal_generator: nn.Module,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float], input_format: str = "RGB"):
        """
        Args:
            backbone, neck, proposal_generator, pixel_mean, pixel_std, input_format: as for GeneralizedRCNN.
        """
        super().__init__()
        self._init_base(backbone, neck, pixel_mean, pixel_std, input_format)
        self.proposal_generator = proposal_generator

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        neck = build_neck(cfg, backbone.output_shape())
        return {
            "backbone": backbone,
            "neck": neck,
            "proposal_generator": build_proposal_generator(cfg, neck.output_shape()),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "input_format": cfg.INPUT.FORMAT,
        }

    def forward(self, batched_inputs: List[Dict]):
        """RPN losses in training mode; per image {"proposals": Instances} (original size) in eval mode."""
        gt_instances: Optional[List[Instances]] = self._gt_instances(batched_inputs) if self.training else None
        images = self.preprocess_image(batched_inputs)
        features = self.neck(self.backbone(images.tensor))
        proposals, losses = self.proposal_generator(images, features, gt_instances)
        if self.training:
            return losses
        return [{"proposals": detector_postprocess(p, x.get("height", p.image_size[0]), x.get("width", p.image_size[1]))}
                for p, x in zip(proposals, batched_inputs)]
