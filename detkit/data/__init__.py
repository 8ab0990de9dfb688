"""Data: dataset catalogs, loaders for COCO / Pascal VOC / builtin shapes, transforms, mapper, loaders.

Importing this package registers the builtin datasets (see ``datasets.builtin``).
"""
from . import datasets, samplers, transforms
from .build import (TrainDataLoader, build_batch_data_loader, build_detection_test_loader,
                    build_detection_train_loader, get_detection_dataset_dicts, trivial_batch_collator)
from .catalog import DatasetCatalog, Metadata, MetadataCatalog
from .common import AspectRatioGroupedDataset, DatasetFromList, MapDataset, ToIterableDataset
from .dataset_check import DatasetReport, check_dataset, write_fixed_sizes
from .dataset_mapper import DatasetMapper
from .detection_utils import BadImageError, ImageReadError, SizeMismatchError, read_image
from .samplers import (AspectRatioGroupedBatchSampler, GroupedBatchSampler, InferenceSampler,
                       RepeatFactorTrainingSampler, TrainingSampler)

__all__ = [
    "DatasetCatalog", "MetadataCatalog", "Metadata", "DatasetMapper", "build_detection_train_loader",
    "build_detection_test_loader", "get_detection_dataset_dicts", "TrainDataLoader", "TrainingSampler",
    "InferenceSampler", "AspectRatioGroupedBatchSampler", "DatasetFromList", "MapDataset", "read_image",
    "BadImageError", "ImageReadError", "SizeMismatchError", "check_dataset", "DatasetReport", "write_fixed_sizes",
    "trivial_batch_collator", "transforms", "datasets", "build_batch_data_loader", "AspectRatioGroupedDataset",
    "ToIterableDataset", "GroupedBatchSampler", "RepeatFactorTrainingSampler", "samplers",
]

datasets.register_all_builtin()
