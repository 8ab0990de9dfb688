"""FCOS: the one-stage, anchor-free detector (backbone -> FPN -> shared dense head)."""
import logging
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

from detkit.config import configurable
from detkit.modeling.anchor_generator import build_anchor_generator
from detkit.modeling.box_coder import build_box_coder
from detkit.modeling.dense_heads import build_dense_head
from detkit.modeling.matcher import build_matcher
from detkit.structures import ImageList, Instances

from .base import DetectorBase
from .build import META_ARCH_REGISTRY
from .dense_postprocess import dense_detections
from .fcos_losses import LossNormalizer, fcos_losses, gather_fcos_targets

__all__ = ["FCOS", "fcos_inference"]

logger = logging.getLogger(__name__)


def _flatten_levels(maps: List[torch.Tensor]) -> torch.Tensor:
    """Per-level (B, C, H_l, W_l) maps -> one (B, sum_l H_l*W_l, C) tensor, locations row-major per level."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)


def fcos_inference(
    logits: List[torch.Tensor],
    bbox_reg: List[torch.Tensor],
    ctrness: List[torch.Tensor],
    points: List[torch.Tensor],
    strides: Sequence[int],
    box_coder,
    image_sizes: List[Tuple[int, int]],
    *,
    score_thresh: float,
    topk_candidates: int,
    nms_thresh: float,
    max_detections_per_image: int,
) -> List[Instances]:
    """Turn the head's outputs into detections, for every image of the batch at once.

    Score = sqrt(sigmoid(cls) * sigmoid(ctrness)) for every (location, class); per level and image
    the ``topk_candidates`` best scores above ``score_thresh`` are kept and decoded; boxes are
    clipped to the image; a class-wise NMS runs over all levels (and images) in one call; each
    image keeps its ``max_detections_per_image`` best (:func:`dense_detections`, shared with RetinaNet).

    Args:
        logits, bbox_reg, ctrness: the head's per-level outputs, (B, K | 4 | 1, H_l, W_l).
        points: per level, (H_l*W_l, 2) location xy.
        strides: the stride of each level.
        box_coder: decodes (locations, LTRB in strides, strides) into XYXY boxes.
        image_sizes: per image, the (height, width) before padding.

    Returns:
        One Instances per image (in input-image coordinates) with pred_boxes, scores, pred_classes.
    """
    device = logits[0].device
    scores = [torch.sqrt(torch.sigmoid(c).flatten(2) * torch.sigmoid(t).flatten(2)).transpose(1, 2)  # (B, HW, K)
              for c, t in zip(logits, ctrness)]
    regression = [r.flatten(2).transpose(1, 2) for r in bbox_reg]  # (B, HW, 4)

    def decode(level: int, loc_idx: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
        stride = torch.full((loc_idx.shape[1],), float(strides[level]), device=device)
        return box_coder.decode(points[level][loc_idx], ltrb, stride)  # (B, k, 4)

    return dense_detections(scores, regression, decode, image_sizes, score_thresh=score_thresh,
                            topk_candidates=topk_candidates, nms_thresh=nms_thresh,
                            max_detections_per_image=max_detections_per_image)


@META_ARCH_REGISTRY.register()
class FCOS(DetectorBase):
    """FCOS (Tian et al., 2019): per-location classification, LTRB regression and centerness.

    Inputs and outputs follow :class:`DetectorBase`'s contract; training returns
    {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        head_in_features: List[str],
        point_generator,
        matcher,
        box_coder,
        num_classes: int,
        focal_loss_alpha: float = 0.25,
        focal_loss_gamma: float = 2.0,
        box_loss_type: str = "giou",
        loss_normalizer_momentum: float = 0.9,
        test_score_thresh: float = 0.2,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.6,
        max_detections_per_image: int = 100,
        **base_kwargs,
    ):
        """
        Args:
            backbone: image -> {"c3", "c4", "c5"}.
            neck: backbone features -> {"p3", ...}; its ``output_shape()`` gives each level's stride.
            head: an FCOSHead: list of level maps -> (logits, LTRB in strides, centerness logits).
            head_in_features: the neck outputs the head runs on, finest first.
            point_generator: list of level maps -> per level (H*W, 2) location xy.
            matcher: an FCOSMatcher: (locations, strides, level ids, gt boxes) -> (B, N) gt index or -1.
            box_coder: an LTRBBoxCoder normalising by stride.
            num_classes: number of foreground classes.
            focal_loss_alpha, focal_loss_gamma: sigmoid focal loss parameters.
            box_loss_type: "giou" (on decoded boxes) or "l1" (on stride-normalised LTRB).
            loss_normalizer_momentum: momentum of the EMA of the positive count.
            test_score_thresh, test_topk_candidates, test_nms_thresh, max_detections_per_image: inference.
            base_kwargs: ``pixel_mean``, ``pixel_std``, ``input_format``, ``channels_last`` and
                ``amp_inference``, as :class:`DetectorBase` takes them.
        """
        super().__init__(backbone=backbone, neck=neck, **base_kwargs)
        if box_loss_type not in ("giou", "l1"):
            raise ValueError(f"Unknown FCOS box loss type '{box_loss_type}' (MODEL.FCOS.BOX_LOSS_TYPE); "
                             "use 'giou' or 'l1'.")
        self.head = head
        self.head_in_features = list(head_in_features)
        shapes = neck.output_shape()
        missing = [f for f in self.head_in_features if f not in shapes]
        if missing:
            raise ValueError(f"FCOS head features {missing} (MODEL.FCOS.IN_FEATURES) are not produced by the neck, "
                             f"which outputs {sorted(shapes)}.")
        self.strides = [int(shapes[f].stride) for f in self.head_in_features]
        self.point_generator = point_generator
        self.matcher = matcher
        self.box_coder = box_coder
        self.num_classes = num_classes
        self.focal_loss_alpha = focal_loss_alpha
        self.focal_loss_gamma = focal_loss_gamma
        self.box_loss_type = box_loss_type
        self.loss_normalizer = LossNormalizer(loss_normalizer_momentum)
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image

    @classmethod
    def from_config(cls, cfg):
        base = DetectorBase.base_config(cfg)
        shapes = base["neck"].output_shape()
        in_features = list(cfg.MODEL.FCOS.IN_FEATURES)
        head_shapes = [shapes[f] for f in in_features if f in shapes]
        return {
            **base,
            "head": build_dense_head(cfg, cfg.MODEL.FCOS.HEAD_NAME, head_shapes),
            "head_in_features": in_features,
            "point_generator": build_anchor_generator(cfg, head_shapes, name="PointGenerator"),
            "matcher": build_matcher(cfg, cfg.MODEL.FCOS.MATCHER),
            "box_coder": build_box_coder(cfg, cfg.MODEL.FCOS.BOX_CODER),
            "num_classes": cfg.MODEL.FCOS.NUM_CLASSES,
            "focal_loss_alpha": cfg.MODEL.FCOS.FOCAL_LOSS_ALPHA,
            "focal_loss_gamma": cfg.MODEL.FCOS.FOCAL_LOSS_GAMMA,
            "box_loss_type": cfg.MODEL.FCOS.BOX_LOSS_TYPE,
            "loss_normalizer_momentum": cfg.MODEL.FCOS.LOSS_NORMALIZER_MOMENTUM,
            "test_score_thresh": cfg.MODEL.FCOS.SCORE_THRESH_TEST,
            "test_topk_candidates": cfg.MODEL.FCOS.TOPK_CANDIDATES_TEST,
            "test_nms_thresh": cfg.MODEL.FCOS.NMS_THRESH_TEST,
            "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
        }

    def forward(self, batched_inputs: List[Dict]):
        """Losses in training mode, one {"instances": Instances} per image in eval mode (original size)."""
        gt_instances = self.ground_truth(batched_inputs) if self.training else None
        images = self.preprocess_image(batched_inputs)
        with self.network_autocast():
            features = self.extract_features(images)
            features = [features[f] for f in self.head_in_features]
            logits, bbox_reg, ctrness = self.network("head")(features)
        if not self.training:  # decode, top-k and NMS in float32 (a no-op without autocast)
            logits, bbox_reg, ctrness = ([x.float() for x in xs] for xs in (logits, bbox_reg, ctrness))
        points = self.point_generator(features)  # per level (H_l*W_l, 2)

        if self.training:
            return self.losses(points, logits, bbox_reg, ctrness, gt_instances)
        results = self.inference(images, points, logits, bbox_reg, ctrness)
        return self.postprocess(results, batched_inputs)

    def _level_layout(self, points: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All levels' locations (N, 2), their strides (N,) and level ids (N,) int64, concatenated."""
        device = points[0].device
        counts = torch.tensor([len(p) for p in points], device=device)
        strides = torch.repeat_interleave(torch.tensor(self.strides, dtype=torch.float32, device=device), counts)
        level_ids = torch.repeat_interleave(torch.arange(len(points), device=device), counts)
        return torch.cat(points, dim=0), strides, level_ids

    @torch.no_grad()
    def label_locations(self, points: List[torch.Tensor], gt_instances: List[Instances]
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Assign every location of every level to a gt box (or background) for the whole batch.

        Returns:
            labels: (B, N) int64 class per location, ``num_classes`` = background.
            boxes: (B, N, 4) the matched gt box per location.
        """
        locations, strides, level_ids = self._level_layout(points)
        gt_boxes = [x.gt_boxes.tensor for x in gt_instances]
        matched = self.matcher(locations, strides, level_ids, gt_boxes)  # (B, N)
        return gather_fcos_targets(matched, gt_boxes, [x.gt_classes for x in gt_instances], self.num_classes)

    def losses(self, points, logits, bbox_reg, ctrness, gt_instances: List[Instances]) -> Dict[str, torch.Tensor]:
        """The FCOS losses for a batch (see :func:`fcos_losses`)."""
        gt_labels, gt_boxes = self.label_locations(points, gt_instances)
        locations, strides, _ = self._level_layout(points)
        return fcos_losses(
            locations, strides,
            _flatten_levels(logits).float(),  # (B, N, K); float32 also under autocast
            _flatten_levels(bbox_reg).float(),  # (B, N, 4)
            _flatten_levels(ctrness).squeeze(-1).float(),  # (B, N)
            gt_labels, gt_boxes, self.box_coder,
            focal_loss_alpha=self.focal_loss_alpha,
            focal_loss_gamma=self.focal_loss_gamma,
            box_loss_type=self.box_loss_type,
            normalizer=self.loss_normalizer,
        )

    def inference(self, images: ImageList, points, logits, bbox_reg, ctrness) -> List[Instances]:
        """Detections per image in input-image coordinates (see :func:`fcos_inference`)."""
        return fcos_inference(
            logits, bbox_reg, ctrness, points, self.strides, self.box_coder, images.image_sizes,
            score_thresh=self.test_score_thresh,
            topk_candidates=self.test_topk_candidates,
            nms_thresh=self.test_nms_thresh,
            max_detections_per_image=self.max_detections_per_image,
        )
