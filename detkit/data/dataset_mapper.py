"""DatasetMapper: one dataset dict -> the model's input dict (image tensor, sizes, instances)."""
import copy
import logging
from typing import List, Union

import numpy as np
import torch

from detkit.config import configurable

from . import detection_utils as utils
from . import transforms as T

__all__ = ["DatasetMapper"]

logger = logging.getLogger(__name__)


class DatasetMapper:
    """Read an image, augment it with its boxes, and build one model input (the contract of
    ``detkit.modeling.meta_arch.DetectorBase``).

    The flow is detectron2's: ``read_image`` -> ``check_image_size`` -> ``AugInput`` ->
    augmentations -> ``transform_instance_annotations`` -> ``annotations_to_instances`` ->
    ``filter_empty_instances``.

    The output is ``{"image": uint8 (C, H, W) tensor in INPUT.FORMAT order, "height", "width"
    (original size), "image_id", "file_name"}`` plus, in training, ``"instances"``:
    ``Instances(image_size=(h, w) after augmentation, gt_boxes=Boxes, gt_classes=int64)``. Crowd
    annotations and boxes that degenerate under the augmentation are dropped. Annotations never
    reach the output at test time. The input dict is left unchanged.

    Augmentations draw from numpy's global generator; the training loader seeds it for each
    sample from the run's seed and the sample's position in the stream, so a run (and its
    ``--resume``) is reproducible.
    """

    @configurable
    def __init__(self, is_train: bool, *, augmentations: List[Union[T.Augmentation, T.Transform]],
                 image_format: str = "RGB"):
        """
        Args:
            is_train: whether to emit ``instances``.
            augmentations: Augmentations or Transforms, applied in order.
            image_format: a ``read_image`` format: ``"RGB"``, ``"BGR"``, ``"L"`` or ``"YUV-BT.601"``.
        """
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        logger.debug("DatasetMapper (%s): %s", "train" if is_train else "test", self.augmentations)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {"is_train": is_train, "augmentations": utils.build_augmentation(cfg, is_train),
                "image_format": cfg.INPUT.FORMAT}

    def __call__(self, dataset_dict: dict) -> dict:
        """Map one dataset dict (left unchanged) to a model input dict."""
        dataset_dict = copy.deepcopy(dataset_dict)  # the steps below modify it
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format,
                                 image_id=dataset_dict.get("image_id"))
        utils.check_image_size(dataset_dict, image)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]  # (h, w) after augmentation
        out = {
            "image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),  # (C, H, W)
            "height": int(dataset_dict["height"]),
            "width": int(dataset_dict["width"]),
            "image_id": dataset_dict.get("image_id"),
            "file_name": dataset_dict["file_name"],
        }
        if self.is_train:
            annos = [utils.transform_instance_annotations(_boxes_only(obj), transforms, image_shape)
                     for obj in dataset_dict.get("annotations") or [] if int(obj.get("iscrowd", 0)) == 0]
            out["instances"] = utils.filter_empty_instances(utils.annotations_to_instances(annos, image_shape))
        return out


def _boxes_only(annotation: dict) -> dict:
    """The annotation without masks and keypoints, which detkit's models do not use."""
    annotation.pop("segmentation", None)
    annotation.pop("keypoints", None)
    return annotation
