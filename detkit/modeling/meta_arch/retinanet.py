"""RetinaNet: the one-stage anchor detector (backbone -> FPN -> RetinaNetHead), with detectron2's semantics."""
import logging
from typing import Dict, List, Tuple

import torch
from torch import nn
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from detkit.config import configurable
from detkit.layers import select_shapes
from detkit.modeling.anchor_generator import build_anchor_generator
from detkit.modeling.box_coder import box_regression_loss, build_box_coder
from detkit.modeling.dense_heads import build_dense_head
from detkit.modeling.matcher import build_matcher, pad_boxes, padded_pairwise_iou
from detkit.structures import Boxes, Instances
from detkit.utils import comm

from .base import DetectorBase
from .build import META_ARCH_REGISTRY
from .dense_postprocess import dense_detections
from .fcos_losses import LossNormalizer

__all__ = ["RetinaNet"]

logger = logging.getLogger(__name__)

_NORMALIZER_START = 100.0  # detectron2 starts the EMA of the foreground count here


def _anchor_major(x: torch.Tensor, width: int) -> torch.Tensor:
    """(B, A*width, H, W) head output -> (B, H*W*A, width) float32, rows ordered as the anchors are."""
    b, _, h, w = x.shape
    x = x.float().view(b, -1, width, h, w).permute(0, 3, 4, 1, 2)  # (B, H, W, A, width)
    # No copy for a float32 channels_last map, where this view is already contiguous.
    return x.reshape(b, -1, width)


@META_ARCH_REGISTRY.register()
class RetinaNet(DetectorBase):
    """RetinaNet (Lin et al., 2017): anchors on every level, sigmoid focal loss, one shared head.

    Training: every anchor is matched to the gt of highest IoU by ``anchor_matcher`` (detectron2:
    IoU < 0.4 background, [0.4, 0.5) ignored, >= 0.5 foreground, and each gt's best anchors are
    foreground too); the losses are the sigmoid focal loss over every non-ignored anchor and class
    (``loss_cls``) and smooth-L1 on Box2BoxTransform deltas, or GIoU on decoded boxes, over the
    foreground anchors (``loss_box_reg``), both divided by an EMA (momentum 0.9, starting at 100)
    of the number of foreground anchors, kept in a buffer so a resumed run continues exactly.
    Inference: sigmoid scores, per-level top-k above the threshold, decode, class-wise NMS
    (:func:`dense_detections`, shared with FCOS). Inputs and outputs follow :class:`DetectorBase`.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        head_in_features: List[str],
        anchor_generator: nn.Module,
        box2box_transform,
        anchor_matcher,
        num_classes: int,
        focal_loss_alpha: float = 0.25,
        focal_loss_gamma: float = 2.0,
        smooth_l1_beta: float = 0.1,
        box_reg_loss_type: str = "smooth_l1",
        test_score_thresh: float = 0.05,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.5,
        max_detections_per_image: int = 100,
        **base_kwargs,
    ):
        """
        Args:
            backbone: image -> {"c3", "c4", "c5"}.
            neck: backbone features -> {"p3", ...}; its ``output_shape()`` gives each level's stride.
            head: a RetinaNetHead: list of level maps -> (logits (B, A*K, H, W), deltas (B, A*4, H, W)) lists.
            head_in_features: the neck outputs the head runs on, finest first.
            anchor_generator: list of level maps -> one Boxes of H*W*A anchors per level.
            box2box_transform: a Box2BoxTransform for the anchor deltas.
            anchor_matcher: a Matcher on the (gt, anchor) IoU matrix, labels {0, -1, 1}.
            num_classes: number of foreground classes.
            focal_loss_alpha, focal_loss_gamma: sigmoid focal loss parameters.
            smooth_l1_beta: smooth-L1 beta of the box loss; 0 gives L1.
            box_reg_loss_type: "smooth_l1" (on deltas) or "giou" (on decoded boxes).
            test_score_thresh, test_topk_candidates, test_nms_thresh, max_detections_per_image: inference.
            base_kwargs: ``pixel_mean``, ``pixel_std``, ``input_format``, ``channels_last`` and
                ``amp_inference``, as :class:`DetectorBase` takes them.
        """
        super().__init__(backbone=backbone, neck=neck, **base_kwargs)
        if box_reg_loss_type not in ("smooth_l1", "giou"):
            raise ValueError(f"Unknown RetinaNet box loss type '{box_reg_loss_type}' "
                             "(MODEL.RETINANET.BBOX_REG_LOSS_TYPE); use 'smooth_l1' or 'giou'.")
        self.head = head
        self.head_in_features = list(head_in_features)
        select_shapes(neck.output_shape(), self.head_in_features, "MODEL.RETINANET.IN_FEATURES")
        self.anchor_generator = anchor_generator
        self.box2box_transform = box2box_transform
        self.anchor_matcher = anchor_matcher
        self.num_classes = num_classes
        self.focal_loss_alpha = focal_loss_alpha
        self.focal_loss_gamma = focal_loss_gamma
        self.smooth_l1_beta = smooth_l1_beta
        self.box_reg_loss_type = box_reg_loss_type
        self.loss_normalizer = LossNormalizer(0.9)
        self.loss_normalizer.update(_NORMALIZER_START)
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image

    @classmethod
    def from_config(cls, cfg):
        base = DetectorBase.base_config(cfg)
        in_features = list(cfg.MODEL.RETINANET.IN_FEATURES)
        shapes = select_shapes(base["neck"].output_shape(), in_features, "MODEL.RETINANET.IN_FEATURES")
        r = cfg.MODEL.RETINANET
        return {
            **base,
            "head": build_dense_head(cfg, r.HEAD_NAME, shapes),
            "head_in_features": in_features,
            "anchor_generator": build_anchor_generator(cfg, shapes),
            "box2box_transform": build_box_coder(cfg, "Box2BoxTransform", weights=r.BBOX_REG_WEIGHTS),
            "anchor_matcher": build_matcher(cfg, "Matcher", thresholds=r.IOU_THRESHOLDS, labels=r.IOU_LABELS,
                                            allow_low_quality_matches=True),
            "num_classes": r.NUM_CLASSES,
            "focal_loss_alpha": r.FOCAL_LOSS_ALPHA,
            "focal_loss_gamma": r.FOCAL_LOSS_GAMMA,
            "smooth_l1_beta": r.SMOOTH_L1_LOSS_BETA,
            "box_reg_loss_type": r.BBOX_REG_LOSS_TYPE,
            "test_score_thresh": r.SCORE_THRESH_TEST,
            "test_topk_candidates": r.TOPK_CANDIDATES_TEST,
            "test_nms_thresh": r.NMS_THRESH_TEST,
            "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
        }

    def forward(self, batched_inputs: List[Dict]):
        """Losses in training mode, one {"instances": Instances} per image in eval mode (original size)."""
        gt_instances = self.ground_truth(batched_inputs) if self.training else None
        images = self.preprocess_image(batched_inputs)
        with self.network_autocast():
            features = self.extract_features(images)
            features = [features[f] for f in self.head_in_features]
            logits, bbox_reg = self.network("head")(features)
        anchors = self.anchor_generator(features)  # per level, Boxes of H*W*A
        logits = [_anchor_major(x, self.num_classes) for x in logits]  # (B, R_l, K)
        bbox_reg = [_anchor_major(x, 4) for x in bbox_reg]  # (B, R_l, 4)
        if self.training:
            gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances)
            return self.losses(anchors, logits, bbox_reg, gt_labels, gt_boxes)
        results = self.inference(anchors, logits, bbox_reg, images.image_sizes)
        return self.postprocess(results, batched_inputs)

    @torch.no_grad()
    def label_anchors(self, anchors: List[Boxes], gt_instances: List[Instances]
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Match every anchor of every image to a gt box (detectron2's ``label_anchors``, batched).

        Args:
            anchors: per level, the Boxes of that level's anchors (the same for every image).
            gt_instances: per image, Instances with ``gt_boxes`` and ``gt_classes``.

        Returns:
            gt_labels: (B, R) int64: the gt class of foreground anchors, ``num_classes`` for
                background, -1 for ignored ones.
            matched_gt_boxes: (B, R, 4) the matched gt box of each anchor (meaningful for foreground only).
        """
        anchors = Boxes.cat(anchors).tensor  # (R, 4)
        gt_list = [x.gt_boxes.tensor for x in gt_instances]
        # One Matcher call on the whole batch's (B, M, R) IoU, gt lists padded to M rows (at least
        # one: images without gt match row 0, which background labels never read).
        matched, labels = self.anchor_matcher(*padded_pairwise_iou(gt_list, anchors))  # (B, R) each
        gt_boxes, valid = pad_boxes(gt_list)  # (B, M, 4), (B, M)
        gt_classes = torch.zeros(valid.shape, dtype=torch.int64, device=valid.device)
        gt_classes[valid] = torch.cat([x.gt_classes for x in gt_instances]).long()  # row-major = concat order
        classes = gt_classes.gather(1, matched)  # (B, R)
        classes = torch.where(labels == 0, torch.full_like(classes, self.num_classes), classes)
        classes = torch.where(labels == -1, torch.full_like(classes, -1), classes)
        return classes, gt_boxes.gather(1, matched[:, :, None].expand(-1, -1, 4))

    def losses(self, anchors: List[Boxes], pred_logits: List[torch.Tensor], pred_deltas: List[torch.Tensor],
               gt_labels: torch.Tensor, gt_boxes: torch.Tensor) -> Dict[str, torch.Tensor]:
        """{"loss_cls", "loss_box_reg"} of a batch, both divided by the foreground-count EMA.

        Args:
            anchors: per level, Boxes of R_l anchors.
            pred_logits: per level, (B, R_l, K) float32 class logits.
            pred_deltas: per level, (B, R_l, 4) float32 anchor deltas.
            gt_labels, gt_boxes: (B, R) and (B, R, 4) from :meth:`label_anchors`.
        """
        anchors = Boxes.cat(anchors).tensor  # (R, 4)
        logits = torch.cat(pred_logits, dim=1)  # (B, R, K)
        deltas = torch.cat(pred_deltas, dim=1)  # (B, R, 4)
        valid = gt_labels >= 0  # (B, R)
        pos = valid & (gt_labels != self.num_classes)  # (B, R)
        # Every process divides by the same EMA, of the foreground count averaged over processes.
        num_pos = comm.reduce_dict({"num_pos": pos.sum().to(torch.float32)}, average=True)["num_pos"]
        normalizer = self.loss_normalizer.update(num_pos.item())

        valid_logits, valid_labels = logits[valid], gt_labels[valid]  # (V, K), (V,)
        target = torch.zeros_like(valid_logits)  # (V, K): one 1 per foreground anchor, at its class
        fg = (valid_labels != self.num_classes).nonzero()[:, 0]  # (P,)
        target[fg, valid_labels[fg]] = 1.0
        loss_cls = sigmoid_focal_loss(valid_logits, target, alpha=self.focal_loss_alpha,
                                      gamma=self.focal_loss_gamma, reduction="sum")
        pos_anchors = anchors[pos.nonzero()[:, 1]]  # (P, 4)
        if self.box_reg_loss_type == "smooth_l1":
            gt_deltas = self.box2box_transform.get_deltas(pos_anchors, gt_boxes[pos])  # (P, 4)
            loss_box = box_regression_loss(deltas[pos], gt_deltas, "smooth_l1", self.smooth_l1_beta)
        else:
            pred_boxes = self.box2box_transform.apply_deltas(deltas[pos], pos_anchors)  # (P, 4)
            loss_box = generalized_box_iou_loss(pred_boxes, gt_boxes[pos], reduction="sum")
        return {"loss_cls": loss_cls / normalizer, "loss_box_reg": loss_box / normalizer}

    def inference(self, anchors: List[Boxes], pred_logits: List[torch.Tensor], pred_deltas: List[torch.Tensor],
                  image_sizes: List[Tuple[int, int]]) -> List[Instances]:
        """Detections per image in input-image coordinates (see :func:`dense_detections`).

        Args:
            anchors: per level, Boxes of R_l anchors.
            pred_logits: per level, (B, R_l, K) class logits.
            pred_deltas: per level, (B, R_l, 4) anchor deltas.
            image_sizes: per image, the (height, width) before padding.
        """
        batch = pred_logits[0].shape[0]

        def decode(level: int, idx: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
            boxes = anchors[level].tensor[idx.reshape(-1)]  # (B*k, 4)
            return self.box2box_transform.apply_deltas(deltas.reshape(-1, 4), boxes).view(batch, -1, 4)

        return dense_detections(pred_logits, pred_deltas, decode, image_sizes,
                                score_thresh=self.test_score_thresh, topk_candidates=self.test_topk_candidates,
                                nms_thresh=self.test_nms_thresh,
                                max_detections_per_image=self.max_detections_per_image,
                                score_transform=torch.sigmoid)
