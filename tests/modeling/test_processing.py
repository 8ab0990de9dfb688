"""Tests for detkit.modeling.meta_arch.processing: normalise + pad, inference autocast, rescaling."""
import torch

from detkit.modeling.meta_arch.processing import detector_postprocess, inference_autocast, preprocess_images
from detkit.structures import Boxes, Instances

MEAN = torch.tensor([10.0, 20.0, 30.0]).view(3, 1, 1)
STD = torch.tensor([2.0, 4.0, 5.0]).view(3, 1, 1)


def _inputs():
    a = torch.full((3, 2, 3), 40, dtype=torch.uint8)  # 2 x 3
    b = torch.full((3, 4, 1), 50, dtype=torch.uint8)  # 4 x 1
    return [{"image": a}, {"image": b}]


def test_preprocess_normalises_pads_with_zero_and_keeps_sizes():
    images = preprocess_images(_inputs(), MEAN, STD, size_divisibility=4)
    assert images.image_sizes == [(2, 3), (4, 1)]
    t = images.tensor
    assert t.shape == (2, 3, 4, 4) and t.dtype == torch.float32
    # (40 - mean) / std per channel: 15, 5, 2; (50 - mean) / std: 20, 7.5, 4.
    assert torch.equal(t[0, :, :2, :3], torch.tensor([15.0, 5.0, 2.0]).view(3, 1, 1).expand(3, 2, 3))
    assert torch.equal(t[1, :, :4, :1], torch.tensor([20.0, 7.5, 4.0]).view(3, 1, 1).expand(3, 4, 1))
    assert t[0, :, 2:, :].abs().sum() == 0 and t[0, :, :, 3:].abs().sum() == 0
    assert t[1, :, :, 1:].abs().sum() == 0


def test_preprocess_channels_last_same_values():
    plain = preprocess_images(_inputs(), MEAN, STD, size_divisibility=4).tensor
    nhwc = preprocess_images(_inputs(), MEAN, STD, size_divisibility=4, channels_last=True).tensor
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and not nhwc.is_contiguous()
    assert torch.equal(plain, nhwc)


def test_detector_postprocess_rescales_and_clips():
    r = Instances((10, 20), pred_boxes=Boxes(torch.tensor([[2.0, 1.0, 30.0, 5.0]])), scores=torch.tensor([0.5]))
    out = detector_postprocess(r, 20, 10)  # x scale 0.5, y scale 2
    assert out.image_size == (20, 10)
    assert out.pred_boxes.tensor.tolist() == [[1.0, 2.0, 10.0, 10.0]]
    assert r.pred_boxes.tensor.tolist() == [[2.0, 1.0, 30.0, 5.0]]  # input untouched


def test_inference_autocast_dtype_noop_and_cpu_fallback(monkeypatch):
    import detkit.utils.env as env

    conv = torch.nn.Conv2d(3, 4, 1)
    x = torch.randn(1, 3, 4, 4)
    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: True)
    with inference_autocast(torch.device("cpu"), True):
        assert conv(x).dtype == torch.bfloat16
    with inference_autocast("cpu", False):
        assert conv(x).dtype == torch.float32
    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: False)
    with inference_autocast("cpu", True):  # emulated bf16 is slower than float32: run float32
        assert conv(x).dtype == torch.float32
