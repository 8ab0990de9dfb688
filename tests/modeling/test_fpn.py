"""Tests for detkit.modeling.neck.fpn: top-down values, output shapes, top blocks, init, config."""
import math

import pytest
import torch
from torch import nn

from detkit.config import get_cfg
from detkit.layers import ShapeSpec
from detkit.modeling import NECK_REGISTRY, build_neck
from detkit.modeling.neck import FPN

_SHAPES = {"c3": ShapeSpec(channels=8, stride=8), "c4": ShapeSpec(channels=16, stride=16),
           "c5": ShapeSpec(channels=24, stride=32)}


def _features(batch=2, size=128):
    return {k: torch.randn(batch, s.channels, size // s.stride, size // s.stride) for k, s in _SHAPES.items()}


def test_fpn_top_down_hand_values():
    # 1-channel FPN with identity laterals (1x1 weight 1) and identity outputs (3x3 with only the centre 1).
    fpn = FPN(["c3", "c4"], {"c3": ShapeSpec(channels=1, stride=8), "c4": ShapeSpec(channels=1, stride=16)}, 1)
    with torch.no_grad():
        for conv in list(fpn.lateral_convs) + list(fpn.output_convs):
            conv.weight.zero_()
            conv.weight[..., conv.weight.shape[-1] // 2, conv.weight.shape[-1] // 2] = 1.0
            conv.bias.zero_()
    c4 = torch.tensor([[1., 2.], [3., 4.]]).view(1, 1, 2, 2)
    c3 = torch.ones(1, 1, 4, 4)
    out = fpn({"c3": c3, "c4": c4})
    assert list(out) == ["p3", "p4"]
    assert torch.equal(out["p4"], c4)
    # p3 = c3 + nearest-upsampled p4's lateral: each value of c4 fills a 2x2 block, plus 1.
    expected = torch.tensor([[2., 2., 3., 3.], [2., 2., 3., 3.], [4., 4., 5., 5.], [4., 4., 5., 5.]])
    assert torch.equal(out["p3"][0, 0], expected)


@pytest.mark.parametrize("top_block, p6_in", [("", None), ("P6P7_P5", 32), ("P6P7_C5", 24)])
def test_fpn_shapes_and_top_blocks(top_block, p6_in):
    fpn = FPN(["c3", "c4", "c5"], _SHAPES, 32, top_block=top_block)
    out = fpn(_features())
    sizes = {"p3": 16, "p4": 8, "p5": 4, "p6": 2, "p7": 1}  # 128 / stride
    names = ["p3", "p4", "p5"] + (["p6", "p7"] if top_block else [])
    assert list(out) == names
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (2, 32, sizes[k], sizes[k]) for k in names}
    assert {k: (s.channels, s.stride) for k, s in fpn.output_shape().items()} == \
        {k: (32, 2 ** int(k[1])) for k in names}
    assert fpn.size_divisibility == 32
    if p6_in:
        assert fpn.top_block.p6.in_channels == p6_in and fpn.top_block.p7.in_channels == 32


def test_fpn_p6_from_p5_or_c5():
    """p6 is the stride-2 3x3 conv of c5 (P6P7_C5) or of p5 (P6P7_P5), and p7 that of relu(p6)."""
    import torch.nn.functional as F

    features = _features(1, 128)
    for top_block, source in (("P6P7_C5", lambda out: features["c5"]), ("P6P7_P5", lambda out: out["p5"])):
        torch.manual_seed(0)
        fpn = FPN(["c3", "c4", "c5"], _SHAPES, 4, top_block=top_block)
        with torch.no_grad():
            out = fpn(features)
            p6 = fpn.top_block.p6
            expected = F.conv2d(source(out), p6.weight, p6.bias, stride=2, padding=1)
            p7 = fpn.top_block.p7
            expected_p7 = F.conv2d(F.relu(expected), p7.weight, p7.bias, stride=2, padding=1)
        assert p6.in_channels == (24 if top_block == "P6P7_C5" else 4)
        assert torch.allclose(out["p6"], expected, atol=1e-6), top_block
        assert torch.allclose(out["p7"], expected_p7, atol=1e-6), top_block
        assert out["p6"].shape == (1, 4, 2, 2) and out["p7"].shape == (1, 4, 1, 1)


def test_fpn_init_and_norm():
    fpn = FPN(["c3", "c4", "c5"], _SHAPES, 32)
    for conv in list(fpn.lateral_convs) + list(fpn.output_convs):
        # Caffe2 Xavier = kaiming_uniform(a=1): U(-sqrt(3 / fan_in), sqrt(3 / fan_in)); zero bias.
        fan_in = conv.weight[0].numel()
        assert conv.weight.abs().max() <= math.sqrt(3 / fan_in) + 1e-6
        assert torch.equal(conv.bias, torch.zeros_like(conv.bias))
    gn = FPN(["c3", "c4", "c5"], _SHAPES, 32, norm="GN")
    assert gn.lateral_convs[0].bias is None and isinstance(gn.output_convs[0].norm, nn.GroupNorm)
    assert gn(_features(1, 64))["p3"].shape == (1, 32, 8, 8)


def test_fpn_errors():
    with pytest.raises(ValueError, match=r"\['c6'\] not produced by the backbone"):
        FPN(["c3", "c6"], _SHAPES, 8)
    with pytest.raises(ValueError, match="TOP_BLOCK = 'P6'"):
        FPN(["c3", "c4"], _SHAPES, 8, top_block="P6")
    with pytest.raises(ValueError, match="twice the previous"):
        FPN(["c3", "c5"], _SHAPES, 8)


def test_build_neck_from_config():
    cfg = get_cfg()
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    cfg.MODEL.FPN.TOP_BLOCK = "P6P7_P5"
    fpn = build_neck(cfg, _SHAPES)
    assert isinstance(fpn, FPN) and list(fpn.output_shape()) == ["p3", "p4", "p5", "p6", "p7"]
    assert fpn.output_shape()["p7"] == ShapeSpec(channels=16, stride=128)
    assert "FPN" in NECK_REGISTRY.names()
