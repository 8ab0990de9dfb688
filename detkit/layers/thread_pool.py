"""One small shared thread pool for CPU kernels that run on one thread but release the GIL.

torchvision's CPU NMS kernel is single-threaded; ``batched_nms_parallel`` splits its work into
independent pieces and runs them here.
"""
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional

__all__ = ["parallel_map"]

_pool: Optional[ThreadPoolExecutor] = None
_pool_size = 0
_pool_lock = threading.Lock()


def parallel_map(fn: Callable, items: List) -> List:
    """``[fn(x) for x in items]``, each call on its own thread of a shared pool of ``len(items)`` threads."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != len(items):
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool, _pool_size = ThreadPoolExecutor(len(items), thread_name_prefix="detkit-kernels"), len(items)
        pool = _pool
    return list(pool.map(fn, items))
