"""Dataset wrappers for loaders: serialized lists, per-sample seeded maps, worker sharding, aspect grouping."""
import copy as copy_module
import logging
import pickle
import random
from typing import Any, Callable, List, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, Sampler, get_worker_info

from .detection_utils import BadImageError


__all__ = ["DatasetFromList", "MapDataset", "AspectRatioGroupedDataset", "ToIterableDataset", "ON_BAD_IMAGE_CHOICES",
           "trivial_batch_collator"]

ON_BAD_IMAGE_CHOICES = ("raise", "skip")

logger = logging.getLogger(__name__)


class DatasetFromList(Dataset):
    """A list of dataset dicts, pickled once into one numpy byte buffer plus offsets.

    Worker processes then share two arrays instead of millions of small Python objects, whose
    reference counts would otherwise copy pages on every access and grow memory over a run.
    Each ``__getitem__`` of a serialized list returns a fresh copy.
    """

    def __init__(self, lst: List[Any], copy: bool = True, serialize: bool = True):
        """
        Args:
            lst: the items (e.g. dataset dicts).
            copy: when not serialized, return a deep copy of the item (so it can be changed in
                place without touching the list); serialized items are always fresh.
            serialize: pickle into one buffer (the default); ``False`` keeps the list as is.
        """
        if not isinstance(serialize, bool):
            raise TypeError(f"DatasetFromList(serialize=) takes True or False, got {serialize!r}.")
        self._copy = copy
        self._serialize = serialize
        if not serialize:
            self._lst = list(lst)
            return
        blobs = [np.frombuffer(pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8) for x in lst]
        self._ends = np.cumsum(np.asarray([len(b) for b in blobs], dtype=np.int64))  # (N,) end offset of each item
        self._buffer = np.concatenate(blobs) if blobs else np.zeros(0, dtype=np.uint8)
        logger.debug("Serialized %d items into %.2f MiB.", len(blobs), self._buffer.nbytes / 2**20)

    def __len__(self) -> int:
        return len(self._ends) if self._serialize else len(self._lst)

    def __getitem__(self, idx: int) -> Any:
        if not self._serialize:
            return copy_module.deepcopy(self._lst[idx]) if self._copy else self._lst[idx]
        start = 0 if idx == 0 else int(self._ends[idx - 1])
        return pickle.loads(memoryview(self._buffer[start:int(self._ends[idx])]))


def trivial_batch_collator(batch: List[Any]) -> List[Any]:
    """Keep a batch as a list of dicts (images of different sizes are padded by the model)."""
    return [x for x in batch if x is not None]


class MapDataset(Dataset):
    """Apply ``mapper`` to items of ``dataset``; with a seed, each sample's randomness is fixed.

    Items are requested by plain index, or (training) by ``(index, stream_position)``: Python's,
    numpy's and torch's global generators are then seeded from ``(seed, position)`` for the
    mapper's call (and restored afterwards), so any mapper drawing from them, e.g. detectron2-style
    augmentations on numpy's global RNG, maps each stream position the same way in every run.

    A mapper may return ``None`` to skip an item (as in detectron2): the next dataset item
    (index + 1, + 2, ..., with the same seed) is mapped in its place. Given an
    ``IterableDataset``, the result is iterable too, and ``None`` results are dropped.

    With ``on_bad_image="skip"``, an item whose mapper raises ``BadImageError`` is replaced the
    same way, and each item is returned as ``(mapped, skipped)`` where ``skipped`` lists
    ``{"file_name", "image_id", "error"}`` of the items passed over. The replacement depends only
    on the index and the stream position, so a resumed run skips exactly as the original did.
    """

    def __new__(cls, dataset, *args, **kwargs):
        if isinstance(dataset, IterableDataset):
            return _MapIterableDataset(dataset, *args, **kwargs)
        return super().__new__(cls)

    def __getnewargs__(self):
        return self.dataset, self.mapper

    def __init__(self, dataset: Dataset, mapper: Callable, seed: Optional[int] = None, on_bad_image: str = "raise"):
        """
        Args:
            dataset: a map-style dataset (or an iterable one, see above).
            mapper: item -> mapped item, or ``None`` to skip the item.
            seed: seed of the per-sample generators (with ``(index, position)`` requests).
            on_bad_image: ``"raise"`` or ``"skip"``.
        """
        if on_bad_image not in ON_BAD_IMAGE_CHOICES:
            raise ValueError(f"DATALOADER.ON_BAD_IMAGE is {on_bad_image!r}; use one of {ON_BAD_IMAGE_CHOICES}.")
        self.dataset = dataset
        self.mapper = mapper
        self.seed = seed
        self.on_bad_image = on_bad_image

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        idx, position = item if isinstance(item, tuple) else (item, None)
        idx, n = int(idx), len(self.dataset)
        skipped = []
        for k in range(n):
            cur = (idx + k) % n
            try:
                out = self._map(cur, position)
            except BadImageError as e:
                if self.on_bad_image == "raise":
                    raise
                skipped.append({"file_name": e.file_name, "image_id": e.image_id, "error": str(e)})
                continue
            if out is not None:
                return (out, skipped) if self.on_bad_image == "skip" else out
            if k + 1 == 3:
                logger.warning("The mapper returned None for dataset items %d..%d; trying the next ones.", idx, cur)
        if skipped:
            raise BadImageError(f"No image of the dataset could be used ({len(skipped)} tried, DATALOADER.ON_BAD_IMAGE "
                                f"skip); the last error: {skipped[-1]['error']}")
        raise RuntimeError(f"The mapper {self.mapper!r} returned None for every one of the {n} dataset items; "
                           "nothing to load. Check what makes it skip an item.")

    def _map(self, idx: int, position: Optional[int]):
        d = self.dataset[idx]
        if self.seed is None or position is None:
            return self.mapper(d)
        return self._call_globally_seeded(d, np.random.default_rng([self.seed, position]))

    def _call_globally_seeded(self, d, rng: np.random.Generator):
        py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
        s = int(rng.integers(2**31))
        random.seed(s)
        np.random.seed(s)
        torch.default_generator.manual_seed(s)  # CPU only: CUDA generators are left alone
        try:
            return self.mapper(d)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.set_rng_state(torch_state)


class _MapIterableDataset(IterableDataset):
    """``mapper`` over an iterable dataset, dropping ``None`` results (what ``MapDataset`` gives for one)."""

    def __init__(self, dataset: IterableDataset, mapper: Callable, seed: Optional[int] = None,
                 on_bad_image: str = "raise"):
        if seed is not None or on_bad_image != "raise":
            raise ValueError("MapDataset over an IterableDataset takes no seed and no on_bad_image.")
        self.dataset = dataset
        self.mapper = mapper

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        for x in map(self.mapper, self.dataset):
            if x is not None:
                yield x


def _shard_for_worker(iterable, chunk_size: int = 1):
    """This DataLoader worker's share of ``iterable``: chunks ``id, id + n, id + 2n, ...`` of ``chunk_size`` items.

    A DataLoader takes one batch from each worker in turn, so with batches of ``chunk_size``
    items its output is the unsharded stream, whatever the number of workers.
    """
    info = get_worker_info()
    if info is None or info.num_workers == 1:
        yield from iterable
        return
    for position, x in enumerate(iterable):
        if (position // chunk_size) % info.num_workers == info.id:
            yield x


class ToIterableDataset(IterableDataset):
    """A map-style dataset read in the order of ``sampler``, as an iterable dataset.

    Each DataLoader worker iterates the whole sampler (cheap: indices only) and keeps its own
    chunks, so 1 or N workers yield the same stream in the DataLoader's output.
    """

    def __init__(self, dataset: Dataset, sampler: Sampler, shard_sampler: bool = True, shard_chunk_size: int = 1):
        """
        Args:
            dataset: a map-style dataset (``__getitem__``).
            sampler: the indices to read, e.g. a ``TrainingSampler``.
            shard_sampler: split the sampler's indices across DataLoader workers; set it False
                for a sampler that already gives each worker different indices.
            shard_chunk_size: consecutive indices each worker takes in turn; use the DataLoader's
                batch size so that its batches come out in the sampler's order.
        """
        if isinstance(dataset, IterableDataset):
            raise TypeError("ToIterableDataset needs a map-style dataset; this one is already iterable.")
        if not isinstance(sampler, Sampler):
            raise TypeError(f"ToIterableDataset needs a torch.utils.data.Sampler, got {type(sampler).__name__}.")
        if shard_chunk_size <= 0:
            raise ValueError(f"shard_chunk_size must be positive, got {shard_chunk_size}.")
        self.dataset = dataset
        self.sampler = sampler
        self.shard_sampler = shard_sampler
        self.shard_chunk_size = int(shard_chunk_size)

    def __iter__(self):
        indices = _shard_for_worker(self.sampler, self.shard_chunk_size) if self.shard_sampler else self.sampler
        for idx in indices:
            yield self.dataset[idx]

    def __len__(self) -> int:
        return len(self.sampler)


class AspectRatioGroupedDataset(IterableDataset):
    """Batches (lists of ``batch_size`` items) in which all images are landscape or all portrait.

    Each item of ``dataset`` must be a dict with ``width`` and ``height``; it waits in the bucket
    of its group (``width > height`` or not) until that bucket holds a full batch.
    """

    def __init__(self, dataset, batch_size: int):
        """
        Args:
            dataset: an iterable of dicts with ``width`` and ``height``.
            batch_size: items per batch.
        """
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self._buckets = [[], []]

    def __iter__(self):
        for d in self.dataset:
            bucket = self._buckets[0 if d["width"] > d["height"] else 1]
            bucket.append(d)
            if len(bucket) == self.batch_size:
                batch = bucket[:]
                del bucket[:]  # clear before yielding: code after a yield may never run
                yield batch
