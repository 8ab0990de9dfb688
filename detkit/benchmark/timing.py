"""Timers for side-by-side benchmarks: interleaved medians, boxes entering NMS, and peak memory."""
import contextlib
import resource
import statistics
import time
from typing import Callable, Dict, List

import torch

__all__ = ["time_interleaved", "count_nms_inputs", "peak_rss_kib"]


def time_interleaved(fns: Dict[str, Callable[[], object]], warmup: int, iters: int) -> Dict[str, float]:
    """Median seconds per call of each of ``fns`` after ``warmup`` calls each.

    The timed calls alternate between the functions (a, b, a, b, ...), so a slow drift of the
    machine (clock, another process) weighs on every side alike instead of on whichever ran last.
    """
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


@contextlib.contextmanager
def count_nms_inputs():
    """Record the number of boxes of every ``torchvision.ops.batched_nms`` call made inside.

    Both detkit and torchvision's detection models call batched_nms, which dispatches to one of
    two module-level helpers of torchvision.ops.boxes; those are wrapped while the block runs.
    """
    import torchvision.ops.boxes as tv_boxes

    counts: List[int] = []
    names = ("_batched_nms_vanilla", "_batched_nms_coordinate_trick")
    originals = {n: getattr(tv_boxes, n) for n in names}

    def wrap(fn):
        def counted(boxes, *args, **kwargs):
            counts.append(int(boxes.shape[0]))
            return fn(boxes, *args, **kwargs)
        return counted

    for n in names:
        setattr(tv_boxes, n, wrap(originals[n]))
    try:
        yield counts
    finally:
        for n, fn in originals.items():
            setattr(tv_boxes, n, fn)


def peak_rss_kib() -> int:
    """This process's peak RSS in KiB: VmHWM on Linux (ru_maxrss survives exec, so a child
    started from a large parent would report the parent's size), ru_maxrss elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
