"""Write a run's plots and the numbers behind them into OUTPUT_DIR/plots; a failing plot is only a warning."""
import csv
import io
import json
import logging
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
from iopath.common.file_io import g_pathmgr

from detkit.data import MetadataCatalog, read_image

from ..coco_conversion import load_coco_ground_truth
from ..coco_eval_backend import run_coco_eval
from ..coco_evaluation import CocoEvalResults, _category_names
from ..evaluator import DatasetEvaluators
from .curves import per_class_ap, pr_curves
from .dataset_plots import (PredictionSample, plot_confusion_matrix, plot_errors, plot_per_class_ap,
                            plot_pr_curves, plot_predictions)
from .matching import confusion_matrix, error_counts, match_coco_results
from .training_plots import load_metrics, plot_losses

__all__ = ["write_dataset_report", "write_evaluation_report", "write_loss_plot", "replot_run",
           "confusion_matrix_csv"]

logger = logging.getLogger(__name__)


def _guarded(name: str, func: Callable[[], Any]) -> bool:
    """Run ``func``; on any error log a warning naming the plot and go on. Returns whether it succeeded."""
    try:
        func()
        return True
    except Exception as e:  # a picture must never end a training run
        logger.warning("Could not write the plot '%s' (%s: %s); the run goes on without it.", name,
                       type(e).__name__, e)
        logger.debug("Traceback of the failed plot '%s':", name, exc_info=True)
        return False


def _write_text(path: str, text: str) -> None:
    g_pathmgr.mkdirs(os.path.dirname(path))
    with g_pathmgr.open(path, "w") as f:
        f.write(text)


def confusion_matrix_csv(matrix: np.ndarray, class_names: Sequence[str]) -> str:
    """The CSV text: header ``true\\pred,<classes>,background``, one row per true class, then ``background``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    labels = list(class_names) + ["background"]
    writer.writerow(["true\\pred"] + labels)
    for label, row in zip(labels, matrix.tolist()):
        writer.writerow([label] + [int(v) for v in row])
    return buf.getvalue()


def _image_path(file_name: str, image_root: Optional[str]) -> str:
    if image_root and not os.path.isabs(file_name):
        return os.path.join(image_root, file_name)
    return file_name


def _prediction_samples(coco_eval: CocoEvalResults, matches: Dict[int, Any], num_images: int
                        ) -> List[PredictionSample]:
    """The first ``num_images`` images of the dataset, read from disk, with their boxes and matching."""
    meta = MetadataCatalog.get(coco_eval.dataset_name)
    image_root = meta.get("image_root")
    images = coco_eval.gt["images"][:num_images]
    wanted = {img["id"] for img in images}
    boxes: Dict[str, Dict[int, List]] = {"gt": {i: [] for i in wanted}, "dt": {i: [] for i in wanted}}
    for key, items in (("gt", coco_eval.gt.get("annotations", [])), ("dt", coco_eval.coco_results)):
        for item in items:
            if item["image_id"] in wanted:
                x, y, w, h = item["bbox"]
                boxes[key][item["image_id"]].append([x, y, x + w, y + h])
    samples = []
    for img in images:
        pixels = read_image(_image_path(img.get("file_name", ""), image_root), "RGB")
        title = os.path.basename(img.get("file_name", "")) or str(img["id"])
        samples.append(PredictionSample(pixels, title, np.asarray(boxes["dt"][img["id"]]).reshape(-1, 4),
                                        np.asarray(boxes["gt"][img["id"]]).reshape(-1, 4), matches[img["id"]]))
    return samples


def write_dataset_report(coco_eval: CocoEvalResults, output_dir: str, score_thresh: float = 0.25,
                         num_images: int = 16) -> List[str]:
    """Write one evaluated dataset's plots and numbers into ``output_dir``.

    ``pr_curves.png/json``, ``confusion_matrix.png/csv``, ``per_class_ap.png``, ``errors.png/json`` and
    ``predictions.png``. Each is written on its own: one that fails is logged as a warning naming
    it, and the others are still written. Nothing here raises.

    Args:
        coco_eval: what the COCO evaluation used (``COCOEvaluator.last_coco_eval``).
        output_dir: the dataset's plots folder, e.g. ``OUTPUT_DIR/plots/<dataset>``.
        score_thresh: predictions scoring at least this count in the confusion matrix, errors and grid.
        num_images: images in ``predictions.png``.

    Returns:
        The names of the plots written.
    """
    tic = time.perf_counter()
    written: List[str] = []
    name = coco_eval.dataset_name
    run = coco_eval.runs.get("bbox")
    thing_classes = list(MetadataCatalog.get(name).get("thing_classes") or [])
    num_classes = len(coco_eval.to_dataset_id)
    class_names = [thing_classes[c] if c < len(thing_classes) else str(coco_eval.to_dataset_id[c])
                   for c in range(num_classes)]
    names_by_cat_id = _category_names(name, coco_eval.gt, coco_eval.to_dataset_id)
    path = lambda f: os.path.join(output_dir, f)  # noqa: E731

    def curves():
        if run is None:
            raise ValueError(f"dataset '{name}' has no 'bbox' COCOeval run")
        numbers = pr_curves(run, names_by_cat_id)
        _write_text(path("pr_curves.json"), json.dumps(numbers))
        plot_pr_curves(numbers, path("pr_curves.png"))

    def class_ap():
        if run is None:
            raise ValueError(f"dataset '{name}' has no 'bbox' COCOeval run")
        plot_per_class_ap(per_class_ap(run, names_by_cat_id), path("per_class_ap.png"))

    for plot, func in (("pr_curves", curves), ("per_class_ap", class_ap)):
        if _guarded(f"{name}/{plot}", func):
            written.append(plot)

    matches: Dict[int, Any] = {}

    def match():
        matches.update(match_coco_results(coco_eval.gt, coco_eval.coco_results, coco_eval.to_dataset_id,
                                          score_thresh))

    if not _guarded(f"{name}/confusion_matrix, errors and predictions (matching)", match):
        return written

    def confusion():
        matrix = confusion_matrix(matches.values(), num_classes)
        _write_text(path("confusion_matrix.csv"), confusion_matrix_csv(matrix, class_names))
        plot_confusion_matrix(matrix, class_names, path("confusion_matrix.png"), score_thresh)

    def errors():
        counts = error_counts(matches.values(), class_names)
        doc = {"score_thresh": score_thresh, "iou_thresh": 0.5, "bkg_thresh": 0.1, **counts}
        _write_text(path("errors.json"), json.dumps(doc, indent=1))
        plot_errors(counts, path("errors.png"))
        logger.info("Errors on %s at score >= %g: %s", name, score_thresh,
                    ", ".join(f"{k} {v}" for k, v in counts["total"].items()))

    def predictions():
        plot_predictions(_prediction_samples(coco_eval, matches, num_images), path("predictions.png"), score_thresh)

    for plot, func in (("confusion_matrix", confusion), ("errors", errors), ("predictions", predictions)):
        if _guarded(f"{name}/{plot}", func):
            written.append(plot)
    logger.info("Wrote %d plots of %s to %s in %.2f s", len(written), name, output_dir, time.perf_counter() - tic)
    return written


def _coco_evaluations(evaluator) -> List[CocoEvalResults]:
    if isinstance(evaluator, DatasetEvaluators):
        return [r for e in evaluator._evaluators for r in _coco_evaluations(e)]
    result = getattr(evaluator, "last_coco_eval", None)
    return [result] if isinstance(result, CocoEvalResults) else []


def write_evaluation_report(evaluator, plots_dir: str, score_thresh: float = 0.25) -> List[str]:
    """After an evaluation: the plots of each dataset a ``COCOEvaluator`` in ``evaluator`` scored.

    Written to ``plots_dir/<dataset>/``. Evaluators that keep no COCOeval state (Pascal VOC) get no
    plots (logged). Never raises.

    Returns:
        The plots written, as ``"<dataset>/<plot>"``.
    """
    written: List[str] = []
    try:
        found = _coco_evaluations(evaluator)
        if not found:
            logger.info("No plots for %s: only a COCOEvaluator's results are plotted.", type(evaluator).__name__)
        for coco_eval in found:
            folder = os.path.join(plots_dir, coco_eval.dataset_name)
            written += [f"{coco_eval.dataset_name}/{p}" for p in write_dataset_report(coco_eval, folder, score_thresh)]
    except Exception as e:  # never fail an evaluation for its pictures
        logger.warning("Could not write the evaluation plots to %s (%s: %s).", plots_dir, type(e).__name__, e)
    return written


def write_loss_plot(runs: Mapping[str, str], path: str) -> bool:
    """``losses.png`` of one or several runs (label -> OUTPUT_DIR holding ``metrics.json``). Never raises.

    Returns:
        Whether it was written.
    """
    def draw():
        plot_losses({label: load_metrics(os.path.join(d, "metrics.json")) for label, d in runs.items()}, path)

    return _guarded("losses", draw)


def replot_run(output_dir: str, dataset_names: Sequence[str], score_thresh: float = 0.25,
               max_dets_per_image: int = 100, backend: str = "pycocotools") -> List[str]:
    """Draw a finished run's plots again from its files, without the model.

    Reads ``output_dir/metrics.json`` (losses.png, skipped with a warning when absent) and, per
    dataset, ``output_dir/inference/<dataset>/coco_instances_results.json``, which is scored again
    with COCOeval.

    Args:
        output_dir: the run's OUTPUT_DIR.
        dataset_names: its ``DATASETS.TEST``.
        score_thresh: ``TEST.REPORT_CONF_THRESH``.
        max_dets_per_image: ``TEST.DETECTIONS_PER_IMAGE``.
        backend: ``TEST.COCO_EVAL_BACKEND``.

    Returns:
        The plots written.

    Raises:
        FileNotFoundError: a dataset's results file is missing (naming it and what to run).
    """
    plots_dir = os.path.join(output_dir, "plots")
    written = []
    if g_pathmgr.exists(os.path.join(output_dir, "metrics.json")):
        if write_loss_plot({os.path.basename(os.path.normpath(output_dir)): output_dir},
                           os.path.join(plots_dir, "losses.png")):
            written.append("losses")
    else:
        logger.warning("%s has no metrics.json (an --eval-only run?); no losses.png.", output_dir)
    for name in dataset_names:
        folder = os.path.join(output_dir, "inference", name)
        results_file = os.path.join(folder, "coco_instances_results.json")
        if not g_pathmgr.exists(results_file):
            raise FileNotFoundError(f"{results_file} does not exist: the plots of dataset '{name}' are drawn from "
                                    "it. Run tools/train_net.py --eval-only with this OUTPUT_DIR to write it.")
        with g_pathmgr.open(results_file, "r") as f:
            coco_results = json.load(f)
        gt, _, to_dataset_id = load_coco_ground_truth(name, folder)
        max_dets = [1, min(10, max_dets_per_image), max_dets_per_image]
        run = run_coco_eval(gt, coco_results, "bbox", max_dets, backend)
        coco_eval = CocoEvalResults(name, gt, coco_results, to_dataset_id, {"bbox": run})
        written += [f"{name}/{p}" for p in write_dataset_report(coco_eval, os.path.join(plots_dir, name),
                                                                 score_thresh)]
    return written
