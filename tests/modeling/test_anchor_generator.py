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
    gen = DefaultAnchorGenerator([[32]], [[0.5]], [8], offset=0.0)
    (anchors,) = gen([torch.zeros(1, 1, 1, 1)])
    r2 = math.sqrt(2)
    torch.testing.assert_close(anchors.tensor, torch.tensor([[-16 * r2, -8 * r2, 16 * r2, 8 * r2]]))


def test_default_anchors_per_level_broadcast_and_cache():
    # A single list of sizes is used on every level; one list of ratios per level also broadcasts.
    gen = DefaultAnchorGenerator(sizes=[32, 64], aspect_ratios=[[1.0]], strides=[8, 16], offset=0.0)
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


# Size 16 with ratios 0.25 and 4 (h / w): w = sqrt(256 / 0.25) = 32, h = 8; and w = 8, h = 32.
# Half sizes (16, 4) and (4, 16).
_HALF_STRIDE_GRID = [
    # stride 8, a 2 x 3 map, offset 0.5: centres (4, 4), (12, 4), (20, 4), (4, 12), (12, 12), (20, 12).
    [-12., 0., 20., 8.], [0., -12., 8., 20.],
    [-4., 0., 28., 8.], [8., -12., 16., 20.],
    [4., 0., 36., 8.], [16., -12., 24., 20.],
    [-12., 8., 20., 16.], [0., -4., 8., 28.],
    [-4., 8., 28., 16.], [8., -4., 16., 28.],
    [4., 8., 36., 16.], [16., -4., 24., 28.],
]


def test_keyword_construction_defaults_to_half_stride_offset():
    # detectron2's constructor default is offset=0.5: the first anchor sits at half a stride.
    gen = DefaultAnchorGenerator(sizes=[[16]], aspect_ratios=[[0.25, 4.0]], strides=[8])
    assert gen.offset == 0.5 and gen.box_dim == 4
    anchors = gen([torch.zeros(1, 4, 2, 3)])
    assert isinstance(anchors, list) and len(anchors) == 1 and isinstance(anchors[0], Boxes)
    assert anchors[0].tensor.tolist() == _HALF_STRIDE_GRID


def test_config_build_with_flat_lists_and_offset_key():
    cfg = get_cfg()
    assert cfg.MODEL.ANCHOR_GENERATOR.OFFSET == 0.0  # the config key keeps detectron2's config default
    cfg.merge_from_list(["MODEL.ANCHOR_GENERATOR.SIZES", "[16]", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "[0.25, 4.0]",
                         "MODEL.ANCHOR_GENERATOR.OFFSET", "0.5"])
    shapes = [ShapeSpec(channels=4, stride=8), ShapeSpec(channels=4, stride=16)]
    for gen in (DefaultAnchorGenerator(cfg, shapes), build_anchor_generator(cfg, shapes)):
        assert gen.num_cell_anchors == [2, 2] and gen.strides == [8, 16]  # the flat lists serve both levels
        a8, a16 = gen([torch.zeros(1, 4, 2, 3), torch.zeros(1, 4, 1, 1)])
        assert a8.tensor.tolist() == _HALF_STRIDE_GRID
        # stride 16, one cell: centre (8, 8).
        assert a16.tensor.tolist() == [[-8., 4., 24., 12.], [4., -8., 12., 24.]]
    # With the key's default 0.0 the same anchors sit on the cell corners: centre (0, 0).
    cfg.MODEL.ANCHOR_GENERATOR.OFFSET = 0.0
    (a16,) = build_anchor_generator(cfg, shapes[1:])([torch.zeros(1, 4, 1, 1)])
    assert a16.tensor.tolist() == [[-16., -4., 16., 4.], [-4., -16., 4., 16.]]


def test_input_shape_must_be_a_list_of_shape_specs():
    cfg = get_cfg()
    with pytest.raises(TypeError, match="input_shape a list of ShapeSpec"):
        build_anchor_generator(cfg, {"p3": ShapeSpec(stride=8)})
    with pytest.raises(ValueError, match="levels \\[1\\] have none"):
        build_anchor_generator(cfg, [ShapeSpec(stride=8), ShapeSpec(channels=4)])
    with pytest.raises(ValueError, match="offset must be in \\[0, 1\\)"):
        DefaultAnchorGenerator(sizes=[8], aspect_ratios=[1.0], strides=[8], offset=1.0)


def test_rpn_head_registry_at_detectron2_paths():
    from detkit.modeling import RPN_HEAD_REGISTRY, build_rpn_head
    from detkit.modeling.dense_heads import StandardRPNHead
    from detkit.modeling.proposal_generator import RPN_HEAD_REGISTRY as from_package
    from detkit.modeling.proposal_generator.rpn import RPN_HEAD_REGISTRY as from_rpn
    from detkit.modeling.proposal_generator.rpn import StandardRPNHead as head_from_rpn

    assert RPN_HEAD_REGISTRY is from_package is from_rpn and head_from_rpn is StandardRPNHead
    assert RPN_HEAD_REGISTRY.get("StandardRPNHead") is StandardRPNHead
    cfg = get_cfg()  # 3 anchors per location by default (one size, three ratios per level)
    head = build_rpn_head(cfg, [ShapeSpec(channels=8, stride=s) for s in (8, 16, 32)])
    objectness, deltas = head([torch.zeros(1, 8, 2, 2)] * 3)
    assert objectness[0].shape == (1, 3, 2, 2) and deltas[0].shape == (1, 12, 2, 2)
