"""Data loaders as in detectron2: dataset dicts from the catalog, the training and the test loader.

``build_detection_train_loader`` and ``build_detection_test_loader`` are ``@configurable``: call
them with a config (``(cfg, mapper=None)``, ``(cfg, dataset_name, mapper=None)``) or with plain
arguments (``(dataset, *, mapper, ...)``).
"""
import logging
import operator
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from detkit.config import configurable
from detkit.utils import comm
from detkit.utils.env import seed_all_rng

from .catalog import DatasetCatalog, MetadataCatalog
from .common import (AspectRatioGroupedDataset, DatasetFromList, MapDataset, ToIterableDataset,
                     trivial_batch_collator)
from .dataset_mapper import DatasetMapper
from .samplers import InferenceSampler, RepeatFactorTrainingSampler, TrainingSampler
from .samplers.distributed_sampler import _StreamSampler
from .train_loader import DataLoaderWorkerError, TrainDataLoader

__all__ = ["get_detection_dataset_dicts", "build_detection_train_loader", "build_detection_test_loader",
           "build_batch_data_loader", "TrainDataLoader", "trivial_batch_collator", "worker_init_reset_seed",
           "DataLoaderWorkerError"]

logger = logging.getLogger(__name__)

TRAIN_SAMPLERS = ("TrainingSampler", "RepeatFactorTrainingSampler")


def _as_names(names: Union[str, Sequence[str]]) -> List[str]:
    """A tuple or list of dataset names; a bare string is one name (never split into characters)."""
    if isinstance(names, str):
        return [names]
    names = list(names)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"Dataset names must be strings, got {names!r}.")
    return names


def _has_objects(d: dict) -> bool:
    return any(int(a.get("iscrowd", 0)) == 0 for a in d.get("annotations", []))


def get_detection_dataset_dicts(names: Union[str, Sequence[str]], filter_empty: bool = True, min_keypoints: int = 0,
                                proposal_files: Optional[Sequence[str]] = None,
                                check_consistency: bool = True) -> List[dict]:
    """Load and concatenate the dataset dicts of ``names`` from ``DatasetCatalog``.

    Args:
        names: a dataset name, or a tuple / list of names (e.g. ``cfg.DATASETS.TRAIN``).
        filter_empty: drop images without any non-crowd annotation.
        min_keypoints, proposal_files: detectron2's arguments for keypoints and precomputed
            proposals, which detkit does not support; only their defaults (0, None) are accepted.
        check_consistency: with several names, require their metadata ``thing_classes`` to agree.

    Raises:
        ValueError: no names given, a dataset is empty, nothing is left after filtering, or the
            datasets name different classes.
    """
    if min_keypoints or proposal_files:
        raise ValueError("get_detection_dataset_dicts: keypoints (min_keypoints) and precomputed proposals "
                         "(proposal_files) are not supported by detkit; leave them at 0 and None.")
    names = _as_names(names)
    if not names:
        raise ValueError("No dataset names given; set DATASETS.TRAIN / DATASETS.TEST, e.g. ('shapes_train',).")
    dicts = []
    for name in names:
        part = DatasetCatalog.get(name)
        if not part:
            raise ValueError(f"Dataset '{name}' is empty.")
        dicts.extend(part)
    if check_consistency and len(names) > 1:
        _check_same_classes(names)
    if filter_empty:
        before = len(dicts)
        dicts = [d for d in dicts if _has_objects(d)]
        logger.info("Removed %d images without annotations; %d left (%s).", before - len(dicts), len(dicts),
                    ", ".join(names))
        if not dicts:
            raise ValueError(f"No image of {names} has annotations; nothing to train on "
                             "(or set DATALOADER.FILTER_EMPTY_ANNOTATIONS False).")
    return dicts


def _check_same_classes(names: List[str]) -> None:
    """Datasets that have ``thing_classes`` must all have the same list."""
    classes = [(n, MetadataCatalog.get(n).get("thing_classes")) for n in names]
    classes = [(n, list(c)) for n, c in classes if c is not None]
    for name, cls in classes[1:]:
        if cls != classes[0][1]:
            raise ValueError(f"Datasets '{classes[0][0]}' and '{name}' have different thing_classes "
                             f"({classes[0][1]} vs {cls}); category ids would mean different classes. Train on "
                             "datasets with the same classes, or pass check_consistency=False.")


def worker_init_reset_seed(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed Python's, NumPy's and torch's RNGs from the worker's torch seed + its id."""
    seed_all_rng(torch.initial_seed() % 2**31 + worker_id)


def _per_process_batch_size(total_batch_size: int, world_size: int) -> int:
    if total_batch_size <= 0 or total_batch_size % world_size != 0:
        raise ValueError(f"total_batch_size / SOLVER.IMS_PER_BATCH ({total_batch_size}) must be divisible by the "
                         f"number of processes ({world_size}) and positive.")
    return total_batch_size // world_size


def _is_iterable(dataset, sampler: Optional[Sampler]) -> bool:
    """Whether ``dataset`` is an IterableDataset, which picks its own items: then no sampler may be given."""
    if not isinstance(dataset, IterableDataset):
        return False
    if sampler is not None:
        raise ValueError("A sampler was given with an IterableDataset; an iterable dataset picks its own items.")
    return True


def build_batch_data_loader(dataset: Dataset, sampler: Optional[Sampler], total_batch_size: int, *,
                            aspect_ratio_grouping: bool = False, num_workers: int = 0,
                            collate_fn: Optional[Callable] = None, **kwargs):
    """Batches of ``total_batch_size / world_size`` items of ``dataset``, read in ``sampler``'s order.

    A map-style ``dataset`` is read through ``ToIterableDataset`` (sharded over the DataLoader
    workers in chunks of one batch, so any number of workers gives the same batches); an
    iterable one takes no sampler. Batches are lists unless ``collate_fn`` is given; with
    ``aspect_ratio_grouping`` a batch holds only landscape or only portrait images (by their
    ``width`` / ``height``). Extra ``kwargs`` go to ``torch.utils.data.DataLoader``.
    """
    batch_size = _per_process_batch_size(total_batch_size, comm.get_world_size())
    if not _is_iterable(dataset, sampler):
        dataset = ToIterableDataset(dataset, sampler, shard_chunk_size=batch_size)
    if aspect_ratio_grouping:
        loader = DataLoader(dataset, num_workers=num_workers, collate_fn=operator.itemgetter(0),  # single items
                            worker_init_fn=worker_init_reset_seed, **kwargs)
        loader = AspectRatioGroupedDataset(loader, batch_size)
        return loader if collate_fn is None else MapDataset(loader, collate_fn)
    return DataLoader(dataset, batch_size=batch_size, drop_last=True, num_workers=num_workers,
                      collate_fn=trivial_batch_collator if collate_fn is None else collate_fn,
                      worker_init_fn=worker_init_reset_seed, **kwargs)


def _train_loader_from_config(cfg, mapper: Optional[Callable] = None, *, dataset=None, sampler=None,
                              rank: Optional[int] = None, world_size: Optional[int] = None) -> Dict[str, Any]:
    if dataset is None:
        dataset = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    if mapper is None:
        mapper = DatasetMapper(cfg, is_train=True)
    name = cfg.DATALOADER.SAMPLER_TRAIN
    if name not in TRAIN_SAMPLERS:
        raise ValueError(f"DATALOADER.SAMPLER_TRAIN {name!r} is unknown; use one of {TRAIN_SAMPLERS}.")
    if sampler is None and not isinstance(dataset, IterableDataset):
        seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
        if name == "RepeatFactorTrainingSampler":
            factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
                dataset, cfg.DATALOADER.REPEAT_THRESHOLD, sqrt=cfg.DATALOADER.REPEAT_SQRT)
            sampler = RepeatFactorTrainingSampler(factors, seed=seed, rank=rank, world_size=world_size)
        else:
            sampler = TrainingSampler(len(dataset), seed=seed, rank=rank, world_size=world_size)
    return {"dataset": dataset, "sampler": sampler, "mapper": mapper, "total_batch_size": cfg.SOLVER.IMS_PER_BATCH,
            "aspect_ratio_grouping": cfg.DATALOADER.ASPECT_RATIO_GROUPING,
            "num_workers": cfg.DATALOADER.NUM_WORKERS, "on_bad_image": cfg.DATALOADER.ON_BAD_IMAGE}


def _aspect_groups(dicts) -> np.ndarray:
    """Group 0 for landscape (width > height), 1 otherwise, per dataset dict."""
    return np.asarray([0 if d.get("width", 1) > d.get("height", 0) else 1 for d in dicts], dtype=np.int8)


@configurable(from_config=_train_loader_from_config)
def build_detection_train_loader(dataset: Union[List[dict], Dataset], *, mapper: Optional[Callable],
                                 sampler: Optional[Sampler] = None, total_batch_size: int,
                                 aspect_ratio_grouping: bool = True, num_workers: int = 0,
                                 collate_fn: Optional[Callable] = None, on_bad_image: str = "raise", **kwargs):
    """The training loader: infinite batches of mapped dataset dicts, ``total_batch_size`` over all processes.

    Called as ``(cfg, mapper=None)``, it reads DATASETS.TRAIN, DATALOADER.{NUM_WORKERS,
    ASPECT_RATIO_GROUPING, FILTER_EMPTY_ANNOTATIONS, SAMPLER_TRAIN, REPEAT_THRESHOLD, REPEAT_SQRT,
    ON_BAD_IMAGE}, SOLVER.IMS_PER_BATCH and SEED; the mapper defaults to
    ``DatasetMapper(cfg, is_train=True)``, and ``dataset=``, ``sampler=``, ``rank=``,
    ``world_size=`` may override what the config gives.

    A list of dicts (or a ``DatasetFromList``) read by a ``TrainingSampler`` or a
    ``RepeatFactorTrainingSampler`` (the default) gives a ``TrainDataLoader``: seeded per sample,
    the same batches for any ``num_workers``, and exactly resumable (``state_dict``). Any other
    dataset or sampler gives detectron2's plain loader (``build_batch_data_loader``).

    Args:
        dataset: a list of dataset dicts or a torch dataset (map-style or iterable).
        mapper: dataset dict -> model input; ``None`` keeps the items as they are.
        sampler: the index stream; default a ``TrainingSampler`` (none for an iterable dataset).
        total_batch_size: images per step over all processes.
        aspect_ratio_grouping: batches hold only landscape or only portrait images.
        num_workers: DataLoader worker processes.
        collate_fn: list of mapped items -> batch; default keeps the list.
        on_bad_image: ``"raise"`` or ``"skip"`` an unreadable image (``TrainDataLoader`` only).
        kwargs: ``rank`` / ``world_size`` for the default sampler, and more arguments of
            ``torch.utils.data.DataLoader``.

    Returns:
        An infinite iterable of batches (lists of ``total_batch_size / world_size`` mapped items).
    """
    rank, world_size = kwargs.pop("rank", None), kwargs.pop("world_size", None)
    if not _is_iterable(dataset, sampler):
        if sampler is None:
            sampler = TrainingSampler(len(dataset), rank=rank, world_size=world_size)
        elif not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be a torch.utils.data.Sampler, got {type(sampler).__name__}.")
    if isinstance(sampler, _StreamSampler) and isinstance(dataset, (list, DatasetFromList)):
        batch_size = _per_process_batch_size(total_batch_size, sampler._world_size)
        group_ids = _aspect_groups(dataset[i] for i in range(len(dataset))) if aspect_ratio_grouping else None
        logger.info("Train loader: %d images, %d per batch on each of %d process(es), seed %d.",
                    len(dataset), batch_size, sampler._world_size, sampler.seed)
        return TrainDataLoader(dataset if isinstance(dataset, DatasetFromList) else DatasetFromList(dataset),
                               mapper, batch_size, seed=sampler.seed, sampler=sampler, group_ids=group_ids,
                               num_workers=num_workers, on_bad_image=on_bad_image, collate_fn=collate_fn,
                               dataloader_kwargs=kwargs)
    if on_bad_image != "raise":
        raise ValueError("on_bad_image='skip' needs a list of dataset dicts read by a TrainingSampler or "
                         "RepeatFactorTrainingSampler.")
    if isinstance(dataset, list):
        dataset = DatasetFromList(dataset, copy=False)
    if mapper is not None:
        dataset = MapDataset(dataset, mapper)
    return build_batch_data_loader(dataset, sampler, total_batch_size, aspect_ratio_grouping=aspect_ratio_grouping,
                                   num_workers=num_workers, collate_fn=collate_fn, **kwargs)


def _test_loader_from_config(cfg, dataset_name: Union[str, Sequence[str]], mapper: Optional[Callable] = None, *,
                             rank: Optional[int] = None, world_size: Optional[int] = None) -> Dict[str, Any]:
    dataset = get_detection_dataset_dicts(dataset_name, filter_empty=False)
    return {"dataset": dataset, "mapper": mapper if mapper is not None else DatasetMapper(cfg, is_train=False),
            "num_workers": cfg.DATALOADER.NUM_WORKERS,
            "sampler": InferenceSampler(len(dataset), rank=rank, world_size=world_size)}


@configurable(from_config=_test_loader_from_config)
def build_detection_test_loader(dataset: Union[List[dict], Dataset], *, mapper: Optional[Callable],
                                sampler: Optional[Sampler] = None, batch_size: int = 1, num_workers: int = 0,
                                collate_fn: Optional[Callable] = None) -> DataLoader:
    """The test loader: every image once, in order, this process's contiguous shard only.

    Called as ``(cfg, dataset_name, mapper=None)``, it loads the dicts of ``dataset_name`` (a
    name or names in ``DatasetCatalog``; nothing is filtered), reads DATALOADER.NUM_WORKERS, and
    the mapper defaults to ``DatasetMapper(cfg, is_train=False)``; ``batch_size=``, ``rank=``
    and ``world_size=`` may be added.

    Args:
        dataset: a list of dataset dicts or a torch dataset (map-style or iterable).
        mapper: dataset dict -> model input; ``None`` keeps the items as they are.
        sampler: default an ``InferenceSampler`` (none for an iterable dataset).
        batch_size: images per batch on this process.
        num_workers: DataLoader worker processes.
        collate_fn: list of mapped items -> batch; default keeps the list.

    Returns:
        A ``torch.utils.data.DataLoader``.
    """
    if isinstance(dataset, list):
        dataset = DatasetFromList(dataset, copy=False)
    if mapper is not None:
        dataset = MapDataset(dataset, mapper)
    if not _is_iterable(dataset, sampler) and sampler is None:
        sampler = InferenceSampler(len(dataset))
    # A private generator: iterating must not advance the global torch RNG (the model's).
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=False, num_workers=num_workers,
                      collate_fn=trivial_batch_collator if collate_fn is None else collate_fn,
                      generator=torch.Generator().manual_seed(0))
