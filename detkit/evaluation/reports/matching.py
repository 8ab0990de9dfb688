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
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

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


def _crowd_coverage(pred_boxes: np.ndarray, crowd_boxes: np.ndarray) -> np.ndarray:
    """COCO's IoU against crowd regions (intersection over the prediction's area), via pycocotools. (N, C)."""
    if len(pred_boxes) == 0 or len(crowd_boxes) == 0:
        return np.zeros((len(pred_boxes), len(crowd_boxes)))

    def xywh(b: np.ndarray) -> np.ndarray:
        b = b.astype(np.float64)
        return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)

    cover = mask_utils.iou(xywh(pred_boxes), xywh(crowd_boxes), [1] * len(crowd_boxes))
    return np.asarray(cover, dtype=np.float64).reshape(len(pred_boxes), len(crowd_boxes))


def _array(values, dtype, shape) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype).reshape(shape)


def match_image(pred_boxes: torch.Tensor, pred_scores: torch.Tensor, pred_classes: torch.Tensor,
                gt_boxes: torch.Tensor, gt_classes: torch.Tensor, gt_crowd: Optional[torch.Tensor] = None,
                score_thresh: float = 0.0, iou_thresh: float = 0.5, bkg_thresh: float = 0.1) -> ImageMatch:
    """Match one image's predictions to its ground truth (see the module docstring for the rules).

    Args:
        pred_boxes: (N, 4) XYXY predictions (tensors, arrays or lists).
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
    pred_boxes = _array(pred_boxes, np.float32, (-1, 4))
    scores = _array(pred_scores, np.float32, (-1,))
    classes = _array(pred_classes, np.int64, (-1,))
    gt_boxes = _array(gt_boxes, np.float32, (-1, 4))
    gt_cls = _array(gt_classes, np.int64, (-1,))
    num_pred, num_gt = len(pred_boxes), len(gt_boxes)
    if not (len(scores) == len(classes) == num_pred and len(gt_cls) == num_gt):
        raise ValueError(f"match_image: {num_pred} pred_boxes, {len(scores)} scores, {len(classes)} "
                         f"classes; {num_gt} gt_boxes, {len(gt_cls)} gt_classes. Each set must have one per box.")
    crowd = np.zeros(num_gt, dtype=bool) if gt_crowd is None else _array(gt_crowd, bool, (-1,))

    iou = box_iou(torch.from_numpy(pred_boxes), torch.from_numpy(gt_boxes)).numpy()  # (N, G)
    iou[:, crowd] = -1.0  # crowd boxes overlap nothing here; they are handled below
    same = classes[:, None] == gt_cls[None, :]  # (N, G)
    kept = scores >= score_thresh
    matched = np.full(num_pred, -1, dtype=np.int64)

    # Greedy one-to-one matching, highest score first: inherently sequential (as in COCOeval).
    order = np.argsort(-scores, kind="stable")
    contenders = kept & (iou >= iou_thresh).any(axis=1)  # the others can match nothing
    free = np.ones(num_gt, dtype=bool)
    for i in order[contenders[order]]:
        candidates = free & (iou[i] >= iou_thresh)
        if not candidates.any():
            continue
        own = candidates & same[i]
        j = int(np.argmax(np.where(own if own.any() else candidates, iou[i], -2.0)))
        matched[i] = j
        free[j] = False

    rows = np.arange(num_pred)
    has_match = matched >= 0
    status = np.where(kept, "fp", "below_thresh").astype(object)
    category = np.full(num_pred, "", dtype=object)
    overlap = matched.copy()
    best_iou = np.zeros(num_pred, dtype=np.float32)
    if num_gt:
        idx = np.maximum(matched, 0)
        best_iou[has_match] = iou[rows, idx][has_match]
        true_pos = has_match & same[rows, idx]
        status[true_pos] = "tp"
        category[has_match & ~true_pos] = "cls"

        unmatched = kept & ~has_match
        crowd_cover = np.zeros((num_pred, num_gt))
        crowd_cover[:, crowd] = _crowd_coverage(pred_boxes, gt_boxes[crowd])
        ignored = unmatched & ((crowd_cover >= iou_thresh) & same).any(axis=1)
        status[ignored] = "ignored"

        own_iou = np.where(same, iou, -1.0)
        other_iou = np.where(~same, iou, -1.0)
        own_idx, other_idx = own_iou.argmax(axis=1), other_iou.argmax(axis=1)
        own_iou, other_iou = own_iou[rows, own_idx], other_iou[rows, other_idx]
        left = unmatched & ~ignored
        for name, value, gt_idx, thresh in (("dupe", own_iou, own_idx, iou_thresh),
                                            ("cls", other_iou, other_idx, iou_thresh),
                                            ("loc", own_iou, own_idx, bkg_thresh),
                                            ("both", other_iou, other_idx, bkg_thresh)):
            hit = left & (value >= thresh)
            category[hit] = name
            overlap[hit] = gt_idx[hit]
            best_iou[hit] = value[hit]
            left &= ~hit
        category[left] = "bkg"
        any_idx = iou.argmax(axis=1)
        any_iou = iou[rows, any_idx]
        bkg_overlap = left & (any_iou > 0)
        overlap[bkg_overlap] = any_idx[bkg_overlap]
        best_iou[bkg_overlap] = any_iou[bkg_overlap]
    else:
        category[kept] = "bkg"
    gt_missed = ~crowd
    gt_missed[matched[has_match]] = False
    return ImageMatch(status=status.tolist(), category=category.tolist(), matched_gt=torch.from_numpy(matched),
                      overlap_gt=torch.from_numpy(overlap), iou=torch.from_numpy(best_iou),
                      gt_missed=torch.from_numpy(gt_missed), pred_classes=torch.from_numpy(classes),
                      gt_classes=torch.from_numpy(gt_cls), gt_crowd=torch.from_numpy(crowd))


def _xyxy(xywh: Sequence[Sequence[float]]) -> np.ndarray:
    b = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


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

    def contiguous(items: List[Dict], image_id: int) -> List[int]:
        unknown = sorted({i["category_id"] for i in items} - set(to_contiguous))
        if unknown:
            raise ValueError(f"Image {image_id} has category ids {unknown}, which are not among the dataset's "
                             f"{sorted(to_contiguous)}. Are the results or annotations from another dataset?")
        return [to_contiguous[i["category_id"]] for i in items]

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
            _xyxy([d["bbox"] for d in dets]), [d["score"] for d in dets], contiguous(dets, image["id"]),
            _xyxy([a["bbox"] for a in anns]), contiguous(anns, image["id"]),
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
