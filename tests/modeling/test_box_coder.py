"""Tests for detkit.modeling.box_coder: Box2BoxTransform, LTRBBoxCoder, Box2BoxTransformLinear, centerness."""
import math

import pytest
import torch

from detkit.config import get_cfg
from detkit.modeling.box_coder import (
    BOX_CODER_REGISTRY, Box2BoxTransform, Box2BoxTransformLinear, LTRBBoxCoder, build_box_coder, centerness,
)


def test_box2box_one_hand_computed_delta():
    # src (0,0,10,20): w=10, h=20, centre (5,10). target (2,4,22,24): w=20, h=20, centre (12,14).
    # weights (10,10,5,5): dx = 10*(12-5)/10 = 7, dy = 10*(14-10)/20 = 2, dw = 5*log(20/10), dh = 5*log(1) = 0.
    t = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))
    d = t.get_deltas(torch.tensor([[0., 0., 10., 20.]]), torch.tensor([[2., 4., 22., 24.]]))
    torch.testing.assert_close(d, torch.tensor([[7.0, 2.0, 5 * math.log(2.0), 0.0]]))
    back = t.apply_deltas(d, torch.tensor([[0., 0., 10., 20.]]))
    torch.testing.assert_close(back, torch.tensor([[2., 4., 22., 24.]]))


def test_box2box_round_trip_many_boxes_and_classes():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 100
    src = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g) * 50], dim=1)
    xy = torch.rand(50, 2, generator=g) * 100
    tgt = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g) * 50], dim=1)
    t = Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0))
    d = t.get_deltas(src, tgt)
    torch.testing.assert_close(t.apply_deltas(d, src), tgt, rtol=1e-5, atol=1e-4)
    # k = 2 boxes per source (class-specific): the (N, 8) deltas decode to (N, 8), each half on its own.
    two = t.apply_deltas(torch.cat([d, torch.zeros_like(d)], dim=1), src)
    assert two.shape == (50, 8)
    torch.testing.assert_close(two[:, :4], tgt, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(two[:, 4:], src, rtol=1e-5, atol=1e-4)


def test_box2box_clamps_scale_and_stays_float32():
    # dw = 100 is clamped at log(1000/16): width 10 -> 10 * 1000/16 = 625, centred at 5 -> x in (-307.5, 317.5).
    t = Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0))
    out = t.apply_deltas(torch.tensor([[0.0, 0.0, 100.0, 0.0]]), torch.tensor([[0., 0., 10., 10.]]))
    torch.testing.assert_close(out, torch.tensor([[-307.5, 0.0, 317.5, 10.0]]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = t.apply_deltas(torch.zeros(3, 4, dtype=torch.bfloat16), torch.tensor([[0., 0., 10., 10.]] * 3))
        d = t.get_deltas(torch.tensor([[0., 0., 10., 10.]]).bfloat16(), torch.tensor([[1., 1., 11., 11.]]).bfloat16())
    assert out.dtype == torch.float32 and d.dtype == torch.float32
    with pytest.raises(ValueError, match="4 weights"):
        Box2BoxTransform(weights=(1.0, 1.0))


def test_ltrb_encode_hand_values_and_round_trip():
    # location (10,20), box (4,12,30,28), stride 8: (l,t,r,b) = (6,8,20,8) -> /8 = (0.75, 1, 2.5, 1).
    loc = torch.tensor([[10., 20.], [3., 5.]])
    boxes = torch.tensor([[4., 12., 30., 28.], [0., 0., 8., 8.]])
    strides = torch.tensor([8., 16.])
    coder = LTRBBoxCoder()
    enc = coder.encode(loc, boxes, strides)
    # second: (3,5,5,3) / 16.
    torch.testing.assert_close(enc, torch.tensor([[0.75, 1.0, 2.5, 1.0], [3 / 16, 5 / 16, 5 / 16, 3 / 16]]))
    torch.testing.assert_close(coder.decode(loc, enc, strides), boxes)
    raw = LTRBBoxCoder(normalize_by_stride=False)
    torch.testing.assert_close(raw.encode(loc, boxes, strides), torch.tensor([[6., 8., 20., 8.], [3., 5., 5., 3.]]))
    torch.testing.assert_close(raw.decode(loc, raw.encode(loc, boxes, strides), strides), boxes)


def test_ltrb_broadcasts_over_batch_dims():
    loc = torch.tensor([[10., 20.], [3., 5.]])
    boxes = torch.tensor([[[4., 12., 30., 28.], [0., 0., 8., 8.]], [[0., 0., 16., 32.], [2., 4., 4., 6.]]])  # (2, 2, 4)
    strides = torch.tensor([8., 16.])
    coder = LTRBBoxCoder()
    enc = coder.encode(loc, boxes, strides)  # locations broadcast over the batch
    assert enc.shape == (2, 2, 4)
    # image 1, location 0: (10-0, 20-0, 16-10, 32-20) / 8 = (1.25, 2.5, 0.75, 1.5)
    torch.testing.assert_close(enc[1, 0], torch.tensor([1.25, 2.5, 0.75, 1.5]))
    torch.testing.assert_close(coder.decode(loc.expand(2, 2, 2), enc, strides), boxes)


def test_centerness_values():
    ltrb = torch.tensor([
        [1., 1., 4., 4.],      # (1/4) * (1/4) -> sqrt = 0.25
        [3., 2., 3., 8.],      # 1 * (2/8) -> sqrt = 0.5
        [5., 5., 5., 5.],      # 1
        [2., 4., 6., 8.],      # (2/6) * (4/8) = 1/6 -> sqrt(1/6)
        [-1., -1., -1., -1.],  # background -> -1
        [0., 3., 2., 3.],      # on the left edge: 0
    ])
    expected = torch.tensor([0.25, 0.5, 1.0, math.sqrt(1 / 6), -1.0, 0.0])
    torch.testing.assert_close(centerness(ltrb), expected)
    torch.testing.assert_close(centerness(ltrb.reshape(2, 3, 4)), expected.reshape(2, 3))


def test_build_box_coder():
    cfg = get_cfg()
    rpn = build_box_coder(cfg, "Box2BoxTransform")
    assert rpn.weights == (1.0, 1.0, 1.0, 1.0)
    roi = build_box_coder(cfg, "Box2BoxTransform", weights=cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS)
    assert roi.weights == (10.0, 10.0, 5.0, 5.0) and roi.scale_clamp == pytest.approx(math.log(1000 / 16))
    assert build_box_coder(cfg, "LTRBBoxCoder").normalize_by_stride is True
    assert set(BOX_CODER_REGISTRY.names()) >= {"Box2BoxTransform", "LTRBBoxCoder"}


def test_ltrb_scalar_stride():
    # One stride for every location (a single level): (6, 8, 20, 8) / 8 and back.
    coder = LTRBBoxCoder()
    loc, box = torch.tensor([[10., 20.]]), torch.tensor([[4., 12., 30., 28.]])
    enc = coder.encode(loc, box, torch.tensor(8.0))
    torch.testing.assert_close(enc, torch.tensor([[0.75, 1.0, 2.5, 1.0]]))
    torch.testing.assert_close(coder.decode(loc, enc, 8), box)


def test_linear_get_deltas_hand_values():
    src = torch.tensor([[0., 0., 8., 8.], [0., 0., 4., 8.]])
    tgt = torch.tensor([[2., 1., 10., 5.], [0., 0., 6., 12.]])
    # Box 0: centre (4, 4), size 8 x 8: (4-2, 4-1, 10-4, 5-4) = (2, 3, 6, 1) -> / 8.
    # Box 1: centre (2, 4), size 4 x 8: (2, 4, 4, 8) -> / (4, 8, 4, 8) = (0.5, 0.5, 1, 1).
    coder = Box2BoxTransformLinear(normalize_by_size=True)
    assert coder.get_deltas(src, tgt).tolist() == [[0.25, 0.375, 0.75, 0.125], [0.5, 0.5, 1.0, 1.0]]
    raw = Box2BoxTransformLinear(normalize_by_size=False)
    assert raw.get_deltas(src, tgt).tolist() == [[2., 3., 6., 1.], [2., 4., 4., 8.]]
    assert Box2BoxTransformLinear().normalize_by_size is True  # detectron2's default


def test_linear_apply_deltas_clamps_at_zero_and_handles_k_boxes():
    coder = Box2BoxTransformLinear()
    src = torch.tensor([[0., 0., 8., 8.]])  # centre (4, 4), size 8
    # Two boxes per source box. The first gives back (2, 1, 10, 5); in the second the negative
    # deltas count as 0: (0, 0.5, 0, 0) * 8 = (0, 4, 0, 0) -> (4, 0, 4, 4).
    deltas = torch.tensor([[0.25, 0.375, 0.75, 0.125, -1.0, 0.5, -0.25, 0.0]])
    assert coder.apply_deltas(deltas, src).tolist() == [[2., 1., 10., 5., 4., 0., 4., 4.]]
    raw = Box2BoxTransformLinear(normalize_by_size=False)
    assert raw.apply_deltas(torch.tensor([[2., 3., 6., 1.]]), src).tolist() == [[2., 1., 10., 5.]]
    tgt = torch.tensor([[3., 2., 7., 8.], [-5., -5., 20., 9.]])
    sources = torch.tensor([[4., 4., 6., 6.], [0., 0., 16., 8.]])  # centres (5, 5) and (8, 4) lie inside
    torch.testing.assert_close(coder.apply_deltas(coder.get_deltas(sources, tgt), sources), tgt)


def test_linear_is_the_fcos_ltrb_coder_on_stride_squares():
    # FCOS location (12, 4) at stride 8 is the square (8, 0, 16, 8); target (2, 1, 30, 20):
    # LTRB (12-2, 4-1, 30-12, 20-4) / 8 = (1.25, 0.375, 2.25, 2.0) from both coders.
    loc, tgt = torch.tensor([[12., 4.]]), torch.tensor([[2., 1., 30., 20.]])
    linear = Box2BoxTransformLinear().get_deltas(torch.tensor([[8., 0., 16., 8.]]), tgt)
    ltrb = LTRBBoxCoder(normalize_by_stride=True).encode(loc, tgt, torch.tensor([8.]))
    assert linear.tolist() == ltrb.tolist() == [[1.25, 0.375, 2.25, 2.0]]
    assert build_box_coder(get_cfg(), "Box2BoxTransformLinear").normalize_by_size is True
    assert build_box_coder(get_cfg(), "Box2BoxTransformLinear", normalize_by_size=False).normalize_by_size is False


def test_box_regression_module_path_is_box_coder():
    # detectron2.modeling.box_regression.X is detkit.modeling.box_coder.X.
    import detkit.modeling.box_coder as box_regression

    assert {"Box2BoxTransform", "Box2BoxTransformLinear"} <= set(box_regression.__all__)
