"""Training hooks: iteration timer, LR scheduler, periodic checkpoints, evaluation, best model, writers."""
import datetime
import glob
import logging
import math
import os
import re
import time
from typing import Any, Callable, Dict, List, Optional

import detkit.utils.comm as comm
from detkit.utils.env import get_rng_state, set_rng_state
from detkit.utils.events import EventWriter
from detkit.utils.nested import flatten_dict

from .train_loop import HookBase

logger = logging.getLogger(__name__)

__all__ = ["HookBase", "CallbackHook", "IterationTimer", "LRScheduler", "PeriodicCheckpointer", "EvalHook",
           "BestCheckpointer", "PeriodicWriter", "flatten_results_dict"]


class CallbackHook(HookBase):
    """A hook made of plain functions, each called with the trainer."""

    def __init__(self, *, before_train=None, after_train=None, before_step=None, after_step=None):
        self._before_train, self._after_train = before_train, after_train
        self._before_step, self._after_step = before_step, after_step

    def before_train(self):
        if self._before_train:
            self._before_train(self.trainer)

    def after_train(self):
        if self._after_train:
            self._after_train(self.trainer)

    def before_step(self):
        if self._before_step:
            self._before_step(self.trainer)

    def after_step(self):
        if self._after_step:
            self._after_step(self.trainer)


class IterationTimer(HookBase):
    """Record each iteration's time (run_step plus earlier hooks) as ``time``; log a summary at the end.

    Args:
        warmup_iter: iterations left out of the summary (they include one-off setup costs).
    """

    def __init__(self, warmup_iter: int = 3):
        self._warmup_iter = warmup_iter
        self._step_start = 0.0
        self._total = 0.0
        self._count = 0
        self._train_start = None

    def before_train(self):
        self._train_start = time.perf_counter()
        self._total, self._count = 0.0, 0

    def before_step(self):
        self._step_start = time.perf_counter()

    def after_step(self):
        elapsed = time.perf_counter() - self._step_start
        if self.trainer.iter - self.trainer.start_iter >= self._warmup_iter:
            self._total += elapsed
            self._count += 1
        self.trainer.storage.put_scalar("time", elapsed)

    def after_train(self):
        if self._train_start is None:
            return
        wall = time.perf_counter() - self._train_start
        if self._count:
            logger.info("Overall training speed: %d iterations in %s (%.4f s / it)", self._count,
                        datetime.timedelta(seconds=int(self._total)), self._total / self._count)
        logger.info("Total training time: %s", datetime.timedelta(seconds=int(wall)))


class LRScheduler(HookBase):
    """Record the LR (of the param group with the most parameters) as ``lr``, then step the scheduler.

    Args:
        optimizer, scheduler: taken from the trainer when None.
    """

    def __init__(self, optimizer=None, scheduler=None):
        self._optimizer, self._scheduler = optimizer, scheduler

    @property
    def scheduler(self):
        return self._scheduler or self.trainer.scheduler

    def before_train(self):
        opt = self._optimizer or self.trainer.optimizer
        self._best_group = max(range(len(opt.param_groups)), key=lambda i: len(opt.param_groups[i]["params"]))
        self._opt = opt

    def after_step(self):
        lr = self._opt.param_groups[self._best_group]["lr"]
        self.trainer.storage.put_scalar("lr", lr, smoothing_hint=False)
        self.scheduler.step()


_PERIODIC_NAME = re.compile(r"^(?P<prefix>.+)_(?P<iter>\d{7})\.pth$")


class PeriodicCheckpointer(HookBase):
    """Save ``<prefix>_<iter:07d>.pth`` every ``period`` iterations and ``<prefix>_final.pth`` at the end.

    Only the newest ``max_to_keep`` periodic files are kept (found on disk, so this also holds across
    resumes); ``max_to_keep`` 0 or None keeps all. A checkpoint is written only after a successful
    step, so a failed iteration never overwrites the last good file.

    Args:
        checkpointer: a ``DetectionCheckpointer``.
        period: save every this many iterations.
        max_iter: total iterations; the final checkpoint is written after iteration ``max_iter - 1``.
        max_to_keep: periodic checkpoints to keep.
        file_prefix: file name prefix.
    """

    def __init__(self, checkpointer, period: int, max_iter: Optional[int] = None, max_to_keep: Optional[int] = None,
                 file_prefix: str = "model"):
        self.checkpointer = checkpointer
        self.period = int(period)
        self.max_iter = max_iter
        self.max_to_keep = max_to_keep
        self.file_prefix = file_prefix

    def before_train(self):
        if self.max_iter is None:
            self.max_iter = self.trainer.max_iter
        # Temp files of writes interrupted by a crash (atomic writes leave nothing else behind).
        if self.checkpointer.save_to_disk and self.checkpointer.save_dir:
            for stale in glob.glob(os.path.join(self.checkpointer.save_dir, ".*.tmp")):
                logger.info("Removing %s, left by an interrupted checkpoint write", stale)
                os.remove(stale)

    def _prune(self) -> None:
        if not self.max_to_keep or not self.checkpointer.save_to_disk:
            return
        found = []
        for f in os.listdir(self.checkpointer.save_dir):
            m = _PERIODIC_NAME.match(f)
            if m and m.group("prefix") == self.file_prefix:
                found.append((int(m.group("iter")), f))
        for _, f in sorted(found)[: -self.max_to_keep]:
            os.remove(os.path.join(self.checkpointer.save_dir, f))

    def after_step(self):
        it = self.trainer.iter
        if self.period > 0 and (it + 1) % self.period == 0:
            self.checkpointer.save(f"{self.file_prefix}_{it:07d}", iteration=it)
            self._prune()
        if self.max_iter is not None and it >= self.max_iter - 1:
            self.checkpointer.save(f"{self.file_prefix}_final", iteration=it)


def flatten_results_dict(results: Dict[str, Any], prefix: str = "") -> Dict[str, float]:
    """``{"bbox": {"AP": 1.0}}`` -> ``{"bbox/AP": 1.0}``."""
    return flatten_dict(results, sep="/", prefix=prefix)


class EvalHook(HookBase):
    """Run ``eval_function()`` every ``eval_period`` iterations and after training; record its results.

    Results (a dict, possibly nested per dataset) are flattened to ``"bbox/AP"``-style names and put
    in the EventStorage, so ``metrics.json`` and ``BestCheckpointer`` see them. Evaluation saves and
    restores the RNG state, so evaluating never changes the course of training.

    Args:
        eval_period: evaluate after every this many iterations; 0 only after training.
        eval_function: called with no arguments on every process; returns a results dict.
        eval_after_train: also evaluate once training completed.
    """

    def __init__(self, eval_period: int, eval_function: Callable[[], Dict], eval_after_train: bool = True):
        self._period = int(eval_period)
        self._func = eval_function
        self._eval_after_train = eval_after_train
        self.last_results: Optional[Dict] = None

    def _do_eval(self) -> None:
        rng = get_rng_state()
        try:
            results = self._func()
        finally:
            set_rng_state(rng)
        self.last_results = results
        if results:
            flat = flatten_results_dict(results)
            scalars = {}
            for k, v in flat.items():
                try:
                    scalars[k] = float(v)
                except (TypeError, ValueError) as e:
                    raise ValueError(f"Evaluation result '{k}' is {v!r}, not a number; eval_function must "
                                     "return a (nested) dict of numbers.") from e
            self.trainer.storage.put_scalars(smoothing_hint=False, **scalars)
        comm.synchronize()

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if self._period > 0 and next_iter % self._period == 0 and next_iter != self.trainer.max_iter:
            self._do_eval()

    def after_train(self):
        if self._eval_after_train and self.trainer.completed:
            self._do_eval()
        del self._func  # evaluation closures may hold data loaders / models


class BestCheckpointer(HookBase):
    """Save ``<prefix>.pth`` whenever the evaluated ``val_metric`` improves (checked after each evaluation).

    Place it after the ``EvalHook``. It does not move ``last_checkpoint``, so ``--resume`` still
    continues from the newest periodic checkpoint; the best value survives resumes.

    Args:
        eval_period: the EvalHook's period (0: only after training).
        checkpointer: a ``DetectionCheckpointer``.
        val_metric: a flattened result name, e.g. ``"bbox/AP50"``.
        mode: "max" or "min".
        file_prefix: file name of the best checkpoint, without ``.pth``.
    """

    def __init__(self, eval_period: int, checkpointer, val_metric: str, mode: str = "max",
                 file_prefix: str = "model_best"):
        if mode not in ("max", "min"):
            raise ValueError(f"TEST.BEST_CHECKPOINT_MODE is '{mode}'; use 'max' or 'min'.")
        self._period = int(eval_period)
        self._checkpointer = checkpointer
        self._metric = val_metric
        self._mode = mode
        self._prefix = file_prefix
        self.best_metric: Optional[float] = None
        self.best_iter: Optional[int] = None

    def _better(self, value: float) -> bool:
        if self.best_metric is None:
            return True
        return value > self.best_metric if self._mode == "max" else value < self.best_metric

    def _check(self) -> None:
        latest = self.trainer.storage.latest()
        if self._metric not in latest:
            known = sorted(k for k, (_, it) in latest.items() if "/" in k)
            logger.warning("BestCheckpointer: metric '%s' (TEST.BEST_CHECKPOINT_METRIC) was not produced by the "
                           "evaluation; results have: %s. Not saving a best checkpoint.", self._metric,
                           ", ".join(known) or "nothing")
            return
        value, it = latest[self._metric]
        if not math.isfinite(value):
            logger.warning("BestCheckpointer: metric '%s' is %s at iteration %d; ignored.", self._metric, value, it)
            return
        if self._better(value):
            logger.info("New best %s = %.4f at iteration %d (previous: %s); saving %s.pth", self._metric, value,
                        self.trainer.iter, self.best_metric, self._prefix)
            self.best_metric, self.best_iter = value, self.trainer.iter
            self._checkpointer.save(self._prefix, iteration=self.trainer.iter, tag_last_checkpoint=False)

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if self._period > 0 and next_iter % self._period == 0 and next_iter != self.trainer.max_iter:
            self._check()

    def after_train(self):
        if self.trainer.completed:
            self._check()

    def state_dict(self) -> Dict[str, Any]:
        if self.best_metric is None:
            return {}
        return {"best_metric": float(self.best_metric), "best_iter": int(self.best_iter)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best_metric = state.get("best_metric")
        self.best_iter = state.get("best_iter")


class PeriodicWriter(HookBase):
    """Call every writer's ``write()`` each ``period`` iterations and at the end; close them after training.

    Args:
        writers: ``EventWriter`` objects (console printer, JSON, TensorBoard).
        period: iterations between writes.
    """

    def __init__(self, writers: List[EventWriter], period: int = 20):
        for w in writers:
            assert isinstance(w, EventWriter), f"{type(w).__name__} is not an EventWriter"
        self._writers = writers
        self._period = int(period)

    def after_step(self):
        it = self.trainer.iter
        if (it + 1) % self._period == 0 or it == self.trainer.max_iter - 1:
            for w in self._writers:
                w.write()

    def after_train(self):
        for w in self._writers:
            # Evaluation results put after the last step still reach metrics.json.
            w.write()
            w.close()
