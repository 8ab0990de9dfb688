"""Tests for detkit.layers.roi_align: the channel-split RoIAlign equals torchvision's, values and gradients."""
import torch
from torchvision.ops import roi_align

from detkit.layers import roi_align as roi_align_module
from detkit.layers import roi_align_parallel


def _data(num_rois=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 8, 20, 24, generator=g)
    xy = torch.rand(num_rois, 2, generator=g) * 150
    wh = torch.rand(num_rois, 2, generator=g) * 60 + 1
    batch = torch.randint(0, 2, (num_rois, 1), generator=g).float()
    return features, torch.cat([batch, xy, xy + wh], dim=1)  # (M, 5)


def _spy_map(monkeypatch):
    calls = []
    real = roi_align_module.parallel_map

    def spy(fn, items):
        calls.append([tuple(x.shape) for x in items])
        return real(fn, items)

    monkeypatch.setattr(roi_align_module, "parallel_map", spy)
    return calls


def test_same_values_as_one_call_split_by_channel(monkeypatch):
    features, rois = _data()
    expected = roi_align(features, rois, 7, 1 / 8, 2, True)
    calls = _spy_map(monkeypatch)
    out = roi_align_parallel(features, rois, 7, 1 / 8, 2, True, num_threads=3)
    assert torch.equal(out, expected)
    assert calls == [[(2, 3, 20, 24), (2, 3, 20, 24), (2, 2, 20, 24)]]  # 8 channels over 3 threads
    with torch.inference_mode():
        assert torch.equal(roi_align_parallel(features, rois, (7, 7), 1 / 8, 2, True, num_threads=2), expected)


def test_gradients_equal_and_backward_is_split(monkeypatch):
    features, rois = _data()
    a = features.clone().requires_grad_()
    b = features.clone().requires_grad_()
    weights = torch.randn(len(rois), 8, 5, 5)
    (roi_align(a, rois, 5, 0.25, 0, False) * weights).sum().backward()
    calls = _spy_map(monkeypatch)
    (roi_align_parallel(b, rois, 5, 0.25, 0, False, num_threads=2) * weights).sum().backward()
    assert torch.equal(a.grad, b.grad)  # channels are independent: the same sums in the same order
    assert calls == [[(2, 4, 20, 24)] * 2, [(300, 4, 5, 5)] * 2]  # forward slices, then gradient slices


def test_reduced_precision_and_channels_last_inputs():
    features, rois = _data()
    nhwc = features.bfloat16().contiguous(memory_format=torch.channels_last)
    out = roi_align_parallel(nhwc, rois, 7, 1 / 8, 2, True, num_threads=2)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, roi_align(nhwc.float(), rois, 7, 1 / 8, 2, True).bfloat16())


def test_few_boxes_or_one_thread_take_the_plain_call(monkeypatch):
    features, rois = _data(num_rois=20)
    monkeypatch.setattr(roi_align_module, "parallel_map", lambda fn, items: (_ for _ in ()).throw(AssertionError("pooled")))
    assert torch.equal(roi_align_parallel(features, rois, 7, 1 / 8, 2, True, num_threads=2),  # 20 < MIN_ROIS
                       roi_align(features, rois, 7, 1 / 8, 2, True))
    features, rois = _data()
    assert torch.equal(roi_align_parallel(features, rois, 7, 1 / 8, 2, True, num_threads=1),
                       roi_align(features, rois, 7, 1 / 8, 2, True))
