"""The results browser's in-memory index: a dataset's boxes and a results file's predictions in flat
arrays, matched once at startup so that every query afterwards is a few vectorised numpy operations.

The matching is the reports' (``detkit.evaluation.reports.match_coco_results``: one to one across
classes at IoU 0.5, TIDE categories for false positives). It runs once with no score threshold;
the browser's threshold ``t`` is applied afterwards, which gives exactly the matching at ``t``:
predictions are matched greedily, highest score first, so those scoring ``>= t`` take the same
boxes whether or not the lower ones take part. At ``t`` a prediction counts if its score is
``>= t`` (keeping its status and category), and a ground-truth box is missed unless the score of
the prediction that took it is ``>= t`` (``gt_match_score``).
"""
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from detkit.data import DatasetCatalog, MetadataCatalog
from detkit.evaluation import score_coco_results
from detkit.evaluation.coco_conversion import load_coco_ground_truth
from detkit.evaluation.reports import TIDE_CATEGORIES, match_coco_results

__all__ = ["BrowserIndex", "build_index", "PRED_STATUSES", "PRED_CATEGORIES"]

logger = logging.getLogger(__name__)

# Codes of ``BrowserIndex.pred_status`` and ``pred_category``.
PRED_STATUSES = ("tp", "fp", "ignored")
PRED_CATEGORIES = ("",) + tuple(TIDE_CATEGORIES)


@dataclass
class BrowserIndex:
    """A dataset (N images, G ground-truth boxes) and its predictions (P), grouped by image.

    Boxes of image ``i`` are ``gt_*[gt_start[i]:gt_start[i + 1]]`` and
    ``pred_*[pred_start[i]:pred_start[i + 1]]``; boxes are XYXY in the image's pixels.

    Attributes:
        dataset_name: the registered dataset.
        class_names: contiguous class id -> name.
        file_names: (N,) image paths (served by index, never named by a request).
        image_ids: (N,) the dataset dicts' ``image_id``.
        widths, heights: (N,) int64 sizes from the dataset dicts.
        gt_start: (N + 1,) int64 offsets into the ground-truth arrays.
        gt_boxes: (G, 4) float32.
        gt_classes: (G,) int64 contiguous classes.
        gt_crowd: (G,) bool; crowd regions are never matched nor missed.
        gt_match_score: (G,) float32, the score of the prediction that took the box (+inf for
            crowd, -inf when none did): at threshold ``t`` the box is missed iff this is ``< t``.
        gt_matched_pred: (G,) int64, that prediction's index in the pred arrays, or -1.
        pred_start: (N + 1,) int64 offsets into the prediction arrays.
        pred_boxes: (P, 4) float32; pred_scores: (P,) float32; pred_classes: (P,) int64.
        pred_status: (P,) int8 index into ``PRED_STATUSES``.
        pred_category: (P,) int8 index into ``PRED_CATEGORIES`` (the TIDE category of a false positive).
        pred_iou: (P,) float32 IoU with ``pred_overlap_gt``; pred_overlap_gt: (P,) int64 ground-truth
            index (in the gt arrays) of the matched box, or of the one that decided the category, or -1.
        has_results: whether predictions were given.
        results_file: their file as given, if any.
        scores: COCOeval's ``{"bbox": {"AP": ...}}`` of the predictions, or None.
        default_score: the threshold the page starts with.
        build_seconds: how long building took (matching and COCOeval included).
    """

    dataset_name: str
    class_names: List[str]
    file_names: List[str]
    image_ids: List[Any]
    widths: np.ndarray
    heights: np.ndarray
    gt_start: np.ndarray
    gt_boxes: np.ndarray
    gt_classes: np.ndarray
    gt_crowd: np.ndarray
    gt_match_score: np.ndarray
    gt_matched_pred: np.ndarray
    pred_start: np.ndarray
    pred_boxes: np.ndarray
    pred_scores: np.ndarray
    pred_classes: np.ndarray
    pred_status: np.ndarray
    pred_category: np.ndarray
    pred_iou: np.ndarray
    pred_overlap_gt: np.ndarray
    has_results: bool = False
    results_file: Optional[str] = None
    scores: Optional[Dict[str, Dict[str, float]]] = None
    default_score: float = 0.25
    build_seconds: float = 0.0
    gt_image: np.ndarray = field(init=False)
    pred_image: np.ndarray = field(init=False)

    def __post_init__(self):
        # (G,) / (P,) image index of each box, for per-image counts with np.bincount.
        self.gt_image = np.repeat(np.arange(self.num_images), np.diff(self.gt_start))
        self.pred_image = np.repeat(np.arange(self.num_images), np.diff(self.pred_start))

    @property
    def num_images(self) -> int:
        return len(self.file_names)


def _xyxy(xywh: List[Sequence[float]]) -> np.ndarray:
    b = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1).astype(np.float32)


def _group(items: List[Dict], image_index: Dict[int, int], num_images: int):
    """Keep the items of known images, grouped by image in a stable order (as ``match_coco_results`` groups
    them). Returns (the items in that order, (N + 1,) offsets)."""
    idx = np.asarray([image_index.get(it["image_id"], -1) for it in items], dtype=np.int64)
    keep = np.flatnonzero(idx >= 0)
    order = keep[np.argsort(idx[keep], kind="stable")]
    start = np.zeros(num_images + 1, dtype=np.int64)
    start[1:] = np.cumsum(np.bincount(idx[keep], minlength=num_images))
    return [items[i] for i in order], start


def build_index(dataset_name: str, coco_results: Optional[List[Dict]] = None, results_file: Optional[str] = None,
                default_score: float = 0.25, max_dets_per_image: int = 100,
                backend: str = "pycocotools") -> BrowserIndex:
    """Index ``dataset_name`` and, if given, its predictions: scored with COCOeval and matched once.

    Args:
        dataset_name: a registered dataset.
        coco_results: detections in COCO results format (the dataset's category ids, XYWH boxes), or None.
        results_file: where they came from (shown on the page).
        default_score: the score threshold the page starts with.
        max_dets_per_image: ``TEST.DETECTIONS_PER_IMAGE`` for COCOeval.
        backend: ``TEST.COCO_EVAL_BACKEND``.

    Raises:
        KeyError / ValueError: results naming image ids or categories the dataset does not have.
    """
    tic = time.perf_counter()
    dicts = DatasetCatalog.get(dataset_name)
    gt, image_id_map, to_dataset_id = load_coco_ground_truth(dataset_name)
    thing_classes = list(MetadataCatalog.get(dataset_name).get("thing_classes") or [])
    class_names = [thing_classes[c] if c < len(thing_classes) else str(to_dataset_id[c])
                   for c in range(len(to_dataset_id))]
    coco_ids = []
    for i, record in enumerate(dicts):
        original = record.get("image_id", i)
        if original not in image_id_map:
            raise KeyError(f"Dataset '{dataset_name}': image {original!r} ({record.get('file_name')}) is not in its "
                           "COCO ground truth; is the dataset's json_file out of date?")
        coco_ids.append(image_id_map[original])
    num_images = len(dicts)
    image_index = {coco_id: i for i, coco_id in enumerate(coco_ids)}
    to_contiguous = {d: c for c, d in to_dataset_id.items()}

    anns, gt_start = _group(gt.get("annotations", []), image_index, num_images)
    num_gt = len(anns)
    gt_classes = np.asarray([to_contiguous[a["category_id"]] for a in anns], dtype=np.int64)
    gt_crowd = np.asarray([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    gt_match_score = np.where(gt_crowd, np.inf, -np.inf).astype(np.float32)
    gt_matched_pred = np.full(num_gt, -1, dtype=np.int64)

    scores = None
    dets: List[Dict] = []
    pred_start = np.zeros(num_images + 1, dtype=np.int64)
    if coco_results is not None:
        max_dets = [1, min(10, max_dets_per_image), max_dets_per_image]
        scores = score_coco_results(dataset_name, gt, coco_results, to_dataset_id, ("bbox",), max_dets, backend)
        dets, pred_start = _group(coco_results, image_index, num_images)
    num_pred = len(dets)
    pred_scores = np.asarray([d["score"] for d in dets], dtype=np.float32)
    pred_status = np.zeros(num_pred, dtype=np.int8)
    pred_category = np.zeros(num_pred, dtype=np.int8)
    pred_iou = np.zeros(num_pred, dtype=np.float32)
    pred_overlap_gt = np.full(num_pred, -1, dtype=np.int64)
    status_code = {s: k for k, s in enumerate(PRED_STATUSES)}
    category_code = {c: k for k, c in enumerate(PRED_CATEGORIES)}
    if coco_results is not None:
        for coco_id, match in match_coco_results(gt, coco_results, to_dataset_id, score_thresh=float("-inf")):
            i = image_index.get(coco_id)
            if i is None:
                continue
            p0, p1, g0 = pred_start[i], pred_start[i + 1], gt_start[i]
            pred_status[p0:p1] = [status_code[s] for s in match.status]
            pred_category[p0:p1] = [category_code[c] for c in match.category]
            pred_iou[p0:p1] = match.iou.numpy()
            overlap = match.overlap_gt.numpy()
            pred_overlap_gt[p0:p1] = np.where(overlap >= 0, overlap + g0, -1)
            matched = match.matched_gt.numpy()
            took = np.flatnonzero(matched >= 0)
            gt_matched_pred[g0 + matched[took]] = p0 + took
            gt_match_score[g0 + matched[took]] = pred_scores[p0 + took]
    index = BrowserIndex(
        dataset_name=dataset_name, class_names=class_names,
        file_names=[r["file_name"] for r in dicts], image_ids=[r.get("image_id", i) for i, r in enumerate(dicts)],
        widths=np.asarray([r["width"] for r in dicts], dtype=np.int64),
        heights=np.asarray([r["height"] for r in dicts], dtype=np.int64),
        gt_start=gt_start, gt_boxes=_xyxy([a["bbox"] for a in anns]), gt_classes=gt_classes, gt_crowd=gt_crowd,
        gt_match_score=gt_match_score, gt_matched_pred=gt_matched_pred,
        pred_start=pred_start, pred_boxes=_xyxy([d["bbox"] for d in dets]), pred_scores=pred_scores,
        pred_classes=np.asarray([to_contiguous[d["category_id"]] for d in dets], dtype=np.int64),
        pred_status=pred_status, pred_category=pred_category, pred_iou=pred_iou, pred_overlap_gt=pred_overlap_gt,
        has_results=coco_results is not None,
        results_file=results_file, scores=scores,
        default_score=float(default_score))
    index.build_seconds = time.perf_counter() - tic
    logger.info("Indexed '%s': %d images, %d boxes, %d predictions in %.2f s.", dataset_name, num_images, num_gt,
                num_pred, index.build_seconds)
    return index
