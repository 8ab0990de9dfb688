"""Data loaders: the resumable, seeded training loader and the sharded, ordered test loader."""
import logging
import re
import signal
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader

from detkit.utils import comm
from detkit.utils.events import get_event_storage

from .catalog import DatasetCatalog
from .common import ON_BAD_IMAGE_CHOICES, DatasetFromList, MapDataset
from .dataset_mapper import DatasetMapper
from .samplers import AspectRatioGroupedBatchSampler, InferenceSampler, TrainingSampler

__all__ = ["get_detection_dataset_dicts", "build_detection_train_loader", "build_detection_test_loader",
           "TrainDataLoader", "trivial_batch_collator", "DataLoaderWorkerError"]

logger = logging.getLogger(__name__)


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


def get_detection_dataset_dicts(names: Union[str, Sequence[str]], filter_empty: bool = True) -> List[dict]:
    """Load and concatenate the dataset dicts of ``names`` from ``DatasetCatalog``.

    Args:
        names: a dataset name, or a tuple / list of names (e.g. ``cfg.DATASETS.TRAIN``).
        filter_empty: drop images without any non-crowd annotation.

    Raises:
        ValueError: no names given, a dataset is empty, or nothing is left after filtering.
    """
    names = _as_names(names)
    if not names:
        raise ValueError("No dataset names given; set DATASETS.TRAIN / DATASETS.TEST, e.g. ('shapes_train',).")
    dicts = []
    for name in names:
        part = DatasetCatalog.get(name)
        if not part:
            raise ValueError(f"Dataset '{name}' is empty.")
        dicts.extend(part)
    if filter_empty:
        before = len(dicts)
        dicts = [d for d in dicts if _has_objects(d)]
        logger.info("Removed %d images without annotations; %d left (%s).", before - len(dicts), len(dicts),
                    ", ".join(names))
        if not dicts:
            raise ValueError(f"No image of {names} has annotations; nothing to train on "
                             "(or set DATALOADER.FILTER_EMPTY_ANNOTATIONS False).")
    return dicts


def trivial_batch_collator(batch: List[Any]) -> List[Any]:
    """Keep a batch as a list of dicts (images of different sizes are padded by the model)."""
    return [x for x in batch if x is not None]


class DataLoaderWorkerError(RuntimeError):
    """A data loader worker process died (killed by the system, e.g. out of memory); training stopped."""


def _collate_with_skips(items: List[Any]):
    """``(mapped, skipped)`` items of a skipping ``MapDataset`` -> (batch, every skipped record)."""
    return [m for m, _ in items], [s for _, skipped in items for s in skipped]


def _describe_exit(code: Optional[int]) -> str:
    if code is None:
        return "exited unexpectedly"
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class TrainDataLoader:
    """An infinite iterable of training batches (lists of mapped dicts) that resumes exactly.

    ``state_dict()`` records the stream seed and how many batches were handed to the consumer
    (not how many were prefetched); ``load_state_dict`` on a fresh loader, or on this one
    mid-iteration, makes the next batches exactly those that would have come next: same images,
    same augmentation, whatever ``num_workers`` is.

    With ``on_bad_image="skip"``, a sample whose image is bad is replaced by the next dataset
    item (see ``MapDataset``); each skipped image is logged once, and the running count is
    recorded as ``skipped_images`` in the trainer's event storage (``metrics.json``) and kept
    in ``state_dict``. A worker process that dies raises ``DataLoaderWorkerError`` naming it.
    """

    def __init__(self, dataset: DatasetFromList, mapper: Callable, batch_size: int, *, seed: int,
                 group_ids: Optional[np.ndarray] = None, num_workers: int = 0, rank: int = 0, world_size: int = 1,
                 on_bad_image: str = "raise"):
        """
        Args:
            dataset: the dataset dicts (serialized).
            mapper: dataset dict -> model input dict (may take an ``rng`` keyword).
            batch_size: images per batch on this process.
            seed: seed of the index stream and of every sample's augmentation.
            group_ids: per-image aspect group (batches never mix groups), or ``None``.
            num_workers: DataLoader worker processes.
            rank, world_size: this process's slice of the global stream.
            on_bad_image: ``"raise"`` (stop on the first bad image) or ``"skip"``.
        """
        if on_bad_image not in ON_BAD_IMAGE_CHOICES:
            raise ValueError(f"DATALOADER.ON_BAD_IMAGE is {on_bad_image!r}; use one of {ON_BAD_IMAGE_CHOICES}.")
        self.on_bad_image = on_bad_image
        self.num_skipped = 0
        self._warned = set()
        self._workers: list = []
        self.dataset = dataset
        self.mapper = mapper
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.group_ids = group_ids
        self.num_workers = int(num_workers)
        self.rank, self.world_size = int(rank), int(world_size)
        self._delivered = 0
        self._version = 0  # bumped by load_state_dict so live iterators restart

    def state_dict(self) -> Dict[str, int]:
        """The position to resume from: seed, batches delivered, and the batching it assumes."""
        return {"seed": self.seed, "batches": self._delivered, "batch_size": self.batch_size,
                "world_size": self.world_size, "skipped_images": self.num_skipped}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        """Continue from ``state`` (as returned by ``state_dict``) on the next batch fetched."""
        if state.get("batch_size", self.batch_size) != self.batch_size or \
                state.get("world_size", self.world_size) != self.world_size:
            logger.warning("Resuming the data loader with batch size %d x %d processes, but the state was saved "
                           "with %s x %s: the data order will differ from the original run.", self.batch_size,
                           self.world_size, state.get("batch_size"), state.get("world_size"))
        self.seed = int(state["seed"])
        self._delivered = int(state["batches"])
        self.num_skipped = int(state.get("skipped_images", 0))
        self._version += 1

    def _torch_loader(self) -> DataLoader:
        sampler = TrainingSampler(len(self.dataset), shuffle=True, seed=self.seed, rank=self.rank,
                                  world_size=self.world_size)
        batches = AspectRatioGroupedBatchSampler(sampler, self.group_ids, self.batch_size, self._delivered)
        # A private generator: starting workers must not advance the global torch RNG (the model's).
        collate = _collate_with_skips if self.on_bad_image == "skip" else trivial_batch_collator
        return DataLoader(MapDataset(self.dataset, self.mapper, self.seed, self.on_bad_image), batch_sampler=batches,
                          num_workers=self.num_workers, collate_fn=collate,
                          generator=torch.Generator().manual_seed(self.seed))

    def _count_skips(self, skipped: List[dict]) -> None:
        for s in skipped:
            self.num_skipped += 1
            if s["file_name"] not in self._warned:
                self._warned.add(s["file_name"])
                logger.warning("Skipping image '%s' (image_id %s), the next image takes its place "
                               "(DATALOADER.ON_BAD_IMAGE skip): %s", s["file_name"], s["image_id"], s["error"])
        try:
            get_event_storage().put_scalar("skipped_images", self.num_skipped, smoothing_hint=False)
        except RuntimeError:
            pass  # not training (or before the trainer's storage opens): the next batch records the count

    def worker_error(self, exc: BaseException) -> Optional[DataLoaderWorkerError]:
        """A ``DataLoaderWorkerError`` naming the dead worker(s) if ``exc`` is torch's report of one, else None."""
        text = str(exc)
        if isinstance(exc, DataLoaderWorkerError) or "DataLoader worker" not in text:
            return None
        match = re.search(r"pid(?:\(s\))?\s*([\d, ]+)", text)
        pids = {int(p) for p in re.findall(r"\d+", match.group(1))} if match else set()
        dead = [(i, w) for i, w in enumerate(self._workers) if w.pid in pids or w.exitcode not in (None, 0)]
        if dead:
            who = ", ".join(f"worker {i} (pid {w.pid}) {_describe_exit(w.exitcode)}" for i, w in dead)
        else:
            who = f"a worker {'(pid ' + ', '.join(map(str, sorted(pids))) + ') ' if pids else ''}exited unexpectedly"
        return DataLoaderWorkerError(
            f"Data loader {who}. The system may have run out of memory (see `dmesg`): lower DATALOADER.NUM_WORKERS "
            "or SOLVER.IMS_PER_BATCH. Run the same command with --resume to continue from the last checkpoint.")

    def __iter__(self):
        while True:
            version = self._version
            it = iter(self._torch_loader())
            self._workers = list(getattr(it, "_workers", []))
            while True:
                try:
                    batch = next(it)
                except StopIteration:
                    break
                except RuntimeError as e:
                    err = self.worker_error(e)
                    if err is None:
                        raise
                    raise err from e
                if self._version != version:
                    break  # load_state_dict was called: restart from the restored position
                if self.on_bad_image == "skip":
                    batch, skipped = batch
                    self._count_skips(skipped)
                self._delivered += 1
                yield batch
                if self._version != version:
                    break


def build_detection_train_loader(cfg, mapper: Optional[Callable] = None, dataset: Optional[List[dict]] = None, *,
                                 rank: Optional[int] = None, world_size: Optional[int] = None) -> TrainDataLoader:
    """The training loader: infinite, seeded, DDP-sharded, aspect-grouped, exactly resumable.

    Args:
        cfg: reads DATASETS.TRAIN, DATALOADER.{NUM_WORKERS, ASPECT_RATIO_GROUPING,
            FILTER_EMPTY_ANNOTATIONS, ON_BAD_IMAGE}, SOLVER.IMS_PER_BATCH (over all processes) and SEED.
        mapper: default ``DatasetMapper(cfg, is_train=True)``.
        dataset: list of dataset dicts; default the (filtered) dicts of DATASETS.TRAIN.
        rank, world_size: default from ``detkit.utils.comm``.

    Returns:
        A ``TrainDataLoader`` yielding lists of IMS_PER_BATCH // world_size mapped dicts, forever.
    """
    rank = comm.get_rank() if rank is None else rank
    world_size = comm.get_world_size() if world_size is None else world_size
    total = cfg.SOLVER.IMS_PER_BATCH
    if total % world_size != 0:
        raise ValueError(f"SOLVER.IMS_PER_BATCH ({total}) must be divisible by the number of processes ({world_size}).")
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ValueError(f"DATALOADER.SAMPLER_TRAIN {cfg.DATALOADER.SAMPLER_TRAIN!r} is unknown; "
                         "the only training sampler is 'TrainingSampler'.")
    if dataset is None:
        dataset = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    group_ids = None
    if cfg.DATALOADER.ASPECT_RATIO_GROUPING:
        group_ids = np.asarray([0 if d.get("width", 1) > d.get("height", 0) else 1 for d in dataset], dtype=np.int8)
    seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
    logger.info("Train loader: %d images, %d per batch on each of %d process(es), seed %d.",
                len(dataset), total // world_size, world_size, seed)
    return TrainDataLoader(
        DatasetFromList(dataset), mapper if mapper is not None else DatasetMapper(cfg, is_train=True),
        total // world_size, seed=seed, group_ids=group_ids, num_workers=cfg.DATALOADER.NUM_WORKERS,
        rank=rank, world_size=world_size, on_bad_image=cfg.DATALOADER.ON_BAD_IMAGE)


def build_detection_test_loader(cfg, dataset_name: Union[str, Sequence[str]], mapper: Optional[Callable] = None,
                                batch_size: int = 1, *, rank: Optional[int] = None,
                                world_size: Optional[int] = None) -> DataLoader:
    """The test loader: every image once, in order, this process's contiguous shard only.

    Args:
        cfg: reads DATALOADER.NUM_WORKERS and the test-time INPUT keys (through the mapper).
        dataset_name: a name or names in ``DatasetCatalog`` (nothing is filtered).
        mapper: default ``DatasetMapper(cfg, is_train=False)``.
        batch_size: images per batch on this process.
        rank, world_size: default from ``detkit.utils.comm``.

    Returns:
        A ``torch.utils.data.DataLoader`` yielding lists of mapped dicts.
    """
    dicts = get_detection_dataset_dicts(dataset_name, filter_empty=False)
    sampler = InferenceSampler(len(dicts), rank=rank, world_size=world_size)
    return DataLoader(
        MapDataset(DatasetFromList(dicts), mapper if mapper is not None else DatasetMapper(cfg, is_train=False)),
        batch_sampler=BatchSampler(sampler, batch_size, drop_last=False),
        num_workers=cfg.DATALOADER.NUM_WORKERS, collate_fn=trivial_batch_collator,
        generator=torch.Generator().manual_seed(0))
