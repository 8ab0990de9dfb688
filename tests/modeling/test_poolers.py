"""Tests for detkit.modeling.poolers: RoIAlign values (aligned / not), level assignment, source levels."""
import pytest
import torch

from detkit.modeling.poolers import ROIPooler, assign_boxes_to_levels
from detkit.structures import Boxes


def _ramp(height: int = 8, width: int = 8) -> torch.Tensor:
    """(1, 1, H, W) map with value x + 10 * y at pixel (y, x)."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    return (xs + 10 * ys)[None, None]


# The ramp is linear, so bilinear sampling is exact and each bin's average over its symmetric
# 2x2 sampling points equals the ramp at the bin centre (cx + 10 * cy).
# Box (2, 2, 6, 6), stride 1, 2x2 output, bins 2 px wide:
#   ROIAlignV2 (aligned) shifts the box by -0.5 px: bins start at 1.5, centres 2.5 and 4.5
#     -> [[2.5 + 25, 4.5 + 25], [2.5 + 45, 4.5 + 45]];
#   ROIAlign (unaligned) uses the box as is: centres 3 and 5 -> [[3 + 30, 5 + 30], [3 + 50, 5 + 50]].
@pytest.mark.parametrize("pooler_type, expected", [
    ("ROIAlignV2", [[27.5, 29.5], [47.5, 49.5]]),
    ("ROIAlign", [[33.0, 35.0], [53.0, 55.0]]),
])
def test_roi_align_on_hand_made_map(pooler_type, expected):
    pooler = ROIPooler(2, scales=[1.0], sampling_ratio=2, pooler_type=pooler_type)
    out = pooler([_ramp()], [Boxes(torch.tensor([[2.0, 2.0, 6.0, 6.0]]))])
    assert out.shape == (1, 1, 2, 2)
    torch.testing.assert_close(out[0, 0], torch.tensor(expected))


def test_roi_align_scale_and_image_index():
    # Two images; the second map is the ramp + 100. Stride 2 (scale 0.5): box (4, 4, 12, 12) in
    # input pixels is (2, 2, 6, 6) on the map, so ROIAlignV2 gives the values above (+100 for image 1).
    maps = torch.cat([_ramp(), _ramp() + 100])
    pooler = ROIPooler(2, scales=[0.5], sampling_ratio=2, pooler_type="ROIAlignV2")
    out = pooler([maps], [Boxes(torch.zeros(0, 4)), Boxes(torch.tensor([[4.0, 4.0, 12.0, 12.0]]))])
    torch.testing.assert_close(out[0, 0], torch.tensor([[127.5, 129.5], [147.5, 149.5]]))


# Canonical rule, canonical size 224 at level 4: level = floor(4 + log2(side / 224)), side = sqrt(area).
#   side 50   -> floor(4 - 2.16) = 1 -> clamped to 3
#   side 112  -> floor(4 - 1)    = 3
#   side 223  -> floor(3.994)    = 3  (just below the canonical size)
#   side 224  -> 4
#   side 447  -> floor(4.997)    = 4
#   side 448  -> 5
#   side 1000 -> floor(6.16)     = 6 -> clamped to 5
SIDES = [50.0, 112.0, 223.0, 224.0, 447.0, 448.0, 1000.0]


def _squares(sides):
    return Boxes(torch.tensor([[0.0, 0.0, s, s] for s in sides]))


def test_assign_boxes_to_levels_clamped_to_given_levels():
    levels = assign_boxes_to_levels([_squares(SIDES[:3]), _squares(SIDES[3:])], 3, 5, 224, 4)
    assert levels.tolist() == [0, 0, 0, 1, 1, 2, 2]  # levels 3, 3, 3, 4, 4, 5, 5 minus min_level 3
    # A non-square box uses sqrt(area): 112 x 448 has side 224 -> level 4.
    assert assign_boxes_to_levels([Boxes(torch.tensor([[0.0, 0.0, 112.0, 448.0]]))], 3, 5, 224, 4).tolist() == [1]


def test_assign_boxes_to_a_single_level():
    assert assign_boxes_to_levels([_squares(SIDES)], 4, 4, 224, 4).tolist() == [0] * 7


def _constant_levels(batch: int = 1):
    """p3, p4, p5 maps (strides 8, 16, 32) of a 1024 x 1024 input, each filled with its level number."""
    return [torch.full((batch, 1, 1024 // s, 1024 // s), float(lvl)) for lvl, s in ((3, 8), (4, 16), (5, 32))]


def test_pooler_pools_each_box_from_its_canonical_level():
    pooler = ROIPooler(7, scales=[1 / 8, 1 / 16, 1 / 32], sampling_ratio=0, pooler_type="ROIAlignV2")
    out = pooler(_constant_levels(), [_squares(SIDES)])  # (7, 1, 7, 7)
    assert out.shape == (7, 1, 7, 7)
    assert out.mean(dim=(1, 2, 3)).tolist() == pytest.approx([3.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0], rel=1e-6)


def test_pooler_single_level_takes_every_box():
    pooler = ROIPooler(7, scales=[1 / 16], sampling_ratio=0, pooler_type="ROIAlign")
    out = pooler([torch.full((1, 1, 64, 64), 4.0)], [_squares(SIDES)])
    assert out.mean(dim=(1, 2, 3)).tolist() == pytest.approx([4.0] * 7, rel=1e-6)


def test_pooler_source_levels_override_size_and_negative_means_canonical():
    pooler = ROIPooler(7, scales=[1 / 8, 1 / 16, 1 / 32], sampling_ratio=0, pooler_type="ROIAlignV2")
    boxes = [_squares([50.0, 1000.0]), _squares([224.0])]
    # Image 0: the small box from p5 (index 2), the big one from p3 (0); image 1: -1 = by size (p4).
    level_ids = [torch.tensor([2, 0]), torch.tensor([-1])]
    out = pooler(_constant_levels(batch=2), boxes, level_ids=level_ids)
    assert out.mean(dim=(1, 2, 3)).tolist() == pytest.approx([5.0, 3.0, 4.0], rel=1e-6)


def test_pooler_rejects_unknown_type_and_bad_scales():
    with pytest.raises(ValueError, match=r"ROIAlignV3.*POOLER_TYPE.*ROIAlign"):
        ROIPooler(7, scales=[1 / 8], sampling_ratio=0, pooler_type="ROIAlignV3")
    with pytest.raises(ValueError, match=r"consecutive levels"):
        ROIPooler(7, scales=[1 / 8, 1 / 32], sampling_ratio=0, pooler_type="ROIAlign")
    pooler = ROIPooler(7, scales=[1 / 8, 1 / 16], sampling_ratio=0, pooler_type="ROIAlign")
    with pytest.raises(ValueError, match=r"built for 2 levels but got 3"):
        pooler(_constant_levels(), [_squares([64.0])])
