"""StandardROIHeads: label and sample proposals, pool them, run the box head and predictor."""
import logging
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from detkit.config import configurable
from detkit.layers import ShapeSpec, select_shapes
from detkit.structures import Boxes, ImageList, Instances

from ..matcher import build_matcher, pad_boxes, padded_pairwise_iou
from ..poolers import ROIPooler
from ..proposal_generator.proposal_utils import add_ground_truth_to_proposals
from ..sampling import subsample_labels
from .box_head import build_box_head
from .build import ROI_HEADS_REGISTRY
from .fast_rcnn import FastRCNNOutputLayers

__all__ = ["StandardROIHeads"]

logger = logging.getLogger(__name__)

LEVEL_ASSIGNMENTS = ("canonical", "source")


@ROI_HEADS_REGISTRY.register()
class StandardROIHeads(nn.Module):
    """The second stage of Faster R-CNN: RoIAlign from the FPN, a box head and FastRCNNOutputLayers.

    Training: ground truth is appended to the proposals, proposals are matched to ground truth
    (IoU 0.5 by default) and ``batch_size_per_image`` of them are sampled per image at
    ``positive_fraction``. Inference: softmax scores, threshold, class-wise NMS, top detections.
    """

    @configurable
    def __init__(self, *, box_in_features: List[str], box_pooler: ROIPooler, box_head: nn.Module,
                 box_predictor: nn.Module, num_classes: int, batch_size_per_image: int, positive_fraction: float,
                 proposal_matcher, proposal_append_gt: bool = True, pooler_level_assignment: str = "canonical"):
        """
        Args:
            box_in_features: feature levels pooled from, finest first.
            box_pooler: pools (M, C, 7, 7) features for the boxes.
            box_head: pooled features -> (M, D).
            box_predictor: a FastRCNNOutputLayers.
            num_classes: number of foreground classes K (K is the background label).
            batch_size_per_image: RoIs sampled per image for the losses.
            positive_fraction: target fraction of foreground among them.
            proposal_matcher: a Matcher on the (gt, proposal) IoU matrix.
            proposal_append_gt: append ground-truth boxes to the proposals in training.
            pooler_level_assignment: "canonical" (level by box size) or "source" (the level in the
                proposals' ``level_ids``, the one that proposed each box).
        """
        super().__init__()
        if pooler_level_assignment not in LEVEL_ASSIGNMENTS:
            raise ValueError(f"Unknown pooler level assignment '{pooler_level_assignment}' "
                             f"(MODEL.ROI_BOX_HEAD.POOLER_LEVEL_ASSIGNMENT); use one of {LEVEL_ASSIGNMENTS}.")
        self.box_in_features = list(box_in_features)
        self.box_pooler = box_pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.num_classes = num_classes
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.proposal_matcher = proposal_matcher
        self.proposal_append_gt = proposal_append_gt
        self.pooler_level_assignment = pooler_level_assignment

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        shapes = select_shapes(input_shape, in_features, "MODEL.ROI_HEADS.IN_FEATURES")
        if len({s.channels for s in shapes}) != 1:
            raise ValueError(f"MODEL.ROI_HEADS.IN_FEATURES {in_features} must all have the same channels, "
                             f"got {[s.channels for s in shapes]}.")
        assignment = cfg.MODEL.ROI_BOX_HEAD.POOLER_LEVEL_ASSIGNMENT
        if assignment == "source" and list(cfg.MODEL.RPN.IN_FEATURES) != in_features:
            raise ValueError("MODEL.ROI_BOX_HEAD.POOLER_LEVEL_ASSIGNMENT 'source' pools each proposal from the level "
                             f"that proposed it, so MODEL.ROI_HEADS.IN_FEATURES {in_features} must equal "
                             f"MODEL.RPN.IN_FEATURES {list(cfg.MODEL.RPN.IN_FEATURES)}.")
        resolution = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        pooler = ROIPooler(output_size=resolution, scales=[1.0 / s.stride for s in shapes],
                           sampling_ratio=cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
                           pooler_type=cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE)
        box_head = build_box_head(cfg, ShapeSpec(channels=shapes[0].channels, height=resolution, width=resolution))
        return {
            "box_in_features": in_features,
            "box_pooler": pooler,
            "box_head": box_head,
            "box_predictor": FastRCNNOutputLayers(cfg, box_head.output_shape),
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "batch_size_per_image": cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE,
            "positive_fraction": cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION,
            "proposal_matcher": build_matcher(cfg, "Matcher", thresholds=cfg.MODEL.ROI_HEADS.IOU_THRESHOLDS,
                                              labels=cfg.MODEL.ROI_HEADS.IOU_LABELS,
                                              allow_low_quality_matches=False),
            "proposal_append_gt": cfg.MODEL.ROI_HEADS.PROPOSAL_APPEND_GT,
            "pooler_level_assignment": assignment,
        }

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals: List[Instances], targets: List[Instances]) -> List[Instances]:
        """Match proposals to ground truth and sample the RoIs that enter the losses.

        Args:
            proposals: per image, Instances with ``proposal_boxes`` and ``objectness_logits``.
            targets: per image, ground truth with ``gt_boxes`` and ``gt_classes``.

        Returns:
            Per image, the sampled proposals with ``gt_classes`` (K for background) and
            ``gt_boxes`` (the matched box; for background a box of no consequence) added.
        """
        if self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals([t.gt_boxes for t in targets], proposals)
        device = proposals[0].proposal_boxes.device
        counts = [len(p) for p in proposals]
        # One Matcher call on the whole batch's (B, G, P) IoU: gt lists padded to G rows (at least one:
        # images without gt match row 0, a zero box of class K), proposals padded to P.
        gt_list = [t.gt_boxes.tensor.to(device) for t in targets]
        gt_boxes, gt_valid = pad_boxes(gt_list)  # (B, G, 4), (B, G)
        gt_classes = torch.full(gt_valid.shape, self.num_classes, dtype=torch.int64, device=device)  # (B, G)
        gt_classes[gt_valid] = torch.cat([t.gt_classes.to(device) for t in targets])
        prop_boxes, prop_valid = pad_boxes([p.proposal_boxes.tensor for p in proposals])  # (B, P, 4), (B, P)
        matched, labels = self.proposal_matcher(*padded_pairwise_iou(gt_list, prop_boxes))  # (B, P) each
        classes = gt_classes.gather(1, matched)  # (B, P)
        classes[labels == 0] = self.num_classes
        classes[labels == -1] = -1
        matched_boxes = gt_boxes.gather(1, matched[:, :, None].expand(-1, -1, 4))[prop_valid]  # (M, 4)
        classes = classes[prop_valid]  # (M,), image after image, as the proposals

        image_ids = torch.repeat_interleave(torch.arange(len(proposals), device=device),
                                            torch.as_tensor(counts, device=device))  # (M,)
        pos, neg = subsample_labels(classes, self.batch_size_per_image, self.positive_fraction, self.num_classes,
                                    image_ids=image_ids)
        sampled = torch.cat([pos, neg]).sort().values  # sorted, so grouped by image
        per_image = torch.bincount(image_ids[sampled], minlength=len(proposals)).tolist()
        starts = torch.as_tensor([0] + counts[:-1], device=device).cumsum(0)  # first RoI of each image

        out = []
        for i, (props, idx) in enumerate(zip(proposals, sampled.split(per_image))):
            inst = props[idx - starts[i]]
            inst.gt_classes = classes[idx]
            inst.gt_boxes = Boxes(matched_boxes[idx])
            out.append(inst)
        return out

    def _pool(self, features: Dict[str, torch.Tensor], proposals: List[Instances]) -> torch.Tensor:
        """(M, C, 7, 7) RoI features of all images' proposals."""
        level_ids = None
        if self.pooler_level_assignment == "source":
            level_ids = [p.level_ids if p.has("level_ids") else torch.full((len(p),), -1, dtype=torch.int64,
                                                                             device=p.proposal_boxes.device)
                         for p in proposals]
        return self.box_pooler([features[f] for f in self.box_in_features], [p.proposal_boxes for p in proposals],
                               level_ids=level_ids)

    def forward(self, images: ImageList, features: Dict[str, torch.Tensor], proposals: List[Instances],
                targets: Optional[List[Instances]] = None) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """
        Args:
            images: the padded batch (unused; kept for detectron2's signature).
            features: the neck's outputs by name.
            proposals: per image, Instances with ``proposal_boxes`` (and ``level_ids`` for "source").
            targets: per image, ground truth with ``gt_boxes`` and ``gt_classes`` (training only).

        Returns:
            In training, (the sampled proposals, {"loss_cls", "loss_box_reg"}); otherwise (per image
            Instances with ``pred_boxes``, ``scores``, ``pred_classes`` in input-image pixels, {}).
        """
        del images
        if self.training:
            if targets is None:
                raise ValueError("StandardROIHeads in training mode needs targets (Instances with gt_boxes, gt_classes).")
            proposals = self.label_and_sample_proposals(proposals, targets)
        predictions = self.box_predictor(self.box_head(self._pool(features, proposals)))
        if self.training:
            return proposals, self.box_predictor.losses(predictions, proposals)
        results, _ = self.box_predictor.inference(predictions, proposals)
        return results, {}
