"""Tests for the RoI heads: box head, FastRCNNOutputLayers (losses, inference), StandardROIHeads."""
import math

import pytest
import torch

from detkit.config import get_cfg
from detkit.layers import ShapeSpec
from detkit.modeling.box_coder import Box2BoxTransform
from detkit.modeling.matcher import Matcher
from detkit.modeling.poolers import ROIPooler
from detkit.modeling.roi_heads import (ROI_HEADS_REGISTRY, FastRCNNConvFCHead, FastRCNNOutputLayers,
                                       StandardROIHeads, build_roi_heads, fast_rcnn_inference)
from detkit.structures import Boxes, ImageList, Instances

# ----------------------------------------------------------------------------- box head


def test_conv_fc_head_shapes():
    head = FastRCNNConvFCHead(ShapeSpec(channels=2, height=7, width=7), conv_dims=[4], fc_dims=[16, 8])
    assert head(torch.randn(5, 2, 7, 7)).shape == (5, 8)
    assert head.output_shape == ShapeSpec(channels=8)
    convs_only = FastRCNNConvFCHead(ShapeSpec(channels=2, height=7, width=7), conv_dims=[4, 4], fc_dims=[],
                                    conv_norm="GN")
    assert convs_only(torch.randn(3, 2, 7, 7)).shape == (3, 4, 7, 7)
    assert convs_only.output_shape == ShapeSpec(channels=4, height=7, width=7)
    with pytest.raises(ValueError, match="NUM_CONV"):
        FastRCNNConvFCHead(ShapeSpec(channels=2, height=7, width=7), conv_dims=[], fc_dims=[])


def test_conv_fc_head_from_config():
    cfg = get_cfg()
    cfg.MODEL.ROI_BOX_HEAD.NUM_CONV, cfg.MODEL.ROI_BOX_HEAD.CONV_DIM = 1, 6
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC, cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 3, 12
    head = FastRCNNConvFCHead(cfg, ShapeSpec(channels=2, height=7, width=7))
    assert [type(m).__name__ for m in head] == ["Conv2d", "ReLU", "Flatten"] + ["Linear", "ReLU"] * 3
    assert head.fc1.in_features == 6 * 49 and head.output_shape.channels == 12


# ----------------------------------------------------------------------------- output layers

def _predictor(**kwargs):
    args = dict(box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)), num_classes=2)
    args.update(kwargs)
    return FastRCNNOutputLayers(ShapeSpec(channels=4), **args)


def test_output_layer_shapes_specific_agnostic_and_off():
    x = torch.randn(3, 4)
    scores, deltas = _predictor()(x)
    assert scores.shape == (3, 3) and deltas.shape == (3, 8)  # K + 1 classes, K * 4 deltas
    assert _predictor(cls_agnostic_bbox_reg=True)(x)[1].shape == (3, 4)
    off = _predictor(bbox_reg=False)
    assert off.bbox_pred is None and off(x)[1] is None


def _sampled_rois():
    # RoI 0: class 1, proposal (0, 0, 10, 10), gt (0, 0, 10, 20). RoI 1: background (class K = 2).
    return [Instances((50, 50), proposal_boxes=Boxes(torch.tensor([[0.0, 0, 10, 10], [20.0, 20, 30, 30]])),
                      gt_classes=torch.tensor([1, 2]),
                      gt_boxes=Boxes(torch.tensor([[0.0, 0, 10, 20], [0.0, 0, 10, 20]])))]


def _zero(predictor):
    for p in predictor.parameters():
        torch.nn.init.zeros_(p)
    return predictor


def test_output_layer_losses_hand_derived():
    pred = _zero(_predictor())
    x = torch.randn(2, 4)
    losses = pred.losses(pred(x), _sampled_rois())
    # Zero weights: uniform softmax over 3 classes -> CE = ln 3.
    assert float(losses["loss_cls"].detach()) == pytest.approx(math.log(3), rel=1e-6)
    # Foreground RoI 0, weights (10, 10, 5, 5): dx = 0, dy = 10 * (10 - 5) / 10 = 5, dw = 0, dh = 5 ln 2.
    # L1 against zero deltas = 5 + 5 ln 2, divided by the 2 sampled RoIs.
    assert float(losses["loss_box_reg"].detach()) == pytest.approx((5 + 5 * math.log(2)) / 2, rel=1e-6)
    # Class-specific: the gradient only reaches the deltas of class 1 (columns 4..7).
    losses["loss_box_reg"].backward()
    grad = pred.bbox_pred.bias.grad
    assert grad[:4].abs().sum() == 0 and grad[4:].abs().sum() > 0


def test_output_layer_losses_without_refinement_and_weights():
    pred = _zero(_predictor(bbox_reg=False))
    losses = pred.losses(pred(torch.randn(2, 4)), _sampled_rois())
    assert sorted(losses) == ["loss_cls"]
    pred = _zero(_predictor(loss_weight={"loss_box_reg": 2.0}, smooth_l1_beta=10.0))
    losses = pred.losses(pred(torch.randn(2, 4)), _sampled_rois())
    # Smooth-L1, beta 10: |x| < 10 -> x^2 / (2 * 10); (25 + (5 ln 2)^2) / 20 / 2 RoIs * weight 2.
    assert float(losses["loss_box_reg"].detach()) == pytest.approx((25 + (5 * math.log(2)) ** 2) / 20, rel=1e-6)


def test_fast_rcnn_inference_threshold_classwise_nms_topk_and_clip():
    # Image 0 (40 x 40): RoIs 0-2; image 1 (20 x 20): RoI 3. K = 2 classes; background last.
    boxes = torch.tensor([
        [[0, 0, 10, 10], [0, 0, 10, 10]],   # RoI 0
        [[1, 0, 11, 10], [30, 30, 50, 50]],  # RoI 1: class 0 box overlaps RoI 0's (IoU 0.82)
        [[20, 20, 30, 30], [20, 20, 30, 30]],  # RoI 2
        [[5, 5, 25, 25], [0, 0, 4, 4]],     # RoI 3 (image 1): class 0 box sticks out of the 20 x 20 image
    ], dtype=torch.float32)
    scores = torch.tensor([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.04, 0.05, 0.91], [0.7, 0.2, 0.1]])
    image_ids = torch.tensor([0, 0, 0, 1])
    results, kept = fast_rcnn_inference(boxes, scores, image_ids, [(40, 40), (20, 20)], score_thresh=0.05,
                                        nms_thresh=0.5, topk_per_image_=3)
    # Image 0 candidates above 0.05: (R0, c0) .6, (R0, c1) .3, (R1, c0) .5, (R1, c1) .4 (clipped to
    # (30, 30, 40, 40)); (R2, *) are 0.04 and 0.05, not above 0.05. NMS per class: (R1, c0) is suppressed
    # by (R0, c0); (R0, c1) survives (other class). Top-3 by score: (R0, c0) .6, (R1, c1) .4, (R0, c1) .3.
    r0 = results[0]
    torch.testing.assert_close(r0.scores, torch.tensor([0.6, 0.4, 0.3]))
    assert r0.pred_classes.tolist() == [0, 1, 1]
    torch.testing.assert_close(r0.pred_boxes.tensor, torch.tensor([[0.0, 0, 10, 10], [30, 30, 40, 40], [0, 0, 10, 10]]))
    assert kept[0].tolist() == [0, 1, 0]
    # Image 1: (R3, c0) .7 clipped to (5, 5, 20, 20), (R3, c1) .2.
    torch.testing.assert_close(results[1].pred_boxes.tensor, torch.tensor([[5.0, 5, 20, 20], [0, 0, 4, 4]]))
    assert results[1].pred_classes.tolist() == [0, 1] and kept[1].tolist() == [3, 3]


def test_output_layer_inference_without_refinement_returns_proposals():
    pred = _zero(_predictor(bbox_reg=False))
    with torch.no_grad():
        pred.cls_score.bias.copy_(torch.tensor([2.0, 0.0, 0.0]))  # class 0 wins everywhere
    props = [Instances((50, 50), proposal_boxes=Boxes(torch.tensor([[1.0, 2, 30, 40]])))]
    results, _ = pred.inference(pred(torch.randn(1, 4)), props)
    # softmax(2, 0, 0) = (0.787, 0.106, 0.106): both classes above the default threshold 0.
    torch.testing.assert_close(results[0].pred_boxes.tensor, torch.tensor([[1.0, 2, 30, 40]] * 2))
    assert results[0].pred_classes.tolist() == [0, 1]


# ----------------------------------------------------------------------------- StandardROIHeads

SHAPES = {"p3": ShapeSpec(channels=4, stride=8), "p4": ShapeSpec(channels=4, stride=16),
          "p5": ShapeSpec(channels=4, stride=32)}


def _heads(batch_size_per_image=8, append_gt=True):
    pooler = ROIPooler(7, [1 / 8, 1 / 16, 1 / 32], 0, "ROIAlignV2")
    head = FastRCNNConvFCHead(ShapeSpec(channels=4, height=7, width=7), conv_dims=[], fc_dims=[8])
    return StandardROIHeads(box_in_features=["p3", "p4", "p5"], box_pooler=pooler, box_head=head,
                            box_predictor=FastRCNNOutputLayers(head.output_shape, box2box_transform=Box2BoxTransform(
                                (10.0, 10.0, 5.0, 5.0)), num_classes=3),
                            num_classes=3, batch_size_per_image=batch_size_per_image, positive_fraction=0.25,
                            proposal_matcher=Matcher([0.5], [0, 1]), proposal_append_gt=append_gt)


def _proposals(size, boxes):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return Instances(size, proposal_boxes=Boxes(boxes), objectness_logits=torch.zeros(len(boxes)))


def _targets(size, boxes, classes):
    return Instances(size, gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
                     gt_classes=torch.tensor(classes, dtype=torch.int64))


def test_label_and_sample_proposals_hand_made():
    heads = _heads(batch_size_per_image=64)
    # Image 0: gt A (0, 0, 20, 20) class 2. Proposals: A shifted by 2 (IoU 18*20 / (800 - 360) = 0.82 -> class 2),
    # A shifted by 10 (IoU 200 / 600 = 0.33 -> background 3), far away (IoU 0 -> background).
    # Image 1: no ground truth -> every proposal background.
    props = [_proposals((64, 64), [[2, 0, 22, 20], [10, 0, 30, 20], [40, 40, 60, 60]]),
             _proposals((32, 32), [[0, 0, 8, 8], [4, 4, 12, 12]])]
    targets = [_targets((64, 64), [[0, 0, 20, 20]], [2]), _targets((32, 32), [], [])]
    out = heads.label_and_sample_proposals(props, targets)
    # The gt box is appended to image 0's proposals (4 RoIs, all sampled: 2 foreground <= 64 * 0.25).
    assert len(out[0]) == 4 and len(out[1]) == 2
    assert out[0].gt_classes.tolist() == [2, 3, 3, 2]
    torch.testing.assert_close(out[0].proposal_boxes.tensor[3], torch.tensor([0.0, 0, 20, 20]))
    torch.testing.assert_close(out[0].gt_boxes.tensor[0], torch.tensor([0.0, 0, 20, 20]))
    assert out[1].gt_classes.tolist() == [3, 3]
    assert out[0].image_size == (64, 64) and out[1].image_size == (32, 32)


def test_label_and_sample_proposals_caps_per_image():
    heads = _heads(batch_size_per_image=4, append_gt=False)
    # 6 proposals all equal to the gt (foreground), 6 far away (background): int(4 * 0.25) = 1 foreground,
    # 3 background per image.
    props = [_proposals((64, 64), [[0, 0, 20, 20]] * 6 + [[40, 40, 60, 60]] * 6)] * 2
    targets = [_targets((64, 64), [[0, 0, 20, 20]], [1])] * 2
    out = heads.label_and_sample_proposals(props, targets)
    for inst in out:
        assert sorted(inst.gt_classes.tolist()) == [1, 3, 3, 3]


def test_standard_roi_heads_train_and_eval():
    heads = _heads()
    feats = {k: torch.randn(2, 4, 64 // s.stride, 64 // s.stride) for k, s in SHAPES.items()}
    images = ImageList(torch.zeros(2, 3, 64, 64), [(64, 64), (48, 64)])
    props = [_proposals((64, 64), [[2, 0, 22, 20], [10, 0, 30, 20]]), _proposals((48, 64), [[0, 0, 30, 30]])]
    targets = [_targets((64, 64), [[0, 0, 20, 20]], [2]), _targets((48, 64), [[0, 0, 32, 32]], [0])]
    heads.train()
    _, losses = heads(images, feats, props, targets)
    assert sorted(losses) == ["loss_box_reg", "loss_cls"]
    sum(losses.values()).backward()
    heads.eval()
    with torch.no_grad():
        results, losses = heads(images, feats, props)
    assert losses == {} and len(results) == 2 and results[1].image_size == (48, 64)
    assert sorted(results[0].get_fields()) == ["pred_boxes", "pred_classes", "scores"]
    with pytest.raises(ValueError, match="targets"):
        heads.train()(images, feats, props)


def test_standard_roi_heads_from_config_and_errors():
    cfg = get_cfg()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 16
    cfg.MODEL.ROI_HEADS.BBOX_REG = False
    heads = build_roi_heads(cfg, SHAPES)
    assert ROI_HEADS_REGISTRY.get("StandardROIHeads") is StandardROIHeads
    assert heads.box_predictor.bbox_pred is None and heads.box_pooler.aligned
    assert heads.box_pooler.min_level == 3 and heads.box_pooler.max_level == 5
    assert heads.proposal_matcher.thresholds[1:-1] == [0.5] and not heads.proposal_matcher.allow_low_quality_matches

    cfg.MODEL.ROI_BOX_HEAD.POOLER_LEVEL_ASSIGNMENT = "source"
    cfg.MODEL.RPN.IN_FEATURES = ["p4", "p5"]
    with pytest.raises(ValueError, match=r"POOLER_LEVEL_ASSIGNMENT.*MODEL.RPN.IN_FEATURES"):
        build_roi_heads(cfg, SHAPES)
    cfg.MODEL.ROI_BOX_HEAD.POOLER_LEVEL_ASSIGNMENT = "sauce"
    with pytest.raises(ValueError, match=r"'sauce'.*canonical"):
        build_roi_heads(cfg, SHAPES)
    cfg.MODEL.ROI_BOX_HEAD.POOLER_LEVEL_ASSIGNMENT = "canonical"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p3", "p7"]
    with pytest.raises(ValueError, match=r"MODEL.ROI_HEADS.IN_FEATURES.*p7"):
        build_roi_heads(cfg, SHAPES)


def test_source_level_assignment_pools_from_the_proposing_level():
    heads = _heads()
    heads.pooler_level_assignment = "source"
    # Constant maps: p3 = 3, p4 = 4, p5 = 5. A 20 px box would go to p3 by size; level_ids says p5 (2).
    feats = {k: torch.full((1, 4, 64 // s.stride, 64 // s.stride), float(k[1])) for k, s in SHAPES.items()}
    props = _proposals((64, 64), [[0, 0, 20, 20], [0, 0, 20, 20]])
    props.level_ids = torch.tensor([2, -1])
    pooled = heads._pool(feats, [props])
    assert pooled.mean(dim=(1, 2, 3)).tolist() == [5.0, 3.0]
