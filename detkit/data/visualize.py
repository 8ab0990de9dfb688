"""Draw training data as PNGs: the raw dataset dicts, or what the training loader feeds the model."""
import itertools
import logging
import os
from typing import List

from detkit.structures import BoxMode
from detkit.utils.visualizer import Visualizer

from .build import build_detection_train_loader
from .catalog import DatasetCatalog, MetadataCatalog
from .detection_utils import read_image

__all__ = ["visualize_training_data", "SOURCES"]

logger = logging.getLogger(__name__)

SOURCES = ("annotation", "dataloader")


def _train_names(cfg) -> List[str]:
    return [cfg.DATASETS.TRAIN] if isinstance(cfg.DATASETS.TRAIN, str) else list(cfg.DATASETS.TRAIN)


def _save(image_rgb, dic, metadata, path: str) -> None:
    Visualizer(image_rgb, metadata).draw_dataset_dict(dic).save(path)
    logger.info("wrote %s", path)


def _from_annotations(cfg, out_dir: str, num: int) -> int:
    written = 0
    for name in _train_names(cfg):
        metadata = MetadataCatalog.get(name)
        for d in DatasetCatalog.get(name):
            if written >= num:
                return written
            stem = os.path.splitext(os.path.basename(d["file_name"]))[0]
            image = read_image(d["file_name"], "RGB", image_id=d.get("image_id"))
            _save(image, d, metadata, os.path.join(out_dir, f"{name}_{stem}.png"))
            written += 1
    return written


def _from_dataloader(cfg, out_dir: str, num: int) -> int:
    metadata = MetadataCatalog.get(_train_names(cfg)[0])
    written = 0
    for batch in itertools.islice(build_detection_train_loader(cfg), num):
        for item in batch:
            if written >= num:
                return written
            image = item["image"].permute(1, 2, 0).numpy()  # (H, W, C)
            if cfg.INPUT.FORMAT == "BGR":
                image = image[:, :, ::-1]
            inst = item["instances"]
            annos = [{"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": c}
                     for box, c in zip(inst.gt_boxes.tensor.tolist(), inst.gt_classes.tolist())]
            stem = os.path.splitext(os.path.basename(item["file_name"]))[0]
            _save(image, {"annotations": annos}, metadata, os.path.join(out_dir, f"{written:04d}_{stem}.png"))
            written += 1
    return written


def visualize_training_data(cfg, source: str, output_dir: str, num: int = 20) -> int:
    """Write ``num`` PNGs of DATASETS.TRAIN with their ground-truth boxes and class names.

    Args:
        source: "annotation" draws the dataset dicts on the original images; "dataloader" draws
            the training loader's batches, after augmentation (what the model sees).
        output_dir: the folder for the PNGs (created).

    Returns:
        The number of PNGs written.
    """
    if source not in SOURCES:
        raise ValueError(f"Unknown source '{source}'; use one of {SOURCES}.")
    os.makedirs(output_dir, exist_ok=True)
    run = _from_annotations if source == "annotation" else _from_dataloader
    return run(cfg, output_dir, num)
