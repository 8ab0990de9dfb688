"""Decode every image of a dataset once, in worker processes, with results cached by file size and mtime."""
import hashlib
import json
import logging
import multiprocessing as mp
import os
import tempfile
from typing import Dict, Iterable, List, Optional

from .detection_utils import BadImageError, decode_image

__all__ = ["scan_images", "default_cache_dir"]

logger = logging.getLogger(__name__)

_CACHE_VERSION = 1


def default_cache_dir() -> str:
    """``$DETKIT_CACHE``, or ``~/.cache/detkit``: where detkit keeps what it can recompute."""
    return os.environ.get("DETKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "detkit")


def _stat_key(path: str) -> Optional[List[int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _scan_one(path: str) -> dict:
    """Fully decode one file (EXIF applied): ``{"height", "width", "mode"}`` or ``{"error": reason}``."""
    try:
        image, mode = decode_image(path)
    except BadImageError as e:
        return {"error": e.reason}
    return {"height": image.height, "width": image.width, "mode": mode}


def _cache_file(cache_dir: str, key: str) -> str:
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return os.path.join(cache_dir, "check_dataset", f"{digest}.json")


def _load_cache(path: str) -> Dict[str, list]:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data.get("images", {}) if data.get("version") == _CACHE_VERSION else {}


def _save_cache(path: str, images: Dict[str, list]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"version": _CACHE_VERSION, "images": images}, f)
        os.replace(tmp, path)
    except OSError as e:  # a cache that cannot be written only costs time next run
        logger.warning("Could not write the check_dataset cache %s: %s", path, e)
        if os.path.exists(tmp):
            os.remove(tmp)


def scan_images(paths: Iterable[str], *, cache_key: str, num_workers: Optional[int] = None,
                cache_dir: Optional[str] = None, progress: bool = True, desc: str = "scan") -> Dict[str, dict]:
    """Decode each file fully (not just its header) and report its size after EXIF orientation.

    Results are cached under ``cache_dir`` (default ``default_cache_dir()``), one file per
    ``cache_key`` (e.g. the dataset name and annotation file), each image keyed by its path, size
    and mtime: a file that changed is decoded again, an unchanged one is not.

    Args:
        paths: image files (duplicates are scanned once).
        cache_key: names the cache file.
        num_workers: processes that decode; default ``min(8, cpu_count)``; 0 or 1 decodes here.
        cache_dir: cache folder; ``""`` disables the cache.
        progress: show a progress bar (counts, rate, ETA) on stderr.
        desc: the progress bar's label.

    Returns:
        ``{path: {"height", "width", "mode"}}``, or ``{path: {"error": reason}}`` for a file that
        is missing, empty, truncated, undecodable or in an unsupported mode.
    """
    from tqdm import tqdm

    paths = list(dict.fromkeys(paths))
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    cache_path = _cache_file(cache_dir, cache_key) if cache_dir else None
    cached = _load_cache(cache_path) if cache_path else {}
    results: Dict[str, dict] = {}
    keys: Dict[str, Optional[List[int]]] = {}
    todo = []
    for p in paths:
        keys[p] = _stat_key(p)
        hit = cached.get(p)
        if keys[p] is not None and hit is not None and hit[:2] == keys[p]:
            results[p] = hit[2]
        else:
            todo.append(p)
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1)
    bar = tqdm(total=len(paths), initial=len(paths) - len(todo), desc=desc, unit="img", disable=not progress,
               dynamic_ncols=True)
    bad = sum(1 for r in results.values() if "error" in r)
    with bar:
        if num_workers > 1 and len(todo) > 1:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ctx.Pool(num_workers) as pool:
                chunk = max(1, min(64, len(todo) // (num_workers * 8)))
                for p, r in zip(todo, pool.imap(_scan_one, todo, chunksize=chunk)):
                    results[p] = r
                    bad += "error" in r
                    bar.update(1)
                    bar.set_postfix(unreadable=bad, refresh=False)
        else:
            for p in todo:
                results[p] = r = _scan_one(p)
                bad += "error" in r
                bar.update(1)
                bar.set_postfix(unreadable=bad, refresh=False)
    if cache_path and todo:
        # Missing files are not cached (no stat key): they are looked at again next time.
        cached.update({p: keys[p] + [results[p]] for p in todo if keys[p] is not None})
        _save_cache(cache_path, {p: cached[p] for p in paths if p in cached})
    logger.info("Scanned %d images (%d decoded, %d from the cache), %d unreadable.", len(paths), len(todo),
                len(paths) - len(todo), bad)
    return results
