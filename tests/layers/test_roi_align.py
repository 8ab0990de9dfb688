"""Tests for detkit.layers.roi_align: its sparse interpolation matrix by hand, and values and gradients
equal to torchvision's RoIAlign on awkward boxes, in both alignments and both sampling rules."""
import importlib

import pytest
import torch
from torchvision.ops import roi_align as torchvision_roi_align

from detkit.layers import multilevel_roi_align, roi_align
from detkit.layers.roi_align import interpolation_matrix

roi_align_module = importlib.import_module("detkit.layers.roi_align")  # the module, not the function it exports


def _data(num_rois=300, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 8, 20, 24, generator=g, dtype=dtype)
    xy = torch.rand(num_rois, 2, generator=g, dtype=dtype) * 200 - 20  # some start left of / above the image
    wh = torch.rand(num_rois, 2, generator=g, dtype=dtype) * 80 + 0.2  # from sub-pixel to past the border
    batch = torch.randint(0, 2, (num_rois, 1), generator=g).to(dtype)
    rois = torch.cat([batch, xy, xy + wh], dim=1)  # (M, 5)
    rois[0] = torch.tensor([1, 300, 300, 340, 330], dtype=dtype)  # wholly outside: pools zeros
    return features, rois


def _weights(box, feature_shape, sampling_ratio, aligned):
    """Dense (B, H, W) weights of the single bin of one box."""
    rois = torch.tensor([box], dtype=torch.float64)
    return interpolation_matrix(rois, [feature_shape], (1, 1), [1.0], sampling_ratio, aligned).to_dense().view(
        *feature_shape)


def test_matrix_by_hand():
    # Aligned box (0.5, 0.5)-(2.5, 1.5) in image 1 covers pixels from (0, 0), 2 wide and 1 tall; 2x2 points
    # at x 0.5, 1.5 and y 0.25, 0.75. Along x, columns 0, 1, 2 get 1/4, 1/2, 1/4; along y rows 0, 1 get 1/2 each.
    weights = _weights([1.0, 0.5, 0.5, 2.5, 1.5], (2, 3, 4), 2, True)
    expected = torch.zeros(2, 3, 4, dtype=torch.float64)
    expected[1, :2, :3] = torch.tensor([0.25, 0.5, 0.25]) / 2
    assert torch.equal(weights, expected)


@pytest.mark.parametrize("x0, x1, row", [
    (2.0, 4.0, [0, 0, 0, 1]),   # one point at x 3, the last pixel: all its weight there
    (2.5, 5.0, [0, 0, 0, 1]),   # x 3.75, past the last pixel but within size: clamped to it
    (-2.0, 0.0, [1, 0, 0, 0]),  # x -1, the lowest valid position: clamped to pixel 0
    (4.0, 6.2, [0, 0, 0, 0]),   # x 5.1 > size 4: dropped, as torchvision does
    (-3.0, -1.0, [0, 0, 0, 0]),  # x -2 < -1: dropped
])
def test_matrix_at_the_border(x0, x1, row):
    # Unaligned, one point per bin; y from 0 to 1 puts it at 0.5, half on each of the two rows.
    weights = _weights([0.0, x0, 0.0, x1, 1.0], (1, 2, 4), 1, False)
    half = torch.tensor(row, dtype=torch.float64) / 2
    assert torch.equal(weights[0], torch.stack([half, half]))


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_values_and_gradients_equal_torchvision(aligned, sampling_ratio):
    features, rois = _data(dtype=torch.float64)
    a = features.clone().requires_grad_()
    b = features.clone().contiguous(memory_format=torch.channels_last).requires_grad_()
    weights = torch.randn(len(rois), 8, 5, 7, dtype=torch.float64)
    expected = torchvision_roi_align(a, rois, (5, 7), 0.25, sampling_ratio, aligned)
    out = roi_align(b, rois, (5, 7), 0.25, sampling_ratio, aligned)
    assert out.dtype == torch.float64 and out.shape == (300, 8, 5, 7)
    assert out.abs().sum() > 0 and out[0].abs().sum() == 0  # the box outside the image pools zeros
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    (expected * weights).sum().backward()
    (out * weights).sum().backward()
    torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-12)


def _pyramid(dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(2, 8, 40 // 2 ** k, 48 // 2 ** k, generator=g, dtype=dtype) for k in range(3)]


def test_multilevel_equals_torchvision_per_level(monkeypatch):
    """Boxes of three levels, interleaved: one matrix gives each box its level's torchvision pooling,
    in the boxes' order, and each level its own gradient; the per-level fallback gives the same."""
    _, rois = _data(dtype=torch.float64)
    levels = torch.arange(len(rois)) % 3
    scales = [1 / 4, 1 / 8, 1 / 16]
    weights = torch.randn(len(rois), 8, 7, 7, dtype=torch.float64)
    reference = [f.clone().requires_grad_() for f in _pyramid()]
    expected = torch.stack([torchvision_roi_align(reference[lv], rois[i:i + 1], 7, scales[lv], 2, True)[0]
                            for i, lv in enumerate(levels.tolist())])
    (expected * weights).sum().backward()
    for max_entries in (1 << 24, 1000):  # the sparse matrix, then torchvision's kernel level by level
        monkeypatch.setattr(roi_align_module, "MAX_ENTRIES", max_entries)
        features = [f.clone().requires_grad_() for f in _pyramid()]
        out = multilevel_roi_align(features, rois, levels, 7, scales, 2, True)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
        (out * weights).sum().backward()
        for f, r in zip(features, reference):
            torch.testing.assert_close(f.grad, r.grad, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="3 feature maps and 2 scales"):
        multilevel_roi_align(_pyramid(), rois, levels, 7, scales[:2], 2, True)
    with pytest.raises(ValueError, match=r"box levels must lie in \[0, 3\); got 0 to 3"):
        multilevel_roi_align(_pyramid(), rois, torch.where(levels == 2, 3, levels), 7, scales, 2, True)
    bad_image = rois.clone()
    bad_image[5, 0] = 2
    with pytest.raises(ValueError, match=r"image indices must lie in \[0, 2\) for a batch of 2; got 0 to 2"):
        multilevel_roi_align(_pyramid(), bad_image, levels, 7, scales, 2, True)


def test_reduced_precision_and_autocast():
    features, rois = _data()
    nhwc = features.bfloat16().contiguous(memory_format=torch.channels_last)
    out = roi_align(nhwc, rois, 7, 1 / 8, 2, True)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, torchvision_roi_align(nhwc.float(), rois, 7, 1 / 8, 2, True).bfloat16())
    # Under CPU autocast (AMPTrainer's forward) with float32 features, the forward and backward run in float32.
    leaf = features.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled = roi_align(leaf, rois, 7, 1 / 8, 2, True)
    assert pooled.dtype == torch.float32
    pooled.square().sum().backward()
    reference = features.clone().requires_grad_()
    torchvision_roi_align(reference, rois, 7, 1 / 8, 2, True).square().sum().backward()
    torch.testing.assert_close(leaf.grad, reference.grad, rtol=1e-5, atol=1e-5)


def test_falls_back_to_torchvision(monkeypatch):
    features, rois = _data()
    expected = torchvision_roi_align(features, rois, 7, 1 / 8, 0, True)
    monkeypatch.setattr(roi_align_module, "MAX_ENTRIES", 1000)  # a matrix too large: torchvision's kernel
    monkeypatch.setattr(roi_align_module._SparseRoIAlign, "apply",
                        lambda *args: (_ for _ in ()).throw(AssertionError("built a matrix")))
    assert torch.equal(roi_align(features, rois, 7, 1 / 8, 0, True), expected)
    empty = roi_align(features, rois[:0], 7, 1 / 8, 0, True)
    assert empty.shape == (0, 8, 7, 7)
    monkeypatch.setattr(roi_align_module, "MAX_ENTRIES", 1 << 24)
    traced = torch.jit.trace(lambda f, r: roi_align(f, r, 7, 1 / 8, 0, True), (features, rois),  # graph capture
                             check_trace=False)
    assert torch.equal(traced(features, rois), expected)
