"""The browser's JSON answers: the dataset summary, one page of images, one image's boxes.

Each is computed from a ``BrowserIndex`` with whole-array numpy operations: counting the boxes of
all images for a query is a handful of masks and ``np.bincount`` calls, whatever the dataset size.
Query parameters arrive as strings (a URL's query); a bad one raises ``QueryError`` naming it.
"""
import os
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from .index import PRED_CATEGORIES, PRED_STATUSES, BrowserIndex

__all__ = ["QueryError", "ImageQuery", "parse_image_query", "parse_classes", "parse_score", "summary", "list_images",
           "image_detail"]

SORTS = ("index", "fp", "missed")
MAX_PER_PAGE = 500
_TP, _FP = PRED_STATUSES.index("tp"), PRED_STATUSES.index("fp")


class QueryError(ValueError):
    """A query parameter that cannot be read; the message names it and says what is accepted."""


@dataclass
class ImageQuery:
    """What ``/api/images`` asks for.

    Attributes:
        classes: contiguous class ids to show, or None for all.
        score: predictions scoring at least this are shown and counted.
        errors_only: keep only images with a false positive or a missed box (of the shown classes).
        sort: "index" (dataset order), "fp" or "missed" (most first; ties by the other count, then index).
        page: 1-based page number.
        per_page: images per page.
    """

    classes: Optional[List[int]] = None
    score: float = 0.0
    errors_only: bool = False
    sort: str = "index"
    page: int = 1
    per_page: int = 48


def _one(params: Mapping[str, Sequence[str]], key: str) -> Optional[str]:
    values = params.get(key)
    return values[-1] if values else None


def parse_classes(text: Optional[str], num_classes: int) -> Optional[List[int]]:
    """``classes=`` as sorted class indices, or None (all) when absent or empty."""
    if text is None or text == "":
        return None
    try:
        classes = sorted({int(c) for c in text.split(",") if c != ""})
    except ValueError:
        raise QueryError(f"classes={text!r}: give comma-separated class indices 0..{num_classes - 1}.") from None
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise QueryError(f"classes={text!r}: {bad} not among the class indices 0..{num_classes - 1}.")
    return classes


def _parse_number(text: Optional[str], key: str, kind, default, low, high):
    if text is None or text == "":
        return default
    try:
        value = kind(text)
    except ValueError:
        raise QueryError(f"{key}={text!r} is not a{'n integer' if kind is int else ' number'}.") from None
    if not low <= value <= high:
        raise QueryError(f"{key}={text!r} is outside [{low}, {high}].")
    return value


def parse_score(params: Mapping[str, Sequence[str]], default: float) -> float:
    """``score=`` in [0, 1] (``default`` when absent)."""
    return _parse_number(_one(params, "score"), "score", float, default, 0.0, 1.0)


def parse_image_query(params: Mapping[str, Sequence[str]], index: BrowserIndex) -> ImageQuery:
    """Read ``page, per_page, classes, score, errors_only, sort`` from a parsed query string.

    Raises:
        QueryError: naming the parameter that is malformed or out of range.
    """
    sort = _one(params, "sort") or "index"
    if sort not in SORTS:
        raise QueryError(f"sort={sort!r}: use one of {', '.join(SORTS)}.")
    errors = _one(params, "errors_only") or "0"
    if errors not in ("0", "1", "true", "false"):
        raise QueryError(f"errors_only={errors!r}: use 1 or 0.")
    return ImageQuery(classes=parse_classes(_one(params, "classes"), len(index.class_names)),
                      score=parse_score(params, index.default_score),
                      errors_only=errors in ("1", "true"), sort=sort,
                      page=_parse_number(_one(params, "page"), "page", int, 1, 1, 10 ** 9),
                      per_page=_parse_number(_one(params, "per_page"), "per_page", int, 48, 1, MAX_PER_PAGE))


def _class_mask(index: BrowserIndex, classes: Optional[List[int]]) -> np.ndarray:
    mask = np.zeros(len(index.class_names), dtype=bool)
    mask[classes if classes is not None else slice(None)] = True
    return mask


def _shown(index: BrowserIndex, score: float, class_mask: np.ndarray):
    """Masks of the ground truth (G,) and predictions (P,) shown, and of the missed boxes (G,)."""
    gt_shown = class_mask[index.gt_classes]
    pred_shown = class_mask[index.pred_classes] & (index.pred_scores >= score)
    missed = gt_shown & (index.gt_match_score < score) if index.has_results else np.zeros_like(gt_shown)
    return gt_shown, pred_shown, missed


def _counts(index: BrowserIndex, score: float, class_mask: np.ndarray) -> Dict[str, np.ndarray]:
    """Per image (N,): shown ground truth and predictions, true / false positives and missed boxes."""
    n = index.num_images
    gt_shown, pred_shown, missed = _shown(index, score, class_mask)

    def per_image(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.bincount(image[mask], minlength=n)

    return {"gt": per_image(index.gt_image, gt_shown & ~index.gt_crowd),
            "pred": per_image(index.pred_image, pred_shown),
            "tp": per_image(index.pred_image, pred_shown & (index.pred_status == _TP)),
            "fp": per_image(index.pred_image, pred_shown & (index.pred_status == _FP)),
            "missed": per_image(index.gt_image, missed)}


def _box(b: np.ndarray) -> List[float]:
    return [round(float(v), 1) for v in b]


def _gt_state(index: BrowserIndex, g: int, score: float) -> str:
    if index.gt_crowd[g]:
        return "crowd"
    if not index.has_results:
        return "gt"
    return "matched" if index.gt_match_score[g] >= score else "missed"


def _boxes(index: BrowserIndex, i: int, score: float, class_mask: np.ndarray, detail: bool) -> Dict[str, List]:
    """The shown boxes of image ``i``; with ``detail`` the table's columns too (IoU, category, partner box)."""
    g0, g1, p0, p1 = index.gt_start[i], index.gt_start[i + 1], index.pred_start[i], index.pred_start[i + 1]
    gts, preds = [], []
    for g in range(g0, g1):
        if not class_mask[index.gt_classes[g]]:
            continue
        row = {"id": int(g - g0), "box": _box(index.gt_boxes[g]), "class": int(index.gt_classes[g]),
               "state": _gt_state(index, g, score)}
        if detail:
            p = index.gt_matched_pred[g]
            taken = row["state"] == "matched"
            row.update(pred=int(p - p0) if taken else None,
                       iou=round(float(index.pred_iou[p]), 3) if taken else None,
                       category="missed" if row["state"] == "missed" else "")
        gts.append(row)
    for p in range(p0, p1):
        if not class_mask[index.pred_classes[p]] or index.pred_scores[p] < score:
            continue
        row = {"id": int(p - p0), "box": _box(index.pred_boxes[p]), "class": int(index.pred_classes[p]),
               "score": round(float(index.pred_scores[p]), 4), "status": PRED_STATUSES[index.pred_status[p]]}
        if detail:
            g = index.pred_overlap_gt[p]
            row.update(category=PRED_CATEGORIES[index.pred_category[p]], gt=int(g - g0) if g >= 0 else None,
                       iou=round(float(index.pred_iou[p]), 3) if g >= 0 else None)
        preds.append(row)
    return {"gt": gts, "pred": preds}


def _image_entry(index: BrowserIndex, i: int, counts: Dict[str, int]) -> Dict:
    return {"index": i, "file": os.path.basename(index.file_names[i]), "image_id": str(index.image_ids[i]),
            "width": int(index.widths[i]), "height": int(index.heights[i]),
            "counts": {k: int(v) for k, v in counts.items()}}


def list_images(index: BrowserIndex, query: ImageQuery) -> Dict:
    """One page of images matching ``query``, each with its box counts and shown boxes.

    With a class filter, an image is listed when it has a ground-truth box or a shown prediction of
    one of those classes; counts and boxes are those classes' only.

    Returns:
        ``{"total", "page", "per_page", "pages", "images": [{"index", "file", "image_id", "width",
        "height", "counts": {"gt", "pred", "tp", "fp", "missed"}, "gt": [...], "pred": [...]}]}``.
    """
    class_mask = _class_mask(index, query.classes)
    counts = _counts(index, query.score, class_mask)
    keep = np.ones(index.num_images, dtype=bool)
    if query.classes is not None:
        keep &= (counts["gt"] + counts["pred"]) > 0
    if query.errors_only:
        keep &= (counts["fp"] + counts["missed"]) > 0
    selected = np.flatnonzero(keep)
    if query.sort != "index":
        first, second = (counts["fp"], counts["missed"]) if query.sort == "fp" else (counts["missed"], counts["fp"])
        selected = selected[np.lexsort((selected, -second[selected], -first[selected]))]
    total = len(selected)
    pages = max(1, -(-total // query.per_page))
    start = (query.page - 1) * query.per_page
    images = []
    for i in selected[start:start + query.per_page].tolist():
        entry = _image_entry(index, i, {k: v[i] for k, v in counts.items()})
        entry.update(_boxes(index, i, query.score, class_mask, detail=False))
        images.append(entry)
    return {"total": total, "page": query.page, "per_page": query.per_page, "pages": pages, "images": images}


def image_detail(index: BrowserIndex, i: int, score: float, classes: Optional[List[int]] = None) -> Dict:
    """Image ``i``'s shown boxes with their matching: for a prediction its status, TIDE category and
    IoU with the box it matched (or that decided its category); for a ground-truth box its state
    ("matched", "missed", "crowd", or "gt" without predictions) and IoU with the prediction that took it."""
    boxes = _boxes(index, i, score, _class_mask(index, classes), detail=True)
    counts = {"gt": sum(b["state"] != "crowd" for b in boxes["gt"]), "pred": len(boxes["pred"]),
              "tp": sum(b["status"] == "tp" for b in boxes["pred"]),
              "fp": sum(b["status"] == "fp" for b in boxes["pred"]),
              "missed": sum(b["state"] == "missed" for b in boxes["gt"])}
    entry = _image_entry(index, i, counts)
    entry.update(score=score, **boxes)
    return entry


def _finite(value) -> Optional[float]:
    """JSON has no NaN: COCOeval's NaN (a class without boxes) becomes null."""
    value = float(value)
    return value if np.isfinite(value) else None


def summary(index: BrowserIndex) -> Dict:
    """The dataset summary: images, ground-truth boxes per class, predictions, and the AP table if scored."""
    real = ~index.gt_crowd
    per_class = np.bincount(index.gt_classes[real], minlength=len(index.class_names))
    ap = None
    if index.scores:
        bbox = {k: _finite(v) for k, v in index.scores.get("bbox", {}).items()}
        ap = {"overall": {k: v for k, v in bbox.items() if not k.startswith("AP-")},
              "per_class": {name: bbox.get(f"AP-{name}") for name in index.class_names}}
    return {"dataset": index.dataset_name, "num_images": index.num_images, "classes": index.class_names,
            "boxes_per_class": {name: int(n) for name, n in zip(index.class_names, per_class.tolist())},
            "num_boxes": int(real.sum()), "num_crowd": int(index.gt_crowd.sum()),
            "has_results": index.has_results, "num_predictions": int(len(index.pred_scores)),
            "results_file": index.results_file, "default_score": index.default_score, "ap": ap,
            "iou_thresh": 0.5}
