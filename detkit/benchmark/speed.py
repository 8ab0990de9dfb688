"""Speed of one config's training step, inference or data loading: s/iter and images/s after warm-up."""
import itertools
import time
from dataclasses import dataclass
from typing import Callable, Dict, List

import torch

from detkit.checkpoint import DetectionCheckpointer
from detkit.data import build_detection_test_loader, build_detection_train_loader
from detkit.engine.trainer import create_train_loop
from detkit.modeling import build_model
from detkit.solver import build_optimizer
from detkit.utils.events import EventStorage

__all__ = ["Result", "report", "TASKS", "bench_train", "bench_eval", "bench_data"]


@dataclass
class Result:
    """Timings of one benchmark: ``seconds[i]`` is the time of timed iteration i (warm-up excluded)."""

    name: str
    seconds: List[float]
    images_per_iter: int

    @property
    def s_per_iter(self) -> float:
        return sum(self.seconds) / len(self.seconds)

    @property
    def images_per_s(self) -> float:
        return self.images_per_iter / self.s_per_iter


def report(result: Result, warmup: int) -> str:
    """One line: task, s/iter (mean and median), images/s."""
    med = sorted(result.seconds)[len(result.seconds) // 2]
    return (f"{result.name}: {result.s_per_iter:.4f} s/iter (median {med:.4f}), {result.images_per_s:.2f} images/s "
            f"over {len(result.seconds)} iterations of {result.images_per_iter} images after {warmup} warm-up")


def _timed(step: Callable[[], None], warmup: int, iters: int) -> List[float]:
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds


def bench_train(cfg, warmup: int = 3, iters: int = 20) -> Result:
    """Forward + backward + optimizer step of the training loop (AMP if SOLVER.AMP.ENABLED), on
    batches loaded up front (data loading is measured by the ``data`` task)."""
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    batches = list(itertools.islice(iter(build_detection_train_loader(cfg)), min(warmup + iters, 20)))
    trainer = create_train_loop(cfg, model, itertools.cycle(batches), optimizer)  # AMP per SOLVER.AMP.ENABLED
    with EventStorage() as storage:
        def step():
            trainer.iter = storage.iter
            trainer.run_step()
            storage.step()
        seconds = _timed(step, warmup, iters)
    return Result("train", seconds, len(batches[0]))


def bench_eval(cfg, warmup: int = 3, iters: int = 20) -> Result:
    """Inference (``torch.inference_mode``, batch 1) on images of DATASETS.TEST[0], loaded up front."""
    if not cfg.DATASETS.TEST:
        raise ValueError("The eval benchmark needs DATASETS.TEST in the config (or as an override).")
    model = build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    batches = list(itertools.islice(iter(build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])),
                                    warmup + iters))
    stream = itertools.cycle(batches)

    def step():
        with torch.inference_mode():
            model(next(stream))

    return Result("eval", _timed(step, warmup, iters), len(batches[0]))


def bench_data(cfg, warmup: int = 3, iters: int = 20) -> Result:
    """Fetching training batches from the train loader (reading, decoding, augmenting, collating)."""
    stream = iter(build_detection_train_loader(cfg))
    return Result("data", _timed(lambda: next(stream), warmup, iters), cfg.SOLVER.IMS_PER_BATCH)


TASKS: Dict[str, Callable] = {"train": bench_train, "eval": bench_eval, "data": bench_data}
