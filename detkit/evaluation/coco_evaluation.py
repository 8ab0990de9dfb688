"""COCOEvaluator: COCO box AP (pycocotools or faster-coco-eval) and box-proposal recall for any dataset."""
import copy
import itertools
import json
import logging
import os
import time
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr

from detkit.data import MetadataCatalog
from detkit.utils import comm

from .coco_conversion import load_coco_ground_truth
from .coco_eval_backend import (
    COCO_EVAL_BACKENDS, backend_classes, per_category_ap, run_coco_eval, summarize_precision,
)
from .evaluator import DatasetEvaluator
from .proposal_evaluation import box_proposal_metrics
from .testing import create_per_category_table, create_small_table

__all__ = ["COCOEvaluator", "score_coco_results"]

logger = logging.getLogger(__name__)

_SUPPORTED_TASKS = ("bbox",)


class COCOEvaluator(DatasetEvaluator):
    """Evaluates detections with COCO's AP metrics and proposals with COCO-style average recall.

    Works for any registered dataset: one with a COCO ``json_file`` in its metadata is scored
    against that file; any other is converted to COCO format first (cached in ``output_dir``).
    Contiguous class ids are mapped back to the dataset's category ids.

    Outputs with ``"instances"`` (``pred_boxes`` XYXY in original-image coordinates, ``scores``,
    ``pred_classes``) give ``{"bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-<class>"...}}``;
    outputs with ``"proposals"`` (``proposal_boxes``, ``objectness_logits``) give
    ``{"box_proposals": {"AR@100", "ARs@100", "ARm@100", "ARl@100", "AR@1000", ...}}``; all x100.
    """

    def __init__(self, dataset_name: str, tasks: Sequence[str] = ("bbox",), distributed: bool = True,
                 output_dir: Optional[str] = None, max_dets_per_image: Optional[int] = None,
                 backend: str = "pycocotools"):
        """
        Args:
            dataset_name: a dataset registered in ``DatasetCatalog`` / ``MetadataCatalog``.
            tasks: instance tasks to score; only "bbox" is supported.
            distributed: gather predictions from every process and score on the main one.
            output_dir: where ``coco_instances_results.json`` (and a converted ground-truth json)
                are written; None writes nothing.
            max_dets_per_image: detections per image that count (COCO's 100 by default).
            backend: "pycocotools" or "faster" (faster-coco-eval; identical numbers). The engine
                passes ``cfg.TEST.COCO_EVAL_BACKEND``.
        """
        self._dataset_name = dataset_name
        self._tasks = tuple(tasks)
        unknown = [t for t in self._tasks if t not in _SUPPORTED_TASKS]
        if unknown:
            raise ValueError(f"COCOEvaluator('{dataset_name}'): unsupported task(s) {unknown}; "
                             f"supported: {', '.join(_SUPPORTED_TASKS)}.")
        if backend not in COCO_EVAL_BACKENDS:
            raise ValueError(f"COCOEvaluator('{dataset_name}'): unknown backend '{backend}'; choose one of "
                             f"{', '.join(COCO_EVAL_BACKENDS)} (config key TEST.COCO_EVAL_BACKEND).")
        backend_classes(backend)  # fail now, not after a whole inference run, if it is missing
        self._backend = backend
        self._distributed = distributed
        self._output_dir = output_dir
        max_dets = 100 if max_dets_per_image is None else int(max_dets_per_image)
        if max_dets < 1:
            raise ValueError(f"COCOEvaluator('{dataset_name}'): max_dets_per_image must be >= 1, got {max_dets}.")
        # COCOeval sorts its limits and scores AP at the last one.
        self._max_dets = [1, min(10, max_dets), max_dets]
        self._metadata = MetadataCatalog.get(dataset_name)
        self._results: Dict[str, Any] = OrderedDict()
        self.reset()

    def reset(self) -> None:
        self._predictions: List[Dict[str, Any]] = []

    def process(self, inputs: List[Dict], outputs: List[Dict]) -> None:
        """Store each image's detections (XYWH boxes, scores, contiguous classes) and/or proposals."""
        for inp, out in zip(inputs, outputs):
            prediction: Dict[str, Any] = {"image_id": inp["image_id"]}
            if "instances" in out:
                inst = out["instances"].to("cpu")
                boxes = inst.pred_boxes.tensor.double()  # (N, 4) XYXY
                xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)  # (N, 4)
                prediction["instances"] = {"boxes": xywh.numpy(), "scores": inst.scores.double().numpy(),
                                           "classes": inst.pred_classes.long().numpy()}
            if "proposals" in out:
                props = out["proposals"].to("cpu")
                order = torch.sort(props.objectness_logits, descending=True, stable=True).indices
                prediction["proposals"] = {"boxes": props.proposal_boxes.tensor[order].float(),  # (P, 4)
                                           "objectness_logits": props.objectness_logits[order].float()}
            if len(prediction) > 1:
                self._predictions.append(prediction)

    def _gathered_predictions(self) -> Optional[List[Dict[str, Any]]]:
        if not self._distributed:
            return self._predictions
        comm.synchronize()
        parts = comm.gather(self._predictions, dst=0)
        if not comm.is_main_process():
            return None
        predictions, seen = [], set()
        for prediction in itertools.chain(*parts):
            if prediction["image_id"] in seen:  # a padded sampler may repeat images
                continue
            seen.add(prediction["image_id"])
            predictions.append(prediction)
        return predictions

    def evaluate(self) -> Dict[str, Any]:
        """Score everything processed (on the main process); other processes return ``{}``."""
        predictions = self._gathered_predictions()
        if predictions is None:
            return {}
        if len(predictions) == 0:
            logger.warning("COCOEvaluator('%s') received no predictions: was the data loader empty, or did "
                           "the model return neither 'instances' nor 'proposals'?", self._dataset_name)
            return {}
        gt, image_id_map, to_dataset_id = load_coco_ground_truth(self._dataset_name, self._output_dir)
        self._results = OrderedDict()
        if any("proposals" in p for p in predictions):
            self._eval_box_proposals(predictions, gt, image_id_map)
        if any("instances" in p for p in predictions):
            self._eval_predictions(predictions, gt, image_id_map, to_dataset_id)
        return copy.deepcopy(self._results)  # Trainer.test prints the copypaste lines, once per dataset

    def _coco_image_id(self, image_id: Any, image_id_map: Dict[Any, int]) -> int:
        if image_id not in image_id_map:
            raise KeyError(f"COCOEvaluator('{self._dataset_name}'): a prediction has image_id {image_id!r}, which "
                           "is not in the dataset's ground truth. Was the model run on another dataset?")
        return image_id_map[image_id]

    def _coco_results(self, predictions: List[Dict[str, Any]], image_id_map: Dict[Any, int],
                      to_dataset_id: Dict[int, int]) -> List[Dict[str, Any]]:
        """COCO-format detection dicts (dataset category ids, XYWH boxes) of all images."""
        num_classes = len(to_dataset_id)
        lookup = np.array([to_dataset_id[i] for i in range(num_classes)], dtype=np.int64)
        results = []
        for prediction in predictions:
            if "instances" not in prediction:
                continue
            det = prediction["instances"]
            image_id = self._coco_image_id(prediction["image_id"], image_id_map)
            classes = det["classes"]
            bad = (classes < 0) | (classes >= num_classes)
            if bad.any():
                raise ValueError(f"COCOEvaluator('{self._dataset_name}'): image {prediction['image_id']!r} has "
                                 f"pred_classes {sorted(set(classes[bad].tolist()))}, outside the {num_classes} "
                                 "classes of the dataset's thing_classes. Check the model's NUM_CLASSES.")
            categories = lookup[classes]
            results.extend(
                {"image_id": image_id, "category_id": int(c), "bbox": b, "score": s}
                for c, b, s in zip(categories.tolist(), det["boxes"].tolist(), det["scores"].tolist())
            )
        return results

    def _eval_predictions(self, predictions: List[Dict[str, Any]], gt: Dict[str, Any],
                          image_id_map: Dict[Any, int], to_dataset_id: Dict[int, int]) -> None:
        coco_results = self._coco_results(predictions, image_id_map, to_dataset_id)
        if self._output_dir:
            g_pathmgr.mkdirs(self._output_dir)
            path = os.path.join(self._output_dir, "coco_instances_results.json")
            with g_pathmgr.open(path, "w") as f:
                f.write(json.dumps(coco_results))  # one write: twice as fast as streaming json.dump
            logger.info("Saved %d detections to %s", len(coco_results), path)
        if not coco_results:
            logger.warning("COCOEvaluator('%s'): the model made no detections on %d images; every AP is 0 "
                           "(NaN for size ranges without ground truth).", self._dataset_name, len(predictions))
        self._results.update(score_coco_results(self._dataset_name, gt, coco_results, to_dataset_id, self._tasks,
                                                self._max_dets, self._backend))

    def _eval_box_proposals(self, predictions: List[Dict[str, Any]], gt: Dict[str, Any],
                            image_id_map: Dict[Any, int]) -> None:
        anns_by_image: Dict[int, List[dict]] = {}
        for ann in gt["annotations"]:
            if not ann.get("iscrowd", 0):
                anns_by_image.setdefault(ann["image_id"], []).append(ann)
        proposal_boxes, gt_boxes, gt_areas = [], [], []
        for prediction in predictions:
            if "proposals" not in prediction:
                continue
            anns = anns_by_image.get(self._coco_image_id(prediction["image_id"], image_id_map), [])
            xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
            gt_boxes.append(torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1))  # (G, 4) XYXY
            gt_areas.append(torch.tensor([float(a["area"]) for a in anns], dtype=torch.float32))
            proposal_boxes.append(prediction["proposals"]["boxes"])
        results = box_proposal_metrics(proposal_boxes, gt_boxes, gt_areas, limits=(100, 1000))
        logger.info("Proposal metrics:\n%s", create_small_table(results))
        self._results["box_proposals"] = results


def _category_names(dataset_name: str, gt: Dict[str, Any], to_dataset_id: Dict[int, int]) -> Dict[int, str]:
    """COCO category id -> class name (the metadata's thing_classes, else the json's names)."""
    names = {int(c["id"]): c.get("name", str(c["id"])) for c in gt.get("categories", [])}
    thing_classes = MetadataCatalog.get(dataset_name).get("thing_classes") or []
    for contiguous, dataset_id in to_dataset_id.items():
        if contiguous < len(thing_classes):
            names[dataset_id] = thing_classes[contiguous]
    return names


def score_coco_results(dataset_name: str, gt: Dict[str, Any], coco_results: List[Dict[str, Any]],
                       to_dataset_id: Dict[int, int], tasks: Sequence[str] = ("bbox",),
                       max_dets: Sequence[int] = (1, 10, 100), backend: str = "pycocotools") -> Dict[str, Dict]:
    """Score COCO-format results against ground truth and log the AP and per-category tables.

    Args:
        dataset_name: the dataset, for class names and messages.
        gt: its COCO ground-truth dict (see ``load_coco_ground_truth``).
        coco_results: detections with COCO image ids and dataset category ids, XYWH boxes.
        to_dataset_id: contiguous class id -> dataset category id.
        tasks: "bbox".
        max_dets: COCOeval's detection limits; AP uses the last.
        backend: "pycocotools" or "faster".

    Returns:
        ``{task: {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-<class>"...}}`` x100.
    """
    known_images = {img["id"] for img in gt["images"]}
    unknown = sorted({r["image_id"] for r in coco_results} - known_images, key=str)
    if unknown:
        raise KeyError(f"Results for dataset '{dataset_name}' name image ids {unknown[:5]} that its ground truth "
                       "does not have. Were they made on another dataset?")
    known_cats = {c["id"] for c in gt["categories"]}
    bad_cats = sorted({r["category_id"] for r in coco_results} - known_cats)
    if bad_cats:
        raise ValueError(f"Results for dataset '{dataset_name}' use category ids {bad_cats}, which are not among "
                         f"its categories {sorted(known_cats)}.")
    id_to_name = _category_names(dataset_name, gt, to_dataset_id)
    out: Dict[str, Dict] = OrderedDict()
    for task in tasks:
        tic = time.perf_counter()
        run = run_coco_eval(gt, coco_results, task, max_dets, backend)
        logger.info("COCOeval (%s, %s) on %d images, %d detections took %.2f s.", task, backend,
                    len(gt["images"]), len(coco_results), time.perf_counter() - tic)
        if run.summary:
            logger.info("COCOeval summary (%s, %s):\n%s", task, backend, run.summary)
        results = summarize_precision(run)
        logger.info("Evaluation results for %s:\n%s", task, create_small_table(results))
        per_category = {id_to_name.get(cat_id, str(cat_id)): ap for cat_id, ap in per_category_ap(run).items()}
        logger.info("Per-category %s AP:\n%s", task, create_per_category_table(per_category))
        results.update({f"AP-{name}": ap for name, ap in per_category.items()})
        out[task] = results
    return out
