"""The export graphs of detkit's meta-architectures: FCOS, RetinaNet and GeneralizedRCNN (Faster R-CNN).

Each reuses the trained modules of the eager model and mirrors its inference for one image with
tensor ops only (see :mod:`detkit.export.graph`). A new one-stage detector needs a subclass whose
``detect`` runs its head and hands per-level scores and a decode function to
:func:`~detkit.export.graph.dense_detections`, registered with ``@register_export_graph("Name")``.
"""
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from detkit.modeling.anchor_generator import _grid_centres
from detkit.modeling.meta_arch.retinanet import _anchor_major

from .graph import ExportGraph, batched_nms_in_graph, clip_boxes, dense_detections, register_export_graph

__all__ = ["FCOSExportGraph", "RetinaNetExportGraph", "GeneralizedRCNNExportGraph", "level_grid"]


def level_grid(feature: torch.Tensor, stride: float, offset: float) -> torch.Tensor:
    """(H*W, 2) xy of a level's cell points, from the map's symbolic size (no int(), so no fixed shape)."""
    return _grid_centres(feature.shape[-2], feature.shape[-1], stride, offset, feature.device)


def level_anchors(anchor_generator, level: int, feature: torch.Tensor) -> torch.Tensor:
    """(H*W*A, 4) anchors of one level, location-major then anchor, as ``DefaultAnchorGenerator`` lays them."""
    cell = anchor_generator.cell_anchors[level]  # (A, 4)
    centres = level_grid(feature, anchor_generator.strides[level], anchor_generator.offset)  # (H*W, 2)
    return (centres.repeat(1, 2)[:, None, :] + cell[None, :, :]).reshape(-1, 4)


@register_export_graph("FCOS")
class FCOSExportGraph(ExportGraph):
    """FCOS: score = sqrt(sigmoid(cls) * sigmoid(ctrness)), per-level top-k, LTRB decode, class-wise NMS."""

    def detect(self, features: Dict[str, torch.Tensor], image_hw: torch.Tensor
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.model
        maps = [features[f] for f in m.head_in_features]
        logits, bbox_reg, ctrness = m.head(maps)
        offset = m.point_generator.offset
        scores = [torch.sqrt(torch.sigmoid(c[0]).flatten(1) * torch.sigmoid(t[0]).flatten(1)).t()  # (HW, K)
                  for c, t in zip(logits, ctrness)]
        deltas = [r[0].flatten(1).t() for r in bbox_reg]  # per level (HW, 4)

        def decode(level: int, loc: torch.Tensor) -> torch.Tensor:
            points = level_grid(maps[level], m.strides[level], offset)[loc]  # (n, 2)
            return m.box_coder.decode(points, deltas[level][loc], float(m.strides[level]))

        return dense_detections(scores, decode, image_hw, score_thresh=m.test_score_thresh,
                                topk_candidates=m.test_topk_candidates, nms_thresh=m.test_nms_thresh,
                                max_detections=m.max_detections_per_image)


@register_export_graph("RetinaNet")
class RetinaNetExportGraph(ExportGraph):
    """RetinaNet: sigmoid of the per-level top-k class logits, anchor-delta decode, class-wise NMS."""

    def detect(self, features: Dict[str, torch.Tensor], image_hw: torch.Tensor
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.model
        maps = [features[f] for f in m.head_in_features]
        logits, deltas = m.head(maps)
        scores = [_anchor_major(x, m.num_classes)[0] for x in logits]  # per level (H*W*A, K) logits
        deltas = [_anchor_major(x, 4)[0] for x in deltas]  # per level (H*W*A, 4)

        def decode(level: int, idx: torch.Tensor) -> torch.Tensor:
            anchors = level_anchors(m.anchor_generator, level, maps[level])[idx]  # (n, 4)
            return m.box2box_transform.apply_deltas(deltas[level][idx], anchors)

        return dense_detections(scores, decode, image_hw, score_thresh=m.test_score_thresh,
                                topk_candidates=m.test_topk_candidates, nms_thresh=m.test_nms_thresh,
                                max_detections=m.max_detections_per_image, score_transform=torch.sigmoid)


@register_export_graph("GeneralizedRCNN")
class GeneralizedRCNNExportGraph(ExportGraph):
    """Faster R-CNN: RPN proposals (per-level top-k, NMS per level, top-k), RoIAlign from the FPN
    level of each proposal, box head, softmax, class-specific refinement, class-wise NMS."""

    def proposals(self, features: Dict[str, torch.Tensor], image_hw: torch.Tensor
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(P, 4) proposal boxes by decreasing objectness and (P,) int64 the level that proposed each."""
        rpn = self.model.proposal_generator
        maps = [features[f] for f in rpn.in_features]
        logits, deltas = rpn.rpn_head(maps)
        pre_nms_topk, post_nms_topk = rpn.pre_nms_topk[False], rpn.post_nms_topk[False]
        boxes, scores, levels = [], [], []
        for level, (feature, logits_l, deltas_l) in enumerate(zip(maps, logits, deltas)):
            objectness = logits_l[0].permute(1, 2, 0).reshape(-1)  # (H*W*A,), location-major
            deltas_l = deltas_l[0].view(-1, 4, feature.shape[-2], feature.shape[-1]).permute(2, 3, 0, 1).reshape(-1, 4)
            k = torch.sym_min(pre_nms_topk, objectness.shape[0])
            top_scores, top_idx = objectness.topk(k)  # (k,)
            anchors = level_anchors(rpn.anchor_generator, level, feature)[top_idx]  # (k, 4)
            boxes.append(rpn.box2box_transform.apply_deltas(deltas_l[top_idx], anchors))
            scores.append(top_scores)
            levels.append(torch.full_like(top_idx, level))
        boxes = clip_boxes(torch.cat(boxes), image_hw)  # (K, 4)
        scores, levels = torch.cat(scores), torch.cat(levels)  # (K,)
        widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        valid = (torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
                 & (widths > rpn.min_box_size) & (heights > rpn.min_box_size))
        boxes, scores, levels = boxes[valid], scores[valid], levels[valid]
        keep = batched_nms_in_graph(boxes, scores, levels, rpn.nms_thresh, image_hw)[:post_nms_topk]
        return boxes[keep], levels[keep]

    def pool(self, features: Dict[str, torch.Tensor], boxes: torch.Tensor, rpn_levels: torch.Tensor
             ) -> Tuple[torch.Tensor, torch.Tensor]:
        """RoIAlign of every box from its level; returns (M, C, h, w) features and the (M, 4) boxes in
        the same order (grouped by level: detections are re-sorted by score at the end)."""
        heads = self.model.roi_heads
        pooler = heads.box_pooler
        maps = [features[f] for f in heads.box_in_features]
        if heads.pooler_level_assignment == "source":
            levels = rpn_levels.clamp(max=len(maps) - 1)
        else:
            sizes = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))  # (M,)
            levels = torch.floor(pooler.canonical_level + torch.log2(sizes / pooler.canonical_box_size + 1e-8))
            levels = levels.clamp(min=pooler.min_level, max=pooler.max_level).to(torch.int64) - pooler.min_level
        pooled, ordered = [], []
        for level, (feature, scale) in enumerate(zip(maps, pooler.scales)):
            level_boxes = boxes[levels == level]  # (M_l, 4)
            rois = torch.cat([torch.zeros_like(level_boxes[:, :1]), level_boxes], dim=1)  # (M_l, 5)
            pooled.append(roi_align(feature, rois, pooler.output_size, scale, pooler.sampling_ratio, pooler.aligned))
            ordered.append(level_boxes)
        return torch.cat(pooled), torch.cat(ordered)

    def detect(self, features: Dict[str, torch.Tensor], image_hw: torch.Tensor
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        heads = self.model.roi_heads
        predictor = heads.box_predictor
        proposal_boxes, rpn_levels = self.proposals(features, image_hw)
        pooled, proposal_boxes = self.pool(features, proposal_boxes, rpn_levels)
        class_logits, deltas = predictor(heads.box_head(pooled))
        probs = F.softmax(class_logits.float(), dim=-1)[:, :-1]  # (M, K), background dropped
        num_classes = probs.shape[1]
        if deltas is None:
            boxes = proposal_boxes[:, None, :]  # (M, 1, 4)
        else:
            boxes = predictor.box2box_transform.apply_deltas(deltas, proposal_boxes).view(-1, deltas.shape[1] // 4, 4)
        boxes = clip_boxes(boxes, image_hw).expand(-1, num_classes, -1)  # (M, K, 4)
        valid = torch.isfinite(boxes).all(dim=-1) & torch.isfinite(probs) & (probs > predictor.test_score_thresh)
        roi_idx, classes = valid.nonzero().unbind(1)  # (D,) each
        boxes, scores = boxes[roi_idx, classes], probs[roi_idx, classes]  # (D, 4), (D,)
        keep = batched_nms_in_graph(boxes, scores, classes, predictor.test_nms_thresh,
                                    image_hw)[:predictor.test_topk_per_image]
        return boxes[keep], scores[keep], classes[keep]

