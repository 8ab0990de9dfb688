"""DatasetMapper: one dataset dict -> the model's input dict (image tensor, sizes, instances)."""
import logging
from typing import List, Optional

import numpy as np
import torch

from detkit.config import configurable

from .detection_utils import annotations_to_arrays, annotations_to_instances, check_image_size, read_image
from .transforms import Augmentation, AugmentationList, build_augmentation

__all__ = ["DatasetMapper"]

logger = logging.getLogger(__name__)


class DatasetMapper:
    """Read an image, augment it with its boxes, and build one model input (the contract of
    ``detkit.modeling.meta_arch.DetectorBase``).

    The output is ``{"image": uint8 (C, H, W) tensor in INPUT.FORMAT order, "height", "width"
    (original size), "image_id", "file_name"}`` plus, in training, ``"instances"``:
    ``Instances(image_size=(h, w) after augmentation, gt_boxes=Boxes, gt_classes=int64)``. Crowd
    annotations and boxes that degenerate under the augmentation are dropped. Annotations never
    reach the output at test time.

    Call it as ``mapper(dataset_dict)`` or ``mapper(dataset_dict, rng=generator)``; the loaders
    pass a generator seeded per sample so augmentation is reproducible.
    """

    @configurable
    def __init__(self, is_train: bool, *, augmentations: List[Augmentation], image_format: str = "RGB"):
        """
        Args:
            is_train: whether to emit ``instances``.
            augmentations: applied in order to the image and its boxes.
            image_format: ``"RGB"`` or ``"BGR"``.
        """
        self.is_train = is_train
        self.augmentations = AugmentationList(augmentations)
        self.image_format = image_format
        logger.debug("DatasetMapper (%s): %s", "train" if is_train else "test", self.augmentations)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {"is_train": is_train, "augmentations": build_augmentation(cfg, is_train),
                "image_format": cfg.INPUT.FORMAT}

    def __call__(self, dataset_dict: dict, rng: Optional[np.random.Generator] = None) -> dict:
        """Map one dataset dict (left unchanged) to a model input dict."""
        image = read_image(dataset_dict["file_name"], format=self.image_format,
                           image_id=dataset_dict.get("image_id"))
        check_image_size(dataset_dict, image)
        orig_h, orig_w = image.shape[:2]
        boxes, classes = annotations_to_arrays(dataset_dict.get("annotations") if self.is_train else None)
        image, boxes = self.augmentations(image, boxes, rng)
        out = {
            "image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),  # (C, H, W) uint8
            "height": int(dataset_dict.get("height", orig_h)),
            "width": int(dataset_dict.get("width", orig_w)),
            "image_id": dataset_dict.get("image_id"),
            "file_name": dataset_dict["file_name"],
        }
        if self.is_train:
            out["instances"] = annotations_to_instances(boxes, classes, image.shape[:2])
        return out
