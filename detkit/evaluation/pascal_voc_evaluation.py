"""PascalVOCDetectionEvaluator: the VOC devkit's per-class AP (difficult objects ignored), vectorised."""
import itertools
import logging
from collections import OrderedDict
from typing import Any, Dict, List, Sequence

import numpy as np
from tabulate import tabulate

from detkit.data import DatasetCatalog, MetadataCatalog
from detkit.structures import BoxMode
from detkit.utils import comm

from .evaluator import DatasetEvaluator
from .testing import create_small_table

__all__ = ["PascalVOCDetectionEvaluator", "voc_ap", "voc_eval_class"]

logger = logging.getLogger(__name__)

# IoU thresholds 0.50:0.95, built as detectron2 builds them (t / 100).
IOU_THRESHOLDS = [t / 100.0 for t in range(50, 100, 5)]


def voc_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool = False) -> float:
    """Average precision from a recall / precision curve, as the VOC devkit computes it.

    Args:
        rec: (D,) recall after each detection, in score order.
        prec: (D,) precision after each detection.
        use_07_metric: the VOC2007 11-point metric (max precision at recall >= 0, 0.1, ..., 1,
            averaged); otherwise the area under the monotone precision envelope (VOC2010+).
    """
    if use_07_metric:
        points = np.arange(0.0, 1.1, 0.1)  # (11,)
        reached = rec[None, :] >= points[:, None]  # (11, D)
        best = np.where(reached, prec[None, :], -np.inf).max(axis=1, initial=-np.inf)
        return float(np.sum(np.where(np.isfinite(best), best, 0.0) / 11.0))
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _devkit_iou(dets: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU of (D, 4) and (D, M, 4) boxes in devkit pixel coordinates (inclusive, +1 widths) -> (D, M)."""
    ixmin = np.maximum(gts[..., 0], dets[:, None, 0])
    iymin = np.maximum(gts[..., 1], dets[:, None, 1])
    ixmax = np.minimum(gts[..., 2], dets[:, None, 2])
    iymax = np.minimum(gts[..., 3], dets[:, None, 3])
    iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
    ih = np.maximum(iymax - iymin + 1.0, 0.0)
    inters = iw * ih
    uni = ((dets[:, 2] - dets[:, 0] + 1.0) * (dets[:, 3] - dets[:, 1] + 1.0))[:, None] \
        + (gts[..., 2] - gts[..., 0] + 1.0) * (gts[..., 3] - gts[..., 1] + 1.0) - inters
    return inters / uni


def voc_eval_class(det_images: np.ndarray, det_scores: np.ndarray, det_boxes: np.ndarray,
                   gt_images: np.ndarray, gt_boxes: np.ndarray, gt_difficult: np.ndarray,
                   iou_thresholds: Sequence[float] = (0.5,), use_07_metric: bool = False) -> List[float]:
    """The devkit's AP of one class, at each IoU threshold.

    Detections are taken in descending score order; each is matched to the ground-truth box of
    its image with the highest IoU. Above the threshold it is a true positive if that box is not
    difficult and not yet matched, a false positive if already matched, and ignored if difficult;
    at or below the threshold it is a false positive. Boxes are in devkit coordinates (1-based,
    inclusive: widths are x1 - x0 + 1).

    Args:
        det_images: (D,) integer image index of each detection.
        det_scores: (D,) scores.
        det_boxes: (D, 4) boxes.
        gt_images: (G,) integer image index of each ground-truth box.
        gt_boxes: (G, 4) boxes.
        gt_difficult: (G,) bool.
        iou_thresholds: thresholds to evaluate at.
        use_07_metric: see ``voc_ap``.

    Returns:
        AP per threshold (0-1 scale); NaN when the class has no non-difficult ground truth.
    """
    npos = int(np.sum(~gt_difficult))
    if npos == 0:
        return [float("nan")] * len(iou_thresholds)
    order = np.argsort(-det_scores, kind="stable")
    det_images, det_boxes = det_images[order], det_boxes[order].astype(np.float64)

    # Pad each image's ground truth into slots: (num_images_with_gt, M, 4).
    gt_order = np.argsort(gt_images, kind="stable")
    gt_images, gt_difficult = gt_images[gt_order], gt_difficult[gt_order]
    gt_boxes = gt_boxes[gt_order].astype(np.float64)
    images, first, counts = np.unique(gt_images, return_index=True, return_counts=True)
    slot = np.arange(len(gt_images)) - np.repeat(first, counts)
    group = np.searchsorted(images, gt_images)
    padded = np.zeros((len(images), counts.max(), 4))
    padded[group, slot] = gt_boxes
    valid = np.zeros((len(images), counts.max()), dtype=bool)
    valid[group, slot] = True

    # Best ground truth of each detection (D,); -inf when its image has none.
    det_group = np.clip(np.searchsorted(images, det_images), 0, len(images) - 1)
    has_gt = images[det_group] == det_images if len(det_images) else np.zeros(0, dtype=bool)
    ious = np.where(valid[det_group], _devkit_iou(det_boxes, padded[det_group]), -np.inf)  # (D, M)
    ious[~has_gt] = -np.inf
    ovmax = ious.max(axis=1, initial=-np.inf)
    jmax = ious.argmax(axis=1)
    best_gt = first[det_group] + jmax  # index into the sorted ground truth
    best_difficult = gt_difficult[best_gt] & has_gt

    aps = []
    for thresh in iou_thresholds:
        hit = ovmax > thresh
        candidate = hit & ~best_difficult
        # Only the first (highest-scoring) candidate of each ground-truth box is a true positive.
        tp = np.zeros(len(det_images), dtype=bool)
        cand_idx = np.nonzero(candidate)[0]
        _, first_hit = np.unique(best_gt[cand_idx], return_index=True)
        tp[cand_idx[first_hit]] = True
        fp = ~hit | (candidate & ~tp)
        tp_cum, fp_cum = np.cumsum(tp, dtype=np.float64), np.cumsum(fp, dtype=np.float64)
        rec = tp_cum / float(npos)
        prec = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
        aps.append(voc_ap(rec, prec, use_07_metric))
    return aps


class PascalVOCDetectionEvaluator(DatasetEvaluator):
    """Evaluates detections with the Pascal VOC devkit's AP, ground truth from the dataset dicts.

    ``evaluate()`` returns ``{"bbox": {"AP", "AP50", "AP75"}}`` x100, where AP averages the mAP
    over IoU 0.50:0.95 (as detectron2 does), with the 11-point metric for VOC2007 data
    (metadata ``year`` 2007) and the area metric otherwise. AP50 is logged under both metrics,
    with a per-class table. Ground-truth boxes come from ``DatasetCatalog.get(name)``
    (XYXY_ABS, 0-based pixels as detectron2's VOC loader makes them: xmin/ymin minus 1), so
    they are shifted back (+1) to the devkit's 1-based inclusive coordinates, and so are the
    predictions; annotations with ``"difficult": 1`` are ignored.
    """

    def __init__(self, dataset_name: str, distributed: bool = True):
        """
        Args:
            dataset_name: a registered dataset with ``thing_classes`` (and ``year``) in its metadata.
            distributed: gather predictions from every process and score on the main one.
        """
        self._dataset_name = dataset_name
        meta = MetadataCatalog.get(dataset_name)
        self._class_names = list(meta.get("thing_classes", []) or [])
        if not self._class_names:
            raise ValueError(f"PascalVOCDetectionEvaluator('{dataset_name}'): the metadata has no thing_classes.")
        year = meta.get("year")
        self._is_2007 = year is not None and int(year) == 2007
        self._distributed = distributed
        self.reset()

    def reset(self) -> None:
        self._predictions: List[Dict[str, Any]] = []

    def process(self, inputs: List[Dict], outputs: List[Dict]) -> None:
        """Store each image's boxes (XYXY), scores and contiguous classes."""
        for inp, out in zip(inputs, outputs):
            if "instances" not in out:
                continue
            inst = out["instances"].to("cpu")
            self._predictions.append({"image_id": inp["image_id"],
                                      "boxes": inst.pred_boxes.tensor.double().numpy(),  # (N, 4)
                                      "scores": inst.scores.double().numpy(),
                                      "classes": inst.pred_classes.long().numpy()})

    def _ground_truth(self):
        """(image_id -> index, class (G,), image index (G,), devkit boxes (G, 4), difficult (G,))."""
        dicts = DatasetCatalog.get(self._dataset_name)
        index = {d["image_id"]: i for i, d in enumerate(dicts)}
        anns = [(i, a) for i, d in enumerate(dicts) for a in d.get("annotations", [])]
        boxes = np.array([BoxMode.convert(a["bbox"], a.get("bbox_mode", BoxMode.XYXY_ABS), BoxMode.XYXY_ABS)
                          for _, a in anns], dtype=np.float64).reshape(-1, 4)
        boxes[:, :2] += 1.0  # to devkit coordinates
        classes = np.array([int(a["category_id"]) for _, a in anns], dtype=np.int64)
        images = np.array([i for i, _ in anns], dtype=np.int64)
        difficult = np.array([bool(a.get("difficult", 0)) for _, a in anns], dtype=bool)
        return index, classes, images, boxes, difficult

    def evaluate(self) -> Dict[str, Any]:
        """Score everything processed (on the main process); other processes return ``{}``."""
        predictions = self._predictions
        if self._distributed:
            comm.synchronize()
            parts = comm.gather(predictions, dst=0)
            if not comm.is_main_process():
                return {}
            seen, predictions = set(), []
            for p in itertools.chain(*parts):
                if p["image_id"] not in seen:
                    seen.add(p["image_id"])
                    predictions.append(p)
        if not predictions:
            logger.warning("PascalVOCDetectionEvaluator('%s') received no predictions.", self._dataset_name)
            return {}
        index, gt_classes, gt_images, gt_boxes, gt_difficult = self._ground_truth()
        missing = [p["image_id"] for p in predictions if p["image_id"] not in index]
        if missing:
            raise KeyError(f"PascalVOCDetectionEvaluator('{self._dataset_name}'): predictions for image ids "
                           f"{missing[:5]} that are not in the dataset. Was the model run on another dataset?")
        det_images = np.concatenate([np.full(len(p["scores"]), index[p["image_id"]]) for p in predictions])
        det_boxes = np.concatenate([p["boxes"] for p in predictions]).reshape(-1, 4).copy()
        det_boxes[:, :2] += 1.0  # to devkit coordinates
        det_scores = np.concatenate([p["scores"] for p in predictions])
        det_classes = np.concatenate([p["classes"] for p in predictions])
        if not len(det_scores):
            logger.warning("PascalVOCDetectionEvaluator('%s'): the model made no detections; every AP is 0.",
                           self._dataset_name)

        aps = np.zeros((len(self._class_names), len(IOU_THRESHOLDS)))  # (K, T), the year's metric
        ap50_other = np.zeros(len(self._class_names))  # AP50 under the other metric
        for k in range(len(self._class_names)):
            d, g = det_classes == k, gt_classes == k
            args = (det_images[d], det_scores[d], det_boxes[d], gt_images[g], gt_boxes[g], gt_difficult[g])
            aps[k] = voc_eval_class(*args, iou_thresholds=IOU_THRESHOLDS, use_07_metric=self._is_2007)
            ap50_other[k] = voc_eval_class(*args, iou_thresholds=[0.5], use_07_metric=not self._is_2007)[0]
        no_gt = np.isnan(aps[:, 0])
        if no_gt.any():
            logger.warning("PascalVOCDetectionEvaluator('%s'): classes %s have no non-difficult ground truth; "
                           "they are left out of the mean.", self._dataset_name,
                           [self._class_names[k] for k in np.nonzero(no_gt)[0]])
        mean = np.nanmean(aps, axis=0) * 100 if not no_gt.all() else np.full(len(IOU_THRESHOLDS), np.nan)
        ap50_07, ap50_area = (mean[0], np.nanmean(ap50_other) * 100) if self._is_2007 \
            else (np.nanmean(ap50_other) * 100, mean[0])
        logger.info("Pascal VOC AP50 on '%s': %.4f (VOC2007 11-point metric), %.4f (area metric); reporting the %s.",
                    self._dataset_name, ap50_07, ap50_area, "11-point" if self._is_2007 else "area")
        rows = [[name, aps[k].mean() * 100, aps[k, 0] * 100, aps[k, 5] * 100]
                for k, name in enumerate(self._class_names)]
        logger.info("Per-class AP (%s metric):\n%s", "11-point" if self._is_2007 else "area",
                    tabulate(rows, headers=["category", "AP", "AP50", "AP75"], tablefmt="pipe", floatfmt=".3f"))
        results = OrderedDict(bbox={"AP": float(np.mean(mean)), "AP50": float(mean[0]), "AP75": float(mean[5])})
        logger.info("Evaluation results for bbox:\n%s", create_small_table(results["bbox"]))
        return results  # Trainer.test prints the copypaste lines, once per dataset
