"""Run COCO's AP evaluation with pycocotools or faster-coco-eval, quietly, and summarise it."""
import contextlib
import copy
import io
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["COCO_EVAL_BACKENDS", "CocoEvalRun", "backend_classes", "run_coco_eval", "summarize_precision",
           "per_category_ap"]

logger = logging.getLogger(__name__)

COCO_EVAL_BACKENDS = ("pycocotools", "faster")
# Area ranges in COCOeval's params order: all, small, medium, large.
_AREA_NAMES = ("all", "small", "medium", "large")


@dataclass
class CocoEvalRun:
    """What one COCOeval run leaves behind.

    Attributes:
        precision: (T, R, K, A, M) interpolated precision; -1 where there is no ground truth.
        iou_thresholds: (T,) IoU thresholds.
        cat_ids: the K category ids, in the precision array's order.
        max_dets: the M detection limits.
        summary: COCOeval's own 12-line summary text ("" when not produced).
        recall_thresholds: (R,) the recall points of the precision array (COCO's 101).
    """

    precision: np.ndarray
    iou_thresholds: np.ndarray
    cat_ids: List[int]
    max_dets: List[int]
    summary: str
    recall_thresholds: Optional[np.ndarray] = None


def backend_classes(backend: str):
    """The (COCO, COCOeval) classes of a backend; raises ValueError / ImportError naming what to do."""
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    if backend == "faster":
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError as e:
            raise ImportError(
                "COCO eval backend 'faster' needs the faster-coco-eval package: "
                "`pip install faster-coco-eval` (or detkit[faster]), or set TEST.COCO_EVAL_BACKEND pycocotools."
            ) from e
        return COCO, COCOeval_faster
    raise ValueError(f"Unknown COCO eval backend '{backend}'; choose one of {', '.join(COCO_EVAL_BACKENDS)} "
                     "(config key TEST.COCO_EVAL_BACKEND).")


def _coco_api(coco_cls, dataset: Dict[str, Any], log_lines: List[str]):
    api = coco_cls() if coco_cls.__module__.startswith("pycocotools") else coco_cls(print_function=log_lines.append)
    # COCOeval writes flags ("ignore") into the ground-truth annotations: give it copies.
    api.dataset = {**dataset, "annotations": [dict(a) for a in dataset.get("annotations", [])]}
    api.createIndex()
    return api


def run_coco_eval(gt_dataset: Dict[str, Any], detections: List[Dict[str, Any]], iou_type: str = "bbox",
                  max_dets: Sequence[int] = (1, 10, 100), backend: str = "pycocotools") -> CocoEvalRun:
    """Evaluate COCO-format detections against a COCO-format ground-truth dict.

    Both libraries' console output is captured and sent to this module's logger (DEBUG, except
    the final summary, which the caller logs). An empty ``detections`` list is evaluated as such
    (every AP 0 where there is ground truth), where ``loadRes([])`` would crash.

    Args:
        gt_dataset: a COCO ground-truth dict (images, annotations, categories); not modified.
        detections: COCO results (image_id, category_id, bbox XYWH, score); not modified.
        iou_type: "bbox".
        max_dets: the detection limits per image, ascending; the last one is used for AP.
        backend: "pycocotools" or "faster" (faster-coco-eval, same numbers).

    Returns:
        A ``CocoEvalRun``.
    """
    coco_cls, eval_cls = backend_classes(backend)
    lines: List[str] = []
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        gt = _coco_api(coco_cls, gt_dataset, lines)
        if detections:
            dt = gt.loadRes([dict(d) for d in detections])  # loadRes adds keys to the dicts it gets
        else:
            empty = {"images": gt_dataset["images"], "categories": copy.deepcopy(gt_dataset["categories"]),
                     "annotations": []}
            dt = _coco_api(coco_cls, empty, lines)
        if backend == "faster":
            coco_eval = eval_cls(gt, dt, iou_type, print_function=lines.append)
        else:
            coco_eval = eval_cls(gt, dt, iou_type)
        coco_eval.params.maxDets = list(max_dets)
        coco_eval.evaluate()
        coco_eval.accumulate()
        noise = stdout.getvalue() + "\n".join(lines)
        stdout.seek(0)
        stdout.truncate()
        lines.clear()
        summary = ""
        if int(max_dets[-1]) == 100:  # COCOeval.summarize hard-codes 100 detections for AP
            coco_eval.summarize()
            summary = (stdout.getvalue() + "\n".join(ln for ln in lines if "Average" in ln)).strip("\n")
    if noise.strip():
        logger.debug("%s output:\n%s", backend, noise.strip("\n"))
    params = coco_eval.params
    return CocoEvalRun(precision=np.asarray(coco_eval.eval["precision"]), iou_thresholds=np.asarray(params.iouThrs),
                       cat_ids=list(params.catIds), max_dets=list(params.maxDets), summary=summary,
                       recall_thresholds=np.asarray(params.recThrs))


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else float("nan")


def summarize_precision(run: CocoEvalRun) -> Dict[str, float]:
    """The six AP numbers, x100, from a run's precision array, exactly as COCOeval.summarize averages them.

    A size range without ground truth gives NaN (COCOeval's -1).

    Returns:
        {"AP", "AP50", "AP75", "APs", "APm", "APl"}.
    """
    p = run.precision  # (T, R, K, A, M)
    t50 = np.where(np.isclose(run.iou_thresholds, 0.5))[0]
    t75 = np.where(np.isclose(run.iou_thresholds, 0.75))[0]
    results = {
        "AP": _mean_valid(p[:, :, :, 0, -1]),
        "AP50": _mean_valid(p[t50, :, :, 0, -1]),
        "AP75": _mean_valid(p[t75, :, :, 0, -1]),
        "APs": _mean_valid(p[:, :, :, 1, -1]),
        "APm": _mean_valid(p[:, :, :, 2, -1]),
        "APl": _mean_valid(p[:, :, :, 3, -1]),
    }
    return {k: v * 100 for k, v in results.items()}


def per_category_ap(run: CocoEvalRun) -> Dict[int, float]:
    """AP x100 over IoU 0.5:0.95, all areas, the last detection limit, per category id (NaN without ground truth)."""
    p = run.precision
    return {cat_id: _mean_valid(p[:, :, k, 0, -1]) * 100 for k, cat_id in enumerate(run.cat_ids)}
