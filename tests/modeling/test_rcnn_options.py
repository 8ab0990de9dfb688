"""detectron2's two-stage options end to end: giou box losses (RPN and box head), CLS_AGNOSTIC_BBOX_REG,
the GN conv box head (4conv1fc), sampling and proposal counts read from the config, predictor init."""
import math
import os

import pytest
import torch
from torch import nn

from detkit.config import get_cfg
from detkit.layers import ShapeSpec
from detkit.modeling import build_model
from detkit.modeling.anchor_generator import DefaultAnchorGenerator
from detkit.modeling.box_coder import Box2BoxTransform
from detkit.modeling.matcher import Matcher
from detkit.modeling.proposal_generator import RPN
from detkit.modeling.roi_heads import FastRCNNConvFCHead, FastRCNNOutputLayers
from detkit.structures import Boxes, ImageList, Instances

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


# ----------------------------------------------------------------------------- giou losses

class _ZeroDeltaHead(nn.Module):
    """Objectness 0 and deltas 0 everywhere, plus a parameter so the losses have a gradient."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, features):
        f = features[0]
        return [torch.zeros(f.shape[0], 1, *f.shape[-2:]) + self.bias], \
            [torch.zeros(f.shape[0], 4, *f.shape[-2:]) + self.bias]


def _rpn(**kwargs):
    # One 16 x 16 anchor per cell of stride 16, centred at (16 j, 16 i): anchor (1, 1) = (8, 8, 24, 24).
    return RPN(in_features=["p4"], head=_ZeroDeltaHead(),
               anchor_generator=DefaultAnchorGenerator([[16]], [[1.0]], [16], offset=0.0),
               anchor_matcher=Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True),
               box2box_transform=Box2BoxTransform((1.0, 1.0, 1.0, 1.0)), batch_size_per_image=8,
               positive_fraction=0.5, pre_nms_topk=(100, 100), post_nms_topk=(50, 50), **kwargs).train()


def _gt(size, boxes):
    return Instances(size, gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
                     gt_classes=torch.zeros(len(boxes), dtype=torch.int64))


# gt (12, 12, 28, 28) against the zero-delta prediction = anchor (8, 8, 24, 24): intersection 12 x 12 = 144,
# union 256 + 256 - 144 = 368, enclosing box (8, 8, 28, 28) = 400. GIoU = 144 / 368 - (400 - 368) / 400.
GIOU_LOSS = 1 - (144 / 368 - 32 / 400)


def test_rpn_giou_loss_hand_made():
    images = ImageList(torch.zeros(1, 3, 48, 48), [(48, 48)])
    rpn = _rpn(box_reg_loss_type="giou", loss_weight={"loss_rpn_cls": 1.0, "loss_rpn_loc": 2.0})
    _, losses = rpn(images, {"p4": torch.zeros(1, 1, 3, 3)}, [_gt((48, 48), [[12, 12, 28, 28]])])
    # The only positive is anchor (1, 1) (IoU 0.39: the gt's best, a low-quality match); the loss is
    # summed over positives and divided by batch_size_per_image * images = 8, times the weight 2.
    assert float(losses["loss_rpn_loc"].detach()) == pytest.approx(GIOU_LOSS / 8 * 2, rel=1e-5)
    losses["loss_rpn_loc"].backward()
    assert rpn.rpn_head.bias.grad != 0
    # smooth_l1 on the same case gives the L1 of the deltas instead: (4/16 + 4/16 + 0 + 0) / 8 * 2.
    _, losses = _rpn(loss_weight={"loss_rpn_cls": 1.0, "loss_rpn_loc": 2.0})(
        images, {"p4": torch.zeros(1, 1, 3, 3)}, [_gt((48, 48), [[12, 12, 28, 28]])])
    assert float(losses["loss_rpn_loc"].detach()) == pytest.approx(0.5 / 8 * 2, rel=1e-5)


def _predictor(**kwargs):
    pred = FastRCNNOutputLayers(ShapeSpec(channels=4), box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)),
                                num_classes=2, **kwargs)
    with torch.no_grad():
        for p in pred.parameters():
            p.zero_()
    return pred


def _rois():
    # RoI 0: class 1, proposal (0, 0, 10, 10), gt (5, 5, 15, 15). RoI 1: background (class K = 2).
    return [Instances((50, 50), proposal_boxes=Boxes(torch.tensor([[0.0, 0, 10, 10], [20.0, 20, 30, 30]])),
                      gt_classes=torch.tensor([1, 2]),
                      gt_boxes=Boxes(torch.tensor([[5.0, 5, 15, 15], [0.0, 0, 0, 0]])))]


@pytest.mark.parametrize("agnostic", [False, True])
def test_box_head_giou_loss_hand_made(agnostic):
    pred = _predictor(box_reg_loss_type="giou", cls_agnostic_bbox_reg=agnostic, loss_weight={"loss_box_reg": 2.0})
    if not agnostic:
        with torch.no_grad():
            pred.bbox_pred.bias[:4] = 1.0  # class 0's deltas, which must not enter the loss of a class-1 RoI
    losses = pred.losses(pred(torch.randn(2, 4)), _rois())
    # Zero deltas: the predicted box is the proposal. Intersection 25, union 175, enclosing 225:
    # GIoU = 25 / 175 - 50 / 225; loss summed over foreground, divided by the 2 sampled RoIs, weight 2.
    expected = (1 - (25 / 175 - 50 / 225)) / 2 * 2
    assert float(losses["loss_box_reg"].detach()) == pytest.approx(expected, rel=1e-5)
    losses["loss_box_reg"].backward()
    grad = pred.bbox_pred.bias.grad
    assert grad[-4:].abs().sum() > 0
    if not agnostic:
        assert grad[:4].abs().sum() == 0


def test_giou_and_loss_weights_from_config():
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(CONFIGS, "Base-RCNN-FPN.yaml"))
    cfg.merge_from_list(["MODEL.ROI_HEADS.NUM_CLASSES", "3", "MODEL.ROI_BOX_HEAD.FC_DIM", "16",
                         "MODEL.RPN.BBOX_REG_LOSS_TYPE", "giou", "MODEL.RPN.BBOX_REG_LOSS_WEIGHT", "2.0",
                         "MODEL.RPN.LOSS_WEIGHT", "0.5", "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE", "giou",
                         "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT", "3.0", "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA", "0.5",
                         "MODEL.RPN.SMOOTH_L1_BETA", "0.25"])
    model = build_model(cfg)
    rpn, predictor = model.proposal_generator, model.roi_heads.box_predictor
    assert rpn.box_reg_loss_type == "giou" and predictor.box_reg_loss_type == "giou"
    # detectron2: the loc weight is BBOX_REG_LOSS_WEIGHT * LOSS_WEIGHT.
    assert rpn.loss_weight == {"loss_rpn_cls": 0.5, "loss_rpn_loc": 1.0}
    assert predictor.loss_weight == {"loss_box_reg": 3.0}
    assert rpn.smooth_l1_beta == 0.25 and predictor.smooth_l1_beta == 0.5
    cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE = "iou"
    with pytest.raises(ValueError, match=r"'iou'.*MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE.*'giou'"):
        build_model(cfg)


# ----------------------------------------------------------------------------- agnostic boxes, sampling, proposals

def _rcnn_cfg(*overrides):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(CONFIGS, "Base-RCNN-FPN.yaml"))
    cfg.merge_from_list(["MODEL.ROI_HEADS.NUM_CLASSES", "3", "MODEL.ROI_BOX_HEAD.FC_DIM", "16",
                         "MODEL.RPN.POST_NMS_TOPK_TEST", "20", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
                         *overrides])
    return cfg


def _inputs():
    torch.manual_seed(0)
    out = []
    specs = [(64, 96, [[4, 4, 40, 30], [50, 10, 90, 60]], [0, 2]), (64, 64, [[10, 10, 50, 50]], [1])]
    for h, w, boxes, classes in specs:
        out.append({"image": torch.randint(0, 256, (3, h, w), dtype=torch.uint8), "height": h, "width": w,
                    "instances": Instances((h, w), gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
                                           gt_classes=torch.tensor(classes))})
    return out


def test_cls_agnostic_bbox_reg_end_to_end():
    model = build_model(_rcnn_cfg("MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", "True"))
    predictor = model.roi_heads.box_predictor
    assert predictor.bbox_pred.out_features == 4 and predictor.cls_score.out_features == 4
    losses = model.train()(_inputs())
    assert torch.isfinite(losses["loss_box_reg"]) and float(losses["loss_box_reg"].detach()) > 0
    sum(losses.values()).backward()
    assert predictor.bbox_pred.weight.grad.abs().sum() > 0
    # Inference: one refined box per RoI, shared by its classes. With score threshold 0 every RoI gives
    # a detection for each class, and detections of the same RoI (before NMS) have the same box.
    model.eval()
    images = model.preprocess_image(_inputs())
    with torch.no_grad():
        feats = model.extract_features(images)
        proposals, _ = model.proposal_generator(images, feats)
        predictions = predictor(model.roi_heads.box_head(model.roi_heads._pool(feats, proposals)))
        boxes = predictor.predict_boxes(predictions, proposals)
    assert boxes.shape == (sum(len(p) for p in proposals), 1, 4)
    results, kept = predictor.inference(predictions, proposals)
    for res, rois in zip(results, kept):
        for roi in rois.unique():
            same = res.pred_boxes.tensor[rois == roi]
            assert torch.equal(same, same[:1].expand_as(same))


def test_sampling_and_proposal_counts_come_from_the_config():
    cfg = _rcnn_cfg("MODEL.RPN.BATCH_SIZE_PER_IMAGE", "32", "MODEL.RPN.POSITIVE_FRACTION", "0.25",
                    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16", "MODEL.ROI_HEADS.POSITIVE_FRACTION", "0.5",
                    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "7", "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "30")
    model = build_model(cfg).train()
    rpn, heads = model.proposal_generator, model.roi_heads
    assert (rpn.batch_size_per_image, rpn.positive_fraction) == (32, 0.25)
    assert (heads.batch_size_per_image, heads.positive_fraction) == (16, 0.5)
    assert rpn.pre_nms_topk[True] == 30 and rpn.post_nms_topk[True] == 7
    images = model.preprocess_image(_inputs())
    gts = [x["instances"] for x in _inputs()]
    with torch.no_grad():
        feats = model.extract_features(images)
        proposals, _ = rpn(images, feats, gts)
        # At most POST_NMS_TOPK_TRAIN proposals per image in training.
        assert all(len(p) <= 7 for p in proposals) and sum(len(p) for p in proposals) > 0
        anchors = rpn.anchor_generator([feats[f] for f in rpn.in_features])
        labels, _ = rpn.label_and_sample_anchors(anchors, gts)
        # 32 sampled anchors per image: at most int(32 * 0.25) = 8 positives (low-quality matches
        # give each gt at least one).
        assert ((labels >= 0).sum(dim=1) == 32).all()
        assert (((labels == 1).sum(dim=1) >= 1) & ((labels == 1).sum(dim=1) <= 8)).all()
        sampled = heads.label_and_sample_proposals(proposals, gts)
        # <= 7 proposals + the appended gts per image, all sampled (fewer than 16); gts are foreground.
        for inst, gt in zip(sampled, gts):
            assert len(inst) <= 7 + len(gt) and int((inst.gt_classes < 3).sum()) >= len(gt)


def test_predictor_and_rpn_head_init_as_detectron2():
    torch.manual_seed(0)
    model = build_model(_rcnn_cfg("MODEL.ROI_BOX_HEAD.FC_DIM", "1024"))
    predictor, rpn_head = model.roi_heads.box_predictor, model.proposal_generator.rpn_head
    # cls_score ~ N(0, 0.01), bbox_pred ~ N(0, 0.001), biases 0; RPN convs ~ N(0, 0.01), biases 0.
    assert float(predictor.cls_score.weight.detach().std()) == pytest.approx(0.01, rel=0.1)
    assert float(predictor.bbox_pred.weight.detach().std()) == pytest.approx(0.001, rel=0.1)
    assert predictor.cls_score.bias.abs().sum() == 0 and predictor.bbox_pred.bias.abs().sum() == 0
    for conv in [m for m in rpn_head.modules() if isinstance(m, nn.Conv2d)]:
        assert float(conv.weight.detach().std()) == pytest.approx(0.01, rel=0.1) and conv.bias.abs().sum() == 0


# ----------------------------------------------------------------------------- GN conv head (4conv1fc)

def test_gn_conv_head_builds_as_detectron2_4conv1fc():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.ROI_BOX_HEAD.NUM_CONV", "4", "MODEL.ROI_BOX_HEAD.CONV_DIM", "32",
                         "MODEL.ROI_BOX_HEAD.NUM_FC", "1", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
                         "MODEL.ROI_BOX_HEAD.NORM", "GN"])
    head = FastRCNNConvFCHead(cfg, ShapeSpec(channels=16, height=7, width=7))
    assert [type(m).__name__ for m in head] == ["Conv2d", "GroupNorm", "ReLU"] * 4 + ["Flatten", "Linear", "ReLU"]
    convs = [m for m in head if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs)  # a conv followed by a norm has no bias
    assert [c.in_channels for c in convs] == [16, 32, 32, 32] and head.fc1.in_features == 32 * 49
    assert all(g.num_groups == 32 for g in head if isinstance(g, nn.GroupNorm))
    assert head(torch.randn(3, 16, 7, 7)).shape == (3, 64) and head.output_shape.channels == 64
    cfg.MODEL.ROI_BOX_HEAD.NORM = "LN"
    with pytest.raises(ValueError, match=r"'LN' \(MODEL.ROI_BOX_HEAD.NORM\)"):
        FastRCNNConvFCHead(cfg, ShapeSpec(channels=16, height=7, width=7))


def test_gn_conv_head_trains_on_a_tiny_batch():
    torch.manual_seed(0)
    model = build_model(_rcnn_cfg("MODEL.ROI_BOX_HEAD.NUM_CONV", "4", "MODEL.ROI_BOX_HEAD.CONV_DIM", "32",
                                  "MODEL.ROI_BOX_HEAD.NUM_FC", "1", "MODEL.ROI_BOX_HEAD.NORM", "GN",
                                  "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "64", "MODEL.ROI_HEADS.POSITIVE_FRACTION",
                                  "0.5")).train()
    heads = model.roi_heads
    assert sum(isinstance(m, nn.GroupNorm) for m in heads.box_head.modules()) == 4
    # Fixed features and proposals (each gt jittered by a few pixels, plus background boxes), fewer
    # RoIs than the sampling budget, so every step sees the same batch: the second stage must fit it.
    inputs = _inputs()
    gts = [x["instances"] for x in inputs]
    with torch.no_grad():
        feats = {k: v.detach() for k, v in model.extract_features(model.preprocess_image(inputs)).items()}
    g = torch.Generator().manual_seed(0)
    proposals = []
    for gt in gts:
        jittered = gt.gt_boxes.tensor.repeat(4, 1) + torch.randint(-3, 4, (4 * len(gt), 4), generator=g)
        background = torch.tensor([[0.0, 40, 12, 60], [40, 40, 60, 62], [20, 0, 30, 8]])
        boxes = torch.cat([jittered, background])
        proposals.append(Instances(gt.image_size, proposal_boxes=Boxes(boxes),
                                   objectness_logits=torch.zeros(len(boxes))))
    optimizer = torch.optim.AdamW(heads.parameters(), lr=3e-3)
    head_losses = []
    for _ in range(20):
        _, losses = heads(None, feats, proposals, gts)
        head_losses.append(float(losses["loss_cls"].detach() + losses["loss_box_reg"].detach()))
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    assert all(math.isfinite(x) for x in head_losses)
    assert head_losses[-1] < 0.35 * head_losses[0], head_losses
