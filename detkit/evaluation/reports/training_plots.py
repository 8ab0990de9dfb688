"""losses.png: every loss term and the total against iteration (raw and smoothed), LR, and AP per evaluation."""
import json
import logging
import math
import re
from typing import Dict, List, Mapping, Sequence

import numpy as np
from iopath.common.file_io import g_pathmgr

from .drawing import new_figure, save_figure

__all__ = ["load_metrics", "plot_losses"]

logger = logging.getLogger(__name__)

_LOSS = re.compile(r"^(total_loss|loss_.+)$")
_AP = re.compile(r"^(?:(?P<dataset>.+)/)?bbox/(?P<metric>AP|AP50)$")


def load_metrics(path: str) -> List[Dict[str, float]]:
    """The records of a ``metrics.json`` (one JSON object per line), skipping lines that do not parse.

    A run killed mid-write can leave a half line at the end; it is skipped with a warning.

    Raises:
        FileNotFoundError: naming the file, when it does not exist.
    """
    if not g_pathmgr.exists(path):
        raise FileNotFoundError(f"{path} does not exist: losses.png is drawn from a training run's metrics.json.")
    records = []
    with g_pathmgr.open(path, "r") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("%s line %d is not valid JSON (an interrupted write?); skipped.", path, lineno)
    return records


def _series(records: Sequence[Mapping[str, float]], key: str):
    points = [(r["iteration"], r[key]) for r in records if key in r and "iteration" in r
              and isinstance(r[key], (int, float)) and math.isfinite(r[key])]
    if not points:
        return np.zeros(0), np.zeros(0)
    it, val = zip(*points)
    return np.asarray(it, dtype=np.float64), np.asarray(val, dtype=np.float64)


def _smooth(values: np.ndarray) -> np.ndarray:
    """TensorBoard-style exponential moving average, debiased so the first points are not pulled to 0.

    Its weight (at most 0.8) shrinks for short series, which a heavy average would only lag behind.
    """
    weight = min(0.8, max(0.0, 1.0 - 4.0 / max(len(values), 1)))
    out = np.empty_like(values)
    acc = 0.0
    for i, v in enumerate(values):
        acc = weight * acc + (1 - weight) * v
        out[i] = acc / (1 - weight ** (i + 1))
    return out


def plot_losses(runs: Mapping[str, Sequence[Mapping[str, float]]], path: str) -> Dict[str, List[str]]:
    """Draw ``losses.png`` for one run or several overlaid (one colour per run, labelled by its name).

    One panel per loss term (``total_loss`` first, with the LR on a second axis), raw values faint
    and their moving average solid; a last panel with AP (solid) and AP50 (dashed) per evaluation,
    when any run evaluated.

    Args:
        runs: run label (its folder) -> its ``metrics.json`` records.
        path: the PNG to write.

    Returns:
        Each panel's title -> the labels of its legend (what was drawn).

    Raises:
        ValueError: when no run has any loss value.
    """
    loss_keys = sorted({k for records in runs.values() for r in records for k in r if _LOSS.match(k)},
                       key=lambda k: (k != "total_loss", k))
    if not loss_keys:
        raise ValueError(f"No loss values (total_loss, loss_*) in the metrics of {', '.join(runs)}: "
                         "did training log any iteration (LOG_PERIOD)?")
    ap_keys = sorted({k for records in runs.values() for r in records for k in r if _AP.match(k)})
    panels = loss_keys + (["AP"] if ap_keys else [])
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = new_figure(rows, cols, (5.0 * cols, 3.4 * rows))
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for ax, key in zip(axes, loss_keys):
        lr_ax = ax.twinx() if key == "total_loss" else None
        for color, (label, records) in zip(colors, runs.items()):
            it, val = _series(records, key)
            if len(it) == 0:
                continue
            ax.plot(it, val, color=color, alpha=0.3, linewidth=1)
            ax.plot(it, _smooth(val), color=color, linewidth=1.6, label=label if len(runs) > 1 else "smoothed")
            if lr_ax is not None:
                lr_it, lr = _series(records, "lr")
                lr_ax.plot(lr_it, lr, color=color, linestyle=":", linewidth=1)
        if lr_ax is not None:
            lr_ax.set_ylabel("learning rate (dotted)")
            lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        ax.set_title(key)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    if ap_keys:
        ax = axes[len(loss_keys)]
        for color, (label, records) in zip(colors, runs.items()):
            for key in ap_keys:
                it, val = _series(records, key)
                if len(it) == 0:
                    continue
                m = _AP.match(key)
                name = f"{m.group('dataset')} {m.group('metric')}" if m.group("dataset") else m.group("metric")
                ax.plot(it, val, color=color, marker="o", markersize=3,
                        linestyle="--" if m.group("metric") == "AP50" else "-",
                        label=f"{label}: {name}" if len(runs) > 1 else name)
        ax.set_title("box AP per evaluation")
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    save_figure(fig, path)
    return {ax.get_title(): [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []
            for ax in axes[:len(panels)]}
