"""The per-dataset pictures: PR curves, confusion matrix, per-class AP, error breakdown, predictions grid."""
import math
from typing import List, Mapping, Sequence

import numpy as np
from matplotlib.patches import Rectangle

from .drawing import new_figure, save_figure
from .matching import TIDE_CATEGORIES, ImageMatch

__all__ = ["plot_pr_curves", "plot_confusion_matrix", "plot_per_class_ap", "plot_errors", "plot_predictions",
           "PredictionSample"]

_STATUS_COLORS = {"tp": "#2ca02c", "fp": "#d62728", "ignored": "#7f7f7f"}
_GT_COLOR, _MISSED_COLOR = "#1f77b4", "#ff7f0e"


def plot_pr_curves(curves: Mapping[str, object], path: str) -> None:
    """Two panels (IoU 0.50 and 0.50:0.95), one precision-recall line per class with ground truth.

    Args:
        curves: as ``pr_curves`` returns.
        path: the PNG to write.
    """
    recall = np.asarray(curves["recall"])
    fig, axes = new_figure(1, 2, (11.0, 4.6))
    for ax, key in zip(axes, ("0.50", "0.50:0.95")):
        for i, (name, per_iou) in enumerate((k, v) for k, v in curves.items() if k != "recall"):
            precision = np.asarray(per_iou[key])
            if (precision < 0).any():
                continue  # no ground truth for this class
            ax.plot(recall, precision, color=f"C{i % 10}", linewidth=1.5,
                    label=f"{name} (AP {100 * precision.mean():.1f})")
        ax.set_title(f"precision-recall, IoU {key}")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8, loc="lower left")
    save_figure(fig, path)


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str, score_thresh: float) -> None:
    """Counts in the cells, colours normalised per row (per true class).

    Args:
        matrix: (K + 1, K + 1) counts, rows true, columns predicted, background last.
        class_names: the K classes.
        path: the PNG to write.
        score_thresh: the score threshold the counts used (for the title).
    """
    labels = list(class_names) + ["background"]
    n = len(labels)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=np.float64), where=rows > 0)
    side = max(4.5, 0.6 * n + 2.5)
    fig, (ax,) = new_figure(1, 1, (side + 1.0, side))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the row")
    if n <= 30:
        for (r, c), count in np.ndenumerate(matrix):
            if count:
                ax.text(c, r, str(int(count)), ha="center", va="center", fontsize=8,
                        color="white" if normalised[r, c] > 0.5 else "black")
    ax.set_xticks(range(n), labels, rotation=90 if n > 8 else 45, ha="right" if n <= 8 else "center", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix (score >= {score_thresh:g}, IoU >= 0.5)")
    save_figure(fig, path)


def plot_per_class_ap(aps: Mapping[str, Mapping[str, float]], path: str) -> None:
    """Bars of AP and AP50 per class (x100); classes without ground truth are left empty."""
    names = list(aps)
    x = np.arange(len(names))
    fig, (ax,) = new_figure(1, 1, (max(5.0, 0.5 * len(names) + 2.5), 4.2))
    for offset, key, color in ((-0.2, "AP", "C0"), (0.2, "AP50", "C1")):
        values = np.nan_to_num(np.asarray([aps[n][key] for n in names], dtype=np.float64), nan=0.0)
        ax.bar(x + offset, values, width=0.4, color=color, label=key)
    ax.set_xticks(x, names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    ax.set_ylabel("AP (%)")
    ax.set_ylim(0, 100)
    ax.set_title("AP per class")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def plot_errors(errors: Mapping[str, Mapping], path: str) -> None:
    """Left: false positives per TIDE category and missed boxes in total; right: the same per class, stacked.

    Args:
        errors: as ``error_counts`` returns.
        path: the PNG to write.
    """
    keys = list(TIDE_CATEGORIES) + ["missed"]
    fig, (ax_total, ax_class) = new_figure(1, 2, (12.0, 4.4))
    totals = [errors["total"][k] for k in keys]
    bars = ax_total.bar(keys, totals, color=[f"C{i}" for i in range(len(keys))])
    ax_total.bar_label(bars, fontsize=8)
    ax_total.set_title(f"errors (true positives: {errors['total']['tp']})")
    ax_total.set_ylabel("count")
    names = list(errors["per_class"])
    bottom = np.zeros(len(names))
    for i, k in enumerate(keys):
        values = np.asarray([errors["per_class"][n][k] for n in names], dtype=np.float64)
        ax_class.bar(names, values, bottom=bottom, color=f"C{i}", label=k)
        bottom += values
    ax_class.set_title("per class: false positives by predicted class, missed by true class", fontsize=9)
    ax_class.tick_params(axis="x", rotation=45 if len(names) > 6 else 0)
    ax_class.legend(fontsize=8)
    for ax in (ax_total, ax_class):
        ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)


class PredictionSample:
    """One image for ``plot_predictions``: its pixels, boxes (XYXY, original coordinates) and matching."""

    def __init__(self, image: np.ndarray, title: str, pred_boxes: np.ndarray, gt_boxes: np.ndarray,
                 match: ImageMatch):
        self.image, self.title = image, title
        self.pred_boxes, self.gt_boxes, self.match = pred_boxes, gt_boxes, match


def _draw_box(ax, box, x_offset: float, color: str, label: str = "", dashed: bool = False) -> None:
    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(Rectangle((x0 + x_offset, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=1.2,
                           linestyle="--" if dashed else "-"))
    if label:
        ax.text(x0 + x_offset, y0, label, fontsize=5, color="white", va="bottom",
                bbox={"facecolor": color, "pad": 0.5, "linewidth": 0})


def plot_predictions(samples: List[PredictionSample], class_names: Sequence[str], path: str,
                     score_thresh: float) -> None:
    """A grid of images, each as ground truth (left) beside the predictions (right).

    Ground truth is blue, missed boxes orange dashed; predictions scoring >= ``score_thresh`` are
    green (true positive), red (false positive, labelled with its TIDE category) or grey (in a crowd).
    """
    cols = min(4, max(1, len(samples)))
    rows = max(1, math.ceil(len(samples) / cols))
    fig, axes = new_figure(rows, cols, (4.6 * cols, 2.5 * rows + 0.4))

    def name(c: int) -> str:
        return class_names[c] if 0 <= c < len(class_names) else str(c)

    for ax, s in zip(axes, samples):
        image = s.image if s.image.ndim == 3 else np.repeat(s.image[..., None], 3, axis=2)
        width = image.shape[1]
        ax.imshow(np.concatenate([image, image], axis=1))
        ax.axvline(width - 0.5, color="white", linewidth=2)
        m = s.match
        for box, cls, crowd, missed in zip(s.gt_boxes, m.gt_classes.tolist(), m.gt_crowd.tolist(),
                                           m.gt_missed.tolist()):
            color = _MISSED_COLOR if missed else _GT_COLOR
            _draw_box(ax, box, 0, "#7f7f7f" if crowd else color, name(cls) + (" crowd" if crowd else ""), missed)
        for box, cls, status, category in zip(s.pred_boxes, m.pred_classes.tolist(), m.status, m.category):
            if status in _STATUS_COLORS:
                _draw_box(ax, box, width, _STATUS_COLORS[status], name(cls) + (f" {category}" if category else ""))
        ax.set_title(s.title, fontsize=8)
        ax.set_axis_off()
    for ax in axes[len(samples):]:
        ax.set_visible(False)
    fig.suptitle(f"ground truth (blue; missed: orange) | predictions, score >= {score_thresh:g} "
                 "(green: true positive, red: false positive with its error, grey: crowd)", fontsize=9)
    save_figure(fig, path)

