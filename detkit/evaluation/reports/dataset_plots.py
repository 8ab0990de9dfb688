"""The per-dataset pictures: PR curves, confusion matrix, per-class AP, error breakdown, predictions grid."""
import io
import math
import os
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from iopath.common.file_io import g_pathmgr
from matplotlib.lines import Line2D
from PIL import Image

from .drawing import new_figure, save_figure
from .matching import TIDE_CATEGORIES, ImageMatch

__all__ = ["plot_pr_curves", "plot_confusion_matrix", "plot_per_class_ap", "plot_errors", "plot_predictions",
           "PredictionSample"]



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
    fig, (ax,) = new_figure(1, 1, (side + 1.0, side), left=0.2, bottom=0.2, right=0.95)
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
    fig, (ax,) = new_figure(1, 1, (max(5.0, 0.5 * len(names) + 2.5), 4.2), bottom=0.25 if len(names) > 6 else 0.12)
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


# Box colours of the predictions grid: ground truth, then predictions by outcome.
BOX_COLORS = {"ground truth": "#1f77b4", "missed": "#ff7f0e", "crowd": "#7f7f7f", "tp": "#2ca02c",
              "cls": "#d62728", "loc": "#e377c2", "both": "#9467bd", "dupe": "#8c564b", "bkg": "#bcbd22",
              "ignored": "#7f7f7f"}
_CELL = 192  # pixels: each image is scaled to fit a _CELL x _CELL square


def _fit(image: np.ndarray) -> Tuple[np.ndarray, float]:
    """``image`` scaled to fit the cell (aspect kept) and padded to it; and the scale."""
    image = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    h, w = image.shape[:2]
    scale = _CELL / max(h, w)
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(image[..., :3])).resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR))
    cell = np.full((_CELL, _CELL, 3), 255, dtype=np.uint8)
    cell[:resized.shape[0], :resized.shape[1]] = resized
    return cell, scale


def _outline(boxes: np.ndarray, scale: float, x0: float, y0: float) -> List[np.ndarray]:
    """Closed (5, 2) polylines of XYXY boxes, scaled and moved to a cell of the mosaic."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale + [x0, y0, x0, y0]
    return list(np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]], b[:, [0, 1]]], axis=1))


def plot_predictions(samples: List[PredictionSample], path: str, score_thresh: float, cols: int = 4) -> None:
    """A grid of images, each as ground truth (left) beside the predictions (right), in one picture.

    Ground truth is blue (missed: orange, dashed; crowd: grey); predictions scoring >=
    ``score_thresh`` are green when true positive, else coloured by their TIDE error (legend).
    The images are pasted into one mosaic and the boxes drawn as two line collections, which keeps
    the picture quick to draw.
    """
    cols = min(cols, max(1, len(samples)))
    rows = max(1, math.ceil(len(samples) / cols))
    gap = 8
    width, height = cols * (2 * _CELL + gap) - gap, rows * (_CELL + 20) - 20
    mosaic = np.full((height, width, 3), 255, dtype=np.uint8)
    solid: Dict[str, List] = {"lines": [], "colors": []}
    dashed: Dict[str, List] = {"lines": [], "colors": []}
    fig = Figure(figsize=(width / 80, (height + 60) / 80), dpi=80)  # one figure pixel per mosaic pixel
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, height / (height + 60)))
    for idx, s in enumerate(samples):
        x0, y0 = (idx % cols) * (2 * _CELL + gap), (idx // cols) * (_CELL + 20)
        cell, scale = _fit(s.image)
        mosaic[y0:y0 + _CELL, x0:x0 + _CELL] = cell
        mosaic[y0:y0 + _CELL, x0 + _CELL:x0 + 2 * _CELL] = cell
        mosaic[y0:y0 + _CELL, x0 + _CELL - 1:x0 + _CELL + 1] = 255  # between truth and predictions
        m = s.match
        gt_kind = np.where(m.gt_crowd.numpy(), "crowd", np.where(m.gt_missed.numpy(), "missed", "ground truth"))
        for box, kind in zip(_outline(s.gt_boxes, scale, x0, y0), gt_kind):
            target = dashed if kind == "missed" else solid
            target["lines"].append(box)
            target["colors"].append(BOX_COLORS[kind])
        counted = [i for i, st in enumerate(m.status) if st in ("tp", "fp", "ignored")]
        boxes = _outline(np.asarray(s.pred_boxes).reshape(-1, 4)[counted], scale, x0 + _CELL, y0)
        for box, i in zip(boxes, counted):
            solid["lines"].append(box)
            solid["colors"].append(BOX_COLORS[m.category[i] or m.status[i]])
        ax.text(x0 + _CELL, y0 + _CELL + 2, s.title, ha="center", va="top", fontsize=8)
    for lines, style in ((solid, "solid"), (dashed, "dashed")):
        if lines["lines"]:
            ax.add_collection(LineCollection(lines["lines"], colors=lines["colors"], linewidths=1.2,
                                             linestyles=style))
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_axis_off()
    handles = [Line2D([], [], color=c, linestyle="--" if k == "missed" else "-", label=k)
               for k, c in BOX_COLORS.items() if k != "ignored"]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8, frameon=False,
               title=f"left: ground truth | right: predictions with score >= {score_thresh:g} "
                     "(tp: true positive; other colours: the false positive's error; grey: crowd)",
               title_fontsize=8)
    # Matplotlib draws the boxes and text on a transparent canvas, laid over the mosaic here: far
    # quicker than matplotlib resampling a large image.
    fig.patch.set_alpha(0)
    fig.canvas.draw()
    overlay = np.asarray(fig.canvas.buffer_rgba())  # (H', W, 4), straight alpha
    picture = np.full(overlay.shape[:2] + (3,), 255, dtype=np.uint8)
    picture[-height:, :width] = mosaic
    alpha = overlay[..., 3:].astype(np.float32) / 255
    picture = (picture * (1 - alpha) + overlay[..., :3] * alpha).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG", compress_level=1)  # photos: level 6 takes seconds longer
    g_pathmgr.mkdirs(os.path.dirname(path) or ".")
    with g_pathmgr.open(path, "wb") as f:
        f.write(buf.getvalue())
