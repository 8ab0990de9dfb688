"""Work from a saved ``coco_instances_results.json``: re-score it, or draw it beside the ground truth."""
import json
import logging
import os
from collections import defaultdict
from typing import Dict, List, Optional

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr
from PIL import Image

from detkit.data import DatasetCatalog, MetadataCatalog, read_image
from detkit.structures import Boxes, BoxMode, Instances
from detkit.utils.visualizer import Visualizer

from .coco_conversion import load_coco_ground_truth
from .coco_evaluation import score_coco_results
from .testing import print_csv_format

__all__ = ["load_results_file", "rescore_results_file", "draw_results_file"]

logger = logging.getLogger(__name__)


def load_results_file(results_file: str) -> List[Dict]:
    """The detections of a COCO results file (a JSON list), with an error naming the file otherwise."""
    if not g_pathmgr.exists(results_file):
        raise FileNotFoundError(f"Results file '{results_file}' does not exist.")
    with g_pathmgr.open(results_file, "r") as f:
        results = json.load(f)
    if not isinstance(results, list):
        raise ValueError(f"'{results_file}' must hold a JSON list of detections (COCO results format), "
                         f"got {type(results).__name__}.")
    return results


def rescore_results_file(dataset_name: str, results_file: str, output_dir: Optional[str] = None,
                         backend: str = "pycocotools", max_dets_per_image: int = 100) -> Dict:
    """Score a results file against ``dataset_name``'s ground truth; logs the tables and copypaste lines.

    Args:
        output_dir: where the ground truth of a dataset without a COCO json is converted to.
        backend: the COCOeval implementation ("pycocotools" or "faster").

    Returns:
        ``{"bbox": {"AP": ..., ...}}``.
    """
    results = load_results_file(results_file)
    gt, _, to_dataset_id = load_coco_ground_truth(dataset_name, output_dir)
    logger.info("Scoring %d detections from %s on '%s'", len(results), results_file, dataset_name)
    max_dets = [1, min(10, max_dets_per_image), max_dets_per_image]
    scores = score_coco_results(dataset_name, gt, results, to_dataset_id, ("bbox",), max_dets, backend)
    print_csv_format(scores)
    return scores


def draw_results_file(results_file: str, dataset_name: str, output_dir: str, conf_threshold: float = 0.5,
                      max_images: int = 0) -> int:
    """Write one PNG per image of ``dataset_name``: the ground truth left, the detections scoring at
    least ``conf_threshold`` right. Returns the number of PNGs written (``max_images`` caps it; 0: all)."""
    results = load_results_file(results_file)
    _, image_id_map, to_dataset_id = load_coco_ground_truth(dataset_name)
    to_contiguous = {d: c for c, d in to_dataset_id.items()}
    by_image = defaultdict(list)
    for r in results:
        if r["score"] >= conf_threshold:
            by_image[r["image_id"]].append(r)
    metadata = MetadataCatalog.get(dataset_name)
    g_pathmgr.mkdirs(output_dir)
    written = 0
    for record in DatasetCatalog.get(dataset_name):
        if max_images and written >= max_images:
            break
        image = read_image(record["file_name"], "RGB", image_id=record.get("image_id"))
        truth = Visualizer(image, metadata).draw_dataset_dict(record).get_image()
        dets = by_image.get(image_id_map.get(record["image_id"], record["image_id"]), [])
        predicted = Visualizer(image, metadata).draw_instance_predictions(
            _to_instances(dets, to_contiguous, image.shape[:2], results_file)).get_image()
        path = os.path.join(output_dir, os.path.splitext(os.path.basename(record["file_name"]))[0] + ".png")
        with g_pathmgr.open(path, "wb") as f:
            Image.fromarray(np.concatenate([truth, predicted], axis=1)).save(f, format="PNG")
        written += 1
    logger.info("Wrote %d images to %s", written, output_dir)
    return written


def _to_instances(dets: List[Dict], to_contiguous: Dict[int, int], image_size, results_file: str) -> Instances:
    """One image's COCO-format detections (XYWH, dataset category ids) as predicted ``Instances``."""
    unknown = sorted({d["category_id"] for d in dets if d["category_id"] not in to_contiguous})
    if unknown:
        raise KeyError(f"'{results_file}' has detections of category ids {unknown}, which the dataset does not "
                       f"have (it has {sorted(to_contiguous)}). Was it made on another dataset?")
    boxes = [BoxMode.convert(d["bbox"], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) for d in dets]
    return Instances(image_size, pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
                     scores=torch.tensor([float(d["score"]) for d in dets]),
                     pred_classes=torch.tensor([to_contiguous[d["category_id"]] for d in dets], dtype=torch.int64))
