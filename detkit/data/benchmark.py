"""Measure the memory of a training loader's process tree (main + workers) over a long run."""
import logging
import os
import time
from typing import Dict, Iterable, List, Optional

logger = logging.getLogger(__name__)

__all__ = ["process_tree_rss", "measure_loader_memory"]


def _children(pid: int) -> List[int]:
    kids = []
    task_dir = f"/proc/{pid}/task"
    for tid in os.listdir(task_dir) if os.path.isdir(task_dir) else []:
        try:
            with open(f"{task_dir}/{tid}/children") as f:
                kids.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return kids


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass  # the process ended meanwhile
    return 0


def process_tree_rss(pid: Optional[int] = None) -> int:
    """Summed resident set size (bytes) of ``pid`` (default: this process) and all its descendants.

    Reads ``/proc`` (Linux). Pages shared between processes count once per process, as ``ps``
    shows them, so the figure is an upper bound on the real footprint.
    """
    pid = os.getpid() if pid is None else pid
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _rss_bytes(p)
        todo.extend(_children(p))
    return total


def measure_loader_memory(loader: Iterable, num_iters: int = 2000,
                          record_at: Iterable[int] = (200, 2000)) -> Dict[str, float]:
    """Iterate ``loader`` and record the process tree's RSS at the given iterations.

    Args:
        loader: e.g. ``build_detection_train_loader(cfg)`` (infinite) or any iterable of batches.
        num_iters: iterations to run.
        record_at: 1-based iteration numbers at which to record the RSS.

    Returns:
        ``{"rss_mib@<it>": ..., "growth_pct": (last - first) / first * 100, "seconds": ...}``.
    """
    marks = sorted(set(int(i) for i in record_at if 0 < int(i) <= num_iters))
    out: Dict[str, float] = {}
    start = time.perf_counter()
    it = iter(loader)
    for i in range(1, num_iters + 1):
        next(it)
        if i in marks:
            out[f"rss_mib@{i}"] = process_tree_rss() / 2**20
            logger.info("iteration %d: process tree RSS %.1f MiB", i, out[f"rss_mib@{i}"])
    out["seconds"] = time.perf_counter() - start
    if len(marks) >= 2:
        first, last = out[f"rss_mib@{marks[0]}"], out[f"rss_mib@{marks[-1]}"]
        out["growth_pct"] = (last - first) / first * 100
    return out
