"""roi_align / multilevel_roi_align: torchvision's RoIAlign, computed on CPU as one sparse matrix product each way.

Every pooled value is a fixed weighted sum of feature pixels: the average over a bin's sampling
points of their bilinear interpolation. For a batch of boxes these weights form one sparse matrix
``S`` of shape (boxes x bins, levels x images x H x W), with at most four entries per sampling point, so::

    pooled = S @ features      (each level's features as (B*H*W, C), stacked: channels_last is a free view)
    grad_features = S.T @ grad_pooled

torchvision's CPU kernels recompute the weights for every channel, on one thread, and its backward
pass scatters them one value at a time; in two-stage training that backward alone was ~38% of a
step on 2 cores. Here the weights are built once per call with tensor ops, by torchvision's sampling
rule (its ``aligned`` half-pixel offset, its adaptive ``ceil(size / bins)`` sampling grid, its
clamping at the border and zeros beyond it), and both products run in torch's multithreaded sparse
kernels. The result equals ``torchvision.ops.roi_align`` to float rounding, values and gradients.
``multilevel_roi_align`` pools each box from its own level of a feature pyramid with one matrix
over all levels, so the boxes come out in their own order without a per-level scatter.

On CUDA, during graph capture (tracing, ``torch.compile``, export) or when the matrix would be too
large, it is ``torchvision.ops.roi_align``, called once per level.
"""
import warnings
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch.nn.modules.utils import _pair
from torchvision.ops import roi_align as torchvision_roi_align

from .wrappers import is_graph_capture

__all__ = ["roi_align", "multilevel_roi_align", "interpolation_matrix"]

MAX_ENTRIES = 1 << 24  # sampling-point weights per call (before zeros are dropped); above it, torchvision's kernel


def _axis_weights(start: torch.Tensor, length: torch.Tensor, bins: int, grid: torch.Tensor, max_grid: int,
                  size: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pixel indices and weights along one axis for every box, bin and sampling point.

    Args:
        start, length: (M,) box start and extent in feature pixels (after the ``aligned`` offset).
        bins: pooled bins along the axis; grid: (M,) sampling points per bin; max_grid: ``grid.max()``.
        size: (M,) int64 extent of each box's feature map along the axis.

    Returns:
        (M, bins, 2 * max_grid) int64 indices and float weights: the lower and upper neighbour of each
        sampling point, with weight 0 for padding points (beyond a box's grid) and points outside
        [-1, size], as torchvision does.
    """
    size = size[:, None, None]  # (M, 1, 1)
    bin_size = (length / bins)[:, None, None]  # (M, 1, 1)
    offsets = torch.arange(bins, dtype=start.dtype, device=start.device)[None, :, None]  # (1, bins, 1)
    point = torch.arange(max_grid, dtype=start.dtype, device=start.device)[None, None, :]  # (1, 1, G)
    pos = start[:, None, None] + offsets * bin_size + (point + 0.5) * bin_size / grid[:, None, None]  # (M, bins, G)
    valid = (point < grid[:, None, None]) & (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0)
    low = pos.floor().to(torch.int64)
    at_edge = low >= size - 1
    low = torch.minimum(low, size - 1)
    pos = torch.where(at_edge, low.to(pos.dtype), pos)
    high = torch.where(at_edge, low, low + 1)
    valid = valid.to(pos.dtype)
    upper = (pos - low) * valid
    lower = valid - upper
    return torch.stack([low, high], -1).flatten(2), torch.stack([lower, upper], -1).flatten(2)


def _sampling_grid(length: torch.Tensor, bins: int, sampling_ratio: int) -> torch.Tensor:
    """(M,) sampling points per bin along one axis: ``sampling_ratio``, or ceil(length / bins) when it is <= 0."""
    if sampling_ratio > 0:
        return torch.full_like(length, sampling_ratio, dtype=torch.int64)
    return torch.ceil(length / bins).to(torch.int64)


def interpolation_matrix(rois: torch.Tensor, feature_shapes: Sequence[Tuple[int, int, int]],
                         output_size: Tuple[int, int], spatial_scales: Sequence[float], sampling_ratio: int,
                         aligned: bool, levels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """RoIAlign's weights as a sparse CSR matrix of shape (M * out_h * out_w, sum of B * H_l * W_l).

    Args:
        rois: (M, 5) float boxes ``(image index, x0, y0, x1, y1)`` in input pixels; the weights take their dtype.
        feature_shapes: (B, H_l, W_l) of each feature map (level).
        output_size, sampling_ratio, aligned: as for ``torchvision.ops.roi_align``.
        spatial_scales: each level's ``spatial_scale``.
        levels: (M,) int64 level of each box; None when there is one level.

    Returns:
        Row ``(m * out_h + i) * out_w + j`` holds the weights of pooled bin (i, j) of box m over the
        columns ``offset_l + (b * H_l + y) * W_l + x``, the levels' pixels one after the other
        (``offset_l``: the pixels of the levels before l). Multiplying it with the levels' features as
        one (sum of B*H_l*W_l, C) matrix pools them.
    """
    device = rois.device
    if levels is None:
        if len(feature_shapes) != 1:
            raise ValueError(f"interpolation_matrix got {len(feature_shapes)} feature maps but no box levels.")
        levels = torch.zeros(rois.shape[0], dtype=torch.int64, device=device)
    shapes = torch.as_tensor(feature_shapes, dtype=torch.int64, device=device)  # (L, 3)
    pixels = shapes.prod(1)  # (L,)
    level_offset = (torch.cumsum(pixels, 0) - pixels)[levels]  # (M,)
    height, width = shapes[levels, 1], shapes[levels, 2]  # (M,)
    scale = torch.as_tensor(spatial_scales, dtype=rois.dtype, device=device)[levels]  # (M,)
    out_h, out_w = output_size
    offset = 0.5 if aligned else 0.0
    x0, y0, x1, y1 = (rois[:, 1:] * scale[:, None] - offset).unbind(1)
    box_w, box_h = x1 - x0, y1 - y0
    if not aligned:  # torchvision's legacy rule: boxes at least one pixel wide
        box_w, box_h = box_w.clamp(min=1.0), box_h.clamp(min=1.0)
    grid_w = _sampling_grid(box_w, out_w, sampling_ratio)
    grid_h = _sampling_grid(box_h, out_h, sampling_ratio)
    max_w, max_h = max(int(grid_w.max()), 1), max(int(grid_h.max()), 1)
    x_index, x_weight = _axis_weights(x0, box_w, out_w, grid_w, max_w, width)  # (M, out_w, 2 * max_w)
    y_index, y_weight = _axis_weights(y0, box_h, out_h, grid_h, max_h, height)  # (M, out_h, 2 * max_h)
    y_weight = y_weight / (grid_w * grid_h).clamp(min=1)[:, None, None]  # the bin's average

    rows = rois.shape[0] * out_h * out_w
    image_offset = level_offset + rois[:, 0].to(torch.int64) * (height * width)
    # (M, out_h, out_w, 2 * max_h, 2 * max_w): every bin times every (y, x) neighbour pair
    columns = (image_offset[:, None, None, None, None] + (y_index * width[:, None, None])[:, :, None, :, None]
               + x_index[:, None, :, None, :]).reshape(rows, -1)
    values = (y_weight[:, :, None, :, None] * x_weight[:, None, :, None, :]).reshape(rows, -1)
    if sampling_ratio > 0:  # every row has the same number of points: keep the (few) zeros of points off the map
        crow = torch.arange(0, rows + 1, dtype=torch.int64, device=device) * columns.shape[1]
        columns, values = columns.reshape(-1), values.reshape(-1)
    else:  # drop the padding of boxes with fewer points than the largest grid
        keep = values != 0
        crow = torch.zeros(rows + 1, dtype=torch.int64, device=device)
        torch.cumsum(keep.sum(1), 0, out=crow[1:])
        columns, values = columns[keep], values[keep]
    with warnings.catch_warnings():  # torch's one-time notice that sparse CSR support is in beta
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, columns, values, (rows, int(pixels.sum())), check_invariants=False)


class _SparseRoIAlign(torch.autograd.Function):
    """RoIAlign of float32 or float64 feature levels as ``S @ features``; the gradient is ``S.T @ grad``."""

    @staticmethod
    def forward(ctx, rois, levels, output_size, spatial_scales, sampling_ratio, aligned, *features):
        channels = features[0].shape[1]
        shapes = [(f.shape[0], f.shape[2], f.shape[3]) for f in features]
        matrix = interpolation_matrix(rois.to(features[0].dtype), shapes, output_size, spatial_scales,
                                      sampling_ratio, aligned, levels)
        ctx.matrix, ctx.shapes = matrix, shapes
        pixels = torch.cat([f.permute(0, 2, 3, 1).reshape(-1, channels) for f in features])  # (sum B*H*W, C)
        pooled = matrix @ pixels  # (M*out_h*out_w, C)
        return pooled.view(rois.shape[0], *output_size, channels).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad_output):
        channels = grad_output.shape[1]
        grad = grad_output.permute(0, 2, 3, 1).reshape(-1, channels)  # (M*out_h*out_w, C)
        with torch.autocast("cpu", enabled=False):
            grad_pixels = ctx.matrix.t() @ grad.to(ctx.matrix.dtype)  # (sum B*H*W, C)
        sizes = [b * h * w for b, h, w in ctx.shapes]
        grads = [g.view(b, h, w, channels).permute(0, 3, 1, 2)
                 for g, (b, h, w) in zip(grad_pixels.split(sizes), ctx.shapes)]
        return (None, None, None, None, None, None, *grads)


def _matrix_entries(rois: torch.Tensor, levels: Optional[torch.Tensor], output_size: Tuple[int, int],
                    spatial_scales: Sequence[float], sampling_ratio: int) -> int:
    """Sampling-point weights ``interpolation_matrix`` builds before dropping zeros: every bin gets the
    largest grid of any box, four neighbours per point."""
    if sampling_ratio > 0:
        points = sampling_ratio * sampling_ratio
    else:
        scales = torch.as_tensor(spatial_scales, dtype=rois.dtype, device=rois.device)
        scale = scales[levels] if levels is not None else scales[0]
        sides = (rois[:, 3:] - rois[:, 1:3]).abs() * torch.as_tensor(scale)[..., None] + 1.0  # (M, 2), +1: legacy clamp
        grid = torch.ceil(sides.amax(0) / torch.tensor(output_size[::-1], dtype=sides.dtype, device=sides.device))
        points = int(grid.prod())
    return rois.shape[0] * output_size[0] * output_size[1] * 4 * max(points, 1)


def multilevel_roi_align(features: List[torch.Tensor], rois: torch.Tensor, levels: Optional[torch.Tensor],
                         output_size: Union[int, Tuple[int, int]], spatial_scales: Sequence[float],
                         sampling_ratio: int = -1, aligned: bool = False) -> torch.Tensor:
    """RoIAlign of each box from its own level of a feature pyramid, as ``torchvision.ops.roi_align`` pools.

    Args:
        features: one (B, C, H_l, W_l) map per level (any memory format; float32, bf16 or fp16).
        rois: (M, 5) boxes as (image index, x0, y0, x1, y1) in input-image pixels.
        levels: (M,) int64 index into ``features`` of each box's level; None for a single level.
        output_size, sampling_ratio, aligned: as for ``torchvision.ops.roi_align``.
        spatial_scales: each level's ``spatial_scale`` (1 / stride).

    Returns:
        (M, C, output_h, output_w) pooled features in the boxes' order and ``features``' dtype (float16
        and bf16 are computed in float32, as torchvision's autocast rule for roi_align does). On CPU
        it is one sparse matrix product; on CUDA, during graph capture or for a matrix above
        ``MAX_ENTRIES``, one ``torchvision.ops.roi_align`` call per level.
    """
    output_size = _pair(output_size)
    if len(features) != len(spatial_scales):
        raise ValueError(f"multilevel_roi_align got {len(features)} feature maps and {len(spatial_scales)} scales.")
    first = features[0]
    eager_cpu = first.device.type == "cpu" and not is_graph_capture()
    if eager_cpu:  # neither torch's sparse kernels nor torchvision's check these: refuse boxes pointing outside
        images = rois[:, 0]
        if bool((images < 0).any()) or bool((images >= first.shape[0]).any()):
            raise ValueError(f"multilevel_roi_align: box image indices must lie in [0, {first.shape[0]}) for a batch "
                             f"of {first.shape[0]}; got {images.min().item():g} to {images.max().item():g}.")
        if levels is not None and (bool((levels < 0).any()) or bool((levels >= len(features)).any())):
            raise ValueError(f"multilevel_roi_align: box levels must lie in [0, {len(features)}); "
                             f"got {levels.min().item()} to {levels.max().item()}.")
    if (not eager_cpu or rois.shape[0] == 0
            or _matrix_entries(rois, levels, output_size, spatial_scales, sampling_ratio) > MAX_ENTRIES):
        if len(features) == 1:
            return torchvision_roi_align(first, rois, output_size, spatial_scales[0], sampling_ratio, aligned)
        out = first.new_zeros((rois.shape[0], first.shape[1], *output_size))  # (M, C, out_h, out_w)
        for level, (feature, scale) in enumerate(zip(features, spatial_scales)):
            index = (levels == level).nonzero().squeeze(1)
            if index.numel():
                out[index] = torchvision_roi_align(feature, rois[index], output_size, scale, sampling_ratio,
                                                   aligned).to(out.dtype)
        return out
    compute_dtype = first.dtype if first.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.autocast("cpu", enabled=False):
        out = _SparseRoIAlign.apply(rois, levels, output_size, [float(s) for s in spatial_scales],
                                    int(sampling_ratio), bool(aligned), *[f.to(compute_dtype) for f in features])
    return out.to(first.dtype)


def roi_align(input: torch.Tensor, rois: torch.Tensor, output_size: Union[int, Tuple[int, int]],
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> torch.Tensor:
    """``torchvision.ops.roi_align``, computed on CPU as sparse matrix products (see the module docstring).

    Args:
        input: (B, C, H, W) feature map (any memory format; float32, bf16 or fp16).
        rois: (M, 5) boxes as (image index, x0, y0, x1, y1) in input-image pixels.
        output_size, spatial_scale, sampling_ratio, aligned: as for ``torchvision.ops.roi_align``.

    Returns:
        (M, C, output_h, output_w) pooled features in ``input``'s dtype (float16 and bf16 are computed
        in float32, as torchvision's autocast rule for roi_align does).
    """
    return multilevel_roi_align([input], rois, None, output_size, [spatial_scale], sampling_ratio, aligned)
