"""Matchers: assign each prediction (anchor, proposal or location) to a ground-truth box or to none.

Two matchers live here:

* ``Matcher`` works on an (M gt, N predictions) quality matrix (usually IoU), with detectron2's
  semantics: each prediction takes the gt of highest quality, and the value of that quality picks
  its label from ``labels`` through the ``thresholds`` ranges. With ``allow_low_quality_matches``,
  every prediction that ties for the best quality of some gt is relabelled 1 (positive), so that
  every gt gets at least one positive. It also takes a whole batch at once: (B, M, N) matrices
  with the gt lists padded to M rows and a (B, M) mask of the real ones.
* ``FCOSMatcher`` assigns FCOS locations to boxes: inside the box (or its centre region) and the
  box's size in that level's range; ties go to the smallest box. It works on all levels, boxes and
  images at once.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch.nn.utils.rnn import pad_sequence

from detkit.config import configurable
from detkit.registry import Registry
from detkit.structures import pairwise_iou

__all__ = ["MATCHER_REGISTRY", "Matcher", "FCOSMatcher", "build_matcher", "pad_boxes", "padded_pairwise_iou"]

MATCHER_REGISTRY = Registry("MATCHER")
MATCHER_REGISTRY.__doc__ = """Matchers: assign predictions to ground-truth boxes. Built by ``build_matcher``."""


@MATCHER_REGISTRY.register()
class Matcher:
    """Match predictions to ground truth from an (M, N) quality matrix, as detectron2's Matcher, or
    from a padded (B, M, N) batch of them in one call (same results, image by image).

    With ``thresholds=[0.3, 0.7]`` and ``labels=[0, -1, 1]``, a prediction whose best quality q is
    in [-inf, 0.3) is labelled 0 (negative), [0.3, 0.7) -1 (ignored), [0.7, inf) 1 (positive).
    Intervals are closed on the left and open on the right.
    """

    @configurable
    def __init__(self, thresholds: Sequence[float], labels: Sequence[int], allow_low_quality_matches: bool = False):
        """
        Args:
            thresholds: increasing quality thresholds splitting predictions into len+1 ranges.
            labels: one label per range, each in {-1 (ignore), 0 (negative), 1 (positive)}.
            allow_low_quality_matches: also mark as positive (1) every prediction that has the
                highest quality for some gt, even when that quality is below the last threshold.
        """
        thresholds = [float(t) for t in thresholds]
        if any(a > b for a, b in zip(thresholds[:-1], thresholds[1:])):
            raise ValueError(f"Matcher thresholds must be increasing, got {thresholds}.")
        if len(labels) != len(thresholds) + 1:
            raise ValueError(f"Matcher needs len(labels) == len(thresholds) + 1, got labels={list(labels)} "
                             f"for thresholds={thresholds}.")
        if any(label not in (-1, 0, 1) for label in labels):
            raise ValueError(f"Matcher labels must each be -1, 0 or 1, got {list(labels)}.")
        self.thresholds = [-math.inf] + thresholds + [math.inf]
        self.labels = [int(label) for label in labels]
        self.allow_low_quality_matches = allow_low_quality_matches

    @classmethod
    def from_config(cls, cfg):
        """The RPN's matcher (MODEL.RPN.IOU_THRESHOLDS / IOU_LABELS, low-quality matches on).

        Other users (the RoI heads) pass their own arguments to ``build_matcher`` instead.
        """
        return {
            "thresholds": cfg.MODEL.RPN.IOU_THRESHOLDS,
            "labels": cfg.MODEL.RPN.IOU_LABELS,
            "allow_low_quality_matches": True,
        }

    def __call__(self, match_quality_matrix: torch.Tensor,
                 gt_valid: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Match one image's (M, N) matrix or a padded batch's (B, M, N) matrices in one call.

        A batch gives, image by image, exactly what the 2-D call gives on that image's unpadded
        (M_i, N) matrix: padded rows (``gt_valid`` False) never win a prediction nor mark low-quality
        matches, and an image without valid rows gets matches 0 and label ``labels[0]``.

        Args:
            match_quality_matrix: (M, N) quality (e.g. IoU) of every gt (rows) with every prediction,
                or (B, M, N) for B images whose gt lists are padded to M rows.
            gt_valid: optional (B, M) bool, False for padded gt rows (3-D input only); None means
                every row is a real gt.

        Returns:
            matches: (N,) or (B, N) int64, the index of the gt each prediction is matched to (0 when
                the image has no gt).
            match_labels: (N,) or (B, N) int8, the label of each prediction's match.
        """
        quality = match_quality_matrix
        if quality.dim() == 2:
            if gt_valid is not None:
                raise ValueError("Matcher: gt_valid is for a padded (B, M, N) batch; a 2-D (M, N) matrix "
                                 "has no padded rows.")
            matches, match_labels = self._match_batch(quality[None], None)
            return matches[0], match_labels[0]
        if quality.dim() != 3:
            raise ValueError("Matcher expects an (M, N) or (B, M, N) quality matrix, "
                             f"got shape {tuple(quality.shape)}.")
        if gt_valid is not None and tuple(gt_valid.shape) != tuple(quality.shape[:2]):
            raise ValueError(f"Matcher: gt_valid must have shape (B, M) = {tuple(quality.shape[:2])}, "
                             f"got {tuple(gt_valid.shape)}.")
        return self._match_batch(quality, gt_valid)

    def _match_batch(self, quality: torch.Tensor, gt_valid: Optional[torch.Tensor]
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, M, N) quality, optional (B, M) validity -> (B, N) matches and labels."""
        num_images, num_gt, num_pred = quality.shape
        device = quality.device
        if num_gt == 0 or num_pred == 0:
            matches = torch.zeros((num_images, num_pred), dtype=torch.int64, device=device)
            match_labels = torch.full((num_images, num_pred), self.labels[0], dtype=torch.int8, device=device)
            return matches, match_labels
        if gt_valid is not None:
            gt_valid = gt_valid.to(device=device, dtype=torch.bool)
            # A padded row gets -inf: it can win a prediction only when the image has no real gt,
            # and then the prediction's quality is -inf, in the first range (labels[0]), match 0.
            quality = torch.where(gt_valid[:, :, None], quality, quality.new_tensor(-math.inf))

        matched_vals, matches = quality.max(dim=1)  # (B, N); ties go to the first gt
        match_labels = torch.ones((num_images, num_pred), dtype=torch.int8, device=device)
        for label, low, high in zip(self.labels, self.thresholds[:-1], self.thresholds[1:]):
            in_range = (matched_vals >= low) & (matched_vals < high)
            match_labels[in_range] = label

        if self.allow_low_quality_matches:
            self._set_low_quality_matches_(match_labels, quality, gt_valid)
        return matches, match_labels

    @staticmethod
    def _set_low_quality_matches_(match_labels: torch.Tensor, quality: torch.Tensor,
                                  gt_valid: Optional[torch.Tensor]) -> None:
        """Label 1 every prediction that ties for the highest quality of some valid gt (in place).

        A gt whose best quality is 0 still marks all its zero-quality predictions, as in detectron2.

        Args:
            match_labels: (B, N) labels, updated in place.
            quality: (B, M, N) quality matrices.
            gt_valid: (B, M) bool or None (all valid).
        """
        best_per_gt = quality.amax(dim=2, keepdim=True)  # (B, M, 1)
        if gt_valid is not None:
            # Padded rows are -inf; a best of +inf is tied by none of their predictions.
            best_per_gt = best_per_gt.masked_fill(~gt_valid[:, :, None], math.inf)
        match_labels[(quality == best_per_gt).any(dim=1)] = 1


@MATCHER_REGISTRY.register()
class FCOSMatcher:
    """Assign FCOS locations to ground-truth boxes, over all levels, boxes and images at once.

    A location (x, y) of stride s on level k matches box (x0, y0, x1, y1) when

    1. it lies strictly inside the box: min(l, t, r, b) > 0 with l = x - x0, t = y - y0,
       r = x1 - x, b = y1 - y; with ``center_sampling_radius`` > 0 it must instead lie strictly
       inside the box's centre region, (cx, cy) +- radius * s clipped to the box;
    2. the box's largest LTRB distance m = max(l, t, r, b) lies in level k's size range, with the
       convention of the original FCOS code and AdelaiDet: ``lower_k <= m <= upper_k`` (both ends
       inclusive), where the ranges are (0, S_0), (S_0, S_1), ..., (S_last, inf) for
       ``sizes_of_interest`` = [S_0, S_1, ...].

    When several boxes match, the location takes the one of smallest area (the first, by index,
    among equal areas).
    """

    @configurable
    def __init__(self, sizes_of_interest: Sequence[float], center_sampling_radius: float = 1.5):
        """
        Args:
            sizes_of_interest: upper bounds of every level's size range but the last; e.g. [64, 128]
                for p3/p4/p5 gives (0, 64), (64, 128), (128, inf).
            center_sampling_radius: centre-region half-size in strides; 0 uses the whole box.
        """
        sizes = [float(s) for s in sizes_of_interest]
        if any(a >= b for a, b in zip(sizes[:-1], sizes[1:])):
            raise ValueError(f"FCOSMatcher sizes_of_interest must be increasing, got {sizes}.")
        self.sizes_of_interest = sizes
        self.center_sampling_radius = float(center_sampling_radius)

    @classmethod
    def from_config(cls, cfg):
        return {
            "sizes_of_interest": cfg.MODEL.FCOS.SIZES_OF_INTEREST,
            "center_sampling_radius": cfg.MODEL.FCOS.CENTER_SAMPLING_RADIUS,
        }

    def __call__(self, locations: torch.Tensor, strides: torch.Tensor, level_ids: torch.Tensor,
                 gt_boxes: List[torch.Tensor]) -> torch.Tensor:
        """
        Args:
            locations: (N, 2) xy of every location of every level, concatenated.
            strides: (N,) stride of each location.
            level_ids: (N,) int64 level index of each location (0 = finest).
            gt_boxes: one (M_i, 4) XYXY tensor per image (``Boxes.tensor``).

        Returns:
            (B, N) int64: the index into ``gt_boxes[i]`` matched to each location, -1 for background.
        """
        locations = locations.float()
        num_images, num_locs = len(gt_boxes), locations.shape[0]
        device = locations.device
        max_boxes = max((int(b.shape[0]) for b in gt_boxes), default=0)
        if max_boxes == 0 or num_locs == 0:
            return torch.full((num_images, num_locs), -1, dtype=torch.int64, device=device)

        # Pad the per-image boxes to (B, M, 4) with a validity mask (B, M).
        boxes = pad_sequence([b.to(device=device, dtype=locations.dtype).reshape(-1, 4) for b in gt_boxes],
                             batch_first=True)  # (B, M, 4)
        counts = torch.tensor([int(b.shape[0]) for b in gt_boxes], device=device)  # (B,)
        valid = torch.arange(max_boxes, device=device)[None, :] < counts[:, None]  # (B, M)

        xs = locations[:, 0][None, :, None]  # (1, N, 1)
        ys = locations[:, 1][None, :, None]
        x0, y0, x1, y1 = (boxes[..., k][:, None, :] for k in range(4))  # each (B, 1, M)
        # LTRB distances of every location to every box, kept as four (B, N, M) tensors: element-wise
        # min / max over them is much cheaper than stacking to (B, N, M, 4) and reducing the last dim.
        left, top, right, bottom = xs - x0, ys - y0, x1 - xs, y1 - ys  # (B, N, M) each
        max_dist = torch.maximum(torch.maximum(left, top), torch.maximum(right, bottom))  # (B, N, M)

        if self.center_sampling_radius > 0:
            radius = (strides.to(boxes.dtype) * self.center_sampling_radius)[None, :, None]  # (1, N, 1)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2  # (B, 1, M)
            # Distances to the centre region (centre +- radius, clipped to the box), (B, N, M) each.
            left = xs - torch.maximum(cx - radius, x0)
            top = ys - torch.maximum(cy - radius, y0)
            right = torch.minimum(cx + radius, x1) - xs
            bottom = torch.minimum(cy + radius, y1) - ys
        inside = torch.minimum(torch.minimum(left, top), torch.minimum(right, bottom)) > 0  # (B, N, M)

        bounds = [0.0] + self.sizes_of_interest + [math.inf]
        if int(level_ids.max()) >= len(bounds) - 1:
            raise ValueError(f"FCOSMatcher got level id {int(level_ids.max())} but sizes_of_interest "
                             f"{self.sizes_of_interest} define only {len(bounds) - 1} levels; "
                             "give one bound per level but the last (MODEL.FCOS.SIZES_OF_INTEREST).")
        bounds = torch.tensor(bounds, dtype=boxes.dtype, device=device)
        lower = bounds[level_ids][None, :, None]  # (1, N, 1)
        upper = bounds[level_ids + 1][None, :, None]
        in_range = (max_dist >= lower) & (max_dist <= upper)

        match = inside & in_range & valid[:, None, :]  # (B, N, M)
        areas = ((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]))[:, None, :]  # (B, 1, M)
        areas = torch.where(match, areas, torch.full_like(areas, math.inf))  # (B, N, M)
        # Smallest area wins; torch.min returns the first index among equal minima.
        min_area, matched = areas.min(dim=-1)  # (B, N)
        matched = torch.where(torch.isinf(min_area), torch.full_like(matched, -1), matched)
        return matched


def pad_boxes(boxes: List[torch.Tensor], min_rows: int = 1) -> Tuple[torch.Tensor, torch.Tensor]:
    """Stack per-image (M_i, 4) boxes into one zero-padded (B, M, 4) tensor.

    Args:
        boxes: per image, an (M_i, 4) tensor (all on one device, one dtype).
        min_rows: M is at least this, so that indexing a padded row stays valid when every
            image is empty.

    Returns:
        padded: (B, M, 4), M = max(min_rows, max M_i); padded rows are zeros.
        valid: (B, M) bool, True for the real rows.
    """
    counts = torch.as_tensor([int(b.shape[0]) for b in boxes], dtype=torch.int64)
    num_rows = max(min_rows, int(counts.max()) if len(boxes) else 0)
    device = boxes[0].device if len(boxes) else None
    padded = pad_sequence([b.reshape(-1, 4) for b in boxes], batch_first=True) if len(boxes) else torch.zeros(0, 0, 4)
    if padded.shape[1] < num_rows:
        padded = torch.cat([padded, padded.new_zeros(padded.shape[0], num_rows - padded.shape[1], 4)], dim=1)
    valid = torch.arange(num_rows, device=device)[None, :] < counts.to(device)[:, None]
    return padded, valid


def padded_pairwise_iou(gt_boxes: List[torch.Tensor], boxes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """IoU of every image's gt boxes with its predicted boxes, as one (B, M, N) padded batch.

    Only real (gt, box) pairs are computed, with ``torchvision.ops.box_iou``'s arithmetic element
    by element: each image's (M_i, N) block equals ``pairwise_iou(gt_boxes[i], boxes_i)`` bit for
    bit (pairs of two empty boxes give 0, as there). Padded rows hold -inf, a quality that never wins.

    Args:
        gt_boxes: per image, an (M_i, 4) XYXY tensor.
        boxes: (N, 4) XYXY boxes shared by every image (anchors), or (B, N, 4) per image (padded
            proposals; the IoU of padding boxes is computed but means nothing).

    Returns:
        quality: (B, M, N) float, M = max(1, max M_i).
        gt_valid: (B, M) bool, True for the real gt rows (as :func:`pad_boxes` gives it).
    """
    num_images = len(gt_boxes)
    device = boxes.device
    counts = [int(b.shape[0]) for b in gt_boxes]
    num_rows = max([1] + counts)
    gt_valid = torch.arange(num_rows, device=device)[None, :] < torch.as_tensor(counts, device=device)[:, None]
    gt = torch.cat([b.reshape(-1, 4) for b in gt_boxes]).to(device)  # (G, 4), image after image
    if boxes.dim() == 2:
        iou = pairwise_iou(gt, boxes)  # (G, N)
    else:
        image_of_gt = torch.repeat_interleave(torch.arange(num_images, device=device),
                                              torch.as_tensor(counts, device=device))  # (G,)
        other = boxes[image_of_gt]  # (G, N, 4): each gt against its own image's boxes
        gt, other = (b if b.dtype in (torch.float32, torch.float64) else b.float() for b in (gt[:, None, :], other))
        area1 = (gt[..., 2] - gt[..., 0]) * (gt[..., 3] - gt[..., 1])  # (G, 1)
        area2 = (other[..., 2] - other[..., 0]) * (other[..., 3] - other[..., 1])  # (G, N)
        lt = torch.max(gt[..., :2], other[..., :2])  # (G, N, 2)
        rb = torch.min(gt[..., 2:], other[..., 2:])
        wh = (rb - lt).clamp(min=0)
        inter = wh[..., 0] * wh[..., 1]  # (G, N)
        iou = (inter / (area1 + area2 - inter)).nan_to_num(nan=0.0)  # (G, N)
    rows = list(iou.split(counts)) + [iou.new_zeros(num_rows, iou.shape[1])]  # the last pads every image to M rows
    quality = pad_sequence(rows, batch_first=True, padding_value=-math.inf)[:-1]  # (B, M, N)
    return quality, gt_valid


def build_matcher(cfg, name: str, **kwargs):
    """Build the matcher ``name`` from MATCHER_REGISTRY.

    Args:
        cfg: the config; used (through the class's ``from_config``) only when no kwargs are given.
        name: a registered matcher name, e.g. "Matcher" or "FCOSMatcher".
        kwargs: the constructor's arguments; when given, the config is not read.
    """
    cls = MATCHER_REGISTRY.get(name)
    if kwargs:
        return cls(**kwargs)
    return cls(cfg)
