"""Tests for detkit.modeling.anchor_generator: detectron2-exact anchors and FCOS points."""
import math

import pytest
import torch

from detkit.config import get_cfg
from detkit.layers import ShapeSpec
from detkit.modeling.anchor_generator import (
    ANCHOR_GENERATOR_REGISTRY, DefaultAnchorGenerator, PointGenerator, build_anchor_generator,
)
from detkit.structures import Boxes


def _expected_anchors(centres, half_sizes):
    """Location-major, then anchor: (cx - hw, cy - hh, cx + hw, cy + hh)."""
    return torch.tensor([[cx - hw, cy - hh, cx + hw, cy + hh] for cx, cy in centres for hw, hh in half_sizes])


# Sizes [32, 64] x ratios [0.25, 1, 4] (h / w = ratio, area = size^2, so w = size / sqrt(ratio)):
# size 32: (w, h) = (64, 16), (32, 32), (16, 64); size 64: (128, 32), (64, 64), (32, 128). Halves below.
_HALVES = [(32, 8), (16, 16), (8, 32), (64, 16), (32, 32), (16, 64)]


@pytest.mark.parametrize("offset, centres", [
    # 2x2 map at stride 16, row-major over y then x: (j + offset) * 16, (i + offset) * 16.
    (0.0, [(0, 0), (16, 0), (0, 16), (16, 16)]),
    (0.5, [(8, 8), (24, 8), (8, 24), (24, 24)]),
])
def test_default_anchors_hand_values(offset, centres):
    gen = DefaultAnchorGenerator(sizes=[[32, 64]], aspect_ratios=[[0.25, 1.0, 4.0]], strides=[16], offset=offset)
    assert gen.num_cell_anchors == [6] and gen.num_anchors == [6] and gen.strides == [16]
    (anchors,) = gen([torch.zeros(2, 3, 2, 2)])
    assert isinstance(anchors, Boxes) and anchors.tensor.shape == (2 * 2 * 6, 4)
    torch.testing.assert_close(anchors.tensor, _expected_anchors(centres, _HALVES).float())


def test_default_anchors_irrational_ratio():
    # size 32, ratio 0.5: w = sqrt(1024 / 0.5) = 32 * sqrt(2), h = 16 * sqrt(2); centred at (0, 0).
    gen = DefaultAnchorGenerator([[32]], [[0.5]], [8])
    (anchors,) = gen([torch.zeros(1, 1, 1, 1)])
    r2 = math.sqrt(2)
    torch.testing.assert_close(anchors.tensor, torch.tensor([[-16 * r2, -8 * r2, 16 * r2, 8 * r2]]))


def test_default_anchors_per_level_broadcast_and_cache():
    # A single list of sizes is used on every level; one list of ratios per level also broadcasts.
    gen = DefaultAnchorGenerator(sizes=[32, 64], aspect_ratios=[[1.0]], strides=[8, 16])
    assert gen.num_cell_anchors == [2, 2]
    feats = [torch.zeros(1, 1, 4, 3), torch.zeros(1, 1, 2, 2)]
    a8, a16 = gen(feats)
    assert len(a8) == 4 * 3 * 2 and len(a16) == 2 * 2 * 2
    # Level 1, location (i=1, j=1) -> centre (16, 16); its second anchor is size 64.
    torch.testing.assert_close(a16.tensor[-1], torch.tensor([-16., -16., 48., 48.]))
    # Level 0, last location (i=3, j=2) -> centre (16, 24).
    torch.testing.assert_close(a8.tensor[-2], torch.tensor([0., 8., 32., 40.]))
    assert gen(feats)[0].tensor is a8.tensor  # cached per (level, H, W, device)
    with torch.inference_mode():
        inf_anchors = gen(feats)[0].tensor
    assert inf_anchors is not a8.tensor and torch.equal(inf_anchors, a8.tensor)
    # Per-level lists.
    gen = DefaultAnchorGenerator(sizes=[[32], [64, 128]], aspect_ratios=[[0.5, 1.0, 2.0]], strides=[8, 16])
    assert gen.num_cell_anchors == [3, 6]
    with pytest.raises(ValueError, match="3 lists of sizes for 2 feature levels"):
        DefaultAnchorGenerator(sizes=[[32], [64], [128]], aspect_ratios=[[1.0]], strides=[8, 16])
    with pytest.raises(ValueError, match="built for 2 levels"):
        gen([torch.zeros(1, 1, 2, 2)])


def test_point_generator_hand_values():
    gen = PointGenerator(strides=[8, 16])
    p8, p16 = gen([torch.zeros(1, 1, 2, 3), torch.zeros(1, 1, 1, 2)])
    # ((j + 0.5) * s, (i + 0.5) * s), row-major: stride 8 on 2x3, stride 16 on 1x2.
    torch.testing.assert_close(p8, torch.tensor([[4., 4.], [12., 4.], [20., 4.], [4., 12.], [12., 12.], [20., 12.]]))
    torch.testing.assert_close(p16, torch.tensor([[8., 8.], [24., 8.]]))
    assert p8.dtype == torch.float32


def test_build_anchor_generator_from_config():
    cfg = get_cfg()
    shapes = [ShapeSpec(channels=16, stride=s) for s in (8, 16, 32)]
    gen = build_anchor_generator(cfg, shapes)
    assert isinstance(gen, DefaultAnchorGenerator)
    assert gen.strides == [8, 16, 32] and gen.num_cell_anchors == [3, 3, 3] and gen.offset == 0.0
    pts = build_anchor_generator(cfg, shapes, name="PointGenerator")
    assert isinstance(pts, PointGenerator) and pts.strides == [8, 16, 32]
    assert set(ANCHOR_GENERATOR_REGISTRY.names()) >= {"DefaultAnchorGenerator", "PointGenerator"}
