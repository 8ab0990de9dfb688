"""Batched NMS: ``batched_nms`` (detectron2's name) and ``batched_nms_parallel`` (groups over CPU threads).

``batched_nms`` is torchvision's on float32 boxes, as detectron2's. torchvision's CPU NMS kernel
runs on one thread. In a batched NMS boxes of different groups
(images, levels, classes) never suppress each other, so the groups can be split into buckets of
similar size and each bucket run through ``torchvision.ops.batched_nms`` on its own thread (the
kernel releases the GIL). The kept set is exactly that of one call; like ``batched_nms`` the
result is sorted by decreasing score. On CUDA, with one thread or few boxes it is one plain call.
"""
from typing import List, Optional

import torch
from torchvision.ops import boxes as box_ops

from .thread_pool import parallel_map

__all__ = ["batched_nms", "batched_nms_parallel"]

MIN_BOXES = 2000  # below this, one call is faster than the thread hand-off


def _buckets(idxs: torch.Tensor, num_buckets: int) -> List[torch.Tensor]:
    """Split box indices into ``num_buckets`` lists of whole groups with similar box counts."""
    groups, inverse, counts = torch.unique(idxs, return_inverse=True, return_counts=True)
    loads = [0] * num_buckets
    bucket_of_group = torch.empty(len(groups), dtype=torch.int64)
    for g in torch.argsort(counts, descending=True).tolist():  # largest first, onto the lightest bucket
        b = loads.index(min(loads))
        bucket_of_group[g] = b
        loads[b] += int(counts[g])
    box_bucket = bucket_of_group.to(idxs.device)[inverse]  # (N,)
    return [(box_bucket == b).nonzero().squeeze(1) for b in range(num_buckets) if loads[b] > 0]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``torchvision.ops.batched_nms`` on float32 boxes (float16 lacks the range of its coordinate trick).

    Args:
        boxes: (N, 4) XYXY boxes.
        scores: (N,) scores.
        idxs: (N,) int64 group of each box; boxes of different groups never suppress each other.
        iou_threshold: boxes of a group overlapping a better one by more than this are dropped.

    Returns:
        int64 indices of the kept boxes, by decreasing score.
    """
    if boxes.shape[-1] != 4:
        raise ValueError(f"batched_nms takes (N, 4) XYXY boxes, got shape {tuple(boxes.shape)}.")
    return box_ops.batched_nms(boxes.float(), scores, idxs, iou_threshold)


def batched_nms_parallel(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float,
                         num_threads: Optional[int] = None) -> torch.Tensor:
    """``torchvision.ops.batched_nms`` with its groups run on several CPU threads.

    Args:
        boxes: (N, 4) XYXY boxes.
        scores: (N,) scores.
        idxs: (N,) int64 group of each box; boxes of different groups never suppress each other.
        iou_threshold: boxes of a group overlapping a better one by more than this are dropped.
        num_threads: threads to use; None uses ``torch.get_num_threads()``.

    Returns:
        int64 indices of the kept boxes, by decreasing score.
    """
    threads = torch.get_num_threads() if num_threads is None else int(num_threads)
    if boxes.device.type != "cpu" or threads <= 1 or boxes.shape[0] < MIN_BOXES:
        return box_ops.batched_nms(boxes, scores, idxs, iou_threshold)
    buckets = _buckets(idxs, threads)
    if len(buckets) <= 1:
        return box_ops.batched_nms(boxes, scores, idxs, iou_threshold)
    # Autocast is thread-local: give the workers float32 as torchvision's autocast rule for nms does.
    boxes, scores = boxes.float(), scores.float()

    def work(index: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return index[box_ops.batched_nms(boxes[index], scores[index], idxs[index], iou_threshold)]

    keep = torch.cat(parallel_map(work, buckets))
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]
