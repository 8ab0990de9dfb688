"""Dense detectors' inference: per-level top-k of scores above a threshold, decode, one NMS, top per image.

FCOS and RetinaNet share this; they differ only in how a score is made from the head's outputs
(``sqrt(cls * centerness)`` for FCOS, ``sigmoid(cls)`` for RetinaNet) and how a box is decoded
(LTRB distances from a location, deltas from an anchor), which the caller passes in.
"""
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torchvision.ops import batched_nms

from detkit.structures import Boxes, Instances

__all__ = ["dense_detections"]


def dense_detections(
    scores: Sequence[torch.Tensor],
    box_regression: Sequence[torch.Tensor],
    decode: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor],
    image_sizes: List[Tuple[int, int]],
    *,
    score_thresh: float,
    topk_candidates: int,
    nms_thresh: float,
    max_detections_per_image: int,
    score_transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> List[Instances]:
    """Turn per-level dense scores and box regressions into detections, for the whole batch at once.

    Per level and image, the ``topk_candidates`` best (prediction, class) scores are taken and those
    above ``score_thresh`` kept (the same set as thresholding first, then taking the top k); their
    boxes are decoded and clipped to the image; one class-wise NMS runs over every level and image
    (a group is an (image, class) pair); each image keeps its ``max_detections_per_image`` best.

    Args:
        scores: per level, (B, N_l, K): a score for every prediction (location or anchor) and class.
        box_regression: per level, (B, N_l, R): what ``decode`` turns into boxes (R numbers per box).
        decode: ``decode(level, idx, regression)`` -> (B, k, 4) XYXY boxes, for ``idx`` (B, k) the
            indices into that level's N_l predictions and ``regression`` (B, k, R) their rows.
        image_sizes: per image, the (height, width) the boxes are clipped to.
        score_thresh: keep candidates whose (transformed) score is above this.
        topk_candidates: candidates kept per level and image before NMS.
        nms_thresh: IoU threshold of the class-wise NMS.
        max_detections_per_image: detections kept per image after NMS.
        score_transform: an increasing function applied to the top-k scores only (e.g. ``torch.sigmoid``
            when ``scores`` are logits), so the full maps never need transforming.

    Returns:
        One Instances per image (pred_boxes, scores, pred_classes), in the coordinates ``decode`` gives.
    """
    batch, _, num_classes = scores[0].shape
    device = scores[0].device
    all_boxes, all_scores, all_classes, all_images = [], [], [], []
    for level, (scores_l, reg_l) in enumerate(zip(scores, box_regression)):
        flat = scores_l.reshape(batch, -1)  # (B, N_l*K), prediction-major
        k = min(topk_candidates, flat.shape[1])
        top_scores, top_idx = flat.topk(k, dim=1)  # (B, k)
        if score_transform is not None:
            top_scores = score_transform(top_scores)
        keep = top_scores > score_thresh  # (B, k)
        pred_idx = torch.div(top_idx, num_classes, rounding_mode="floor")  # (B, k)
        classes = top_idx % num_classes  # (B, k)
        rows = torch.gather(reg_l, 1, pred_idx.unsqueeze(-1).expand(-1, -1, reg_l.shape[-1]))  # (B, k, R)
        boxes = decode(level, pred_idx, rows)  # (B, k, 4)
        image_ids = torch.arange(batch, device=device).unsqueeze(1).expand(-1, k)  # (B, k)
        all_boxes.append(boxes[keep])
        all_scores.append(top_scores[keep])
        all_classes.append(classes[keep])
        all_images.append(image_ids[keep])
    boxes = torch.cat(all_boxes)  # (D, 4)
    scores_d = torch.cat(all_scores)  # (D,)
    classes = torch.cat(all_classes)  # (D,)
    image_ids = torch.cat(all_images)  # (D,)

    # Clip every box to its own image (h, w), then one NMS where a group is an (image, class) pair.
    sizes = torch.tensor(image_sizes, dtype=boxes.dtype, device=device).reshape(-1, 2)  # (B, 2)
    limits = sizes[:, [1, 0, 1, 0]][image_ids]  # (D, 4)
    boxes = torch.minimum(boxes.clamp(min=0), limits)
    keep = batched_nms(boxes, scores_d, image_ids * num_classes + classes, nms_thresh)  # sorted by score
    results = []
    for i, size in enumerate(image_sizes):
        kept = keep[image_ids[keep] == i][:max_detections_per_image]
        results.append(Instances(size, pred_boxes=Boxes(boxes[kept]), scores=scores_d[kept],
                                 pred_classes=classes[kept]))
    return results
