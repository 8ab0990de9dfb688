"""Tests for detkit.modeling.matcher: IoU Matcher and FCOSMatcher, with hand-derived values."""
import pytest
import torch

from detkit.config import get_cfg
from detkit.modeling.matcher import MATCHER_REGISTRY, FCOSMatcher, Matcher, build_matcher


def _iou_matrix():
    # 2 gt x 6 predictions.
    return torch.tensor([
        [0.1, 0.6, 0.8, 0.2, 0.7, 0.3],
        [0.4, 0.2, 0.3, 0.4, 0.0, 0.1],
    ])


def test_matcher_thresholds_and_labels():
    # Best gt per prediction: p0 0.4 (gt1), p1 0.6 (gt0), p2 0.8 (gt0), p3 0.4 (gt1; gt0 has 0.2),
    # p4 0.7 (gt0), p5 0.3 (gt0). Ranges [-inf,0.3)->0, [0.3,0.7)->-1, [0.7,inf)->1, left-closed:
    # p0 -1, p1 -1, p2 1, p3 -1, p4 1 (0.7 is in the last range), p5 -1 (0.3 is in the middle one).
    matches, labels = Matcher([0.3, 0.7], [0, -1, 1])(_iou_matrix())
    assert matches.dtype == torch.int64 and labels.dtype == torch.int8
    assert matches.tolist() == [1, 0, 0, 1, 0, 0]
    assert labels.tolist() == [-1, -1, 1, -1, 1, -1]


def test_matcher_low_quality_matches():
    # gt0's best is 0.8 at p2 (already 1). gt1's best is 0.4, tied at p0 and p3: both become 1.
    matches, labels = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)(_iou_matrix())
    assert matches.tolist() == [1, 0, 0, 1, 0, 0]
    assert labels.tolist() == [1, -1, 1, 1, 1, -1]


def test_matcher_low_iou_is_negative():
    # One gt, IoUs 0.1 and 0.29 are below 0.3 -> label 0; the roi-heads style [0.5] / [0, 1] gives 0, 1.
    m, lab = Matcher([0.3, 0.7], [0, -1, 1])(torch.tensor([[0.1, 0.29]]))
    assert lab.tolist() == [0, 0] and m.tolist() == [0, 0]
    _, lab = Matcher([0.5], [0, 1])(torch.tensor([[0.49, 0.5]]))
    assert lab.tolist() == [0, 1]


def test_matcher_no_gt():
    matches, labels = Matcher([0.3, 0.7], [0, -1, 1])(torch.zeros(0, 5))
    assert matches.tolist() == [0] * 5 and matches.dtype == torch.int64
    assert labels.tolist() == [0] * 5 and labels.dtype == torch.int8


def test_matcher_bad_arguments():
    with pytest.raises(ValueError, match="increasing"):
        Matcher([0.7, 0.3], [0, -1, 1])
    with pytest.raises(ValueError, match=r"len\(labels\) == len\(thresholds\) \+ 1"):
        Matcher([0.3, 0.7], [0, 1])
    with pytest.raises(ValueError, match="-1, 0 or 1"):
        Matcher([0.5], [0, 2])


# FCOS case: strides 8 (level 0) and 16 (level 1), sizes_of_interest [32] -> ranges [0, 32], [32, inf].
_LOCATIONS = torch.tensor([[12., 12.], [28., 12.], [60., 60.], [101., 12.], [8., 20.], [24., 24.], [56., 56.]])
_LEVELS = torch.tensor([0, 0, 0, 0, 0, 1, 1])
_STRIDES = torch.tensor([8., 8., 8., 8., 8., 16., 16.])
_BOXES = torch.tensor([
    [0., 0., 40., 40.],     # A, area 1600, centre (20, 20)
    [8., 8., 24., 20.],     # B, area 192, centre (16, 14)
    [40., 40., 100., 100.],  # C, area 3600, centre (70, 70)
    [100., 0., 130., 30.],  # D, area 900, centre (115, 15)
])


def test_fcos_matcher_whole_box():
    # Radius 0 (whole box). LTRB = (x - x0, y - y0, x1 - x, y1 - y), m = max:
    # (12,12) L0: A (12,12,28,28) m=28 <= 32 ok; B (4,4,12,8) m=12 ok -> smaller B (1).
    # (28,12) L0: A (28,12,12,28) m=28 ok; B: x=28 > 24 outside -> A (0).
    # (60,60) L0: C (20,20,40,40) m=40 > 32 -> out of level 0's range -> -1.
    # (101,12) L0: D (1,12,29,18) m=29 ok -> D (3).
    # (8,20) L0: A (8,20,32,20) m=32 == upper, inclusive -> A (0); B has l=0, b=0: not strictly inside.
    # (24,24) L1: A (24,24,16,16) m=24 < 32 = level 1's lower bound -> -1; B: y=24 > 20 outside.
    # (56,56) L1: C (16,16,44,44) m=44 >= 32 -> C (2).
    # Image 2 has no boxes -> all -1.
    out = FCOSMatcher([32], center_sampling_radius=0.0)(_LOCATIONS, _STRIDES, _LEVELS, [_BOXES, torch.zeros(0, 4)])
    assert out.dtype == torch.int64 and out.shape == (2, 7)
    assert out[0].tolist() == [1, 0, -1, 3, 0, -1, 2]
    assert out[1].tolist() == [-1] * 7


def test_fcos_matcher_center_sampling():
    # Radius 1.5: centre region = centre +- 1.5 * stride, clipped to the box; strictly inside it.
    # L0 (r=12): A (8,8,32,32); B (4,2,28,26) clipped -> (8,8,24,20); D (103,3,127,27).
    # L1 (r=24): A (-4,-4,44,44) -> (0,0,40,40); C (46,46,94,94).
    # (12,12): in A's and B's regions -> B (1). (28,12): in A's -> A (0). (60,60): size out of range -> -1.
    # (101,12): x=101 < 103, outside D's region -> -1. (8,20): x=8 on A's region edge -> -1.
    # (24,24) L1: size out of range -> -1. (56,56) L1: in C's region, m=44 -> C (2).
    out = FCOSMatcher([32], center_sampling_radius=1.5)(_LOCATIONS, _STRIDES, _LEVELS, [torch.zeros(0, 4), _BOXES])
    assert out[0].tolist() == [-1] * 7
    assert out[1].tolist() == [1, 0, -1, -1, -1, -1, 2]


def test_fcos_matcher_equal_areas_take_first_and_padding_is_ignored():
    # Two identical boxes: the first wins. Image 1 has 1 box, padded to 2: the pad never matches.
    loc = torch.tensor([[5., 5.], [50., 50.]])
    boxes0 = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 10.]])
    boxes1 = torch.tensor([[40., 40., 60., 60.]])
    out = FCOSMatcher([64], center_sampling_radius=0.0)(loc, torch.tensor([8., 8.]), torch.tensor([0, 0]),
                                                         [boxes0, boxes1])
    assert out.tolist() == [[0, -1], [-1, 0]]


def test_fcos_matcher_no_boxes_anywhere_and_bad_levels():
    m = FCOSMatcher([32])
    assert m(_LOCATIONS, _STRIDES, _LEVELS, [torch.zeros(0, 4)] * 3).tolist() == [[-1] * 7] * 3
    with pytest.raises(ValueError, match="level id 2.*SIZES_OF_INTEREST"):
        m(_LOCATIONS, _STRIDES, torch.full((7,), 2), [_BOXES])


def test_build_matcher_from_config_and_kwargs():
    cfg = get_cfg()
    fcos = build_matcher(cfg, "FCOSMatcher")
    assert fcos.sizes_of_interest == [64.0, 128.0] and fcos.center_sampling_radius == 1.5
    rpn = build_matcher(cfg, "Matcher")
    assert rpn.thresholds[1:-1] == [0.3, 0.7] and rpn.labels == [0, -1, 1] and rpn.allow_low_quality_matches
    roi = build_matcher(cfg, "Matcher", thresholds=[0.5], labels=[0, 1])
    assert roi.thresholds[1:-1] == [0.5] and not roi.allow_low_quality_matches
    assert set(MATCHER_REGISTRY.names()) >= {"Matcher", "FCOSMatcher"}
    with pytest.raises(KeyError, match="FCOSMatcher"):
        build_matcher(cfg, "FCOSMatch")


def _reference_fcos_match(loc, stride, level, boxes, sizes, radius):
    """Plain-Python reference of FCOSMatcher's rule, one location and one box at a time."""
    bounds = [0.0] + sizes + [float("inf")]
    best, best_area = -1, float("inf")
    x, y = loc
    for j, (x0, y0, x1, y1) in enumerate(boxes):
        ltrb = (x - x0, y - y0, x1 - x, y1 - y)
        if radius > 0:
            cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, radius * stride
            region = (x - max(cx - r, x0), y - max(cy - r, y0), min(cx + r, x1) - x, min(cy + r, y1) - y)
        else:
            region = ltrb
        area = (x1 - x0) * (y1 - y0)
        if min(region) > 0 and bounds[level] <= max(ltrb) <= bounds[level + 1] and area < best_area:
            best, best_area = j, area
    return best


@pytest.mark.parametrize("radius", [0.0, 1.5])
def test_fcos_matcher_agrees_with_reference_on_random_data(radius):
    g = torch.Generator().manual_seed(1)
    strides = torch.tensor([8.0] * 40 + [16.0] * 20 + [32.0] * 10)
    levels = torch.tensor([0] * 40 + [1] * 20 + [2] * 10)
    locs = torch.rand(70, 2, generator=g) * 256
    gts = []
    for m in (12, 0, 5):
        xy = torch.randint(0, 160, (m, 2), generator=g).float()
        gts.append(torch.cat([xy, xy + torch.randint(8, 200, (m, 2), generator=g).float()], dim=1))
    out = FCOSMatcher([32, 96], center_sampling_radius=radius)(locs, strides, levels, gts)
    expected = [[_reference_fcos_match(locs[n].tolist(), float(strides[n]), int(levels[n]), b.tolist(), [32.0, 96.0],
                                       radius) for n in range(70)] for b in gts]
    assert out.tolist() == expected
    assert (out >= 0).sum() >= 10  # the case exercises real matches
