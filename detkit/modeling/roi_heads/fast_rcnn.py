"""FastRCNNOutputLayers: per-RoI class scores (K + 1) and box deltas; their losses and inference."""
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import generalized_box_iou_loss

from detkit.config import configurable
from detkit.layers import ShapeSpec, batched_nms_parallel
from detkit.structures import Boxes, Instances

from ..box_coder import box_regression_loss, build_box_coder
from ..proposal_generator.proposal_utils import topk_per_image
from ..proposal_generator.rpn import BOX_REG_LOSS_TYPES

__all__ = ["FastRCNNOutputLayers", "fast_rcnn_inference"]


def fast_rcnn_inference(boxes: torch.Tensor, scores: torch.Tensor, image_ids: torch.Tensor,
                        image_sizes: List[Tuple[int, int]], score_thresh: float, nms_thresh: float,
                        topk_per_image_: int) -> Tuple[List[Instances], List[torch.Tensor]]:
    """Detections for every image of the batch at once, from all RoIs concatenated.

    Boxes are clipped to their image, (RoI, class) pairs scoring above ``score_thresh`` kept,
    class-wise NMS runs per (image, class) in one ``batched_nms`` call and each image keeps its
    ``topk_per_image_`` best.

    Args:
        boxes: (M, K, 4) or (M, 1, 4) boxes per RoI (per class, or one for all classes).
        scores: (M, K + 1) softmax scores, background last.
        image_ids: (M,) int64, the image of each RoI (RoIs grouped image after image).
        image_sizes: per image, (height, width).
        score_thresh, nms_thresh, topk_per_image_: see above.

    Returns:
        Per image, Instances with ``pred_boxes``, ``scores``, ``pred_classes``; and per image the
        indices (into all M RoIs) of the RoIs the detections came from.
    """
    num_images = len(image_sizes)
    num_classes = scores.shape[1] - 1
    scores = scores[:, :-1]  # (M, K)
    sizes = torch.as_tensor(image_sizes, dtype=boxes.dtype, device=boxes.device).reshape(-1, 2)  # (B, 2)
    limits = sizes[:, [1, 0, 1, 0]][image_ids][:, None, :]  # (M, 1, 4)
    boxes = torch.minimum(boxes.clamp(min=0), limits).expand(-1, num_classes, -1)  # (M, K, 4)

    valid = torch.isfinite(boxes).all(dim=-1) & torch.isfinite(scores)  # (M, K)
    candidates = (valid & (scores > score_thresh)).nonzero()  # (D, 2): (RoI, class)
    roi_idx, classes = candidates.unbind(1)
    boxes, scores, image_ids = boxes[roi_idx, classes], scores[roi_idx, classes], image_ids[roi_idx]  # (D, ...)
    keep = batched_nms_parallel(boxes, scores, image_ids * num_classes + classes, nms_thresh)  # by decreasing score
    keep, counts = topk_per_image(keep, image_ids[keep], num_images, topk_per_image_)

    results, kept_rois = [], []
    for size, kept in zip(image_sizes, keep.split(counts)):
        results.append(Instances(size, pred_boxes=Boxes(boxes[kept]), scores=scores[kept], pred_classes=classes[kept]))
        kept_rois.append(roi_idx[kept])
    return results, kept_rois


class FastRCNNOutputLayers(nn.Module):
    """Two linear layers on the box head's features: classification over K + 1 classes
    (background last) and, unless ``bbox_reg`` is False, class-specific (or agnostic) box deltas.
    """

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, box2box_transform, num_classes: int,
                 test_score_thresh: float = 0.0, test_nms_thresh: float = 0.5, test_topk_per_image: int = 100,
                 cls_agnostic_bbox_reg: bool = False, smooth_l1_beta: float = 0.0,
                 box_reg_loss_type: str = "smooth_l1", loss_weight: Union[float, Dict[str, float]] = 1.0,
                 bbox_reg: bool = True):
        """
        Args:
            input_shape: the box head's output shape.
            box2box_transform: a Box2BoxTransform for proposal deltas.
            num_classes: number of foreground classes K.
            test_score_thresh: minimum score of a detection.
            test_nms_thresh: IoU threshold of the class-wise NMS.
            test_topk_per_image: detections kept per image.
            cls_agnostic_bbox_reg: one box per RoI instead of one per class.
            smooth_l1_beta: smooth-L1 beta; 0 gives L1.
            box_reg_loss_type: "smooth_l1" or "l1" on the deltas, or "giou" (1 - generalized IoU of
                the decoded box with its gt box), as detectron2's ``FastRCNNOutputLayers.box_reg_loss``.
            loss_weight: weight of both losses, or a dict {"loss_cls": w1, "loss_box_reg": w2}.
            bbox_reg: False predicts no deltas: detections are the proposals themselves.
        """
        super().__init__()
        if box_reg_loss_type not in BOX_REG_LOSS_TYPES:
            raise ValueError(f"Unknown box loss type '{box_reg_loss_type}' (MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE); "
                             f"use one of {BOX_REG_LOSS_TYPES}.")
        input_size = (input_shape.channels or 1) * (input_shape.width or 1) * (input_shape.height or 1)
        self.num_classes = num_classes
        self.cls_score = nn.Linear(input_size, num_classes + 1)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.constant_(self.cls_score.bias, 0)
        self.bbox_pred: Optional[nn.Linear] = None
        if bbox_reg:
            num_bbox_reg_classes = 1 if cls_agnostic_bbox_reg else num_classes
            self.bbox_pred = nn.Linear(input_size, num_bbox_reg_classes * 4)
            nn.init.normal_(self.bbox_pred.weight, std=0.001)
            nn.init.constant_(self.bbox_pred.bias, 0)
        self.box2box_transform = box2box_transform
        self.cls_agnostic_bbox_reg = cls_agnostic_bbox_reg
        self.smooth_l1_beta = smooth_l1_beta
        self.box_reg_loss_type = box_reg_loss_type
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.test_topk_per_image = test_topk_per_image
        if isinstance(loss_weight, (int, float)):
            loss_weight = {"loss_cls": loss_weight, "loss_box_reg": loss_weight}
        self.loss_weight = dict(loss_weight)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        return {
            "input_shape": input_shape,
            "box2box_transform": build_box_coder(cfg, "Box2BoxTransform",
                                                 weights=cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS),
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "cls_agnostic_bbox_reg": cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG,
            "smooth_l1_beta": cfg.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA,
            "test_score_thresh": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            "test_nms_thresh": cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            "test_topk_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "box_reg_loss_type": cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE,
            "loss_weight": {"loss_box_reg": cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT},
            "bbox_reg": cfg.MODEL.ROI_HEADS.BBOX_REG,
        }

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(M, D) (or (M, C, H, W)) features -> scores (M, K + 1), deltas (M, K*4 or 4) or None."""
        x = x.flatten(1)
        deltas = self.bbox_pred(x) if self.bbox_pred is not None else None
        return self.cls_score(x), deltas

    def losses(self, predictions: Tuple[torch.Tensor, Optional[torch.Tensor]],
               proposals: List[Instances]) -> Dict[str, torch.Tensor]:
        """Cross-entropy over the sampled RoIs and, with box regression, the box loss on foreground
        RoIs summed and divided by the number of sampled RoIs (as detectron2).

        Args:
            predictions: the output of :meth:`forward`.
            proposals: per image, the sampled RoIs with ``proposal_boxes``, ``gt_classes``
                (K = background) and ``gt_boxes``.

        Returns:
            {"loss_cls"} plus {"loss_box_reg"} when box regression is on.
        """
        scores, deltas = predictions
        gt_classes = torch.cat([p.gt_classes for p in proposals])  # (M,)
        losses = {"loss_cls": F.cross_entropy(scores.float(), gt_classes, reduction="mean")
                  if gt_classes.numel() else scores.sum() * 0.0}
        if deltas is not None:
            proposal_boxes = torch.cat([p.proposal_boxes.tensor for p in proposals])  # (M, 4)
            gt_boxes = torch.cat([p.gt_boxes.tensor for p in proposals])  # (M, 4)
            fg = ((gt_classes >= 0) & (gt_classes < self.num_classes)).nonzero().squeeze(1)  # (F,)
            if self.cls_agnostic_bbox_reg:
                fg_deltas = deltas[fg]  # (F, 4)
            else:
                fg_deltas = deltas.view(-1, self.num_classes, 4)[fg, gt_classes[fg]]  # (F, 4)
            if self.box_reg_loss_type == "giou":
                fg_boxes = self.box2box_transform.apply_deltas(fg_deltas, proposal_boxes[fg])  # (F, 4) float32
                loss = generalized_box_iou_loss(fg_boxes, gt_boxes[fg].float(), reduction="sum")
            else:
                gt_deltas = self.box2box_transform.get_deltas(proposal_boxes[fg], gt_boxes[fg])  # (F, 4)
                loss = box_regression_loss(fg_deltas.float(), gt_deltas, self.box_reg_loss_type,
                                           self.smooth_l1_beta)
            losses["loss_box_reg"] = loss / max(gt_classes.numel(), 1)
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}

    def predict_boxes(self, predictions: Tuple[torch.Tensor, Optional[torch.Tensor]],
                      proposals: List[Instances]) -> torch.Tensor:
        """(M, K, 4) refined boxes per class, (M, 1, 4) when agnostic or the proposals when regression is off."""
        _, deltas = predictions
        proposal_boxes = torch.cat([p.proposal_boxes.tensor for p in proposals])  # (M, 4)
        if deltas is None:
            return proposal_boxes[:, None, :]
        return self.box2box_transform.apply_deltas(deltas, proposal_boxes).view(proposal_boxes.shape[0], -1, 4)

    def predict_probs(self, predictions: Tuple[torch.Tensor, Optional[torch.Tensor]]) -> torch.Tensor:
        """(M, K + 1) softmax class probabilities."""
        return F.softmax(predictions[0].float(), dim=-1)

    def inference(self, predictions: Tuple[torch.Tensor, Optional[torch.Tensor]],
                  proposals: List[Instances]) -> Tuple[List[Instances], List[torch.Tensor]]:
        """Per image detections (see :func:`fast_rcnn_inference`) from the RoIs of all images."""
        counts = torch.as_tensor([len(p) for p in proposals], device=predictions[0].device)
        image_ids = torch.repeat_interleave(torch.arange(len(proposals), device=counts.device), counts)
        return fast_rcnn_inference(self.predict_boxes(predictions, proposals), self.predict_probs(predictions),
                                   image_ids, [p.image_size for p in proposals], self.test_score_thresh,
                                   self.test_nms_thresh, self.test_topk_per_image)
