"""Drawing boxes, class names and scores onto images (PIL), for the visualisation tools."""
import colorsys
from typing import List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["draw_boxes", "class_color"]


def class_color(class_id: int) -> tuple:
    """A distinct, stable RGB colour per class id."""
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_boxes(image: np.ndarray, boxes: Sequence[Sequence[float]], class_ids: Sequence[int],
               class_names: Optional[List[str]] = None, scores: Optional[Sequence[float]] = None,
               line_width: int = 2) -> np.ndarray:
    """Draw XYXY boxes with labels onto an RGB uint8 (H, W, 3) image; returns a new array."""
    canvas = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, (box, cls) in enumerate(zip(boxes, class_ids)):
        cls = int(cls)
        color = class_color(cls)
        x0, y0, x1, y1 = [float(v) for v in box]
        draw.rectangle([x0, y0, x1, y1], outline=color, width=line_width)
        label = class_names[cls] if class_names and 0 <= cls < len(class_names) else str(cls)
        if scores is not None:
            label = f"{label} {float(scores[i]):.2f}"
        tx0, ty0, tx1, ty1 = draw.textbbox((x0, y0), label, font=font)
        ty = y0 - (ty1 - ty0) - 2 if y0 - (ty1 - ty0) - 2 >= 0 else y0
        draw.rectangle([x0, ty, x0 + (tx1 - tx0) + 4, ty + (ty1 - ty0) + 2], fill=color)
        draw.text((x0 + 2, ty), label, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)
