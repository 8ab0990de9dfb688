"""Accuracy parity: detkit and torchvision's twin trained the same way through detkit's Trainer, COCO AP.

Every row is one ``Trainer`` run: the same data loader (DatasetMapper, seeded order), the same
``build_optimizer`` / ``build_lr_scheduler`` (AdamW, linear warm-up then cosine decay), the same
train loop (``AMPTrainer`` where the row's config turns SOLVER.AMP on) and the same COCOEvaluator
on the test set. Only ``build_model`` differs: detkit's model, or torchvision's twin
(:mod:`detkit.benchmark.twins`). Rows:

* ``torchvision``: torchvision's model in fp32;
* ``detkit-fp32``: detkit in pure fp32 (NCHW, no autocast);
* ``detkit``: detkit at its config's precision (MODEL.CHANNELS_LAST, SOLVER.AMP, TEST.AMP).
"""
import argparse
import logging
import os
import statistics
import tempfile
import time
from typing import Dict, List, Sequence

import torch

from detkit.engine import Trainer
from detkit.utils.env import seed_all_rng

from .twins import build_torchvision_twin, comparison_cfg, num_classes_key

__all__ = ["ROWS", "parse_rows", "parity_cfg", "row_cfg", "train_row", "run_parity", "format_parity"]

logger = logging.getLogger(__name__)

ROWS = ("torchvision", "detkit-fp32", "detkit")
_ROW_NAMES = {"torchvision": "torchvision fp32", "detkit-fp32": "detkit fp32", "detkit": "detkit default"}
_FP32 = ["SOLVER.AMP.ENABLED", "False", "TEST.AMP.ENABLED", "False", "MODEL.CHANNELS_LAST", "False"]


def parse_rows(text: str) -> List[str]:
    """``"torchvision,detkit"`` -> the rows it names; an error naming the unknown ones."""
    rows = [r for r in text.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown or not rows:
        raise ValueError(f"unknown row(s) {unknown or [text]}; use a comma-separated list of {ROWS}")
    return rows


class TwinTrainer(Trainer):
    """detkit's Trainer with torchvision's twin as the model; everything else is the Trainer's own."""

    @classmethod
    def build_model(cls, cfg):
        return build_torchvision_twin(cfg)


def parity_cfg(args: argparse.Namespace, *, iters: int, batch: int, lr: float, num_classes: int = 3,
               train: str = "shapes_train", test: str = "shapes_val", image_size: int = 320):
    """The comparison config (:func:`~detkit.benchmark.twins.comparison_cfg`) with the parity schedule:
    AdamW (weight decay 0.05), warm-up over min(50, iters / 4) steps then cosine decay to 0, ``iters``
    steps of ``batch`` images of ``train`` at ``image_size`` px, scored on ``test``."""
    cfg = comparison_cfg(args, image_size).clone()
    cfg.defrost()
    key = num_classes_key(cfg)
    cfg.merge_from_list([
        key, str(num_classes), "DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", f"('{test}',)",
        "INPUT.MIN_SIZE_TRAIN", f"({image_size},)", "INPUT.MAX_SIZE_TRAIN", str(image_size),
        "SOLVER.OPTIMIZER", "AdamW", "SOLVER.BASE_LR", str(lr), "SOLVER.WEIGHT_DECAY", "0.05",
        "SOLVER.LR_SCHEDULER_NAME", "WarmupCosineLR", "SOLVER.WARMUP_ITERS", str(min(50, iters // 4)),
        "SOLVER.WARMUP_FACTOR", "0.01", "SOLVER.MAX_ITER", str(iters), "SOLVER.IMS_PER_BATCH", str(batch),
        "SOLVER.CHECKPOINT_PERIOD", str(iters + 1), "TEST.EVAL_PERIOD", "0", "LOG_PERIOD", "50",
    ] + list(getattr(args, "opts", []) or []))  # the user's overrides win here too
    cfg.freeze()
    return cfg


def row_cfg(cfg, row: str, seed: int, output_dir: str):
    """The config of one row and seed (see the module docstring)."""
    if row not in ROWS:
        raise ValueError(f"Unknown parity row '{row}'; use some of {ROWS}.")
    out = cfg.clone()
    out.defrost()
    out.merge_from_list((_FP32 if row != "detkit" else []) + ["SEED", str(seed), "OUTPUT_DIR", output_dir])
    out.freeze()
    return out


def train_row(cfg, row: str) -> Dict[str, float]:
    """Train and score one row with ``cfg`` (from :func:`row_cfg`); returns the test set's bbox metrics
    plus ``train_s``."""
    seed_all_rng(cfg.SEED)  # the same init stream for every row of a seed
    trainer = (TwinTrainer if row == "torchvision" else Trainer)(cfg)
    trainer.resume_or_load(resume=False)
    start = time.perf_counter()
    results = trainer.train()
    seconds = time.perf_counter() - start
    metrics = dict(next(iter(results.values()))["bbox"])
    metrics["train_s"] = seconds
    return metrics


def run_parity(cfg, *, seeds: Sequence[int] = (0, 1), rows: Sequence[str] = ROWS, threads: int = 2,
               output_dir: str = "") -> Dict[str, List[Dict[str, float]]]:
    """Train and score every row for every seed (seed-major, so a seed's rows share their data order).

    Returns:
        {row: [metrics per seed]}.
    """
    torch.set_num_threads(threads)
    out: Dict[str, List[Dict[str, float]]] = {row: [] for row in rows}
    with tempfile.TemporaryDirectory() as scratch:
        for seed in seeds:
            for row in rows:
                folder = os.path.join(output_dir or scratch, f"{row}_seed{seed}")
                metrics = train_row(row_cfg(cfg, row, seed, folder), row)
                logger.info("parity seed %d, %s: AP %.2f, AP50 %.2f, AP75 %.2f, trained in %.0fs", seed,
                            _ROW_NAMES[row], metrics["AP"], metrics["AP50"], metrics["AP75"], metrics["train_s"])
                out[row].append(metrics)
    return out


def format_parity(results: Dict[str, List[Dict[str, float]]], seeds: Sequence[int]) -> str:
    """The parity table: one row per (seed, model), then the mean AP of each model."""
    from tabulate import tabulate

    table = []
    for i, seed in enumerate(seeds):
        for row, per_seed in results.items():
            m = per_seed[i]
            table.append([seed, _ROW_NAMES[row], f"{m['AP']:.2f}", f"{m['AP50']:.2f}", f"{m['AP75']:.2f}",
                          f"{m['train_s']:.0f}"])
    for row, per_seed in results.items():
        table.append(["mean", _ROW_NAMES[row], f"{statistics.mean(m['AP'] for m in per_seed):.2f}",
                      f"{statistics.mean(m['AP50'] for m in per_seed):.2f}", "", ""])
    return tabulate(table, headers=["seed", "model", "AP", "AP50", "AP75", "train s"], tablefmt="github",
                    disable_numparse=True)
