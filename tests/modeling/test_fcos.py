"""Tests for detkit.modeling.meta_arch.fcos: target assignment, losses, inference and learning."""
import math

import pytest
import torch
from torch import nn

from detkit.layers import ShapeSpec
from detkit.modeling.anchor_generator import PointGenerator
from detkit.modeling.box_coder import LTRBBoxCoder
from detkit.modeling.dense_heads.fcos_head import FCOSHead
from detkit.modeling.matcher import FCOSMatcher
from detkit.modeling.meta_arch.fcos import FCOS, fcos_inference
from detkit.structures import Boxes, Instances

from standins import IdentityTrunk, PoolNeck


class _FixedHead(nn.Module):
    """Stand-in head: returns fixed outputs whatever its input."""

    def __init__(self, logits, reg, ctr):
        super().__init__()
        self.out = (logits, reg, ctr)
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, features):
        return self.out


def _make_fcos(strides, head, num_classes, radius=0.0, **kwargs):
    neck = PoolNeck(strides)
    return FCOS(
        backbone=IdentityTrunk(), neck=neck, head=head, head_in_features=list(neck.output_shape()),
        point_generator=PointGenerator(strides), matcher=FCOSMatcher([64, 128], center_sampling_radius=radius),
        box_coder=LTRBBoxCoder(True), num_classes=num_classes, pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[1.0, 1.0, 1.0], **kwargs)


def _grid_index(x: float, y: float, stride: int, width: int, offset: int) -> int:
    """Index into the concatenated locations of the point at (x, y) of a level (row-major)."""
    return offset + int(y // stride) * width + int(x // stride)


def test_fcos_target_assignment_smallest_box_and_size_ranges():
    # Image 128 x 128, strides 8/16/32 -> 16x16, 8x8, 4x4 locations (offsets 0, 256, 320), no centre sampling.
    model = _make_fcos([8, 16, 32], head=_FixedHead(None, None, None), num_classes=3)
    points = model.point_generator([torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4)])
    gt = [
        # Image 0: A (0,0,60,60) class 1 contains B (12,12,36,36) class 2; both have max LTRB <= 64 -> p3 only.
        Instances((128, 128), gt_boxes=Boxes(torch.tensor([[0.0, 0, 60, 60], [12, 12, 36, 36]])),
                  gt_classes=torch.tensor([1, 2])),
        # Image 1: D (0,0,128,128) class 0: max LTRB > 64 on every p3 point, in [64, 128] on p4, < 128 on p5.
        Instances((128, 128), gt_boxes=Boxes(torch.tensor([[0.0, 0, 128, 128]])), gt_classes=torch.tensor([0])),
    ]
    labels, boxes = model.label_locations(points, gt)
    assert labels.shape == (2, 256 + 64 + 16) and boxes.shape == (2, 336, 4)
    bg = 3
    # (20, 20) lies inside A and B: it goes to B, the smaller box.
    i = _grid_index(20, 20, 8, 16, 0)
    assert labels[0, i] == 2 and boxes[0, i].tolist() == [12, 12, 36, 36]
    # (44, 44) is inside A only.
    i = _grid_index(44, 44, 8, 16, 0)
    assert labels[0, i] == 1 and boxes[0, i].tolist() == [0, 0, 60, 60]
    # B strictly contains p3 points x, y in {20, 28}: 4 points; A the 7 x 7 points 4..52 minus those 4.
    assert (labels[0, :256] == 2).sum() == 4
    assert (labels[0, :256] == 1).sum() == 45
    assert (labels[0, 256:] == bg).all()  # max LTRB of A and B is under 64: nothing on p4 / p5
    # D: none on p3 (max LTRB > 64), all 64 points of p4, none on p5 (max LTRB < 128).
    assert (labels[1, :256] == bg).all()
    assert (labels[1, 256:320] == 0).all()
    assert (labels[1, 320:] == bg).all()


def test_fcos_target_assignment_with_centre_sampling():
    # Radius 1.5 strides: A's p3 centre region is (30 +- 12) -> points 20, 28, 36 per axis; (44, 44) drops out.
    model = _make_fcos([8, 16, 32], head=_FixedHead(None, None, None), num_classes=3, radius=1.5)
    points = model.point_generator([torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4)])
    gt = [Instances((128, 128), gt_boxes=Boxes(torch.tensor([[0.0, 0, 60, 60], [12, 12, 36, 36]])),
                    gt_classes=torch.tensor([1, 2]))]
    labels, _ = model.label_locations(points, gt)
    assert labels[0, _grid_index(44, 44, 8, 16, 0)] == 3
    assert labels[0, _grid_index(20, 20, 8, 16, 0)] == 2
    # B's region (24 +- 12, clipped to B) holds 20, 28 per axis -> 4 points; A keeps the other 9 - 4 = 5 of its 3x3.
    assert (labels[0] == 2).sum() == 4
    assert (labels[0] == 1).sum() == 5


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _hand_made_outputs(batch: int = 1):
    """Two levels: stride 8 (2 x 2 points) and stride 16 (1 x 1), K = 2.

    With centerness logits of 30 (sigmoid = 1 in float32), score = sigmoid(cls) ** 0.5:
      level 0: (4,4) c0 0.9 box (0,0,8,8); (12,4) c0 0.8 and c1 0.7 box (0,0,12,8);
               (4,12) c1 0.15 box (0,8,8,16); (12,12) c0 0.5 box (8,8,20,20), outside a 16 x 16 image.
      level 1: (8,8) c1 0.6 box (0,0,16,16).
    """
    cls0 = torch.full((batch, 2, 2, 2), -30.0)  # (B, K, H, W)
    for (k, i, j), s in {(0, 0, 0): 0.9, (0, 0, 1): 0.8, (1, 0, 1): 0.7, (1, 1, 0): 0.15, (0, 1, 1): 0.5}.items():
        cls0[:, k, i, j] = _logit(s * s)
    reg0 = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [1.5, 0.5, 0.0, 0.5]],
                         [[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]])  # (H, W, 4)
    reg0 = reg0.permute(2, 0, 1).unsqueeze(0).expand(batch, -1, -1, -1)  # (B, 4, 2, 2)
    cls1 = torch.full((batch, 2, 1, 1), -30.0)
    cls1[:, 1, 0, 0] = _logit(0.36)
    reg1 = torch.full((batch, 4, 1, 1), 0.5)
    ctr = [torch.full((batch, 1, 2, 2), 30.0), torch.full((batch, 1, 1, 1), 30.0)]
    points = PointGenerator([8, 16])([cls0, cls1])
    return [cls0, cls1], [reg0, reg1], ctr, points


def _infer(image_sizes, **kwargs):
    logits, reg, ctr, points = _hand_made_outputs(len(image_sizes))
    args = dict(score_thresh=0.2, topk_candidates=1000, nms_thresh=0.6, max_detections_per_image=100)
    args.update(kwargs)
    return fcos_inference(logits, reg, ctr, points, [8, 16], LTRBBoxCoder(True), image_sizes, **args)


def test_fcos_inference_threshold_classwise_nms_and_clip():
    (out,) = _infer([(16, 16)])
    # 0.15 is under the threshold; c0 0.8 (IoU 2/3 with c0 0.9) is suppressed; c1 0.7 survives (other class).
    assert out.scores.tolist() == pytest.approx([0.9, 0.7, 0.6, 0.5], abs=1e-6)
    assert out.pred_classes.tolist() == [0, 1, 1, 0]
    assert out.pred_boxes.tensor.tolist() == [[0, 0, 8, 8], [0, 0, 12, 8], [0, 0, 16, 16], [8, 8, 16, 16]]
    assert out.image_size == (16, 16)


def test_fcos_inference_topk_is_per_level_and_max_detections_per_image():
    (out,) = _infer([(16, 16)], topk_candidates=3)
    # Level 0 keeps its 3 best (0.9, 0.8, 0.7), so 0.5 goes; level 1 keeps its own 0.6.
    assert out.scores.tolist() == pytest.approx([0.9, 0.7, 0.6], abs=1e-6)
    (out,) = _infer([(16, 16)], max_detections_per_image=2)
    assert out.scores.tolist() == pytest.approx([0.9, 0.7], abs=1e-6)
    (out,) = _infer([(16, 16)], score_thresh=0.55)
    assert out.scores.tolist() == pytest.approx([0.9, 0.7, 0.6], abs=1e-6)


def test_fcos_inference_batches_images_independently():
    # Same outputs on two images of different sizes: NMS never crosses images; each is clipped to its own size.
    a, b = _infer([(16, 16), (12, 16)])
    assert a.scores.tolist() == pytest.approx([0.9, 0.7, 0.6, 0.5], abs=1e-6)
    assert b.scores.tolist() == pytest.approx([0.9, 0.7, 0.6, 0.5], abs=1e-6)
    assert b.pred_boxes.tensor.tolist() == [[0, 0, 8, 8], [0, 0, 12, 8], [0, 0, 16, 12], [8, 8, 16, 12]]
    assert b.image_size == (12, 16)


def test_fcos_eval_forward_rescales_to_original_size():
    logits, reg, ctr, _ = _hand_made_outputs(1)
    model = _make_fcos([8, 16], head=_FixedHead(logits, reg, ctr), num_classes=2).eval()
    image = torch.zeros(3, 16, 16, dtype=torch.uint8)
    with torch.inference_mode():
        (out,) = model([{"image": image, "height": 32, "width": 48}])
    inst = out["instances"]
    assert inst.image_size == (32, 48)
    assert inst.pred_boxes.tensor.tolist() == [[0, 0, 24, 16], [0, 0, 36, 16], [0, 0, 48, 32], [24, 16, 48, 32]]
    assert inst.scores.tolist() == pytest.approx([0.9, 0.7, 0.6, 0.5], abs=1e-6)


def _tiny_model(num_classes=2, **kwargs):
    head = FCOSHead(input_shape=[ShapeSpec(channels=8, stride=s) for s in (8, 16, 32)], num_classes=num_classes,
                    num_convs=1, norm="GN" if kwargs.pop("gn", False) else "")
    return _make_fcos([8, 16, 32], head=head, num_classes=num_classes, radius=1.5, **kwargs)


def _train_inputs():
    image = torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
    inst = Instances((64, 64), gt_boxes=Boxes(torch.tensor([[4.0, 4, 40, 30], [30, 30, 60, 62]])),
                     gt_classes=torch.tensor([1, 0]))
    return [{"image": image, "height": 64, "width": 64, "instances": inst},
            {"image": image.flip(-1), "height": 64, "width": 64,
             "instances": Instances((64, 64), gt_boxes=Boxes(torch.zeros(0, 4)), gt_classes=torch.zeros(0).long())}]


@pytest.mark.parametrize("box_loss_type", ["giou", "l1"])
def test_fcos_training_forward_returns_finite_losses_with_gradients(box_loss_type):
    torch.manual_seed(0)
    model = _tiny_model(box_loss_type=box_loss_type).train()
    losses = model(_train_inputs())
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith(("head", "neck")))


def test_fcos_training_without_instances_names_the_image():
    model = _tiny_model().train()
    inputs = _train_inputs()
    del inputs[1]["instances"]
    inputs[1]["image_id"] = "img_7"
    with pytest.raises(ValueError, match="img_7"):
        model(inputs)


def test_fcos_rejects_unknown_box_loss_and_missing_features():
    with pytest.raises(ValueError, match="BOX_LOSS_TYPE"):
        _tiny_model(box_loss_type="iou")
    neck = PoolNeck([8, 16])
    with pytest.raises(ValueError, match="IN_FEATURES"):
        FCOS(backbone=IdentityTrunk(), neck=neck, head=nn.Identity(), head_in_features=["p3", "p6"],
             point_generator=PointGenerator([8, 16]), matcher=FCOSMatcher([64]), box_coder=LTRBBoxCoder(True),
             num_classes=2, pixel_mean=[0, 0, 0], pixel_std=[1, 1, 1])


def test_fcos_builds_from_base_config_offline():
    from pathlib import Path

    from detkit.config import get_cfg
    from detkit.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(str(Path(__file__).parents[2] / "configs" / "Base-FCOS.yaml"))
    cfg.MODEL.FCOS.NUM_CLASSES = 3
    model = build_model(cfg)
    assert isinstance(model, FCOS) and isinstance(model.head, FCOSHead)
    assert model.strides == [8, 16, 32] and model.head_in_features == ["p3", "p4", "p5"]
    assert model.head.cls_logits.in_channels == 128 and model.head.cls_logits.out_channels == 3
    assert isinstance(model.matcher, FCOSMatcher) and model.matcher.sizes_of_interest == [64.0, 128.0]
    assert model.pixel_mean.shape == (3, 1, 1)
    # At init every score is about sqrt(0.01 * 0.5) = 0.07 (the class prior and a centerness of 0.5):
    # under a 0.05 threshold the image has detections, and all of them pass it.
    model.test_score_thresh = 0.05
    model.eval()
    with torch.inference_mode():
        (out,) = model([{"image": torch.zeros(3, 50, 70, dtype=torch.uint8), "height": 100, "width": 140}])
    inst = out["instances"]
    assert inst.image_size == (100, 140)
    assert set(inst.get_fields()) == {"pred_boxes", "scores", "pred_classes"}
    assert len(inst) > 0 and (inst.scores > 0.05).all()
    boxes = inst.pred_boxes.tensor
    assert (boxes >= 0).all() and (boxes[:, 2] <= 140).all() and (boxes[:, 3] <= 100).all()


def test_fcos_channels_last_backbone_and_neck_nchw_head_same_outputs():
    """MODEL.CHANNELS_LAST lays out backbone and neck weights NHWC and keeps the head NCHW (on CPU the
    head's GroupNorm backward is slow on NHWC); the outputs match the all-NCHW model."""
    from pathlib import Path

    from detkit.config import get_cfg
    from detkit.modeling import build_model

    models = {}
    for channels_last in (False, True):
        cfg = get_cfg()
        cfg.merge_from_file(str(Path(__file__).parents[2] / "configs" / "Base-FCOS.yaml"))
        cfg.merge_from_list(["MODEL.FCOS.NUM_CLASSES", "3", "MODEL.CHANNELS_LAST", str(channels_last),
                             "TEST.AMP.ENABLED", "False", "MODEL.FCOS.SCORE_THRESH_TEST", "0.0"])
        torch.manual_seed(0)
        models[channels_last] = build_model(cfg).eval()
    nhwc = models[True]
    assert nhwc.backbone.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert all(p.is_contiguous() for p in nhwc.head.parameters())
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)
    with torch.inference_mode():
        a, b = (models[k]([{"image": image}])[0]["instances"] for k in (False, True))
    assert len(a) == len(b) > 0
    assert torch.allclose(a.scores, b.scores, atol=1e-4) and torch.allclose(a.pred_boxes.tensor, b.pred_boxes.tensor,
                                                                           atol=1e-2)


def test_fcos_overfits_four_shapes_images(tmp_path):
    """Learning: FCOS (RegNetX-400MF + FPN, from scratch) fits the first 4 shapes_train images to AP50 >= 90,
    trained and scored with Base-FCOS.yaml's speed settings: channels_last, and bf16 autocast where the CPU
    has native bf16 (AVX512-BF16 or AMX); elsewhere autocast is off and it runs float32, as the engine does."""
    from detkit.config import get_cfg
    from detkit.data import build_detection_test_loader, build_detection_train_loader
    from detkit.data.datasets import SHAPES_TRAIN_SEED, register_shapes
    from detkit.evaluation import COCOEvaluator, inference_on_dataset
    from detkit.modeling import build_model
    from detkit.utils.env import cpu_has_native_bf16

    register_shapes("shapes_train_4", 4, 320, SHAPES_TRAIN_SEED)
    cfg = get_cfg()
    cfg.merge_from_file(str(__import__("pathlib").Path(__file__).parents[2] / "configs" / "Base-FCOS.yaml"))
    cfg.merge_from_list([
        "MODEL.FCOS.NUM_CLASSES", "3", "MODEL.FCOS.NUM_CONVS", "1", "MODEL.FPN.OUT_CHANNELS", "64",
        "MODEL.FCOS.SCORE_THRESH_TEST", "0.05",
        "INPUT.MIN_SIZE_TRAIN", "[192]", "INPUT.MAX_SIZE_TRAIN", "192",
        "INPUT.MIN_SIZE_TEST", "192", "INPUT.MAX_SIZE_TEST", "192", "INPUT.RANDOM_FLIP", "none",
        "DATASETS.TRAIN", "['shapes_train_4']", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "4",
        "SEED", "0", "OUTPUT_DIR", str(tmp_path)])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    loader = iter(build_detection_train_loader(cfg))
    # The config's training precision, as the engine runs it (SOLVER.AMP: bf16 on a CPU that has it).
    amp = cfg.SOLVER.AMP.ENABLED and cpu_has_native_bf16()
    for _ in range(120):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            losses = model(next(loader))
        optimizer.zero_grad()
        sum(v.float() for v in losses.values()).backward()
        optimizer.step()
    assert all(torch.isfinite(v) for v in losses.values())
    results = inference_on_dataset(model, build_detection_test_loader(cfg, "shapes_train_4"),
                                   COCOEvaluator("shapes_train_4", output_dir=str(tmp_path)))
    assert results["bbox"]["AP50"] >= 90, results
