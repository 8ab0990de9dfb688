"""Box-proposal recall (AR@100, AR@1000, by area) computed as detectron2's COCO proposal evaluation does."""
import logging
from typing import Dict, List, Optional, Sequence

import torch

__all__ = ["AREA_RANGES", "evaluate_box_proposals", "box_proposal_metrics"]

logger = logging.getLogger(__name__)

# Ground-truth area ranges (pixels^2), COCO's small / medium / large split; bounds are inclusive.
AREA_RANGES = {
    "all": (0.0, 1e10),
    "small": (0.0, 32.0 ** 2),
    "medium": (32.0 ** 2, 96.0 ** 2),
    "large": (96.0 ** 2, 1e10),
}
_AREA_SUFFIX = {"all": "", "small": "s", "medium": "m", "large": "l"}
_MAX_CHUNK_ELEMENTS = 1 << 22  # IoU entries held at once while matching


def _batched_iou(gts: torch.Tensor, props: torch.Tensor) -> torch.Tensor:
    """IoU of (B, G, 4) and (B, P, 4) XYXY boxes -> (B, G, P); 0 where boxes do not intersect."""
    area_g = ((gts[..., 2] - gts[..., 0]) * (gts[..., 3] - gts[..., 1]))[:, :, None]  # (B, G, 1)
    area_p = ((props[..., 2] - props[..., 0]) * (props[..., 3] - props[..., 1]))[:, None, :]  # (B, 1, P)
    lt = torch.maximum(gts[:, :, None, :2], props[:, None, :, :2])  # (B, G, P, 2)
    rb = torch.minimum(gts[:, :, None, 2:], props[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]  # (B, G, P)
    return torch.where(inter > 0, inter / (area_g + area_p - inter), torch.zeros_like(inter))


def _greedy_coverage(proposals: List[torch.Tensor], gts: List[torch.Tensor]) -> torch.Tensor:
    """The IoU with which each ground-truth box is covered under greedy one-to-one matching.

    In each image, the (proposal, ground truth) pair of highest IoU is matched and both are
    removed, min(P, G) times (ties go to the lowest ground-truth index, then the lowest proposal
    index). Images are padded into one batch and matched together, one step at a time.

    Args:
        proposals: per image, (P_i, 4) XYXY boxes, P_i > 0.
        gts: per image, (G_i, 4) XYXY boxes, G_i > 0.

    Returns:
        (sum_i min(P_i, G_i),) IoU values of the matched pairs.
    """
    out = []
    max_p = max(len(p) for p in proposals)
    max_g = max(len(g) for g in gts)
    chunk = max(1, _MAX_CHUNK_ELEMENTS // (max_p * max_g))
    for start in range(0, len(proposals), chunk):
        props, boxes = proposals[start:start + chunk], gts[start:start + chunk]
        num_p = torch.tensor([len(p) for p in props])
        num_g = torch.tensor([len(g) for g in boxes])
        p_pad = torch.nn.utils.rnn.pad_sequence(props, batch_first=True)  # (B, P, 4)
        g_pad = torch.nn.utils.rnn.pad_sequence(boxes, batch_first=True)  # (B, G, 4)
        # Ground-truth-major layout: argmax over the flattened (G, P) prefers the lowest gt, then proposal.
        iou = _batched_iou(g_pad, p_pad)  # (B, G, P)
        batch, num_gts, num_props = iou.shape
        valid = (torch.arange(num_gts)[None, :, None] < num_g[:, None, None]) & \
                (torch.arange(num_props)[None, None, :] < num_p[:, None, None])
        iou.masked_fill_(~valid, -1.0)
        flat = iou.view(batch, -1)  # (B, G * P), shares memory with iou
        steps = torch.minimum(num_p, num_g)  # (B,)
        rows = torch.arange(batch)
        matched = torch.zeros(batch, int(steps.max()))
        for j in range(matched.shape[1]):
            best, flat_idx = flat.max(dim=1)  # (B,)
            g_idx, p_idx = flat_idx // num_props, flat_idx % num_props
            matched[:, j] = best
            iou[rows, :, p_idx] = -1.0
            iou[rows, g_idx, :] = -1.0
        keep = torch.arange(matched.shape[1])[None, :] < steps[:, None]
        out.append(matched[keep])
    return torch.cat(out) if out else torch.zeros(0)


def evaluate_box_proposals(proposal_boxes: Sequence[torch.Tensor], gt_boxes: Sequence[torch.Tensor],
                           gt_areas: Sequence[torch.Tensor], area: str = "all", limit: Optional[int] = None,
                           thresholds: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
    """Recall of box proposals against non-crowd ground truth, averaged over IoU thresholds.

    Follows detectron2's COCO box-proposal evaluation: per image, keep the top ``limit``
    proposals, keep the ground truth whose area lies in the range, match greedily one-to-one
    by IoU, and count a ground-truth box as recalled at threshold t when its matched IoU >= t.
    As there, an image with no proposals or no ground truth (before the area filter) is skipped
    and its ground truth does not count.

    Args:
        proposal_boxes: per image, (P_i, 4) XYXY proposals sorted by objectness, best first.
        gt_boxes: per image, (G_i, 4) XYXY non-crowd ground-truth boxes.
        gt_areas: per image, (G_i,) their areas (COCO ``area``).
        area: "all", "small", "medium" or "large".
        limit: proposals kept per image, or None for all.
        thresholds: IoU thresholds; default 0.5:0.95 step 0.05.

    Returns:
        {"ar": scalar average recall, "recalls": (T,), "thresholds": (T,), "gt_overlaps": (N,),
        "num_pos": scalar ground-truth count}. ``ar`` is NaN when no ground truth counts.
    """
    if area not in AREA_RANGES:
        raise ValueError(f"Unknown proposal area range '{area}'; choose one of {', '.join(AREA_RANGES)}.")
    low, high = AREA_RANGES[area]
    props, gts = [], []
    num_pos = 0
    for p, g, a in zip(proposal_boxes, gt_boxes, gt_areas):
        if len(p) == 0 or len(g) == 0:
            continue
        g = g[(a >= low) & (a <= high)]
        num_pos += len(g)
        if len(g) == 0:
            continue
        props.append((p[:limit] if limit is not None else p).float())
        gts.append(g.float())
    overlaps = _greedy_coverage(props, gts) if props else torch.zeros(0)
    overlaps, _ = torch.sort(overlaps)
    if thresholds is None:
        thresholds = torch.arange(0.5, 0.95 + 1e-5, 0.05)
    recalls = (overlaps[None, :] >= thresholds[:, None]).float().sum(dim=1) / float(num_pos)  # (T,)
    return {"ar": recalls.mean(), "recalls": recalls, "thresholds": thresholds, "gt_overlaps": overlaps,
            "num_pos": torch.tensor(num_pos)}


def box_proposal_metrics(proposal_boxes: Sequence[torch.Tensor], gt_boxes: Sequence[torch.Tensor],
                         gt_areas: Sequence[torch.Tensor], limits: Sequence[int] = (100, 1000)) -> Dict[str, float]:
    """AR x100 for each limit and area range: {"AR@100", "ARs@100", "ARm@100", "ARl@100", "AR@1000", ...}."""
    results = {}
    for limit in limits:
        for area, suffix in _AREA_SUFFIX.items():
            stats = evaluate_box_proposals(proposal_boxes, gt_boxes, gt_areas, area=area, limit=limit)
            results[f"AR{suffix}@{limit:d}"] = float(stats["ar"]) * 100
    return results
