"""torchvision's own detectors built to match a detkit config, behind detkit's model interface.

The comparison config (:func:`comparison_cfg`) fixes the architecture both sides share: torchvision's
RegNetX-400MF trunk, an FPN on c3-c5 giving p3-p5 with no extra levels, random init, square test
images. :func:`build_torchvision_twin` then reads everything else from the same config: the FPN
width, the class count, the anchors (sizes and ratios of ``MODEL.ANCHOR_GENERATOR``, FCOS's one
anchor per location at each level's stride) and the post-processing thresholds; RetinaNet's twin also
follows the head's depth and norm, and the matcher's IoU thresholds. A config the twin
can't follow (other levels, another backbone, anchor offset 0.5) is refused with the key to change.

:class:`TorchvisionDetector` wraps the torchvision model so that it takes and returns what a detkit
model does (see ``detkit.modeling.meta_arch.DetectorBase``), so both sides run through the same
train loop, evaluator and timers.
"""
import argparse
from typing import Dict, List

import torch
from torch import nn

from detkit.engine import setup_cfg
from detkit.modeling.meta_arch import detector_postprocess
from detkit.modeling.meta_arch.processing import inference_autocast
from detkit.structures import Boxes, Instances

__all__ = ["TORCHVISION_KIND", "comparison_cfg", "build_torchvision_twin", "TorchvisionDetector", "num_classes_of",
           "num_classes_key"]

TORCHVISION_KIND = {"FCOS": "fcos", "GeneralizedRCNN": "faster_rcnn", "RetinaNet": "retinanet"}
_LEVELS = ["p3", "p4", "p5"]


def _reference_overrides(kind: str, image_size: int) -> List[str]:
    """The shared architecture: 1 class, FPN 128 on p3-p5 without extra levels, random init."""
    out = ["MODEL.FPN.OUT_CHANNELS", "128", "MODEL.FPN.IN_FEATURES", "['c3', 'c4', 'c5']", "MODEL.FPN.TOP_BLOCK", "",
           "MODEL.BACKBONE.NAME", "RegNetX400MF", "MODEL.BACKBONE.WEIGHTS", "", "MODEL.WEIGHTS", "",
           "MODEL.BACKBONE.FREEZE_AT", "0", "MODEL.BACKBONE.NORM", "BN",
           "INPUT.MIN_SIZE_TEST", str(image_size), "INPUT.MAX_SIZE_TEST", str(image_size)]
    if kind == "fcos":
        return out + ["MODEL.FCOS.NUM_CLASSES", "1", "MODEL.FCOS.IN_FEATURES", str(_LEVELS)]
    if kind == "retinanet":
        return out + ["MODEL.RETINANET.NUM_CLASSES", "1", "MODEL.RETINANET.IN_FEATURES", str(_LEVELS)]
    return out + ["MODEL.ROI_HEADS.NUM_CLASSES", "1", "MODEL.RPN.IN_FEATURES", str(_LEVELS),
                  "MODEL.ROI_HEADS.IN_FEATURES", str(_LEVELS)]


def _torchvision_defaults(kind: str) -> List[str]:
    """detkit config values equal to torchvision's default post-processing and sampling settings."""
    if kind == "fcos":
        return ["MODEL.FCOS.SCORE_THRESH_TEST", "0.2", "MODEL.FCOS.NMS_THRESH_TEST", "0.6",
                "MODEL.FCOS.TOPK_CANDIDATES_TEST", "1000", "MODEL.FCOS.CENTER_SAMPLING_RADIUS", "1.5",
                "TEST.DETECTIONS_PER_IMAGE", "100"]
    if kind == "retinanet":
        return ["MODEL.RETINANET.SCORE_THRESH_TEST", "0.05", "MODEL.RETINANET.NMS_THRESH_TEST", "0.5",
                "MODEL.RETINANET.TOPK_CANDIDATES_TEST", "1000", "MODEL.RETINANET.IOU_THRESHOLDS", "[0.4, 0.5]",
                "TEST.DETECTIONS_PER_IMAGE", "300"]
    return ["MODEL.RPN.PRE_NMS_TOPK_TRAIN", "2000", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "2000",
            "MODEL.RPN.PRE_NMS_TOPK_TEST", "1000", "MODEL.RPN.POST_NMS_TOPK_TEST", "1000",
            "MODEL.RPN.NMS_THRESH", "0.7", "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "256",
            "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "512", "MODEL.ROI_HEADS.POSITIVE_FRACTION", "0.25",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.05", "MODEL.ROI_HEADS.NMS_THRESH_TEST", "0.5",
            "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", "2", "TEST.DETECTIONS_PER_IMAGE", "100"]


def comparison_cfg(args: argparse.Namespace, image_size: int = 400):
    """The frozen config both sides are built from.

    ``args`` is what every tool takes (``config_file``, ``plugin``, ``opts``), read by
    ``detkit.engine.setup_cfg``; between the file and the user's ``opts`` come the shared
    architecture and torchvision's default settings, so the user's overrides win and reach both sides.
    """
    cfg = setup_cfg(argparse.Namespace(config_file=args.config_file, plugin=getattr(args, "plugin", []), opts=[]),
                    freeze=False)
    arch = cfg.MODEL.META_ARCHITECTURE
    if arch not in TORCHVISION_KIND:
        raise ValueError(f"{args.config_file}: MODEL.META_ARCHITECTURE '{arch}' has no torchvision counterpart here; "
                         f"use one of {sorted(TORCHVISION_KIND)}.")
    kind = TORCHVISION_KIND[arch]
    cfg.merge_from_list(_reference_overrides(kind, image_size) + _torchvision_defaults(kind)
                        + list(getattr(args, "opts", []) or []))
    cfg.freeze()
    return cfg


def num_classes_key(cfg) -> str:
    """The config key of the foreground class count of the config's detector."""
    return {"FCOS": "MODEL.FCOS.NUM_CLASSES", "RetinaNet": "MODEL.RETINANET.NUM_CLASSES"}.get(
        cfg.MODEL.META_ARCHITECTURE, "MODEL.ROI_HEADS.NUM_CLASSES")


def num_classes_of(cfg) -> int:
    """The foreground class count of the config's detector."""
    node = cfg
    for part in num_classes_key(cfg).split("."):
        node = node[part]
    return node


def _check_follows(cfg, kind: str) -> None:
    """Refuse a config the twin's fixed trunk and FPN can't follow, naming the key."""
    wrong = []
    if cfg.MODEL.BACKBONE.NAME != "RegNetX400MF":
        wrong.append(f"MODEL.BACKBONE.NAME is {cfg.MODEL.BACKBONE.NAME!r} (the twin has 'RegNetX400MF')")
    if list(cfg.MODEL.FPN.IN_FEATURES) != ["c3", "c4", "c5"] or cfg.MODEL.FPN.TOP_BLOCK:
        wrong.append("MODEL.FPN.IN_FEATURES / TOP_BLOCK must give p3-p5 from c3-c5 with no extra levels")
    heads = {"fcos": ["MODEL.FCOS.IN_FEATURES"], "retinanet": ["MODEL.RETINANET.IN_FEATURES"]}.get(
        kind, ["MODEL.RPN.IN_FEATURES", "MODEL.ROI_HEADS.IN_FEATURES"])
    for key in heads:
        node = cfg
        for part in key.split("."):
            node = node[part]
        if list(node) != _LEVELS:
            wrong.append(f"{key} is {list(node)} (the twin runs on {_LEVELS})")
    if kind == "retinanet" and (cfg.MODEL.RETINANET.NUM_CONVS != 4 or cfg.MODEL.RETINANET.NORM not in ("", "GN")):
        wrong.append(f"MODEL.RETINANET.NUM_CONVS / NORM are {cfg.MODEL.RETINANET.NUM_CONVS} / "
                     f"{cfg.MODEL.RETINANET.NORM!r} (torchvision's head has 4 convs, with no norm or GN)")
    if kind in ("faster_rcnn", "retinanet") and cfg.MODEL.ANCHOR_GENERATOR.OFFSET != 0.0:
        wrong.append(f"MODEL.ANCHOR_GENERATOR.OFFSET is {cfg.MODEL.ANCHOR_GENERATOR.OFFSET} "
                     "(torchvision's anchors sit at offset 0.0)")
    if wrong:
        raise ValueError("torchvision's twin can't follow this config: " + "; ".join(wrong) + ".")


def _per_level(values, name: str) -> tuple:
    """A per-level list of lists from the config, broadcast from one entry as detectron2 does."""
    values = [tuple(v) for v in values]
    if len(values) == 1:
        values = values * len(_LEVELS)
    if len(values) != len(_LEVELS):
        raise ValueError(f"{name} has {len(values)} entries; give one or {len(_LEVELS)} (one per level of {_LEVELS}).")
    return tuple(values)


class _RegNetFPN(nn.Module):
    """torchvision RegNetX-400MF trunk + FeaturePyramidNetwork on c3-c5, no extra levels."""

    def __init__(self, out_channels: int):
        super().__init__()
        from torchvision.models import regnet_x_400mf
        from torchvision.models.feature_extraction import create_feature_extractor
        from torchvision.ops import FeaturePyramidNetwork

        nodes = {"trunk_output.block2": "0", "trunk_output.block3": "1", "trunk_output.block4": "2"}
        self.body = create_feature_extractor(regnet_x_400mf(), nodes)
        self.fpn = FeaturePyramidNetwork([64, 160, 400], out_channels, extra_blocks=None)
        self.out_channels = out_channels

    def forward(self, x):
        return self.fpn(self.body(x))


def _build_torchvision_model(cfg) -> nn.Module:
    from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    kind = TORCHVISION_KIND[cfg.MODEL.META_ARCHITECTURE]
    _check_follows(cfg, kind)
    backbone = _RegNetFPN(cfg.MODEL.FPN.OUT_CHANNELS)
    common = dict(num_classes=num_classes_of(cfg) + 1, min_size=cfg.INPUT.MIN_SIZE_TEST,
                  max_size=cfg.INPUT.MAX_SIZE_TEST)
    if kind == "fcos":
        f = cfg.MODEL.FCOS
        anchors = AnchorGenerator(sizes=((8,), (16,), (32,)), aspect_ratios=((1.0,),) * 3)  # one point per stride
        return FCOS(backbone, anchor_generator=anchors, center_sampling_radius=f.CENTER_SAMPLING_RADIUS,
                    score_thresh=f.SCORE_THRESH_TEST, nms_thresh=f.NMS_THRESH_TEST,
                    detections_per_img=cfg.TEST.DETECTIONS_PER_IMAGE, topk_candidates=f.TOPK_CANDIDATES_TEST, **common)
    a, rpn, roi, box = cfg.MODEL.ANCHOR_GENERATOR, cfg.MODEL.RPN, cfg.MODEL.ROI_HEADS, cfg.MODEL.ROI_BOX_HEAD
    anchors = AnchorGenerator(sizes=_per_level(a.SIZES, "MODEL.ANCHOR_GENERATOR.SIZES"),
                              aspect_ratios=_per_level(a.ASPECT_RATIOS, "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS"))
    if kind == "retinanet":
        from functools import partial

        from torchvision.models.detection.retinanet import RetinaNetHead

        r = cfg.MODEL.RETINANET
        head = RetinaNetHead(backbone.out_channels, anchors.num_anchors_per_location()[0], common["num_classes"],
                             norm_layer=partial(nn.GroupNorm, 32) if r.NORM == "GN" else None)
        return RetinaNet(backbone, anchor_generator=anchors, head=head, score_thresh=r.SCORE_THRESH_TEST,
                         nms_thresh=r.NMS_THRESH_TEST, detections_per_img=cfg.TEST.DETECTIONS_PER_IMAGE,
                         fg_iou_thresh=r.IOU_THRESHOLDS[-1], bg_iou_thresh=r.IOU_THRESHOLDS[0],
                         topk_candidates=r.TOPK_CANDIDATES_TEST, **common)
    pooler = MultiScaleRoIAlign(["0", "1", "2"], output_size=box.POOLER_RESOLUTION,
                                sampling_ratio=box.POOLER_SAMPLING_RATIO)
    return FasterRCNN(
        backbone, rpn_anchor_generator=anchors, box_roi_pool=pooler,
        rpn_pre_nms_top_n_train=rpn.PRE_NMS_TOPK_TRAIN, rpn_pre_nms_top_n_test=rpn.PRE_NMS_TOPK_TEST,
        rpn_post_nms_top_n_train=rpn.POST_NMS_TOPK_TRAIN, rpn_post_nms_top_n_test=rpn.POST_NMS_TOPK_TEST,
        rpn_nms_thresh=rpn.NMS_THRESH, rpn_bg_iou_thresh=rpn.IOU_THRESHOLDS[0], rpn_fg_iou_thresh=rpn.IOU_THRESHOLDS[-1],
        rpn_batch_size_per_image=rpn.BATCH_SIZE_PER_IMAGE, rpn_positive_fraction=rpn.POSITIVE_FRACTION,
        box_score_thresh=roi.SCORE_THRESH_TEST, box_nms_thresh=roi.NMS_THRESH_TEST,
        box_detections_per_img=cfg.TEST.DETECTIONS_PER_IMAGE, box_fg_iou_thresh=roi.IOU_THRESHOLDS[-1],
        box_bg_iou_thresh=roi.IOU_THRESHOLDS[-1], box_batch_size_per_image=roi.BATCH_SIZE_PER_IMAGE,
        box_positive_fraction=roi.POSITIVE_FRACTION, **common)


class TorchvisionDetector(nn.Module):
    """A torchvision detection model with detkit's call convention.

    Inputs: detkit's list of dicts (uint8 "image" in ``input_format``, "instances" in training).
    torchvision gets float RGB images in [0, 1] and labels counting background as 0; its outputs
    come back as ``{"instances": Instances(pred_boxes, scores, pred_classes)}`` rescaled to each
    input's "height" x "width". With ``amp_inference`` the eval forward runs under detkit's
    inference autocast (TEST.AMP.ENABLED).
    """

    def __init__(self, model: nn.Module, input_format: str = "RGB", amp_inference: bool = False):
        super().__init__()
        self.model = model
        self.input_format = input_format
        self.amp_inference = bool(amp_inference)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _images(self, batched_inputs: List[Dict]) -> List[torch.Tensor]:
        images = [x["image"].to(self.device).float() / 255.0 for x in batched_inputs]
        return [im.flip(0) for im in images] if self.input_format == "BGR" else images

    def forward(self, batched_inputs: List[Dict]):
        images = self._images(batched_inputs)
        if self.training:
            targets = [{"boxes": x["instances"].gt_boxes.tensor.to(self.device),
                        "labels": x["instances"].gt_classes.to(self.device) + 1} for x in batched_inputs]
            return self.model(images, targets)
        with inference_autocast(self.device, self.amp_inference):
            raw = self.model(images)
        results = []
        for x, image, out in zip(batched_inputs, images, raw):
            size = tuple(image.shape[-2:])
            inst = Instances(size, pred_boxes=Boxes(out["boxes"].float()), scores=out["scores"].float(),
                             pred_classes=out["labels"] - 1)
            results.append({"instances": detector_postprocess(inst, x.get("height", size[0]), x.get("width", size[1]))})
        return results


def build_torchvision_twin(cfg) -> TorchvisionDetector:
    """torchvision's FCOS, RetinaNet or FasterRCNN following ``cfg`` (see the module docstring), on MODEL.DEVICE."""
    model = TorchvisionDetector(_build_torchvision_model(cfg), cfg.INPUT.FORMAT, cfg.TEST.AMP.ENABLED)
    return model.to(torch.device(cfg.MODEL.DEVICE))
