"""The resumable training loader: a seeded index stream, per-sample seeded mapping, exact resume."""
import functools
import logging
import re
import signal
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from detkit.utils.events import get_event_storage

from .common import ON_BAD_IMAGE_CHOICES, DatasetFromList, MapDataset, trivial_batch_collator
from .samplers import AspectRatioGroupedBatchSampler, TrainingSampler
from .samplers.distributed_sampler import _StreamSampler

__all__ = ["TrainDataLoader", "DataLoaderWorkerError"]

logger = logging.getLogger(__name__)


def _identity(x: Any) -> Any:
    return x


def _collate_with_skips(items: List[Any], collate_fn: Callable = trivial_batch_collator):
    """``(mapped, skipped)`` items of a skipping ``MapDataset`` -> (collated batch, every skipped record)."""
    return collate_fn([m for m, _ in items]), [s for _, skipped in items for s in skipped]


class DataLoaderWorkerError(RuntimeError):
    """A data loader worker process died (killed by the system, e.g. out of memory); training stopped."""


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

    def __init__(self, dataset: DatasetFromList, mapper: Optional[Callable], batch_size: int, *, seed: int,
                 sampler: Optional[_StreamSampler] = None, group_ids: Optional[np.ndarray] = None,
                 num_workers: int = 0, rank: int = 0, world_size: int = 1, on_bad_image: str = "raise",
                 collate_fn: Optional[Callable] = None, dataloader_kwargs: Optional[Dict[str, Any]] = None):
        """
        Args:
            dataset: the dataset dicts (a map-style dataset, e.g. ``DatasetFromList``).
            mapper: dataset dict -> model input dict; its draws from the global generators are
                seeded per sample. ``None`` keeps the dicts as they are.
            batch_size: images per batch on this process.
            seed: seed of the index stream and of every sample's augmentation.
            sampler: the index stream, a ``TrainingSampler`` (the default, shuffled) or a
                ``RepeatFactorTrainingSampler``; its seed, rank and world size replace the
                arguments of those names.
            group_ids: per-image aspect group (batches never mix groups), or ``None``.
            num_workers: DataLoader worker processes.
            rank, world_size: this process's slice of the global stream.
            on_bad_image: ``"raise"`` (stop on the first bad image) or ``"skip"``.
            collate_fn: list of mapped dicts -> batch; default keeps the list.
            dataloader_kwargs: more arguments of ``torch.utils.data.DataLoader`` (e.g. ``pin_memory``).
        """
        if on_bad_image not in ON_BAD_IMAGE_CHOICES:
            raise ValueError(f"DATALOADER.ON_BAD_IMAGE is {on_bad_image!r}; use one of {ON_BAD_IMAGE_CHOICES}.")
        if sampler is not None:
            seed, rank, world_size = sampler.seed, sampler._rank, sampler._world_size
        self.on_bad_image = on_bad_image
        self.num_skipped = 0
        self._warned = set()
        self._workers: list = []
        self.dataset = dataset
        self.mapper = mapper if mapper is not None else _identity
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.sampler = sampler
        self.group_ids = group_ids
        self.num_workers = int(num_workers)
        self.rank, self.world_size = int(rank), int(world_size)
        self.collate_fn = collate_fn if collate_fn is not None else trivial_batch_collator
        self.dataloader_kwargs = dict(dataloader_kwargs or {})
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
        if self.sampler is None:
            sampler = TrainingSampler(len(self.dataset), shuffle=True, seed=self.seed, rank=self.rank,
                                      world_size=self.world_size)
        else:
            sampler = self.sampler.with_seed(self.seed)
        batches = AspectRatioGroupedBatchSampler(sampler, self.group_ids, self.batch_size, self._delivered)
        # A private generator: starting workers must not advance the global torch RNG (the model's).
        collate = self.collate_fn
        if self.on_bad_image == "skip":
            collate = functools.partial(_collate_with_skips, collate_fn=self.collate_fn)
        return DataLoader(MapDataset(self.dataset, self.mapper, self.seed, self.on_bad_image), batch_sampler=batches,
                          num_workers=self.num_workers, collate_fn=collate,
                          generator=torch.Generator().manual_seed(self.seed), **self.dataloader_kwargs)

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
