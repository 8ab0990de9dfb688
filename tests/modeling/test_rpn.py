"""Tests for the RPN: proposal top-k + NMS, anchor labelling and sampling, losses, head, config build."""
import math

import pytest
import torch
from torch import nn

from detkit.config import get_cfg
from detkit.layers import ShapeSpec
from detkit.modeling.anchor_generator import DefaultAnchorGenerator
from detkit.modeling.box_coder import Box2BoxTransform
from detkit.modeling.dense_heads import RPN_HEAD_REGISTRY, StandardRPNHead
from detkit.modeling.matcher import Matcher
from detkit.modeling.proposal_generator import RPN, build_proposal_generator, find_top_rpn_proposals
from detkit.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detkit.structures import Boxes, ImageList, Instances

# ----------------------------------------------------------------------------- find_top_rpn_proposals

# Level 0: A, B (IoU(A, B) = 90 / 110 = 0.82 > 0.7), C, D.   Level 1: E (= A), F, G (half outside).
A, B, C, D = [0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [40, 40, 50, 50]
E, F, G = [0, 0, 10, 10], [60, 60, 70, 70], [90, 90, 120, 120]


def _hand_made_batch():
    level0 = torch.tensor([[A, B, C, D], [A, B, C, D]], dtype=torch.float32)  # (2, 4, 4)
    level1 = torch.tensor([[E, F, G], [E, F, G]], dtype=torch.float32)  # (2, 3, 4)
    logits0 = torch.tensor([[5.0, 4.0, 3.0, -1.0], [4.0, 5.0, 3.0, -1.0]])  # image 1: B beats A
    logits1 = torch.tensor([[4.5, 2.0, 6.0], [4.5, 2.0, 6.0]])
    return [level0, level1], [logits0, logits1]


def test_find_top_rpn_proposals_topk_nms_topk_on_hand_made_case():
    boxes, logits = _hand_made_batch()
    out = find_top_rpn_proposals(boxes, logits, [(100, 100), (100, 100)], nms_thresh=0.7, pre_nms_topk=3,
                                 post_nms_topk=4, min_box_size=0.0, training=False)
    # Image 0. Pre-NMS top-3 per level: A, B, C (D dropped) and E, F, G. G is clipped to (90, 90, 100, 100).
    # NMS per level: B is suppressed by A (same level, IoU 0.82); E survives A (other level).
    # By score: G 6, A 5, E 4.5, C 3, F 2 -> post-NMS top-4: G, A, E, C.
    p0 = out[0]
    assert p0.image_size == (100, 100)
    torch.testing.assert_close(p0.proposal_boxes.tensor, torch.tensor([[90, 90, 100, 100], A, E, C],
                                                                      dtype=torch.float32))
    torch.testing.assert_close(p0.objectness_logits, torch.tensor([6.0, 5.0, 4.5, 3.0]))
    assert p0.level_ids.tolist() == [1, 0, 1, 0]
    # Image 1 is independent: here B (5) suppresses A (4): G 6, B 5, E 4.5, C 3.
    torch.testing.assert_close(out[1].proposal_boxes.tensor, torch.tensor([[90, 90, 100, 100], B, E, C],
                                                                          dtype=torch.float32))
    assert out[1].level_ids.tolist() == [1, 0, 1, 0]


def test_find_top_rpn_proposals_min_size_and_per_image_sizes():
    boxes, logits = _hand_made_batch()
    # Image 1 is 25 x 25: G clips to (25, 25, 25, 25) (empty -> dropped), C to (20, 20, 25, 25), F empty.
    # min_box_size 5 then also drops C (5 x 5 is not above 5).
    out = find_top_rpn_proposals(boxes, logits, [(100, 100), (25, 25)], nms_thresh=0.7, pre_nms_topk=4,
                                 post_nms_topk=10, min_box_size=5.0, training=False)
    assert out[0].objectness_logits.tolist() == [6.0, 5.0, 4.5, 3.0, 2.0, -1.0]  # G A E C F D
    assert out[1].objectness_logits.tolist() == [5.0, 4.5]  # B (suppresses A), E
    torch.testing.assert_close(out[1].proposal_boxes.tensor, torch.tensor([B, E], dtype=torch.float32))


def test_find_top_rpn_proposals_non_finite():
    boxes, logits = _hand_made_batch()
    boxes[0][0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="diverged"):
        find_top_rpn_proposals(boxes, logits, [(100, 100)] * 2, 0.7, 3, 4, 0.0, training=True)
    out = find_top_rpn_proposals(boxes, logits, [(100, 100)] * 2, 0.7, 3, 4, 0.0, training=False)
    assert out[0].objectness_logits.tolist() == [6.0, 4.5, 4.0, 3.0]  # A (nan) dropped: G E B C


def test_add_ground_truth_to_proposals():
    props = Instances((50, 50), proposal_boxes=Boxes(torch.tensor([[0.0, 0, 5, 5]])),
                      objectness_logits=torch.tensor([1.0]), level_ids=torch.tensor([2]))
    out = add_ground_truth_to_proposals([Boxes(torch.tensor([[1.0, 1, 9, 9], [2.0, 2, 4, 4]]))], [props])[0]
    assert len(out) == 3 and out.level_ids.tolist() == [2, -1, -1]
    # logit of probability 1 - 1e-10: log((1 - 1e-10) / 1e-10) = 23.03
    assert out.objectness_logits[1:].tolist() == pytest.approx([math.log(1e10)] * 2, abs=1e-3)


# ----------------------------------------------------------------------------- RPN training targets / losses

class _ZeroHead(nn.Module):
    """Objectness logits 0 and deltas 0 everywhere (plus a parameter so losses have a gradient)."""

    def __init__(self, num_anchors: int):
        super().__init__()
        self.num_anchors = num_anchors
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, features):
        b = [f.shape[0] for f in features][0]
        logits = [torch.zeros(b, self.num_anchors, *f.shape[-2:]) + self.bias for f in features]
        deltas = [torch.zeros(b, 4 * self.num_anchors, *f.shape[-2:]) + self.bias for f in features]
        return logits, deltas


def _rpn(batch_size_per_image=256, boundary=-1.0, **kwargs):
    # One level of stride 16 with one 16 x 16 anchor per cell at offset 0: anchors centred at (16 j, 16 i).
    return RPN(in_features=["p4"], head=_ZeroHead(1),
               anchor_generator=DefaultAnchorGenerator([[16]], [[1.0]], [16], offset=0.0),
               anchor_matcher=Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True),
               box2box_transform=Box2BoxTransform((1.0, 1.0, 1.0, 1.0)), batch_size_per_image=batch_size_per_image,
               positive_fraction=0.5, pre_nms_topk=(100, 100), post_nms_topk=(50, 50),
               anchor_boundary_thresh=boundary, **kwargs)


def _gt(size, boxes):
    return Instances(size, gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
                     gt_classes=torch.zeros(len(boxes), dtype=torch.int64))


def test_rpn_anchor_labels_match_iou_thresholds_and_low_quality():
    rpn = _rpn()
    feature = torch.zeros(2, 1, 3, 3)  # 3 x 3 anchors per image: (16 j - 8, 16 i - 8, 16 j + 8, 16 i + 8)
    anchors = rpn.anchor_generator([feature])
    # Image 0: gt1 = anchor (1, 1) exactly (IoU 1 -> positive). gt2 = (24, 0, 40, 16) overlaps anchor (0, 2)
    #   = (24, -8, 40, 8) and anchor (1, 2) = (24, 8, 40, 24) by 16 x 8 = 128 px each: IoU 128 / (512 - 128)
    #   = 0.33, in the ignored band, but both tie for gt2's best IoU, so low-quality matching makes them positive.
    # Image 1: no ground truth -> all 9 anchors negative.
    gts = [_gt((48, 48), [[8, 8, 24, 24], [24, 0, 40, 16]]), _gt((48, 48), [])]
    labels, matched = rpn.label_and_sample_anchors(anchors, gts)
    expected0 = torch.zeros(9, dtype=torch.int64)
    expected0[[2, 4, 5]] = 1  # anchors are row-major: index 3 * i + j
    assert labels[0].tolist() == expected0.tolist()
    assert labels[1].tolist() == [0] * 9
    torch.testing.assert_close(matched[0, 4], torch.tensor([8.0, 8, 24, 24]))
    torch.testing.assert_close(matched[0, [2, 5]], torch.tensor([[24.0, 0, 40, 16]] * 2))


def test_rpn_anchor_ignore_band_and_boundary():
    # gt (12, 8, 28, 24) overlaps anchor (1, 1) = (8, 8, 24, 24) by 12 x 16 = 192 px: IoU 192 / (512 - 192)
    # = 0.6, in the ignored band; anchor (1, 2) = (24, 8, 40, 24) by 64 px: IoU 0.14, negative like the rest.
    # (Low-quality matching is off here; with it on, anchor (1, 1) would be positive as the gt's best.)
    rpn = _rpn()
    rpn.anchor_matcher = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=False)
    anchors = rpn.anchor_generator([torch.zeros(1, 1, 3, 3)])
    labels, _ = rpn.label_and_sample_anchors(anchors, [_gt((48, 48), [[12, 8, 28, 24]])])
    assert labels[0, 4] == -1 and int((labels[0] == 0).sum()) == 8
    # Boundary threshold 0: anchors reaching outside the 48 x 48 image are ignored. Row 0 and column 0
    # start at -8; rows / columns 1 and 2 end at 24 and 40 < 48, so (1, 1), (1, 2), (2, 1), (2, 2) stay.
    rpn = _rpn(boundary=0.0)
    labels, _ = rpn.label_and_sample_anchors(anchors, [_gt((48, 48), [[8, 8, 24, 24]])])
    assert labels[0].tolist() == [-1, -1, -1, -1, 1, 0, -1, 0, 0]

def test_rpn_sampling_caps_anchors_per_image():
    rpn = _rpn(batch_size_per_image=4)
    anchors = rpn.anchor_generator([torch.zeros(2, 1, 3, 3)])
    labels, _ = rpn.label_and_sample_anchors(anchors, [_gt((48, 48), [[8, 8, 24, 24]]), _gt((48, 48), [])])
    # Image 0: 1 positive (<= 4 * 0.5), then 4 - 1 = 3 of 8 negatives. Image 1: 4 of 9 negatives.
    assert (labels[0] == 1).sum() == 1 and (labels[0] == 0).sum() == 3 and (labels[0] == -1).sum() == 5
    assert (labels[1] == 1).sum() == 0 and (labels[1] == 0).sum() == 4


def test_rpn_losses_are_normalised_by_batch_size_per_image_times_images():
    rpn = _rpn(batch_size_per_image=8).train()
    images = ImageList(torch.zeros(2, 3, 48, 48), [(48, 48), (48, 48)])
    # Image 0: gt (8, 8, 24, 32) best-matches anchor (1, 1) = (8, 8, 24, 24): IoU 256 / 384 = 0.67 -> low quality positive.
    gts = [_gt((48, 48), [[8, 8, 24, 32]]), _gt((48, 48), [])]
    _, losses = rpn(images, {"p4": torch.zeros(2, 1, 3, 3)}, gts)
    # Sampled: image 0 one positive + 7 negatives, image 1 eight negatives = 16 anchors, logit 0:
    # BCE = ln 2 each, sum 16 ln 2, divided by 8 * 2 = 16 -> ln 2.
    assert float(losses["loss_rpn_cls"].detach()) == pytest.approx(math.log(2), rel=1e-5)
    # Box: deltas 0 vs target (dx, dy, dw, dh) = (0, 4/16, 0, ln(24/16)); L1 sum / 16.
    assert float(losses["loss_rpn_loc"].detach()) == pytest.approx((0.25 + math.log(1.5)) / 16, rel=1e-5)
    sum(losses.values()).backward()
    assert rpn.rpn_head.bias.grad is not None


def test_rpn_smooth_l1_and_loss_weights():
    rpn = _rpn(batch_size_per_image=8, smooth_l1_beta=1.0, loss_weight={"loss_rpn_cls": 2.0, "loss_rpn_loc": 3.0})
    images = ImageList(torch.zeros(1, 3, 48, 48), [(48, 48)])
    _, losses = rpn.train()(images, {"p4": torch.zeros(1, 1, 3, 3)}, [_gt((48, 48), [[8, 8, 24, 32]])])
    # 8 sampled anchors: cls = 8 ln 2 / 8 * 2. Smooth-L1 (beta 1) of x < 1 is x^2 / 2.
    assert float(losses["loss_rpn_cls"].detach()) == pytest.approx(2 * math.log(2), rel=1e-5)
    expected_loc = (0.25 ** 2 / 2 + math.log(1.5) ** 2 / 2) / 8 * 3
    assert float(losses["loss_rpn_loc"].detach()) == pytest.approx(expected_loc, rel=1e-5)
    with pytest.raises(ValueError, match=r"'diou'.*MODEL.RPN.BBOX_REG_LOSS_TYPE"):
        _rpn(box_reg_loss_type="diou")


def test_rpn_training_requires_ground_truth():
    rpn = _rpn().train()
    with pytest.raises(ValueError, match="gt_instances"):
        rpn(ImageList(torch.zeros(1, 3, 48, 48), [(48, 48)]), {"p4": torch.zeros(1, 1, 3, 3)})


# ----------------------------------------------------------------------------- head and config

def test_standard_rpn_head_shapes_and_init():
    head = StandardRPNHead(in_channels=8, num_anchors=3)
    logits, deltas = head([torch.randn(2, 8, 10, 12), torch.randn(2, 8, 5, 6)])
    assert [tuple(x.shape) for x in logits] == [(2, 3, 10, 12), (2, 3, 5, 6)]
    assert [tuple(x.shape) for x in deltas] == [(2, 12, 10, 12), (2, 12, 5, 6)]
    assert float(head.objectness_logits.bias.detach().abs().sum()) == 0.0


def _cfg():
    cfg = get_cfg()
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 50
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 20
    return cfg


SHAPES = {"p3": ShapeSpec(channels=8, stride=8), "p4": ShapeSpec(channels=8, stride=16),
          "p5": ShapeSpec(channels=8, stride=32)}


def test_rpn_from_config_runs_on_three_levels():
    cfg = _cfg()
    rpn = build_proposal_generator(cfg, SHAPES).eval()
    assert RPN_HEAD_REGISTRY.get("StandardRPNHead") is StandardRPNHead
    assert rpn.anchor_generator.num_cell_anchors == [3, 3, 3]
    assert rpn.anchor_matcher.allow_low_quality_matches
    feats = {"p3": torch.randn(2, 8, 8, 8), "p4": torch.randn(2, 8, 4, 4), "p5": torch.randn(2, 8, 2, 2)}
    with torch.inference_mode():
        proposals, losses = rpn(ImageList(torch.zeros(2, 3, 64, 64), [(64, 64), (60, 50)]), feats)
    assert losses == {}
    assert [len(p) for p in proposals] == [20, 20]  # post-NMS top-k at test time
    assert proposals[1].proposal_boxes.tensor[:, 2].max() <= 50 and proposals[1].proposal_boxes.tensor[:, 3].max() <= 60
    assert sorted(proposals[0].get_fields()) == ["level_ids", "objectness_logits", "proposal_boxes"]


def test_rpn_from_config_errors_name_the_key():
    cfg = _cfg()
    cfg.MODEL.RPN.IN_FEATURES = ["p3", "p6"]
    with pytest.raises(ValueError, match=r"MODEL.RPN.IN_FEATURES.*p6"):
        build_proposal_generator(cfg, SHAPES)
    cfg = _cfg()
    cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[1.0], [0.5, 1.0], [1.0]]
    with pytest.raises(ValueError, match=r"same number of anchors"):
        build_proposal_generator(cfg, SHAPES)
