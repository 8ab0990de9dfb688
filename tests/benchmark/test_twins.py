"""detkit.benchmark.twins: the comparison config, torchvision's twin following it, detkit's call convention."""
import argparse
import os

import pytest
import torch
from torch import nn

from detkit.benchmark.compare import build_side
from detkit.benchmark.twins import TorchvisionDetector, build_torchvision_twin, comparison_cfg
from detkit.structures import Boxes, Instances

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
FCOS_CFG = os.path.join(ROOT, "configs", "Base-FCOS.yaml")
RCNN_CFG = os.path.join(ROOT, "configs", "Base-RCNN-FPN.yaml")
RETINANET_CFG = os.path.join(ROOT, "configs", "Base-RetinaNet.yaml")


def _args(config_file, *opts):
    return argparse.Namespace(config_file=config_file, plugin=[], opts=list(opts))


def _count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("cfg_file", [FCOS_CFG, RCNN_CFG, RETINANET_CFG])
def test_shared_trunk_and_fpn_have_the_same_parameter_count(cfg_file):
    cfg = comparison_cfg(_args(cfg_file), image_size=64)
    detkit, tv = build_side(cfg, "detkit"), build_side(cfg, "torchvision")
    # RegNetX-400MF (5,495,976 parameters) without its classifier (400 * 1000 + 1000), and an FPN of
    # 128 channels on 64/160/400 input channels: 1x1 laterals and 3x3 outputs, all with biases.
    assert _count(detkit.backbone) == _count(tv.model.backbone.body) == 5_495_976 - 401_000
    fpn = (64 + 160 + 400) * 128 + 3 * 128 + 3 * (128 * 128 * 9 + 128)
    assert _count(detkit.neck) == _count(tv.model.backbone.fpn) == fpn
    assert list(detkit.neck.output_shape()) == ["p3", "p4", "p5"]


def test_comparison_cfg_reference_architecture_and_torchvision_defaults():
    cfg = comparison_cfg(_args(FCOS_CFG, "MODEL.FCOS.NMS_THRESH_TEST", "0.5"), image_size=320)
    assert cfg.MODEL.FCOS.NUM_CLASSES == 1
    assert cfg.MODEL.FPN.OUT_CHANNELS == 128 and cfg.MODEL.FPN.TOP_BLOCK == ""
    assert cfg.MODEL.FCOS.SCORE_THRESH_TEST == 0.2 and cfg.TEST.DETECTIONS_PER_IMAGE == 100
    assert cfg.MODEL.FCOS.NMS_THRESH_TEST == 0.5  # user overrides come last
    assert cfg.INPUT.MIN_SIZE_TEST == 320 and cfg.is_frozen()
    rcnn = comparison_cfg(_args(RCNN_CFG))
    assert rcnn.MODEL.ROI_HEADS.NUM_CLASSES == 1 and rcnn.MODEL.RPN.POST_NMS_TOPK_TRAIN == 2000


def test_comparison_cfg_rejects_architecture_without_torchvision_match(tmp_path):
    path = tmp_path / "proposals.yaml"
    path.write_text(f'_BASE_: "{os.path.abspath(RCNN_CFG)}"\nMODEL:\n  META_ARCHITECTURE: "ProposalNetwork"\n')
    with pytest.raises(ValueError, match="proposals.yaml: MODEL.META_ARCHITECTURE 'ProposalNetwork'"):
        comparison_cfg(_args(str(path)))


def test_twin_follows_anchor_and_postprocessing_overrides():
    cfg = comparison_cfg(_args(RCNN_CFG, "MODEL.ANCHOR_GENERATOR.SIZES", "[[16], [40], [100]]",
                               "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "[[1.0, 3.0]]",
                               "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.3", "TEST.DETECTIONS_PER_IMAGE", "7",
                               "MODEL.RPN.POST_NMS_TOPK_TEST", "123"), image_size=64)
    tv = build_torchvision_twin(cfg).model
    assert tv.rpn.anchor_generator.sizes == ((16,), (40,), (100,))
    assert tv.rpn.anchor_generator.aspect_ratios == ((1.0, 3.0),) * 3  # one entry broadcast to the 3 levels
    assert tv.roi_heads.score_thresh == 0.3 and tv.roi_heads.detections_per_img == 7
    assert tv.rpn._post_nms_top_n["testing"] == 123
    assert tv.transform.min_size == (64,) and tv.transform.max_size == 64
    fcos = build_torchvision_twin(comparison_cfg(_args(FCOS_CFG, "MODEL.FCOS.SCORE_THRESH_TEST", "0.4",
                                                       "MODEL.FCOS.TOPK_CANDIDATES_TEST", "50"))).model
    assert fcos.score_thresh == 0.4 and fcos.topk_candidates == 50 and fcos.nms_thresh == 0.6



def test_retinanet_twin_follows_anchors_head_matcher_and_postprocessing():
    cfg = comparison_cfg(_args(RETINANET_CFG, "MODEL.RETINANET.SCORE_THRESH_TEST", "0.1",
                               "MODEL.RETINANET.IOU_THRESHOLDS", "[0.3, 0.6]"), image_size=64)
    assert cfg.MODEL.RETINANET.NUM_CLASSES == 1 and cfg.TEST.DETECTIONS_PER_IMAGE == 300  # torchvision's default
    detkit, tv = build_side(cfg, "detkit"), build_torchvision_twin(cfg).model
    # Base-RetinaNet's three scales per octave and three ratios, per level.
    assert tv.anchor_generator.sizes == ((32, 40, 50), (64, 80, 101), (128, 161, 203))
    assert tv.anchor_generator.aspect_ratios == ((0.5, 1.0, 2.0),) * 3
    assert tv.anchor_generator.num_anchors_per_location() == detkit.anchor_generator.num_cell_anchors == [9, 9, 9]
    assert tv.score_thresh == 0.1 and tv.nms_thresh == 0.5 and tv.topk_candidates == 1000
    assert tv.detections_per_img == 300 and detkit.max_detections_per_image == 300
    assert (tv.proposal_matcher.BELOW_LOW_THRESHOLD, tv.proposal_matcher.low_threshold,
            tv.proposal_matcher.high_threshold) == (-1, 0.3, 0.6)
    assert tv.proposal_matcher.allow_low_quality_matches
    # The same subnets: 4 x (3x3 conv 128 -> 128 + ReLU) each, then the predictors. torchvision counts
    # background as a class (2 outputs per anchor for 1 class), detkit does not (1).
    tower = 4 * (128 * 128 * 9 + 128)
    assert _count(detkit.head.cls_subnet) == _count(tv.head.classification_head.conv) == tower
    assert _count(detkit.head.bbox_subnet) == _count(tv.head.regression_head.conv) == tower
    assert detkit.head.cls_score.out_channels == 9 and tv.head.classification_head.cls_logits.out_channels == 18
    with pytest.raises(ValueError, match="MODEL.RETINANET.NUM_CONVS / NORM are 2 / ''"):
        build_torchvision_twin(comparison_cfg(_args(RETINANET_CFG, "MODEL.RETINANET.NUM_CONVS", "2")))

@pytest.mark.parametrize("opts, message", [
    (["MODEL.ANCHOR_GENERATOR.OFFSET", "0.5"], "MODEL.ANCHOR_GENERATOR.OFFSET is 0.5"),
    (["MODEL.ANCHOR_GENERATOR.SIZES", "[[32], [64]]"], "MODEL.ANCHOR_GENERATOR.SIZES has 2 entries"),
    (["MODEL.RPN.IN_FEATURES", "['p3', 'p4']"], r"MODEL.RPN.IN_FEATURES is \['p3', 'p4'\]"),
    (["MODEL.BACKBONE.NAME", "ResNet"], "MODEL.BACKBONE.NAME is 'ResNet'"),
])
def test_twin_refuses_what_it_cannot_follow(opts, message):
    with pytest.raises(ValueError, match=message):
        build_torchvision_twin(comparison_cfg(_args(RCNN_CFG, *opts)))


class _Recorder(nn.Module):
    """A stand-in torchvision model: records its inputs, returns fixed detections in eval mode."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.seen = None

    def forward(self, images, targets=None):
        self.seen = (images, targets)
        if self.training:
            return {"loss": self.weight.sum()}
        return [{"boxes": torch.tensor([[0.25, 0.125, 1.5, 0.5]]), "scores": torch.tensor([0.75]),
                 "labels": torch.tensor([3])}]


def test_torchvision_detector_speaks_detkit_convention():
    inner = _Recorder()
    image = torch.tensor([[[0, 255]], [[51, 102]], [[204, 153]]], dtype=torch.uint8)  # (3, 1, 2), BGR
    inst = Instances((1, 2), gt_boxes=Boxes(torch.tensor([[0.0, 0.0, 1.0, 1.0]])), gt_classes=torch.tensor([2]))
    model = TorchvisionDetector(inner, input_format="BGR").train()
    model([{"image": image, "instances": inst}])
    images, targets = inner.seen
    expected_rgb = torch.tensor([[[0.8, 0.6]], [[0.2, 0.4]], [[0.0, 1.0]]])  # channels flipped, / 255
    assert torch.allclose(images[0], expected_rgb)
    assert targets[0]["labels"].tolist() == [3]  # torchvision counts background as 0
    model.eval()
    out = model([{"image": image, "height": 4, "width": 8}])[0]["instances"]
    # Output boxes come back in the (4, 8) original size: x and y scaled by 8/2 and 4/1.
    assert out.image_size == (4, 8)
    assert out.pred_boxes.tensor.tolist() == [[1.0, 0.5, 6.0, 2.0]]
    assert out.pred_classes.tolist() == [2] and out.scores.tolist() == [0.75]
