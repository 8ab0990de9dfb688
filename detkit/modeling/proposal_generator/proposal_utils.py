"""Proposal utilities: pick the top RPN proposals (top-k, NMS, top-k) and append ground truth."""
from typing import List, Tuple

import torch

from detkit.layers import batched_nms_parallel
from detkit.structures import Boxes, Instances

__all__ = ["find_top_rpn_proposals", "add_ground_truth_to_proposals", "topk_per_image"]

# Objectness logit given to ground-truth boxes appended to the proposals: sigmoid(logit) ~= 1 - 1e-10.
GT_OBJECTNESS_LOGIT = float(torch.log(torch.tensor((1.0 - 1e-10) / 1e-10)))


def topk_per_image(keep: torch.Tensor, image_ids: torch.Tensor, num_images: int, k: int
                   ) -> Tuple[torch.Tensor, List[int]]:
    """Keep the first ``k`` entries of every image from a score-sorted index list.

    Args:
        keep: (D,) indices, sorted by decreasing score (as ``batched_nms`` returns them).
        image_ids: (D,) int64 image of each entry of ``keep``.
        num_images: number of images.
        k: entries kept per image.

    Returns:
        The kept indices grouped by image (image 0 first), each image's still by decreasing score,
        and the number kept per image.
    """
    order = torch.sort(image_ids, stable=True).indices  # group by image, keep the score order inside
    keep, image_ids = keep[order], image_ids[order]
    counts = torch.bincount(image_ids, minlength=num_images)  # (num_images,)
    starts = counts.cumsum(0) - counts
    rank = torch.arange(keep.numel(), device=keep.device) - starts[image_ids]  # rank within its image
    selected = rank < k
    return keep[selected], counts.clamp(max=k).tolist()


def find_top_rpn_proposals(proposals: List[torch.Tensor], pred_objectness_logits: List[torch.Tensor],
                           image_sizes: List[Tuple[int, int]], nms_thresh: float, pre_nms_topk: int,
                           post_nms_topk: int, min_box_size: float, training: bool) -> List[Instances]:
    """Select proposals for every image of the batch at once.

    Per image and level, the ``pre_nms_topk`` highest-scoring boxes are kept; they are clipped
    to the image, boxes with a side <= ``min_box_size`` are dropped, NMS runs per (image, level)
    in one ``batched_nms`` call, and each image keeps its ``post_nms_topk`` best.

    Args:
        proposals: per level, (B, Rl, 4) decoded XYXY boxes.
        pred_objectness_logits: per level, (B, Rl) objectness logits.
        image_sizes: per image, (height, width) before padding.
        nms_thresh: IoU threshold of the NMS.
        pre_nms_topk: boxes kept per image and level before NMS.
        post_nms_topk: boxes kept per image after NMS.
        min_box_size: boxes whose width or height is not above this are dropped.
        training: raise on non-finite boxes or scores (training has diverged) instead of dropping them.

    Returns:
        One Instances per image with ``proposal_boxes`` (Boxes), ``objectness_logits`` (R,) and
        ``level_ids`` (R,) int64 (index of the level that proposed the box), by decreasing score.
    """
    num_images = len(image_sizes)
    device = proposals[0].device
    boxes, scores, levels = [], [], []
    for level, (boxes_l, logits_l) in enumerate(zip(proposals, pred_objectness_logits)):
        k = min(pre_nms_topk, logits_l.shape[1])
        top_scores, top_idx = logits_l.topk(k, dim=1)  # (B, k), sorted
        boxes.append(boxes_l.gather(1, top_idx[..., None].expand(-1, -1, 4)))  # (B, k, 4)
        scores.append(top_scores)
        levels.append(torch.full_like(top_idx, level))
    boxes = torch.cat(boxes, dim=1)  # (B, K, 4)
    scores = torch.cat(scores, dim=1)  # (B, K)
    levels = torch.cat(levels, dim=1)  # (B, K)
    image_ids = torch.arange(num_images, device=device)[:, None].expand_as(levels)  # (B, K)

    valid = torch.isfinite(boxes).all(dim=-1) & torch.isfinite(scores)  # (B, K)
    if training and not bool(valid.all()):
        raise FloatingPointError("The RPN predicted non-finite boxes or objectness scores: training has diverged. "
                                 "Lower SOLVER.BASE_LR, lengthen SOLVER.WARMUP_ITERS or enable gradient clipping.")
    sizes = torch.as_tensor(image_sizes, dtype=boxes.dtype, device=device).reshape(-1, 2)  # (B, 2) as (h, w)
    limits = sizes[:, [1, 0, 1, 0]][:, None, :]  # (B, 1, 4)
    boxes = torch.minimum(boxes.clamp(min=0), limits)
    widths, heights = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    valid &= (widths > min_box_size) & (heights > min_box_size)

    boxes, scores, levels, image_ids = boxes[valid], scores[valid], levels[valid], image_ids[valid]  # (D, ...)
    num_levels = len(proposals)
    keep = batched_nms_parallel(boxes, scores, image_ids * num_levels + levels, nms_thresh)  # by decreasing score
    keep, counts = topk_per_image(keep, image_ids[keep], num_images, post_nms_topk)

    results = []
    for size, kept in zip(image_sizes, keep.split(counts)):
        results.append(Instances(size, proposal_boxes=Boxes(boxes[kept]), objectness_logits=scores[kept],
                                 level_ids=levels[kept]))
    return results


def add_ground_truth_to_proposals(gt_boxes: List[Boxes], proposals: List[Instances]) -> List[Instances]:
    """Append each image's ground-truth boxes to its proposals.

    The appended boxes get objectness logit ~23 (probability 1 - 1e-10) and, if the proposals
    carry ``level_ids``, level -1 ("assign by size" for :class:`ROIPooler`).

    Args:
        gt_boxes: per image, the Boxes to append.
        proposals: per image, Instances with ``proposal_boxes`` and ``objectness_logits``.

    Returns:
        New Instances, the proposals followed by the ground truth.
    """
    if len(gt_boxes) != len(proposals):
        raise ValueError(f"add_ground_truth_to_proposals got {len(gt_boxes)} images of ground truth and "
                         f"{len(proposals)} of proposals.")
    out = []
    for gt, props in zip(gt_boxes, proposals):
        gt = gt.to(props.proposal_boxes.device)
        fields = {"proposal_boxes": Boxes(gt.tensor.to(props.proposal_boxes.tensor.dtype)),
                  "objectness_logits": torch.full((len(gt),), GT_OBJECTNESS_LOGIT, device=gt.device,
                                                  dtype=props.objectness_logits.dtype)}
        if props.has("level_ids"):
            fields["level_ids"] = torch.full((len(gt),), -1, dtype=torch.int64, device=gt.device)
        gt_props = Instances(props.image_size, **fields)
        for name in props.get_fields():
            if name not in fields:
                raise ValueError(f"Proposals carry field '{name}' that ground-truth boxes cannot fill; "
                                 "add_ground_truth_to_proposals knows proposal_boxes, objectness_logits, level_ids.")
        out.append(Instances.cat([props, gt_props]))
    return out
