"""Tests for detkit.modeling.dense_heads.fcos_head: shapes, initialisation, per-level scales, config."""
import math

import pytest
import torch
from torch import nn

from detkit.config import get_cfg
from detkit.layers import ShapeSpec
from detkit.modeling.dense_heads import DENSE_HEAD_REGISTRY, build_dense_head
from detkit.modeling.dense_heads.fcos_head import FCOSHead

SHAPES = [ShapeSpec(channels=32, stride=s) for s in (8, 16, 32)]


def test_fcos_head_output_shapes_per_level():
    head = FCOSHead(input_shape=SHAPES, num_classes=5, num_convs=2, norm="GN")
    feats = [torch.randn(2, 32, 12, 10), torch.randn(2, 32, 6, 5), torch.randn(2, 32, 3, 3)]
    logits, reg, ctr = head(feats)
    assert [tuple(t.shape) for t in logits] == [(2, 5, 12, 10), (2, 5, 6, 5), (2, 5, 3, 3)]
    assert [tuple(t.shape) for t in reg] == [(2, 4, 12, 10), (2, 4, 6, 5), (2, 4, 3, 3)]
    assert [tuple(t.shape) for t in ctr] == [(2, 1, 12, 10), (2, 1, 6, 5), (2, 1, 3, 3)]
    assert all((t >= 0).all() for t in reg)  # LTRB distances are non-negative


def test_fcos_head_towers_and_prior():
    head = FCOSHead(input_shape=SHAPES, num_classes=3, num_convs=3, norm="GN", prior_prob=0.01)
    for tower in (head.cls_tower, head.bbox_tower):
        assert sum(isinstance(m, nn.Conv2d) for m in tower) == 3
        assert sum(isinstance(m, nn.GroupNorm) for m in tower) == 3
        assert all(m.bias is None for m in tower if isinstance(m, nn.Conv2d))  # the norm carries the bias
    assert torch.allclose(head.cls_logits.bias, torch.full((3,), -math.log(99.0)))
    assert torch.sigmoid(head.cls_logits.bias).tolist() == pytest.approx([0.01] * 3)
    plain = FCOSHead(input_shape=SHAPES, num_classes=3, num_convs=1, norm="")
    assert [type(m) for m in plain.cls_tower] == [nn.Conv2d, nn.ReLU]


def test_fcos_head_per_level_scale_multiplies_before_relu():
    head = FCOSHead(input_shape=SHAPES, num_classes=2, num_convs=0, norm="", use_scale=True)
    nn.init.zeros_(head.bbox_pred.weight)
    nn.init.constant_(head.bbox_pred.bias, 2.0)
    with torch.no_grad():
        head.scales[1].scale.fill_(3.0)
        head.scales[2].scale.fill_(-1.0)
    feats = [torch.randn(1, 32, 2, 2), torch.randn(1, 32, 2, 2), torch.randn(1, 32, 2, 2)]
    _, reg, _ = head(feats)
    assert (reg[0] == 2.0).all() and (reg[1] == 6.0).all() and (reg[2] == 0.0).all()
    assert FCOSHead(input_shape=SHAPES, num_classes=2, use_scale=False).scales is None


def test_fcos_head_errors_name_the_cause():
    with pytest.raises(ValueError, match="OUT_CHANNELS"):
        FCOSHead(input_shape=[ShapeSpec(channels=32, stride=8), ShapeSpec(channels=64, stride=16)], num_classes=2)
    head = FCOSHead(input_shape=SHAPES, num_classes=2, num_convs=1)
    with pytest.raises(ValueError, match="IN_FEATURES"):
        head([torch.randn(1, 32, 4, 4)])


def test_fcos_head_from_config_via_registry():
    assert "FCOSHead" in DENSE_HEAD_REGISTRY.names()
    cfg = get_cfg()
    cfg.MODEL.FCOS.NUM_CLASSES = 7
    cfg.MODEL.FCOS.NUM_CONVS = 2
    cfg.MODEL.FCOS.HEAD_NORM = ""
    cfg.MODEL.FCOS.USE_SCALE = False
    shapes = {"p3": SHAPES[0], "p4": SHAPES[1], "p5": SHAPES[2]}
    head = build_dense_head(cfg, "FCOSHead", shapes)
    assert head.cls_logits.out_channels == 7
    assert sum(isinstance(m, nn.Conv2d) for m in head.bbox_tower) == 2
    assert head.scales is None
    assert not any(isinstance(m, nn.GroupNorm) for m in head.modules())
