"""Training metrics: EventStorage (per-iteration scalars) and the writers that report them."""
import datetime
import json
import logging
import os
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Dict, List, Optional, Tuple

import torch
from fvcore.common.history_buffer import HistoryBuffer
from iopath.common.file_io import g_pathmgr

logger = logging.getLogger(__name__)

__all__ = ["EventStorage", "get_event_storage", "EventWriter", "JSONWriter", "CommonMetricPrinter",
           "TensorboardXWriter", "tensorboard_available"]

_STORAGE_STACK: List["EventStorage"] = []


def get_event_storage() -> "EventStorage":
    """The innermost ``EventStorage`` in use (the trainer opens one for the whole run).

    Raises:
        RuntimeError: when called outside ``with EventStorage(...)`` (e.g. outside training).
    """
    if not _STORAGE_STACK:
        raise RuntimeError("get_event_storage() was called outside of training: wrap the code in "
                           "`with EventStorage(start_iter):` or call it from a hook / the model in training.")
    return _STORAGE_STACK[-1]


class EventStorage:
    """Scalars recorded during training, keyed by name, each remembered with its iteration.

    Use as a context manager so that ``get_event_storage()`` finds it from anywhere (hooks, model).
    """

    def __init__(self, start_iter: int = 0, history_length: int = 1000000):
        self._history: Dict[str, HistoryBuffer] = defaultdict(lambda: HistoryBuffer(history_length))
        self._smoothing_hints: Dict[str, bool] = {}
        self._latest: Dict[str, Tuple[float, int]] = {}
        self._iter = int(start_iter)
        self._current_prefix = ""

    def put_scalar(self, name: str, value, smoothing_hint: bool = True, cur_iter: Optional[int] = None) -> None:
        """Record ``value`` (a number or a one-element tensor) for ``name`` at the current iteration.

        Args:
            smoothing_hint: whether writers should report a windowed median rather than the raw value.
            cur_iter: the iteration to record it at; the storage's current iteration by default.
        """
        name = self._current_prefix + name
        cur_iter = self._iter if cur_iter is None else int(cur_iter)
        value = float(value.detach().item() if isinstance(value, torch.Tensor) else value)
        self._history[name].update(value, cur_iter)
        self._latest[name] = (value, cur_iter)
        old_hint = self._smoothing_hints.setdefault(name, smoothing_hint)
        if old_hint != smoothing_hint:
            raise ValueError(f"Scalar '{name}' was put with smoothing_hint={old_hint} before and "
                             f"{smoothing_hint} now; use one value for a given name.")

    def put_scalars(self, *, smoothing_hint: bool = True, cur_iter: Optional[int] = None, **kwargs) -> None:
        """``put_scalar`` for each keyword."""
        for k, v in kwargs.items():
            self.put_scalar(k, v, smoothing_hint=smoothing_hint, cur_iter=cur_iter)

    def history(self, name: str) -> HistoryBuffer:
        """The ``HistoryBuffer`` of ``name``; raises KeyError naming the known scalars if absent."""
        if name not in self._history:
            raise KeyError(f"No scalar named '{name}' in the EventStorage; it has: {', '.join(sorted(self._history))}.")
        return self._history[name]

    def histories(self) -> Dict[str, HistoryBuffer]:
        return dict(self._history)

    def latest(self) -> Dict[str, Tuple[float, int]]:
        """``{name: (latest value, iteration it was put at)}``."""
        return dict(self._latest)

    def latest_with_smoothing_hint(self, window_size: int = 20) -> Dict[str, Tuple[float, int]]:
        """Like ``latest``, but scalars put with ``smoothing_hint=True`` report the median of
        their last ``window_size`` values."""
        out = {}
        for name, (value, it) in self._latest.items():
            if self._smoothing_hints[name]:
                value = self._history[name].median(window_size)
            out[name] = (value, it)
        return out

    def smoothing_hints(self) -> Dict[str, bool]:
        return dict(self._smoothing_hints)

    def step(self) -> None:
        """Advance to the next iteration (the trainer calls this after each one)."""
        self._iter += 1

    @property
    def iter(self) -> int:
        """The iteration being run (or just finished, inside ``after_step``)."""
        return self._iter

    @iter.setter
    def iter(self, val: int) -> None:
        self._iter = int(val)

    @contextmanager
    def name_scope(self, name: str):
        """Prefix scalars put inside this block with ``name/``."""
        old = self._current_prefix
        self._current_prefix = name.rstrip("/") + "/"
        try:
            yield
        finally:
            self._current_prefix = old

    def __enter__(self) -> "EventStorage":
        _STORAGE_STACK.append(self)
        return self

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        assert _STORAGE_STACK[-1] is self, "EventStorage contexts must be closed in the order they were opened"
        _STORAGE_STACK.pop()


class EventWriter:
    """Base of the writers that ``PeriodicWriter`` calls every ``LOG_PERIOD`` iterations."""

    def write(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class JSONWriter(EventWriter):
    """Append one JSON object per ``write()`` to a file: ``{"iteration": i, name: value, ...}``.

    Only scalars put since the previous write are included (smoothed ones as windowed medians),
    grouped by the iteration they were put at, so a line never repeats stale values.
    """

    def __init__(self, json_file: str, window_size: int = 20):
        self._file_handle = g_pathmgr.open(json_file, "a")
        self._window_size = window_size
        self._last_write = -1

    def write(self) -> None:
        storage = get_event_storage()
        by_iter: Dict[int, Dict[str, float]] = defaultdict(dict)
        for name, (value, it) in storage.latest_with_smoothing_hint(self._window_size).items():
            if it > self._last_write:
                by_iter[it][name] = value
        if not by_iter:
            return
        for it in sorted(by_iter):
            self._file_handle.write(json.dumps({"iteration": it, **by_iter[it]}, sort_keys=True) + "\n")
        self._file_handle.flush()
        try:
            os.fsync(self._file_handle.fileno())
        except (AttributeError, OSError):
            pass
        self._last_write = max(by_iter)

    def close(self) -> None:
        self._file_handle.close()


class CommonMetricPrinter(EventWriter):
    """Log a one-line summary: ETA, iteration, losses, time, data_time, LR and max memory."""

    def __init__(self, max_iter: Optional[int] = None, window_size: int = 20):
        self.logger = logging.getLogger("detkit.utils.events")
        self._max_iter = max_iter
        self._window_size = window_size
        self._last = None  # (iteration, wall time) of the previous write, for ETA without "time"

    def _eta(self, storage: EventStorage) -> Optional[str]:
        if self._max_iter is None:
            return None
        remaining = self._max_iter - storage.iter - 1
        try:
            sec = storage.history("time").median(1000) * remaining
            return str(datetime.timedelta(seconds=int(sec)))
        except KeyError:
            eta = None
            if self._last is not None and storage.iter > self._last[0]:
                per_iter = (time.perf_counter() - self._last[1]) / (storage.iter - self._last[0])
                eta = str(datetime.timedelta(seconds=int(per_iter * remaining)))
            self._last = (storage.iter, time.perf_counter())
            return eta

    def write(self) -> None:
        storage = get_event_storage()
        it = storage.iter
        if self._max_iter is not None and it >= self._max_iter:
            return  # after training, an eval hook may still write; nothing new to print here

        def median(name: str) -> Optional[float]:
            try:
                return storage.history(name).median(self._window_size)
            except KeyError:
                return None

        def fmt(value: Optional[float], spec: str) -> str:
            return "N/A" if value is None else format(value, spec)

        losses = "  ".join(f"{k}: {v.median(self._window_size):.4g}"
                           for k, v in storage.histories().items() if "loss" in k)
        try:
            lr = f"{storage.history('lr').latest():.5g}"
        except KeyError:
            lr = "N/A"
        mem = ""
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            mem = f"  max_mem: {torch.cuda.max_memory_allocated() / 1024 / 1024:.0f}M"
        else:
            mem = f"  max_mem: {_max_rss_mb():.0f}M (host RSS)"
        eta = self._eta(storage)
        self.logger.info(
            f"{'eta: ' + eta + '  ' if eta else ''}iter: {it}  {losses}  time: {fmt(median('time'), '.4f')}  "
            f"data_time: {fmt(median('data_time'), '.4f')}  lr: {lr}{mem}"
        )


def _max_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux / macOS)."""
    try:
        import resource
        import sys

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 1024 / 1024 if sys.platform == "darwin" else rss / 1024
    except Exception:  # pragma: no cover - platforms without `resource`
        return 0.0


def tensorboard_available() -> bool:
    """Whether ``tensorboard`` is installed (TensorBoard event files are written only then)."""
    try:
        import tensorboard  # noqa: F401  (only probing that it is installed)
    except ImportError:
        return False
    return True


class TensorboardXWriter(EventWriter):
    """Write scalars to TensorBoard event files in ``log_dir`` (needs ``tensorboard`` installed)."""

    def __init__(self, log_dir: str, window_size: int = 20, **kwargs):
        from torch.utils.tensorboard import SummaryWriter

        self._window_size = window_size
        self._writer = SummaryWriter(log_dir, **kwargs)
        self._last_write = -1

    def write(self) -> None:
        storage = get_event_storage()
        new_last = self._last_write
        for name, (value, it) in storage.latest_with_smoothing_hint(self._window_size).items():
            if it > self._last_write:
                self._writer.add_scalar(name, value, it)
                new_last = max(new_last, it)
        self._last_write = new_last

    def close(self) -> None:
        self._writer.close()
