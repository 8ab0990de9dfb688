"""Dataset wrappers for loaders: dicts serialized into one buffer, and a per-sample seeded map."""
import inspect
import logging
import pickle
import random
from typing import Any, Callable, List, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from .detection_utils import BadImageError


__all__ = ["DatasetFromList", "MapDataset", "ON_BAD_IMAGE_CHOICES"]

ON_BAD_IMAGE_CHOICES = ("raise", "skip")

logger = logging.getLogger(__name__)


class DatasetFromList(Dataset):
    """A list of dataset dicts, pickled once into one numpy byte buffer plus offsets.

    Worker processes then share two arrays instead of millions of small Python objects, whose
    reference counts would otherwise copy pages on every access and grow memory over a run.
    Each ``__getitem__`` returns a fresh copy.
    """

    def __init__(self, lst: List[Any], serialize: bool = True):
        """
        Args:
            lst: the items (e.g. dataset dicts).
            serialize: pickle into one buffer (the default); ``False`` keeps the list as is.
        """
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
            return pickle.loads(pickle.dumps(self._lst[idx]))
        start = 0 if idx == 0 else int(self._ends[idx - 1])
        return pickle.loads(memoryview(self._buffer[start:int(self._ends[idx])]))


def _accepts_rng(func: Callable) -> bool:
    try:
        return "rng" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


class MapDataset(Dataset):
    """Apply ``mapper`` to items of ``dataset``; with a seed, each sample's randomness is fixed.

    Items are requested by plain index, or (training) by ``(index, stream_position)``: the
    mapper then gets ``rng=np.random.default_rng([seed, position])`` if it takes an ``rng``
    argument; otherwise Python's, numpy's and torch's global generators are seeded from the
    same pair for the call (and restored afterwards), so custom mappers are reproducible too.

    With ``on_bad_image="skip"``, an item whose mapper raises ``BadImageError`` is replaced by
    the next dataset item that maps (index + 1, + 2, ..., with the same seed), and each item is
    returned as ``(mapped, skipped)`` where ``skipped`` lists ``{"file_name", "image_id",
    "error"}`` of the items passed over. The replacement depends only on the index and the
    stream position, so a resumed run skips exactly as the original did.
    """

    def __init__(self, dataset: Dataset, mapper: Callable, seed: Optional[int] = None, on_bad_image: str = "raise"):
        if on_bad_image not in ON_BAD_IMAGE_CHOICES:
            raise ValueError(f"DATALOADER.ON_BAD_IMAGE is {on_bad_image!r}; use one of {ON_BAD_IMAGE_CHOICES}.")
        self.dataset = dataset
        self.mapper = mapper
        self.seed = seed
        self.on_bad_image = on_bad_image
        self._pass_rng = _accepts_rng(mapper)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        if isinstance(item, tuple):
            idx, position = item
        else:
            idx, position = item, None
        if self.on_bad_image == "raise":
            return self._map(idx, position)
        skipped = []
        for k in range(len(self.dataset)):
            try:
                return self._map((idx + k) % len(self.dataset), position), skipped
            except BadImageError as e:
                skipped.append({"file_name": e.file_name, "image_id": e.image_id, "error": str(e)})
        raise BadImageError(f"No image of the dataset could be used ({len(skipped)} tried, DATALOADER.ON_BAD_IMAGE "
                            f"skip); the last error: {skipped[-1]['error'] if skipped else 'none'}")

    def _map(self, idx: int, position: Optional[int]):
        d = self.dataset[idx]
        if self.seed is None or position is None:
            return self.mapper(d)
        rng = np.random.default_rng([self.seed, position])
        if self._pass_rng:
            return self.mapper(d, rng=rng)
        return self._call_globally_seeded(d, rng)

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
