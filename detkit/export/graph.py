"""ExportGraph: a detkit detector as one image-in, detections-out function that ONNX can hold.

A detkit model takes a list of dicts and returns ``Instances``; an exported graph takes one uint8
(H, W, C) image in ``INPUT.FORMAT`` (of any size) and returns three tensors:

* ``boxes`` (N, 4) float32 XYXY in the input image's pixels,
* ``scores`` (N,) float32,
* ``classes`` (N,) int64,

by decreasing score, at most ``TEST.DETECTIONS_PER_IMAGE`` of them. Normalisation and padding
(:meth:`ExportGraph.preprocess`), the network, decoding, top-k, the class-wise NMS and the cap are
all inside. Test-time resizing stays outside (``ONNXPredictor`` does it with the data transforms,
as ``DefaultPredictor`` does), so the graph sees the same pixels as the eager model.

Every meta-architecture gets a subclass that reuses the trained modules of the model (backbone,
neck, heads, box coders) and rewrites only its post-processing for one image with tensor ops: no
``Instances``, no Python branching on values, no ``int()`` of a size (sizes stay symbolic, so the
graph keeps a dynamic height and width). Register one with :func:`register_export_graph` under
the meta-architecture's name; :func:`build_export_graph` picks it.
"""
from typing import Callable, Dict, List, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms

__all__ = ["ExportGraph", "register_export_graph", "build_export_graph", "batched_nms_in_graph",
           "dense_detections", "EXPORT_GRAPHS"]

EXPORT_GRAPHS: Dict[str, Type["ExportGraph"]] = {}


def register_export_graph(meta_arch: str) -> Callable[[type], type]:
    """Class decorator: the :class:`ExportGraph` subclass that exports models of ``meta_arch``."""

    def deco(cls):
        if meta_arch in EXPORT_GRAPHS:
            raise KeyError(f"An export graph for meta-architecture '{meta_arch}' is already registered "
                           f"({EXPORT_GRAPHS[meta_arch].__name__}).")
        EXPORT_GRAPHS[meta_arch] = cls
        return cls

    return deco


def build_export_graph(model: nn.Module) -> "ExportGraph":
    """The registered export graph wrapping ``model`` (eval mode); a clear error for other meta-archs."""
    name = type(model).__name__
    if name not in EXPORT_GRAPHS:
        raise NotImplementedError(f"ONNX export has no graph for meta-architecture '{name}' (MODEL.META_ARCHITECTURE); "
                                  f"exportable: {sorted(EXPORT_GRAPHS)}. Register one with "
                                  "detkit.export.register_export_graph.")
    return EXPORT_GRAPHS[name](model.eval())


def batched_nms_in_graph(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float,
                         image_hw: torch.Tensor) -> torch.Tensor:
    """Class-wise NMS as one ``torchvision.ops.nms`` (ONNX ``NonMaxSuppression``) call.

    Boxes of different groups never overlap once each group is shifted by ``group * (max(h, w) + 1)``
    (boxes are clipped to the image), the coordinate trick of ``torchvision.ops.batched_nms``; the
    offset comes from the image size rather than the boxes, so an empty set needs no branch.

    Args:
        boxes: (D, 4) XYXY boxes clipped to the image.
        scores: (D,) scores.
        groups: (D,) int64 group (class or level) of each box.
        iou_threshold: IoU above which the lower-scoring box of a group is dropped.
        image_hw: (2,) float32 image height and width.

    Returns:
        (D',) int64 indices of the kept boxes, by decreasing score.
    """
    offsets = groups.to(boxes.dtype) * (image_hw.max() + 1)  # (D,)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def clip_boxes(boxes: torch.Tensor, image_hw: torch.Tensor) -> torch.Tensor:
    """(..., 4) boxes clamped to [0, w] x [0, h] (``image_hw`` a (2,) float tensor)."""
    limits = image_hw[[1, 0, 1, 0]]  # (4,)
    return torch.minimum(boxes.clamp(min=0), limits)


def dense_detections(level_scores: List[torch.Tensor], decode: Callable[[int, torch.Tensor], torch.Tensor],
                     image_hw: torch.Tensor, *, score_thresh: float, topk_candidates: int, nms_thresh: float,
                     max_detections: int, score_transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Post-processing of a one-stage (dense) detector for one image, as the eager models do it.

    Per level the ``topk_candidates`` best (location, class) scores are taken, those above
    ``score_thresh`` kept and decoded, boxes clipped to the image, one class-wise NMS runs over
    all levels and the best ``max_detections`` are returned.

    Args:
        level_scores: per level, (R_l, K) scores of R_l locations (or anchors) and K classes.
        decode: ``decode(level, index)`` -> (n, 4) XYXY boxes of the locations ``index`` (n,) of that level.
        image_hw: (2,) float32 height and width of the image before padding.
        score_thresh, topk_candidates, nms_thresh, max_detections: the model's test settings.
        score_transform: an increasing function applied to the top-k only (``torch.sigmoid`` when
            ``level_scores`` are logits, as RetinaNet's are), before the threshold.

    Returns:
        boxes (N, 4), scores (N,), classes (N,) int64, by decreasing score.
    """
    all_boxes, all_scores, all_classes = [], [], []
    for level, scores in enumerate(level_scores):
        num_classes = scores.shape[1]
        flat = scores.reshape(-1)  # (R_l * K,), location-major
        k = torch.sym_min(topk_candidates, flat.shape[0])
        top_scores, top_idx = flat.topk(k)  # (k,)
        if score_transform is not None:
            top_scores = score_transform(top_scores)
        keep = top_scores > score_thresh
        top_scores, top_idx = top_scores[keep], top_idx[keep]  # (n,)
        all_boxes.append(decode(level, torch.div(top_idx, num_classes, rounding_mode="floor")))
        all_scores.append(top_scores)
        all_classes.append(top_idx % num_classes)
    boxes = clip_boxes(torch.cat(all_boxes), image_hw)  # (D, 4)
    scores, classes = torch.cat(all_scores), torch.cat(all_classes)  # (D,)
    keep = batched_nms_in_graph(boxes, scores, classes, nms_thresh, image_hw)[:max_detections]
    return boxes[keep], scores[keep], classes[keep]


class ExportGraph(nn.Module):
    """Base of the exported graphs: uint8 (H, W, C) image -> (boxes, scores, classes).

    Subclasses implement :meth:`detect` on the neck's features; the base normalises and pads
    the image exactly as ``DetectorBase.preprocess_image`` does (float32, minus mean, over std,
    zero padding after normalisation to a multiple of the largest stride).
    """

    def __init__(self, model: nn.Module):
        """
        Args:
            model: a detkit meta-architecture (a ``DetectorBase``) in eval mode.
        """
        super().__init__()
        self.model = model

    def preprocess(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """uint8 (H, W, C) -> the padded, normalised (1, C, H', W') batch and the (2,) float image size."""
        x = image.permute(2, 0, 1).to(torch.float32)  # (C, H, W)
        height, width = x.shape[-2], x.shape[-1]
        x = (x - self.model.pixel_mean) / self.model.pixel_std
        d = self.model.size_divisibility
        if d > 1:
            x = F.pad(x, (0, (d - width % d) % d, 0, (d - height % d) % d))
        image_hw = torch.stack([torch.sym_float(height) * torch.ones((), dtype=torch.float32),
                                torch.sym_float(width) * torch.ones((), dtype=torch.float32)])
        return x.unsqueeze(0).contiguous(), image_hw

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            image: (H, W, C) uint8 in the model's ``INPUT.FORMAT``, already resized for testing.

        Returns:
            boxes (N, 4) float32 in ``image``'s pixels, scores (N,) float32, classes (N,) int64.
        """
        x, image_hw = self.preprocess(image)
        features = self.model.neck(self.model.backbone(x))
        boxes, scores, classes = self.detect(features, image_hw)
        return boxes.float(), scores.float(), classes.to(torch.int64)

    def detect(self, features: Dict[str, torch.Tensor], image_hw: torch.Tensor
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The meta-architecture's heads and post-processing for one image (see :meth:`forward`)."""
        raise NotImplementedError
