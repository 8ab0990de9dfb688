"""Visualizer: boxes, class names and scores drawn onto an RGB image with matplotlib, as detectron2 draws them.

Usage, as in detectron2::

    v = Visualizer(image_rgb, MetadataCatalog.get("coco_2017_val"), scale=1.0)
    out = v.draw_instance_predictions(outputs["instances"].to("cpu"))
    Image.fromarray(out.get_image()).save("drawn.png")

Each Visualizer owns its own matplotlib ``Figure`` on an Agg canvas; pyplot and its global state
are never touched, so drawing is safe in scripts, workers and headless machines.

Scope: axis-aligned boxes and their labels. Masks, keypoints and rotated boxes are not drawn.
Colours differ from detectron2's on purpose: instead of a random colour per instance, each class
keeps one stable colour (``metadata.thing_colors`` when the metadata has it), so a class looks
the same in every image.
"""
import colorsys
import logging
from enum import Enum
from typing import Any, List, Optional, Sequence

import matplotlib.colors as mplc
import matplotlib.figure as mplfigure
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import Rectangle
from PIL import Image

from detkit.structures import Boxes, BoxMode

__all__ = ["Visualizer", "VisImage", "ColorMode"]

logger = logging.getLogger(__name__)

_SMALL_OBJECT_AREA_THRESH = 1000  # boxes smaller than this (px^2, at scale 1) get their label outside


class ColorMode(Enum):
    """How ``draw_instance_predictions`` colours the picture (detectron2's names)."""

    IMAGE = 0  # the image as it is, one colour per class
    SEGMENTATION = 1  # the same here: colours are per class already (detectron2 varies them per instance)
    IMAGE_BW = 2  # the image in grey, so the coloured boxes stand out


def _class_color(class_id: int) -> tuple:
    """A stable RGB colour in [0, 1] per class id: hues spaced by the golden ratio."""
    hue = (int(class_id) * 0.618033988749895) % 1.0
    return colorsys.hsv_to_rgb(hue, 0.85, 1.0)


def _create_text_labels(classes: Optional[List[int]], scores: Optional[Sequence[float]],
                        class_names: Optional[List[str]], is_crowd: Optional[List[bool]] = None) -> Optional[List[str]]:
    """detectron2's label text: "name 97%" (the class id when there are no names), "|crowd" appended."""
    labels = None
    if classes is not None:
        if class_names:
            labels = [class_names[c] if 0 <= c < len(class_names) else str(c) for c in classes]
        else:
            labels = [str(c) for c in classes]
    if scores is not None:
        percents = ["{:.0f}%".format(float(s) * 100) for s in scores]
        labels = percents if labels is None else [f"{label} {p}" for label, p in zip(labels, percents)]
    if labels is not None and is_crowd is not None:
        labels = [label + ("|crowd" if crowd else "") for label, crowd in zip(labels, is_crowd)]
    return labels


class VisImage:
    """The image being drawn on: a matplotlib figure of the image's size times ``scale``."""

    def __init__(self, img: np.ndarray, scale: float = 1.0):
        """
        Args:
            img: an RGB (H, W, 3) array in [0, 255].
            scale: the output is this many times the image's size.
        """
        self.img = img
        self.scale = scale
        self.width, self.height = img.shape[1], img.shape[0]
        fig = mplfigure.Figure(frameon=False)
        self.dpi = fig.get_dpi()
        # The 1e-2 keeps matplotlib's truncation of inches * dpi from losing a pixel.
        fig.set_size_inches((self.width * scale + 1e-2) / self.dpi, (self.height * scale + 1e-2) / self.dpi)
        self.canvas = FigureCanvasAgg(fig)
        self.ax = fig.add_axes([0.0, 0.0, 1.0, 1.0])
        self.ax.axis("off")
        self.fig = fig
        self.reset_image(img)

    def reset_image(self, img: np.ndarray) -> None:
        """Draw ``img`` (same size as the original) as the background, covering the whole figure."""
        self.ax.imshow(img.astype("uint8"), extent=(0, self.width, self.height, 0), interpolation="nearest")

    def save(self, filepath: str) -> None:
        """Write the drawn image to ``filepath``; the format follows the extension (PNG, JPEG, ...)."""
        Image.fromarray(self.get_image()).save(filepath)

    def get_image(self) -> np.ndarray:
        """The drawn image: an RGB uint8 array of shape (H * scale, W * scale, 3)."""
        buffer, (width, height) = self.canvas.print_to_buffer()
        rgba = np.frombuffer(buffer, dtype=np.uint8).reshape(height, width, 4)
        return np.ascontiguousarray(rgba[:, :, :3])


class Visualizer:
    """Draws detection data (predictions, dataset dicts, boxes, text) on an image.

    High-level methods (``draw_instance_predictions``, ``draw_dataset_dict``, ``overlay_instances``)
    place boxes and labels in detectron2's style; the primitives ``draw_box`` and ``draw_text``
    draw exactly what they are given. Every method returns the :class:`VisImage` (``self.output``);
    ``output.get_image()`` gives the RGB uint8 result.
    """

    def __init__(self, img_rgb: np.ndarray, metadata: Any = None, scale: float = 1.0,
                 instance_mode: ColorMode = ColorMode.IMAGE, font_size_scale: float = 1.0):
        """
        Args:
            img_rgb: an (H, W, 3) array in RGB order, values in [0, 255] (matplotlib draws RGB).
            metadata: the dataset's ``Metadata`` (``MetadataCatalog.get(name)``): ``thing_classes``
                names the classes and ``thing_colors`` (0-255 RGB per class), if set, colours them.
                None: labels show class ids.
            scale: the output is this many times the image's size.
            instance_mode: a :class:`ColorMode`, for ``draw_instance_predictions``.
            font_size_scale: extra factor on the default font size.
        """
        img = np.asarray(img_rgb)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"Visualizer expects an (H, W, 3) RGB image; got shape {img.shape}. "
                             "Convert grayscale or BGR images to RGB first.")
        self.img = img.clip(0, 255).astype(np.uint8)
        self.metadata = metadata
        self._instance_mode = ColorMode(instance_mode)
        self.output = VisImage(self.img, scale=scale)
        # Text smaller than ~9 px is unreadable: the default size grows with the image.
        self._default_font_size = max(np.sqrt(self.output.height * self.output.width) // 90, 10 // scale) \
            * font_size_scale

    def _meta(self, key: str) -> Any:
        return None if self.metadata is None else self.metadata.get(key, None)

    def _colors_for(self, classes: Optional[List[int]], n: int) -> List[tuple]:
        """One colour per instance: its class's (``thing_colors`` first), or by position without classes."""
        if classes is None:
            return [_class_color(i) for i in range(n)]
        thing_colors = self._meta("thing_colors")
        if thing_colors:
            return [tuple(x / 255.0 for x in thing_colors[c]) if 0 <= c < len(thing_colors) else _class_color(c)
                    for c in classes]
        return [_class_color(c) for c in classes]

    def draw_instance_predictions(self, predictions) -> VisImage:
        """Draw a model's output for one image: ``pred_boxes``, ``pred_classes`` and ``scores``.

        Args:
            predictions: ``Instances`` (on the CPU), e.g. ``model(...)[0]["instances"].to("cpu")``;
                each field is optional.
        """
        boxes = predictions.pred_boxes if predictions.has("pred_boxes") else None
        scores = predictions.scores if predictions.has("scores") else None
        classes = predictions.pred_classes.tolist() if predictions.has("pred_classes") else None
        labels = _create_text_labels(classes, scores.tolist() if scores is not None else None,
                                     self._meta("thing_classes"))
        colors = self._colors_for(classes, len(predictions))
        if self._instance_mode == ColorMode.IMAGE_BW:
            grey = self.img.astype(np.float32).mean(axis=2, keepdims=True)  # (H, W, 1)
            self.output.reset_image(np.repeat(grey, 3, axis=2))
        return self.overlay_instances(boxes=boxes, labels=labels, assigned_colors=colors)

    def draw_dataset_dict(self, dic: dict) -> VisImage:
        """Draw the annotations of one standard dataset dict (each with ``bbox``, ``bbox_mode``,
        ``category_id``; crowd ones are labelled "|crowd")."""
        annos = dic.get("annotations") or []
        if not annos:
            return self.output
        boxes = []
        for i, a in enumerate(annos):
            if "bbox_mode" not in a:
                raise KeyError(f"Annotation {i} of image {dic.get('image_id', dic.get('file_name', '?'))} has no "
                               "'bbox_mode'; set it (e.g. BoxMode.XYXY_ABS) as standard dataset dicts do.")
            boxes.append(BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS))
        classes = [int(a["category_id"]) for a in annos]
        labels = _create_text_labels(classes, None, self._meta("thing_classes"),
                                     is_crowd=[bool(a.get("iscrowd", 0)) for a in annos])
        return self.overlay_instances(boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4), labels=labels,
                                      assigned_colors=self._colors_for(classes, len(annos)))

    def overlay_instances(self, *, boxes=None, labels: Optional[List[str]] = None,
                          assigned_colors: Optional[List[Any]] = None, alpha: float = 0.5) -> VisImage:
        """Draw N boxes with their labels, largest first so small ones stay visible.

        Args:
            boxes: ``Boxes`` or an (N, 4) XYXY array in image pixels.
            labels: N strings, drawn at each box's top-left corner (below small boxes).
            assigned_colors: N matplotlib colours; default: one per position.
            alpha: the boxes' opacity.
        """
        if boxes is None:
            return self.output
        boxes = self._convert_boxes(boxes)  # (N, 4)
        n = len(boxes)
        if labels is not None and len(labels) != n:
            raise ValueError(f"overlay_instances got {n} boxes but {len(labels)} labels.")
        if assigned_colors is None:
            assigned_colors = self._colors_for(None, n)
        if n == 0:
            return self.output
        areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
        for i in np.argsort(-areas, kind="stable").tolist():
            color = assigned_colors[i]
            self.draw_box(boxes[i], alpha=alpha, edge_color=color)
            if labels is None:
                continue
            x0, y0, x1, y1 = boxes[i]
            text_pos = (x0, y0)
            scale = self.output.scale
            if (y1 - y0) * (x1 - x0) < _SMALL_OBJECT_AREA_THRESH * scale or y1 - y0 < 40 * scale:
                # a small box: its label goes below it (beside it when the box touches the bottom)
                text_pos = (x1, y0) if y1 >= self.output.height - 5 else (x0, y1)
            height_ratio = (y1 - y0) / np.sqrt(self.output.height * self.output.width)
            font_size = np.clip((height_ratio - 0.02) / 0.08 + 1, 1.2, 2) * 0.5 * self._default_font_size
            self.draw_text(labels[i], text_pos, color=self._change_color_brightness(color, 0.7),
                           horizontal_alignment="left", font_size=font_size)
        return self.output

    def draw_box(self, box_coord: Sequence[float], alpha: float = 0.5, edge_color: Any = "g",
                 line_style: str = "-") -> VisImage:
        """Outline one box.

        Args:
            box_coord: (x0, y0, x1, y1) in image pixels.
            alpha: opacity of the outline.
            edge_color: a matplotlib colour.
            line_style: a matplotlib line style.
        """
        x0, y0, x1, y1 = [float(v) for v in box_coord]
        linewidth = max(self._default_font_size / 4, 1)  # points
        self.output.ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=edge_color,
                                           linewidth=linewidth * self.output.scale, alpha=alpha,
                                           linestyle=line_style))
        return self.output

    def draw_text(self, text: str, position: Sequence[float], *, font_size: Optional[float] = None,
                  color: Any = "g", horizontal_alignment: str = "center", rotation: float = 0) -> VisImage:
        """Write ``text`` on a dark box whose top edge is at ``position`` (x, y in image pixels).

        Args:
            font_size: in points; default grows with the image size.
            color: a matplotlib colour, brightened so it reads on the dark box.
            horizontal_alignment: "left", "center" or "right" of ``position``.
            rotation: degrees, counter-clockwise.
        """
        if not font_size:
            font_size = self._default_font_size
        color = np.maximum(list(mplc.to_rgb(color)), 0.2)  # never dark text on the dark box
        color[np.argmax(color)] = max(0.8, np.max(color))
        x, y = position
        self.output.ax.text(x, y, text, size=font_size * self.output.scale, family="sans-serif",
                            bbox={"facecolor": "black", "alpha": 0.8, "pad": 0.7, "edgecolor": "none"},
                            verticalalignment="top", horizontalalignment=horizontal_alignment, color=color,
                            zorder=10, rotation=rotation)
        return self.output

    def get_output(self) -> VisImage:
        """The :class:`VisImage` drawn so far."""
        return self.output

    @staticmethod
    def _change_color_brightness(color: Any, brightness_factor: float) -> tuple:
        """``color`` with its HLS lightness scaled by ``1 + brightness_factor`` (in [-1, 1])."""
        if not -1.0 <= brightness_factor <= 1.0:
            raise ValueError(f"brightness_factor must be in [-1, 1], got {brightness_factor}.")
        h, lightness, s = colorsys.rgb_to_hls(*mplc.to_rgb(color))
        lightness = min(max(lightness * (1.0 + brightness_factor), 0.0), 1.0)
        return tuple(np.clip(colorsys.hls_to_rgb(h, lightness, s), 0.0, 1.0))

    @staticmethod
    def _convert_boxes(boxes) -> np.ndarray:
        """``Boxes``, a tensor or an array-like as an (N, 4) numpy array."""
        if isinstance(boxes, Boxes):
            boxes = boxes.tensor
        if isinstance(boxes, torch.Tensor):
            boxes = boxes.detach().cpu().numpy()
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.size == 0:
            return boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"Expected (N, 4) XYXY boxes, got shape {boxes.shape}.")
        return boxes
