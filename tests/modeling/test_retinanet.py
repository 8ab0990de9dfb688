"""Tests for detkit.modeling.meta_arch.retinanet and RetinaNetHead: anchor labels, losses, inference, learning."""
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from detkit.layers import ShapeSpec
from detkit.modeling.anchor_generator import DefaultAnchorGenerator
from detkit.modeling.box_coder import Box2BoxTransform
from detkit.modeling.dense_heads import DENSE_HEAD_REGISTRY, RetinaNetHead
from detkit.modeling.matcher import Matcher
from detkit.modeling.meta_arch import RetinaNet
from detkit.structures import Boxes, Instances

from standins import IdentityTrunk, PoolNeck

CONFIGS = Path(__file__).parents[2] / "configs"
LN2, LN3 = math.log(2.0), math.log(3.0)
ITERS = 100  # learning test iterations


class _FixedHead(nn.Module):
    """Stand-in head: returns fixed outputs whatever its input."""

    def __init__(self, logits, deltas):
        super().__init__()
        self.out = (logits, deltas)
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, features):
        return self.out


def _make_retinanet(head, num_classes=3, strides=(8,), sizes=((8,),), ratios=((1.0,),), **kwargs):
    neck = PoolNeck(list(strides))
    return RetinaNet(
        backbone=IdentityTrunk(), neck=neck, head=head, head_in_features=list(neck.output_shape()),
        anchor_generator=DefaultAnchorGenerator([list(s) for s in sizes], [list(r) for r in ratios], list(strides),
                                                offset=0.0),
        box2box_transform=Box2BoxTransform((1.0, 1.0, 1.0, 1.0)),
        anchor_matcher=Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True),
        num_classes=num_classes, pixel_mean=[0.0, 0.0, 0.0], pixel_std=[1.0, 1.0, 1.0], **kwargs)


# Hand-made anchors, with gt A = (0, 0, 10, 10) class 2 and B = (40, 0, 70, 10) class 1 (area 300).
ANCHORS = torch.tensor([
    [0.0, 0, 10, 10],  # 0: IoU(A) = 1                    -> foreground, A
    [0, 0, 10, 20],  # 1: IoU(A) = 100 / 200 = 0.5        -> foreground (0.5 is in [0.5, inf)), A
    [0, 0, 10, 22],  # 2: IoU(A) = 100 / 220 = 0.45       -> ignored
    [0, 0, 10, 25],  # 3: IoU(A) = 100 / 250 = 0.4        -> ignored (0.4 is in [0.4, 0.5))
    [0, 0, 10, 30],  # 4: IoU(A) = 100 / 300 = 0.33       -> background
    [40, 0, 50, 10],  # 5: IoU(B) = 100 / 300 = 0.33, B's best (tied) -> foreground by low-quality match
    [60, 0, 80, 10],  # 6: IoU(B) = 100 / 400 = 0.25      -> background
    [45, 0, 55, 10],  # 7: IoU(B) = 100 / 300 = 0.33, tied with 5 -> foreground too
    [100, 100, 110, 110],  # 8: no overlap               -> background
])
GT_A, GT_B = [0.0, 0, 10, 10], [40.0, 0, 70, 10]


def _gt():
    return Instances((120, 120), gt_boxes=Boxes(torch.tensor([GT_A, GT_B])), gt_classes=torch.tensor([2, 1]))


def _empty_gt():
    return Instances((120, 120), gt_boxes=Boxes(torch.zeros(0, 4)), gt_classes=torch.zeros(0, dtype=torch.int64))


def test_anchor_labels_ignore_band_and_low_quality_matches():
    model = _make_retinanet(nn.Identity())
    labels, boxes = model.label_anchors([Boxes(ANCHORS)], [_gt(), _empty_gt()])
    bg = 3
    assert labels.tolist() == [[2, 2, -1, -1, bg, 1, bg, 1, bg], [bg] * 9]
    assert labels.dtype == torch.int64 and boxes.shape == (2, 9, 4)
    assert boxes[0, [0, 1]].tolist() == [GT_A, GT_A]
    assert boxes[0, [5, 7]].tolist() == [GT_B, GT_B]


def test_anchor_labels_without_low_quality_matches_leave_b_unmatched():
    model = _make_retinanet(nn.Identity())
    model.anchor_matcher = Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=False)
    labels, _ = model.label_anchors([Boxes(ANCHORS)], [_gt()])
    assert labels.tolist() == [[2, 2, -1, -1, 3, 3, 3, 3, 3]]


def _losses(model, logits=0.0, deltas=0.0):
    labels, boxes = model.label_anchors([Boxes(ANCHORS)], [_gt()])
    pred_logits = torch.full((1, 9, 3), logits, requires_grad=True)
    pred_deltas = torch.full((1, 9, 4), deltas, requires_grad=True)
    return model.losses([Boxes(ANCHORS)], [pred_logits], [pred_deltas], labels, boxes), pred_deltas


def test_losses_on_a_hand_made_batch_smooth_l1():
    model = _make_retinanet(nn.Identity())
    (losses, pred_deltas) = _losses(model)
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    # Normaliser: detectron2's EMA starts at 100; 4 foreground anchors -> 0.9 * 100 + 0.1 * 4.
    norm = 90.4
    # Logits 0 -> p = 0.5: a positive (anchor, class) costs 0.25 * 0.5**2 * ln 2, a negative 0.75 * 0.5**2 * ln 2.
    # 7 valid anchors (2 ignored): 4 positives, 4 * 2 + 3 * 3 = 17 negatives.
    assert losses["loss_cls"].item() == pytest.approx((4 * 0.0625 + 17 * 0.1875) * LN2 / norm, rel=1e-5)
    # Deltas 0 against the targets (smooth-L1, beta 0.1: |d| - 0.05 for |d| >= 0.1):
    #   anchor 0 -> A: (0, 0, 0, 0); anchor 1 -> A: (0, -0.25, 0, ln 0.5);
    #   anchor 5 -> B: (1, 0, ln 3, 0); anchor 7 -> B: (0.5, 0, ln 3, 0).
    box = (0.25 - 0.05) + (LN2 - 0.05) + (1 - 0.05) + (LN3 - 0.05) + (0.5 - 0.05) + (LN3 - 0.05)
    assert losses["loss_box_reg"].item() == pytest.approx(box / norm, rel=1e-5)
    losses["loss_box_reg"].backward()
    assert pred_deltas.grad[0, [2, 3, 4, 6, 8]].abs().sum() == 0  # only foreground anchors regress

    # The EMA moves on (0.9 * 90.4 + 0.1 * 4) and lives in a buffer, so checkpoints carry it.
    (losses, _) = _losses(model)
    assert losses["loss_box_reg"].item() == pytest.approx(box / 81.76, rel=1e-5)
    assert model.state_dict()["loss_normalizer.ema"].item() == pytest.approx(81.76)
    resumed = _make_retinanet(nn.Identity())
    resumed.load_state_dict(model.state_dict())
    assert _losses(resumed)[0]["loss_box_reg"].item() == pytest.approx(box / (0.9 * 81.76 + 0.4), rel=1e-5)


def test_losses_on_a_hand_made_batch_giou():
    model = _make_retinanet(nn.Identity(), box_reg_loss_type="giou")
    (losses, _) = _losses(model)
    # Deltas 0 decode to the anchors; GIoU loss = 1 - IoU + (enclosing - union) / enclosing:
    # anchor 0 vs A: 0; anchor 1 vs A: 1 - 0.5 + 0; anchors 5 and 7 vs B: 1 - 1/3 + 0 each.
    assert losses["loss_box_reg"].item() == pytest.approx((0.5 + 4 / 3) / 90.4, rel=1e-5)
    assert losses["loss_cls"].item() == pytest.approx((4 * 0.0625 + 17 * 0.1875) * LN2 / 90.4, rel=1e-5)


def test_losses_with_confident_correct_logits_are_small():
    # Logit +8 on each foreground anchor's class and -8 elsewhere: the focal loss nearly vanishes.
    model = _make_retinanet(nn.Identity())
    labels, boxes = model.label_anchors([Boxes(ANCHORS)], [_gt()])
    logits = torch.full((1, 9, 3), -8.0)
    for anchor, cls in [(0, 2), (1, 2), (5, 1), (7, 1)]:
        logits[0, anchor, cls] = 8.0
    losses = model.losses([Boxes(ANCHORS)], [logits], [torch.zeros(1, 9, 4)], labels, boxes)
    p = torch.sigmoid(torch.tensor(-8.0)).item()  # every (anchor, class) has p_t = 1 - p
    # 4 positive entries weighted by alpha 0.25, 17 negative ones by 0.75; ignored anchors 2 and 3 add nothing.
    expected = (0.25 * 4 + 0.75 * 17) * p ** 2 * -math.log(1 - p) / 90.4
    assert losses["loss_cls"].item() == pytest.approx(expected, rel=1e-4)


def test_unknown_box_loss_and_missing_features_are_refused():
    with pytest.raises(ValueError, match="MODEL.RETINANET.BBOX_REG_LOSS_TYPE"):
        _make_retinanet(nn.Identity(), box_reg_loss_type="l2")
    neck = PoolNeck([8])
    with pytest.raises(ValueError, match="MODEL.RETINANET.IN_FEATURES"):
        RetinaNet(backbone=IdentityTrunk(), neck=neck, head=nn.Identity(), head_in_features=["p3", "p6"],
                  anchor_generator=DefaultAnchorGenerator([[8]], [[1.0]], [8]),
                  box2box_transform=Box2BoxTransform((1, 1, 1, 1)), anchor_matcher=Matcher([0.5], [0, 1]),
                  num_classes=2, pixel_mean=[0, 0, 0], pixel_std=[1, 1, 1])


def _hand_made_head_outputs():
    """Stride 8, one 8 x 8 anchor per location, a 16 x 16 image: anchors centred at (0,0), (8,0), (0,8), (8,8).

    K = 2. Location (y=1, x=1): class 0 logit 2 (score 0.881), deltas 0 -> box (4, 4, 12, 12).
    Location (y=0, x=1): class 1 logit 0 (score 0.5), dx = 0.5 -> box (8, -4, 16, 4), clipped to (8, 0, 16, 4).
    Every other logit is -10 (score 4.5e-5, under the 0.05 threshold).
    """
    logits = torch.full((1, 2, 2, 2), -10.0)  # (B, A*K, H, W)
    logits[0, 0, 1, 1] = 2.0
    logits[0, 1, 0, 1] = 0.0
    deltas = torch.zeros(1, 4, 2, 2)  # (B, A*4, H, W)
    deltas[0, 0, 0, 1] = 0.5
    return logits, deltas


def test_inference_sigmoid_scores_decode_clip_and_rescale():
    logits, deltas = _hand_made_head_outputs()
    model = _make_retinanet(_FixedHead([logits], [deltas]), num_classes=2).eval()
    with torch.inference_mode():
        (out,) = model([{"image": torch.zeros(3, 16, 16, dtype=torch.uint8), "height": 32, "width": 48}])
    inst = out["instances"]
    assert inst.image_size == (32, 48)
    assert inst.scores.tolist() == pytest.approx([1 / (1 + math.exp(-2.0)), 0.5], abs=1e-6)
    assert inst.pred_classes.tolist() == [0, 1]
    assert inst.pred_boxes.tensor.tolist() == [[12, 8, 36, 24], [24, 0, 48, 8]]  # x3 in x, x2 in y


def test_inference_on_an_empty_image_gives_no_detections():
    logits, deltas = _hand_made_head_outputs()
    model = _make_retinanet(_FixedHead([torch.full_like(logits, -10.0)], [deltas]), num_classes=2).eval()
    with torch.inference_mode():
        (out,) = model([{"image": torch.zeros(3, 16, 16, dtype=torch.uint8)}])
    inst = out["instances"]
    assert len(inst) == 0 and inst.pred_boxes.tensor.shape == (0, 4) and inst.image_size == (16, 16)


def _tiny_model():
    head = RetinaNetHead(input_shape=[ShapeSpec(channels=8, stride=s) for s in (8, 16)], num_classes=2,
                         num_anchors=3, num_convs=1)
    return _make_retinanet(head, num_classes=2, strides=(8, 16), sizes=((16,), (32,)), ratios=((0.5, 1.0, 2.0),))


def test_training_on_empty_and_non_empty_images():
    torch.manual_seed(0)
    model = _tiny_model().train()
    image = torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
    empty = {"image": image, "instances": Instances((64, 64), gt_boxes=Boxes(torch.zeros(0, 4)),
                                                    gt_classes=torch.zeros(0, dtype=torch.int64))}
    losses = model([empty])
    # No gt: every anchor is background; the class loss is positive, the box loss exactly 0 (and differentiable).
    assert losses["loss_cls"].item() > 0 and losses["loss_box_reg"].item() == 0
    sum(losses.values()).backward()
    assert model.head.cls_score.weight.grad.abs().sum() > 0
    one = {"image": image, "instances": Instances((64, 64), gt_boxes=Boxes(torch.tensor([[4.0, 4, 40, 30]])),
                                                  gt_classes=torch.tensor([1]))}
    model.zero_grad()
    losses = model([empty, one])
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_box_reg"].item() > 0
    sum(losses.values()).backward()
    assert model.head.bbox_pred.weight.grad.abs().sum() > 0


def test_head_shapes_prior_and_registry():
    assert DENSE_HEAD_REGISTRY.get("RetinaNetHead") is RetinaNetHead
    head = _tiny_model().head
    logits, deltas = head([torch.zeros(2, 8, 4, 6), torch.zeros(2, 8, 2, 3)])
    assert [tuple(x.shape) for x in logits] == [(2, 6, 4, 6), (2, 6, 2, 3)]  # A * K = 3 * 2
    assert [tuple(x.shape) for x in deltas] == [(2, 12, 4, 6), (2, 12, 2, 3)]  # A * 4
    # A zero input leaves only the biases: every class starts at probability 0.01.
    assert torch.sigmoid(logits[0]).flatten().tolist() == pytest.approx([0.01] * 2 * 6 * 24)
    with pytest.raises(ValueError, match="same channels"):
        RetinaNetHead(input_shape=[ShapeSpec(channels=8), ShapeSpec(channels=16)], num_classes=2, num_anchors=1)


def test_builds_from_base_config_offline():
    from detkit.config import get_cfg
    from detkit.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "Base-RetinaNet.yaml"))
    cfg.MODEL.RETINANET.NUM_CLASSES = 3
    model = build_model(cfg)
    assert isinstance(model, RetinaNet) and isinstance(model.head, RetinaNetHead)
    assert model.anchor_generator.num_cell_anchors == [9, 9, 9]
    assert model.head.cls_score.out_channels == 27 and model.head.bbox_pred.out_channels == 36
    assert model.anchor_matcher.allow_low_quality_matches and model.anchor_matcher.labels == [0, -1, 1]
    assert model.smooth_l1_beta == 0.1 and model.test_nms_thresh == 0.5 and model.test_score_thresh == 0.05
    model.eval()
    with torch.inference_mode():
        (out,) = model([{"image": torch.zeros(3, 50, 70, dtype=torch.uint8), "height": 100, "width": 140}])
    assert out["instances"].image_size == (100, 140)
    assert set(out["instances"].get_fields()) == {"pred_boxes", "scores", "pred_classes"}


def test_retinanet_overfits_four_shapes_images(tmp_path):
    """Learning: RetinaNet (Base-RetinaNet.yaml, RegNetX-400MF + FPN from scratch) fits the first 4
    shapes_train images to COCO AP50 >= 90, trained and scored with the config's speed settings
    (channels_last, bf16 autocast where the CPU has it). Images are shrunk to 192 px, anchors to match."""
    from detkit.config import get_cfg
    from detkit.data import DatasetCatalog, DatasetMapper, build_detection_test_loader
    from detkit.data.datasets import SHAPES_TRAIN_SEED, register_shapes
    from detkit.evaluation import COCOEvaluator, inference_on_dataset
    from detkit.modeling import build_model
    from detkit.utils.env import cpu_has_native_bf16

    register_shapes("shapes_train_4", 4, 320, SHAPES_TRAIN_SEED)
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "Base-RetinaNet.yaml"))
    cfg.merge_from_list([
        "MODEL.RETINANET.NUM_CLASSES", "3", "MODEL.RETINANET.NUM_CONVS", "1", "MODEL.FPN.OUT_CHANNELS", "64",
        # 320 px shapes (12-160 px objects) shrunk to 192 px: 7-96 px objects, so anchors of 12-61 px, square.
        "MODEL.ANCHOR_GENERATOR.SIZES", "[[12, 15, 19], [24, 30, 38], [48, 60, 76]]",
        "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "[[1.0]]",
        "INPUT.MIN_SIZE_TRAIN", "[192]", "INPUT.MAX_SIZE_TRAIN", "192",
        "INPUT.MIN_SIZE_TEST", "192", "INPUT.MAX_SIZE_TEST", "192", "INPUT.RANDOM_FLIP", "none",
        "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(tmp_path)])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = [DatasetMapper(cfg, is_train=True)(d) for d in DatasetCatalog.get("shapes_train_4")]
    lr, iters = 2e-3, ITERS
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    # The config's training precision, as the engine runs it (SOLVER.AMP: bf16 on a CPU that has it).
    amp = cfg.SOLVER.AMP.ENABLED and cpu_has_native_bf16()
    for it in range(iters):
        for group in optimizer.param_groups:  # 10 iterations of linear warmup, then cosine decay to 0
            group["lr"] = lr * min(1.0, (it + 1) / 10) * 0.5 * (1 + math.cos(math.pi * it / iters))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            losses = model(batch)
        optimizer.zero_grad()
        sum(v.float() for v in losses.values()).backward()
        optimizer.step()
    assert all(torch.isfinite(v) for v in losses.values())
    results = inference_on_dataset(model, build_detection_test_loader(cfg, "shapes_train_4"),
                                   COCOEvaluator("shapes_train_4", output_dir=str(tmp_path)))
    assert results["bbox"]["AP50"] >= 90, results

