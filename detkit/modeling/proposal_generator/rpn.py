"""RPN: the region proposal network of Faster R-CNN (anchors, matching, sampling, losses, proposals)."""
import logging
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import generalized_box_iou_loss

from detkit.config import configurable
from detkit.layers import ShapeSpec, select_shapes
from detkit.structures import Boxes, ImageList, Instances

from ..anchor_generator import build_anchor_generator
from ..box_coder import box_regression_loss, build_box_coder
from ..dense_heads import RPN_HEAD_REGISTRY, StandardRPNHead, build_rpn_head  # noqa: F401 (detectron2's path)
from ..matcher import build_matcher, pad_boxes, padded_pairwise_iou
from ..sampling import subsample_labels
from .build import PROPOSAL_GENERATOR_REGISTRY
from .proposal_utils import find_top_rpn_proposals

__all__ = ["RPN"]

logger = logging.getLogger(__name__)

# Box losses of the RPN and the RoI box head (MODEL.RPN / MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE).
BOX_REG_LOSS_TYPES = ("smooth_l1", "l1", "giou")


@PROPOSAL_GENERATOR_REGISTRY.register()
class RPN(nn.Module):
    """Region Proposal Network (Ren et al., 2015) over several feature levels.

    Training: anchors are matched to ground truth by IoU (0.3 / 0.7 with low-quality matches by
    default), ``batch_size_per_image`` of them are sampled per image at ``positive_fraction``,
    and the losses are the summed BCE objectness loss and box regression loss, both divided by
    ``batch_size_per_image * num_images`` (as detectron2). Both modes return proposals: per
    image and level the ``pre_nms_topk`` best, NMS, then the image's ``post_nms_topk`` best.
    """

    @configurable
    def __init__(self, *, in_features: List[str], head: nn.Module, anchor_generator: nn.Module, anchor_matcher,
                 box2box_transform, batch_size_per_image: int, positive_fraction: float,
                 pre_nms_topk: Tuple[int, int], post_nms_topk: Tuple[int, int], nms_thresh: float = 0.7,
                 min_box_size: float = 0.0, anchor_boundary_thresh: float = -1.0,
                 loss_weight: Union[float, Dict[str, float]] = 1.0, box_reg_loss_type: str = "smooth_l1",
                 smooth_l1_beta: float = 0.0):
        """
        Args:
            in_features: names of the feature levels used, finest first (e.g. p3, p4, p5).
            head: the RPN head: per-level maps -> (objectness (B, A, H, W), deltas (B, A*4, H, W)) lists.
            anchor_generator: per-level maps -> one Boxes of H*W*A anchors per level.
            anchor_matcher: a Matcher on the (gt, anchor) IoU matrix.
            box2box_transform: a Box2BoxTransform for anchor deltas.
            batch_size_per_image: anchors sampled per image for the losses.
            positive_fraction: target fraction of positives among them.
            pre_nms_topk: (train, test) boxes kept per image and level before NMS.
            post_nms_topk: (train, test) boxes kept per image after NMS.
            nms_thresh: IoU threshold of the proposal NMS.
            min_box_size: proposals with a side not above this (input pixels) are dropped.
            anchor_boundary_thresh: anchors reaching more than this outside the image are ignored
                in training; negative keeps all.
            loss_weight: weight of both losses, or a dict {"loss_rpn_cls": w1, "loss_rpn_loc": w2}.
            box_reg_loss_type: "smooth_l1" or "l1" on the deltas, or "giou" (1 - generalized IoU of
                the decoded box with its gt box), as detectron2's ``_dense_box_regression_loss``.
            smooth_l1_beta: smooth-L1 beta; 0 gives L1.
        """
        super().__init__()
        if box_reg_loss_type not in BOX_REG_LOSS_TYPES:
            raise ValueError(f"Unknown RPN box loss type '{box_reg_loss_type}' (MODEL.RPN.BBOX_REG_LOSS_TYPE); "
                             f"use one of {BOX_REG_LOSS_TYPES}.")
        self.in_features = list(in_features)
        self.rpn_head = head
        self.anchor_generator = anchor_generator
        self.anchor_matcher = anchor_matcher
        self.box2box_transform = box2box_transform
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.pre_nms_topk = {True: pre_nms_topk[0], False: pre_nms_topk[1]}
        self.post_nms_topk = {True: post_nms_topk[0], False: post_nms_topk[1]}
        self.nms_thresh = nms_thresh
        self.min_box_size = float(min_box_size)
        self.anchor_boundary_thresh = anchor_boundary_thresh
        if isinstance(loss_weight, (int, float)):
            loss_weight = {"loss_rpn_cls": loss_weight, "loss_rpn_loc": loss_weight}
        self.loss_weight = dict(loss_weight)
        self.box_reg_loss_type = box_reg_loss_type
        self.smooth_l1_beta = smooth_l1_beta

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        in_features = list(cfg.MODEL.RPN.IN_FEATURES)
        shapes = select_shapes(input_shape, in_features, "MODEL.RPN.IN_FEATURES")
        return {
            "in_features": in_features,
            "head": build_rpn_head(cfg, shapes),
            "anchor_generator": build_anchor_generator(cfg, shapes),
            "anchor_matcher": build_matcher(cfg, "Matcher", thresholds=cfg.MODEL.RPN.IOU_THRESHOLDS,
                                            labels=cfg.MODEL.RPN.IOU_LABELS, allow_low_quality_matches=True),
            "box2box_transform": build_box_coder(cfg, "Box2BoxTransform", weights=cfg.MODEL.RPN.BBOX_REG_WEIGHTS),
            "batch_size_per_image": cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE,
            "positive_fraction": cfg.MODEL.RPN.POSITIVE_FRACTION,
            "pre_nms_topk": (cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN, cfg.MODEL.RPN.PRE_NMS_TOPK_TEST),
            "post_nms_topk": (cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN, cfg.MODEL.RPN.POST_NMS_TOPK_TEST),
            "nms_thresh": cfg.MODEL.RPN.NMS_THRESH,
            "min_box_size": cfg.MODEL.PROPOSAL_GENERATOR.MIN_SIZE,
            "anchor_boundary_thresh": cfg.MODEL.RPN.BOUNDARY_THRESH,
            "loss_weight": {"loss_rpn_cls": cfg.MODEL.RPN.LOSS_WEIGHT,
                            "loss_rpn_loc": cfg.MODEL.RPN.BBOX_REG_LOSS_WEIGHT * cfg.MODEL.RPN.LOSS_WEIGHT},
            "box_reg_loss_type": cfg.MODEL.RPN.BBOX_REG_LOSS_TYPE,
            "smooth_l1_beta": cfg.MODEL.RPN.SMOOTH_L1_BETA,
        }

    @torch.no_grad()
    def label_and_sample_anchors(self, anchors: List[Boxes], gt_instances: List[Instances]
                                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Match all anchors to ground truth and sample the ones that enter the losses.

        Args:
            anchors: per level, the Boxes of that level's anchors (the same for every image).
            gt_instances: per image, Instances with ``gt_boxes``.

        Returns:
            gt_labels: (B, R) int64: 1 sampled positive, 0 sampled negative, -1 not used.
            matched_gt_boxes: (B, R, 4) the ground-truth box each anchor is matched to
                (meaningful for positives only).
        """
        anchors = Boxes.cat(anchors)  # R anchors
        num_images, num_anchors = len(gt_instances), len(anchors)
        device = anchors.device
        # One Matcher call on the whole batch's (B, M, R) IoU, gt lists padded to M rows (at least one:
        # images without gt match row 0, a zero box).
        gt_list = [x.gt_boxes.tensor.to(device) for x in gt_instances]
        matched, labels = self.anchor_matcher(*padded_pairwise_iou(gt_list, anchors.tensor))  # (B, R) each
        gt_boxes, _ = pad_boxes(gt_list)  # (B, M, 4)
        labels = labels.to(torch.int64)

        if self.anchor_boundary_thresh >= 0:
            sizes = torch.as_tensor([x.image_size for x in gt_instances], device=device, dtype=torch.float32)
            t = self.anchor_boundary_thresh
            a = anchors.tensor[None]  # (1, R, 4)
            inside = ((a[..., 0] >= -t) & (a[..., 1] >= -t) & (a[..., 2] < sizes[:, 1:2] + t)
                      & (a[..., 3] < sizes[:, 0:1] + t))  # (B, R)
            labels[~inside] = -1

        image_ids = torch.arange(num_images, device=device).repeat_interleave(num_anchors)  # (B*R,)
        pos, neg = subsample_labels(labels.flatten(), self.batch_size_per_image, self.positive_fraction, 0,
                                    image_ids=image_ids)
        sampled = torch.full((num_images * num_anchors,), -1, dtype=torch.int64, device=device)
        sampled[pos] = 1
        sampled[neg] = 0
        matched_gt_boxes = gt_boxes.gather(1, matched[:, :, None].expand(-1, -1, 4))  # (B, R, 4)
        return sampled.view(num_images, num_anchors), matched_gt_boxes

    def losses(self, anchors: List[Boxes], pred_objectness_logits: List[torch.Tensor], gt_labels: torch.Tensor,
               pred_anchor_deltas: List[torch.Tensor], gt_boxes: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The RPN losses of a batch.

        Args:
            anchors: per level, Boxes of Rl anchors.
            pred_objectness_logits: per level, (B, Rl).
            gt_labels: (B, R) from :meth:`label_and_sample_anchors`.
            pred_anchor_deltas: per level, (B, Rl, 4).
            gt_boxes: (B, R, 4) matched ground-truth boxes.

        Returns:
            {"loss_rpn_cls", "loss_rpn_loc"}, each summed over sampled anchors and divided by
            ``batch_size_per_image * B``.
        """
        num_images = gt_labels.shape[0]
        anchors = Boxes.cat(anchors).tensor  # (R, 4)
        logits = torch.cat(pred_objectness_logits, dim=1)  # (B, R)
        deltas = torch.cat(pred_anchor_deltas, dim=1)  # (B, R, 4)

        pos = gt_labels == 1  # (B, R)
        anchor_idx = pos.nonzero()[:, 1]  # (P,)
        if self.box_reg_loss_type == "giou":
            pred_boxes = self.box2box_transform.apply_deltas(deltas[pos], anchors[anchor_idx])  # (P, 4) float32
            loss_loc = generalized_box_iou_loss(pred_boxes, gt_boxes[pos].float(), reduction="sum")
        else:
            gt_deltas = self.box2box_transform.get_deltas(anchors[anchor_idx], gt_boxes[pos])  # (P, 4)
            loss_loc = box_regression_loss(deltas[pos].float(), gt_deltas, self.box_reg_loss_type,
                                           self.smooth_l1_beta)
        valid = gt_labels >= 0
        loss_cls = F.binary_cross_entropy_with_logits(logits[valid].float(), gt_labels[valid].float(), reduction="sum")
        normalizer = self.batch_size_per_image * num_images
        return {"loss_rpn_cls": loss_cls / normalizer * self.loss_weight.get("loss_rpn_cls", 1.0),
                "loss_rpn_loc": loss_loc / normalizer * self.loss_weight.get("loss_rpn_loc", 1.0)}

    @torch.no_grad()
    def predict_proposals(self, anchors: List[Boxes], pred_objectness_logits: List[torch.Tensor],
                          pred_anchor_deltas: List[torch.Tensor],
                          image_sizes: List[Tuple[int, int]]) -> List[Instances]:
        """Decode the deltas of every level and pick each image's proposals (no gradient flows)."""
        num_images = pred_objectness_logits[0].shape[0]
        proposals = []
        for anchors_l, deltas_l in zip(anchors, pred_anchor_deltas):
            a = anchors_l.tensor[None].expand(num_images, -1, -1).reshape(-1, 4)  # (B*Rl, 4)
            boxes = self.box2box_transform.apply_deltas(deltas_l.reshape(-1, 4), a)
            proposals.append(boxes.view(num_images, -1, 4))  # (B, Rl, 4)
        return find_top_rpn_proposals(proposals, pred_objectness_logits, image_sizes, self.nms_thresh,
                                      self.pre_nms_topk[self.training], self.post_nms_topk[self.training],
                                      self.min_box_size, self.training)

    def forward(self, images: ImageList, features: Dict[str, torch.Tensor],
                gt_instances: Optional[List[Instances]] = None
                ) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """
        Args:
            images: the padded batch (only ``image_sizes`` is read).
            features: the neck's outputs by name.
            gt_instances: per image, ground truth with ``gt_boxes`` (training only).

        Returns:
            proposals: per image, Instances with ``proposal_boxes``, ``objectness_logits``, ``level_ids``.
            losses: {"loss_rpn_cls", "loss_rpn_loc"} in training, {} otherwise.
        """
        features = [features[f] for f in self.in_features]
        anchors = self.anchor_generator(features)
        logits, deltas = self.rpn_head(features)
        num_images = features[0].shape[0]
        pred_objectness_logits = [x.permute(0, 2, 3, 1).flatten(1) for x in logits]  # (B, Hl*Wl*A) each
        pred_anchor_deltas = [  # (B, A*4, H, W) -> (B, H*W*A, 4), location-major like the anchors
            x.view(num_images, -1, 4, x.shape[-2], x.shape[-1]).permute(0, 3, 4, 1, 2).flatten(1, -2)
            for x in deltas
        ]
        if self.training:
            if gt_instances is None:
                raise ValueError("RPN in training mode needs gt_instances (per image Instances with gt_boxes).")
            gt_labels, gt_boxes = self.label_and_sample_anchors(anchors, gt_instances)
            losses = self.losses(anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes)
        else:
            losses = {}
        proposals = self.predict_proposals(anchors, pred_objectness_logits, pred_anchor_deltas, images.image_sizes)
        return proposals, losses
