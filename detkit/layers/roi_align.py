"""roi_align: torchvision's RoIAlign, computed on CPU as one sparse matrix product each way.

Every pooled value is a fixed weighted sum of feature pixels: the average over a bin's sampling
points of their bilinear interpolation. For a batch of boxes these weights form one sparse matrix
``S`` of shape (boxes x bins, images x H x W), with at most four entries per sampling point, so::

    pooled = S @ features      (features as (B*H*W, C): channels_last is a free view)
    grad_features = S.T @ grad_pooled

torchvision's CPU kernels recompute the weights for every channel, on one thread, and its backward
pass scatters them one value at a time; in two-stage training that backward alone was ~38% of a
step on 2 cores. Here the weights are built once per call with tensor ops, by torchvision's sampling
rule (its ``aligned`` half-pixel offset, its adaptive ``ceil(size / bins)`` sampling grid, its
clamping at the border and zeros beyond it), and both products run in torch's multithreaded sparse
kernels. The result equals ``torchvision.ops.roi_align`` to float rounding, values and gradients.

On CUDA, during graph capture (tracing, ``torch.compile``, export) or when the matrix would be too
large, it is a plain ``torchvision.ops.roi_align`` call.
"""
import warnings
from typing import Tuple, Union

import torch
from torch.nn.modules.utils import _pair
from torchvision.ops import roi_align as torchvision_roi_align

from .wrappers import is_graph_capture

__all__ = ["roi_align", "interpolation_matrix"]

MAX_ENTRIES = 1 << 24  # sampling-point weights per call (before zeros are dropped); above it, torchvision's kernel


def _axis_weights(start: torch.Tensor, length: torch.Tensor, bins: int, grid: torch.Tensor, max_grid: int,
                  size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pixel indices and weights along one axis for every box, bin and sampling point.

    Args:
        start, length: (M,) box start and extent in feature pixels (after the ``aligned`` offset).
        bins: pooled bins along the axis; grid: (M,) sampling points per bin; max_grid: ``grid.max()``.
        size: the feature map's extent along the axis.

    Returns:
        (M, bins, 2 * max_grid) int64 indices and float weights: the lower and upper neighbour of each
        sampling point, with weight 0 for padding points (beyond a box's grid) and points outside
        [-1, size], as torchvision does.
    """
    bin_size = (length / bins)[:, None, None]  # (M, 1, 1)
    offsets = torch.arange(bins, dtype=start.dtype, device=start.device)[None, :, None]  # (1, bins, 1)
    point = torch.arange(max_grid, dtype=start.dtype, device=start.device)[None, None, :]  # (1, 1, G)
    pos = start[:, None, None] + offsets * bin_size + (point + 0.5) * bin_size / grid[:, None, None]  # (M, bins, G)
    valid = (point < grid[:, None, None]) & (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0)
    low = pos.floor().to(torch.int64)
    at_edge = low >= size - 1
    low = low.clamp(max=size - 1)
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


def interpolation_matrix(rois: torch.Tensor, feature_shape: Tuple[int, int, int], output_size: Tuple[int, int],
                         spatial_scale: float, sampling_ratio: int, aligned: bool) -> torch.Tensor:
    """RoIAlign's weights as a sparse CSR matrix of shape (M * out_h * out_w, B * H * W).

    Args:
        rois: (M, 5) float boxes ``(image index, x0, y0, x1, y1)`` in input pixels; the weights take their dtype.
        feature_shape: (B, H, W) of the feature map.
        output_size, spatial_scale, sampling_ratio, aligned: as for ``torchvision.ops.roi_align``.

    Returns:
        Row ``(m * out_h + i) * out_w + j`` holds the weights of pooled bin (i, j) of box m over the
        pixels ``(b * H + y) * W + x``; multiplying it with the features as a (B*H*W, C) matrix pools them.
    """
    num_images, height, width = feature_shape
    out_h, out_w = output_size
    offset = 0.5 if aligned else 0.0
    x0, y0, x1, y1 = (rois[:, 1:] * spatial_scale - offset).unbind(1)
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
    image_offset = rois[:, 0].to(torch.int64) * (height * width)
    # (M, out_h, out_w, 2 * max_h, 2 * max_w): every bin times every (y, x) neighbour pair
    columns = (image_offset[:, None, None, None, None] + (y_index * width)[:, :, None, :, None]
               + x_index[:, None, :, None, :]).reshape(rows, -1)
    values = (y_weight[:, :, None, :, None] * x_weight[:, None, :, None, :]).reshape(rows, -1)
    if sampling_ratio > 0:  # every row has the same number of points: keep the (few) zeros of points off the map
        crow = torch.arange(0, rows + 1, dtype=torch.int64, device=rois.device) * columns.shape[1]
        columns, values = columns.reshape(-1), values.reshape(-1)
    else:  # drop the padding of boxes with fewer points than the largest grid
        keep = values != 0
        crow = torch.zeros(rows + 1, dtype=torch.int64, device=rois.device)
        torch.cumsum(keep.sum(1), 0, out=crow[1:])
        columns, values = columns[keep], values[keep]
    with warnings.catch_warnings():  # torch's one-time notice that sparse CSR support is in beta
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, columns, values, (rows, num_images * height * width),
                                       check_invariants=False)


class _SparseRoIAlign(torch.autograd.Function):
    """RoIAlign of float32 or float64 features as ``S @ features``; the gradient is ``S.T @ grad``."""

    @staticmethod
    def forward(ctx, features, rois, output_size, spatial_scale, sampling_ratio, aligned):
        num_images, channels, height, width = features.shape
        matrix = interpolation_matrix(rois.to(features.dtype), (num_images, height, width), output_size, spatial_scale,
                                      sampling_ratio, aligned)
        ctx.matrix, ctx.feature_shape = matrix, features.shape
        pixels = features.permute(0, 2, 3, 1).reshape(-1, channels)  # (B*H*W, C)
        pooled = matrix @ pixels  # (M*out_h*out_w, C)
        return pooled.view(rois.shape[0], *output_size, channels).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad_output):
        num_images, channels, height, width = ctx.feature_shape
        grad = grad_output.permute(0, 2, 3, 1).reshape(-1, channels)  # (M*out_h*out_w, C)
        with torch.autocast("cpu", enabled=False):
            grad_pixels = ctx.matrix.t() @ grad.to(ctx.matrix.dtype)  # (B*H*W, C)
        grad_features = grad_pixels.view(num_images, height, width, channels).permute(0, 3, 1, 2)
        return grad_features, None, None, None, None, None


def _matrix_entries(rois: torch.Tensor, output_size: Tuple[int, int], spatial_scale: float,
                    sampling_ratio: int) -> int:
    """Sampling-point weights the matrix is built from (an upper bound of its entries)."""
    if sampling_ratio > 0:
        points = sampling_ratio * sampling_ratio
    else:
        sides = (rois[:, 3:] - rois[:, 1:3]).amax(0) * spatial_scale + 1.0  # (2,) widest and tallest box
        points = int(torch.ceil(sides[0] / output_size[1])) * int(torch.ceil(sides[1] / output_size[0]))
    return rois.shape[0] * output_size[0] * output_size[1] * 4 * max(points, 1)


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
    output_size = _pair(output_size)
    if (input.device.type != "cpu" or rois.shape[0] == 0 or is_graph_capture()
            or _matrix_entries(rois, output_size, spatial_scale, sampling_ratio) > MAX_ENTRIES):
        return torchvision_roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned)
    compute_dtype = input.dtype if input.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.autocast("cpu", enabled=False):
        out = _SparseRoIAlign.apply(input.to(compute_dtype), rois, output_size, float(spatial_scale), int(sampling_ratio),
                                    bool(aligned))
    return out.to(input.dtype)
