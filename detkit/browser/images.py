"""Image bytes for the browser: a dataset image re-encoded as JPEG, and thumbnails made on demand and
kept in a bounded in-memory cache (least recently used first out)."""
import io
import threading
from collections import OrderedDict
from typing import Any, Callable, Tuple

from PIL import Image

from detkit.data.detection_utils import decode_image

__all__ = ["encode_image", "ThumbnailCache"]


def encode_image(file_name: str, image_id: Any = None, max_side: int = 0, quality: int = 90) -> bytes:
    """The image as JPEG bytes, read the way training reads it (EXIF orientation applied, RGB).

    Args:
        file_name: the dataset's path of the image.
        image_id: named in the error if the file cannot be read.
        max_side: shrink so that neither side exceeds this (aspect kept); 0 keeps the full size.
        quality: JPEG quality.

    Raises:
        detkit.data.ImageReadError: the file is missing or cannot be decoded (naming it and the id).
    """
    image, _ = decode_image(file_name, image_id)
    if max_side and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


class ThumbnailCache:
    """Thumbnails by dataset index, made on first request and kept while they fit in ``max_bytes``.

    Args:
        make: index -> thumbnail bytes.
        max_bytes: the cache's budget; the least recently used thumbnails leave first.
    """

    def __init__(self, make: Callable[[int], bytes], max_bytes: int = 64 << 20):
        self._make = make
        self._max_bytes = max_bytes
        self._items: "OrderedDict[int, bytes]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, index: int) -> Tuple[bytes, bool]:
        """The thumbnail of ``index`` and whether it came from the cache."""
        with self._lock:
            data = self._items.get(index)
            if data is not None:
                self._items.move_to_end(index)
                self.hits += 1
                return data, True
            self.misses += 1
        data = self._make(index)  # outside the lock: other thumbnails are served meanwhile
        with self._lock:
            if index not in self._items:
                self._items[index] = data
                self._bytes += len(data)
            while self._bytes > self._max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)
        return data, False

    def __len__(self) -> int:
        return len(self._items)
