#!/usr/bin/env python
"""Measure training, inference or data-loading speed of a config: s/iter and images/s after warm-up.

Examples:
    python tools/benchmark.py --config configs/quickstart/fcos_shapes.yaml --task train
    python tools/benchmark.py --config configs/quickstart/fcos_shapes.yaml --task eval --iters 50
    python tools/benchmark.py --config configs/quickstart/fcos_shapes.yaml --task data
    python tools/benchmark.py --config configs/Base-FCOS.yaml --compare-torchvision

Each task is a function in TASKS returning a ``Result``; further modes (e.g. a side-by-side
comparison with torchvision's own models) register themselves there and reuse ``report``.
"""
import argparse
import itertools
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import torch  # noqa: E402


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


def bench_train(cfg, args) -> Result:
    """Forward + backward + optimizer step of the training loop (AMP if SOLVER.AMP.ENABLED), on
    batches loaded up front (data loading is measured by the ``data`` task)."""
    from detkit.data import build_detection_train_loader
    from detkit.engine.trainer import create_train_loop
    from detkit.modeling import build_model
    from detkit.solver import build_optimizer
    from detkit.utils.events import EventStorage

    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    batches = list(itertools.islice(iter(build_detection_train_loader(cfg)), min(args.warmup + args.iters, 20)))
    trainer = create_train_loop(cfg, model, itertools.cycle(batches), optimizer)  # AMP per SOLVER.AMP.ENABLED
    with EventStorage() as storage:
        def step():
            trainer.iter = storage.iter
            trainer.run_step()
            storage.step()
        seconds = _timed(step, args.warmup, args.iters)
    return Result("train", seconds, len(batches[0]))


def bench_eval(cfg, args) -> Result:
    """Inference (``torch.inference_mode``, batch 1) on images of DATASETS.TEST[0], loaded up front."""
    from detkit.checkpoint import DetectionCheckpointer
    from detkit.data import build_detection_test_loader
    from detkit.modeling import build_model

    if not cfg.DATASETS.TEST:
        raise SystemExit("--task eval needs DATASETS.TEST in the config (or as an override).")
    model = build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    batches = list(itertools.islice(iter(build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])),
                                    args.warmup + args.iters))
    stream = itertools.cycle(batches)

    def step():
        with torch.inference_mode():
            model(next(stream))

    return Result("eval", _timed(step, args.warmup, args.iters), len(batches[0]))


def bench_data(cfg, args) -> Result:
    """Fetching training batches from the train loader (reading, decoding, augmenting, collating)."""
    from detkit.data import build_detection_train_loader

    stream = iter(build_detection_train_loader(cfg))
    return Result("data", _timed(lambda: next(stream), args.warmup, args.iters), cfg.SOLVER.IMS_PER_BATCH)


TASKS: Dict[str, Callable] = {"train": bench_train, "eval": bench_eval, "data": bench_data}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "--config-file", dest="config_file", required=True, metavar="FILE")
    parser.add_argument("--task", choices=sorted(TASKS))
    parser.add_argument("--compare-torchvision", action="store_true",
                        help="time the config's model against torchvision's matching FCOS / FasterRCNN side by side "
                             "(tools/benchmark_compare.py; more options there)")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    parser.add_argument("--plugin", action="append", default=[], metavar="SPEC", help="repeatable")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE")
    return parser


def main(argv=None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.compare_torchvision:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import benchmark_compare

        return benchmark_compare.main(args.config_file, args.opts)
    if not args.task:
        parser.error("give --task (train, eval or data) or --compare-torchvision")
    from detkit.engine import setup_cfg
    from detkit.utils.collect_env import collect_env_info
    from detkit.utils.env import seed_all_rng
    from detkit.utils.logger import setup_logger

    setup_logger(name="detkit")
    cfg = setup_cfg(args)
    seed_all_rng(cfg.SEED if cfg.SEED >= 0 else 0)
    print(collect_env_info())
    result = TASKS[args.task](cfg, args)
    print(report(result, args.warmup))
    return 0


if __name__ == "__main__":
    sys.exit(main())
