"""Per-class precision-recall curves and AP / AP50, read from pycocotools' precision array."""
from typing import Dict, List, Mapping, Tuple

import numpy as np

from ..coco_eval_backend import CocoEvalRun

__all__ = ["pr_curves", "per_class_ap"]


def _class_columns(run: CocoEvalRun, names_by_cat_id: Mapping[int, str]) -> List[Tuple[str, int]]:
    """(class name, column k of the precision array) in the run's category order."""
    return [(names_by_cat_id.get(cat_id, str(cat_id)), k) for k, cat_id in enumerate(run.cat_ids)]


def _iou50_index(run: CocoEvalRun) -> int:
    hits = np.where(np.isclose(run.iou_thresholds, 0.5))[0]
    if len(hits) == 0:
        raise ValueError(f"The COCOeval run has no IoU threshold 0.5 (it has {run.iou_thresholds.tolist()}); "
                         "PR curves at IoU 0.50 need it.")
    return int(hits[0])


def pr_curves(run: CocoEvalRun, names_by_cat_id: Mapping[int, str]) -> Dict[str, object]:
    """Precision at each recall point per class, area "all", the largest detection limit.

    ``"0.50"`` is COCOeval's ``eval["precision"][t50, :, k, 0, -1]`` as it is; ``"0.50:0.95"`` its mean
    over the IoU thresholds. -1 (no ground truth for the class) stays -1.

    Args:
        run: a ``CocoEvalRun``.
        names_by_cat_id: category id -> class name.

    Returns:
        ``{"recall": [R floats], "<class>": {"0.50": [R floats], "0.50:0.95": [R floats]}, ...}``.
    """
    precision = run.precision[:, :, :, 0, -1]  # (T, R, K)
    num_points = precision.shape[1]
    recall = run.recall_thresholds if run.recall_thresholds is not None else np.linspace(0.0, 1.0, num_points)
    t50 = _iou50_index(run)
    out: Dict[str, object] = {"recall": [float(r) for r in recall]}
    for name, k in _class_columns(run, names_by_cat_id):
        curves = precision[:, :, k]  # (T, R)
        mean = np.where((curves > -1).all(axis=0), curves.mean(axis=0), -1.0)
        out[name] = {"0.50": [float(v) for v in curves[t50]], "0.50:0.95": [float(v) for v in mean]}
    return out


def per_class_ap(run: CocoEvalRun, names_by_cat_id: Mapping[int, str]) -> Dict[str, Dict[str, float]]:
    """AP (IoU 0.50:0.95) and AP50 per class, x100, as COCOeval.summarize averages them (NaN without ground truth).

    Returns:
        ``{class name: {"AP": float, "AP50": float}}``.
    """
    precision = run.precision[:, :, :, 0, -1]  # (T, R, K)
    t50 = _iou50_index(run)

    def mean_valid(values: np.ndarray) -> float:
        valid = values[values > -1]
        return float(valid.mean()) * 100 if valid.size else float("nan")

    return {name: {"AP": mean_valid(precision[:, :, k]), "AP50": mean_valid(precision[t50, :, k])}
            for name, k in _class_columns(run, names_by_cat_id)}
