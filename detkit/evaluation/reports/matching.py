"""Match predictions to ground truth one to one across classes; label each false positive with a TIDE error.

The matching behind the confusion matrix and the error breakdown (and any per-box view of a
result). Per image:

1. Predictions scoring below ``score_thresh`` are left out (status ``"below_thresh"``).
2. The others, highest score first, each take one still-free ground-truth box with IoU >=
   ``iou_thresh``: the best-overlapping one of their own class if there is one, else the
   best-overlapping one of another class. A match of the same class is a true positive
   (``"tp"``); a match of another class is a false positive of category ``"cls"``.
3. Crowd boxes are ignored, as COCO ignores them: they are never matched nor missed, and an
   unmatched prediction covered (intersection over the prediction's area >= ``iou_thresh``) by a
   crowd box of its class is ``"ignored"``.
4. Every other unmatched prediction is a false positive; with ``own`` / ``other`` its best IoU with
   a box of its own / another class, the first rule that holds names its category (TIDE's):
   ``dupe`` (own >= iou_thresh: a higher score took that box), ``cls`` (other >= iou_thresh),
   ``loc`` (own >= bkg_thresh), ``both`` (other >= bkg_thresh), ``bkg`` (IoU < bkg_thresh with every box).
5. Non-crowd ground truth left unmatched is missed.
"""
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torchvision.ops import box_iou

__all__ = ["TIDE_CATEGORIES", "ImageMatch", "match_image", "match_coco_results", "confusion_matrix",
           "error_counts"]

TIDE_CATEGORIES = ("cls", "loc", "both", "dupe", "bkg")


@dataclass
class ImageMatch:
    """The matching of one image's predictions (N) and ground-truth boxes (G).

    Attributes:
        status: per prediction, "tp", "fp", "ignored" (in a crowd region) or "below_thresh".
        category: per prediction, its TIDE category if it is a false positive ("cls", "loc",
            "both", "dupe", "bkg"), else "".
        matched_gt: (N,) int64, the ground-truth index it was matched to (tp or cls), else -1.
        overlap_gt: (N,) int64, the box its ``iou`` refers to: the matched one, or for an unmatched
            false positive the box that decided its category (-1 for bkg without any overlap).
        iou: (N,) float32, IoU with ``overlap_gt`` (0 where it is -1).
        gt_missed: (G,) bool, True for a non-crowd box that no prediction took.
        pred_classes: (N,) int64 contiguous classes of the predictions.
        gt_classes: (G,) int64 contiguous classes of the ground truth.
        gt_crowd: (G,) bool.
    """

    status: List[str]
    category: List[str]
    matched_gt: torch.Tensor
    overlap_gt: torch.Tensor
    iou: torch.Tensor
    gt_missed: torch.Tensor
    pred_classes: torch.Tensor
    gt_classes: torch.Tensor
    gt_crowd: torch.Tensor


def _crowd_coverage(pred_boxes: torch.Tensor, crowd_boxes: torch.Tensor) -> torch.Tensor:
    """COCO's IoU against crowd regions (intersection over the prediction's area), via pycocotools. (N, C)."""
    if len(pred_boxes) == 0 or len(crowd_boxes) == 0:
        return torch.zeros(len(pred_boxes), len(crowd_boxes))

    def xywh(b: torch.Tensor) -> np.ndarray:
        b = b.double()
        return torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], dim=1).numpy()

    cover = mask_utils.iou(xywh(pred_boxes), xywh(crowd_boxes), [1] * len(crowd_boxes))
    return torch.as_tensor(np.asarray(cover), dtype=torch.float32).reshape(len(pred_boxes), len(crowd_boxes))


def match_image(pred_boxes: torch.Tensor, pred_scores: torch.Tensor, pred_classes: torch.Tensor,
                gt_boxes: torch.Tensor, gt_classes: torch.Tensor, gt_crowd: torch.Tensor = None,
                score_thresh: float = 0.0, iou_thresh: float = 0.5, bkg_thresh: float = 0.1) -> ImageMatch:
    """Match one image's predictions to its ground truth (see the module docstring for the rules).

    Args:
        pred_boxes: (N, 4) XYXY predictions.
        pred_scores: (N,) their scores.
        pred_classes: (N,) their contiguous classes.
        gt_boxes: (G, 4) XYXY ground truth, same coordinates.
        gt_classes: (G,) contiguous classes.
        gt_crowd: (G,) bool, crowd regions; None means none is.
        score_thresh: predictions scoring less take no part.
        iou_thresh: IoU for a match (and for ``cls`` / ``dupe``).
        bkg_thresh: below this IoU with every box a false positive is ``bkg``.

    Returns:
        An ``ImageMatch``.
    """
    pred_boxes = torch.as_tensor(pred_boxes, dtype=torch.float32).reshape(-1, 4)
    pred_scores = torch.as_tensor(pred_scores, dtype=torch.float32).reshape(-1)
    pred_classes = torch.as_tensor(pred_classes, dtype=torch.int64).reshape(-1)
    gt_boxes = torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
    gt_classes = torch.as_tensor(gt_classes, dtype=torch.int64).reshape(-1)
    num_pred, num_gt = len(pred_boxes), len(gt_boxes)
    if not (len(pred_scores) == len(pred_classes) == num_pred and len(gt_classes) == num_gt):
        raise ValueError(f"match_image: {num_pred} pred_boxes, {len(pred_scores)} scores, {len(pred_classes)} "
                         f"classes; {num_gt} gt_boxes, {len(gt_classes)} gt_classes. Each set must have one per box.")
    crowd = torch.zeros(num_gt, dtype=torch.bool) if gt_crowd is None else torch.as_tensor(gt_crowd).bool()
    crowd = crowd.reshape(-1)

    iou = box_iou(pred_boxes, gt_boxes)  # (N, G)
    iou[:, crowd] = -1.0  # crowd boxes overlap nothing here; they are handled below
    same = pred_classes[:, None] == gt_classes[None, :]  # (N, G)
    kept = pred_scores >= score_thresh
    matched = torch.full((num_pred,), -1, dtype=torch.int64)

    # Greedy one-to-one matching, highest score first: inherently sequential, on small numpy arrays.
    order = torch.argsort(pred_scores, descending=True, stable=True)
    order = order[kept[order]].tolist()
    iou_np, same_np = iou.numpy(), same.numpy()
    free = np.ones(num_gt, dtype=bool)
    matched_np = matched.numpy()
    for i in order:
        candidates = free & (iou_np[i] >= iou_thresh)
        if not candidates.any():
            continue
        own = candidates & same_np[i]
        pool = own if own.any() else candidates
        j = int(np.argmax(np.where(pool, iou_np[i], -2.0)))
        matched_np[i] = j
        free[j] = False

    has_match = matched >= 0
    status = np.where(kept.numpy(), "fp", "below_thresh").astype(object)
    category = np.full(num_pred, "", dtype=object)
    overlap = matched.clone()
    best_iou = torch.zeros(num_pred)
    if num_gt:
        idx = matched.clamp(min=0)
        best_iou = torch.where(has_match, iou[torch.arange(num_pred), idx], best_iou)
        true_pos = has_match & same[torch.arange(num_pred), idx]
        status[true_pos.numpy()] = "tp"
        category[(has_match & ~true_pos).numpy()] = "cls"

        unmatched = kept & ~has_match
        crowd_cover = torch.zeros(num_pred, num_gt)
        crowd_cover[:, crowd] = _crowd_coverage(pred_boxes, gt_boxes[crowd])
        ignored = unmatched & ((crowd_cover >= iou_thresh) & same).any(dim=1)
        status[ignored.numpy()] = "ignored"

        own_iou, own_idx = torch.where(same, iou, -1.0).max(dim=1)  # (N,)
        other_iou, other_idx = torch.where(~same, iou, -1.0).max(dim=1)
        fp = unmatched & ~ignored
        rules = [("dupe", own_iou >= iou_thresh, own_idx, own_iou),
                 ("cls", other_iou >= iou_thresh, other_idx, other_iou),
                 ("loc", own_iou >= bkg_thresh, own_idx, own_iou),
                 ("both", other_iou >= bkg_thresh, other_idx, other_iou)]
        left = fp.clone()
        for name, holds, gt_idx, value in rules:
            hit = left & holds
            category[hit.numpy()] = name
            overlap[hit] = gt_idx[hit]
            best_iou[hit] = value[hit]
            left &= ~hit
        category[left.numpy()] = "bkg"
        any_iou, any_idx = iou.max(dim=1)
        bkg_overlap = left & (any_iou > 0)
        overlap[bkg_overlap] = any_idx[bkg_overlap]
        best_iou[bkg_overlap] = any_iou[bkg_overlap]
    else:
        category[kept.numpy()] = "bkg"
    gt_missed = ~crowd.clone()
    gt_missed[matched[has_match]] = False
    return ImageMatch(status=status.tolist(), category=category.tolist(), matched_gt=matched, overlap_gt=overlap,
                      iou=best_iou, gt_missed=gt_missed, pred_classes=pred_classes, gt_classes=gt_classes,
                      gt_crowd=crowd)


def _xyxy(xywh: Sequence[Sequence[float]]) -> torch.Tensor:
    b = torch.as_tensor(xywh, dtype=torch.float64).reshape(-1, 4)
    return torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], dim=1).float()


def match_coco_results(gt: Dict, coco_results: Iterable[Dict], to_dataset_id: Dict[int, int],
                       score_thresh: float = 0.25, iou_thresh: float = 0.5,
                       bkg_thresh: float = 0.1) -> Iterator[Tuple[int, ImageMatch]]:
    """``match_image`` over every image of a COCO ground-truth dict, with COCO-format results.

    Args:
        gt: COCO ground truth (images, annotations with ``iscrowd``, dataset category ids).
        coco_results: detections (image_id, category_id, XYWH bbox, score) in the same ids.
        to_dataset_id: contiguous class id -> dataset category id; ``ImageMatch`` classes are contiguous.
        score_thresh, iou_thresh, bkg_thresh: as in ``match_image``.

    Yields:
        (COCO image id, ``ImageMatch``) in the order of ``gt["images"]``.
    """
    to_contiguous = {d: c for c, d in to_dataset_id.items()}
    anns_by_image: Dict[int, List[Dict]] = {}
    for ann in gt.get("annotations", []):
        anns_by_image.setdefault(ann["image_id"], []).append(ann)
    dets_by_image: Dict[int, List[Dict]] = {}
    for det in coco_results:
        dets_by_image.setdefault(det["image_id"], []).append(det)
    for image in gt["images"]:
        anns = anns_by_image.get(image["id"], [])
        dets = dets_by_image.get(image["id"], [])
        yield image["id"], match_image(
            _xyxy([d["bbox"] for d in dets]), [d["score"] for d in dets],
            [to_contiguous[d["category_id"]] for d in dets],
            _xyxy([a["bbox"] for a in anns]), [to_contiguous[a["category_id"]] for a in anns],
            [bool(a.get("iscrowd", 0)) for a in anns], score_thresh, iou_thresh, bkg_thresh)


def confusion_matrix(matches: Iterable[ImageMatch], num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class), the last row and column being background.

    A matched pair counts at (gt class, predicted class), an unmatched counted prediction at
    (background, predicted class), a missed box at (gt class, background).

    Returns:
        (K + 1, K + 1) int64 array; rows are true classes, columns predicted ones.
    """
    k = num_classes
    counts = torch.zeros((k + 1) * (k + 1), dtype=torch.int64)
    for m in matches:
        counted = torch.tensor([s in ("tp", "fp") for s in m.status], dtype=torch.bool)
        has_match = m.matched_gt >= 0
        rows = torch.full_like(m.matched_gt, k)  # background unless matched
        rows[has_match] = m.gt_classes[m.matched_gt[has_match]]
        cells = torch.cat([(rows * (k + 1) + m.pred_classes)[counted], m.gt_classes[m.gt_missed] * (k + 1) + k])
        counts += torch.bincount(cells, minlength=(k + 1) * (k + 1))
    return counts.reshape(k + 1, k + 1).numpy()


def error_counts(matches: Iterable[ImageMatch], class_names: Sequence[str]) -> Dict[str, Dict[str, int]]:
    """True positives, false positives per TIDE category (by predicted class) and missed boxes (by true class).

    Returns:
        ``{"total": {"tp", "cls", "loc", "both", "dupe", "bkg", "missed"}, "per_class": {name: {...}}}``.
    """
    keys = ("tp",) + TIDE_CATEGORIES + ("missed",)
    table = np.zeros((len(class_names), len(keys)), dtype=np.int64)
    col = {key: i for i, key in enumerate(keys)}
    for m in matches:
        for cls, status, category in zip(m.pred_classes.tolist(), m.status, m.category):
            if status == "tp":
                table[cls, col["tp"]] += 1
            elif status == "fp":
                table[cls, col[category]] += 1
        np.add.at(table[:, col["missed"]], m.gt_classes[m.gt_missed].numpy(), 1)
    return {"total": {key: int(table[:, i].sum()) for i, key in enumerate(keys)},
            "per_class": {name: {key: int(table[c, i]) for i, key in enumerate(keys)}
                          for c, name in enumerate(class_names)}}
