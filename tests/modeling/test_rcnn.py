"""Tests for GeneralizedRCNN and ProposalNetwork built from configs/Base-RCNN-FPN.yaml (tiny images)."""
import os

import pytest
import torch

from detkit.config import get_cfg
from detkit.modeling import META_ARCH_REGISTRY, build_model
from detkit.modeling.meta_arch import GeneralizedRCNN, ProposalNetwork
from detkit.structures import Boxes, Instances

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def _cfg(meta="GeneralizedRCNN", **overrides):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(CONFIGS, "Base-RCNN-FPN.yaml"))
    cfg.MODEL.META_ARCHITECTURE = meta
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    for k, v in overrides.items():
        cfg.merge_from_list([k, str(v)])
    return cfg


def _inputs(with_gt=True):
    """Two images, 64 x 96 and 64 x 64, whose original sizes are twice that."""
    torch.manual_seed(0)
    specs = [(64, 96, [[4, 4, 40, 30], [50, 10, 90, 60]], [0, 2]), (64, 64, [[10, 10, 50, 50]], [1])]
    out = []
    for h, w, boxes, classes in specs:
        d = {"image": torch.randint(0, 256, (3, h, w), dtype=torch.uint8), "height": 2 * h, "width": 2 * w,
             "image_id": f"img{h}x{w}"}
        if with_gt:
            d["instances"] = Instances((h, w), gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
                                       gt_classes=torch.tensor(classes))
        out.append(d)
    return out


def test_registered_and_built_from_base_config():
    assert META_ARCH_REGISTRY.get("GeneralizedRCNN") is GeneralizedRCNN
    assert META_ARCH_REGISTRY.get("ProposalNetwork") is ProposalNetwork
    model = build_model(_cfg())
    assert isinstance(model, GeneralizedRCNN)
    assert model.proposal_generator.in_features == ["p3", "p4", "p5"]
    assert model.roi_heads.box_predictor.cls_score.out_features == 4  # K + 1
    assert model.size_divisibility == 32


def test_generalized_rcnn_training_losses_and_gradients():
    model = build_model(_cfg()).train()
    losses = model(_inputs())
    assert sorted(losses) == ["loss_box_reg", "loss_cls", "loss_rpn_cls", "loss_rpn_loc"]
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.backbone.parameters().__next__().grad is not None
    assert model.roi_heads.box_predictor.bbox_pred.weight.grad.abs().sum() > 0


def test_generalized_rcnn_eval_rescales_to_original_size():
    model = build_model(_cfg(**{"MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.0})).eval()
    with torch.inference_mode():
        outputs = model(_inputs(with_gt=False))
    assert len(outputs) == 2
    for out, (h, w) in zip(outputs, [(128, 192), (128, 128)]):
        inst = out["instances"]
        assert inst.image_size == (h, w)
        assert len(inst) > 0 and sorted(inst.get_fields()) == ["pred_boxes", "pred_classes", "scores"]
        b = inst.pred_boxes.tensor
        assert float(b[:, 2].max()) <= w and float(b[:, 3].max()) <= h and float(b.min()) >= 0
        assert int(inst.pred_classes.max()) < 3


def test_training_without_instances_names_the_image():
    model = build_model(_cfg()).train()
    inputs = _inputs()
    del inputs[1]["instances"]
    with pytest.raises(ValueError, match=r"img64x64.*DatasetMapper"):
        model(inputs)


def test_refinement_off_gives_proposal_boxes():
    model = build_model(_cfg(**{"MODEL.ROI_HEADS.BBOX_REG": False, "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.0,
                               "MODEL.ROI_BOX_HEAD.POOLER_LEVEL_ASSIGNMENT": "source",
                               # fp32, so the proposals recomputed below outside the model's autocast match.
                               "TEST.AMP.ENABLED": False}))
    assert model.roi_heads.box_predictor.bbox_pred is None
    losses = model.train()(_inputs())
    assert sorted(losses) == ["loss_cls", "loss_rpn_cls", "loss_rpn_loc"]
    model.eval()
    inputs = _inputs(with_gt=False)
    with torch.inference_mode():
        dets = model.inference(inputs, do_postprocess=False)
        images = model.preprocess_image(inputs)
        proposals, _ = model.proposal_generator(images, model.neck(model.backbone(images.tensor)))
    # Every detection box is one of the image's proposal boxes, unchanged.
    for det, props in zip(dets, proposals):
        d, p = det.pred_boxes.tensor, props.proposal_boxes.tensor
        assert bool((d[:, None, :] == p[None, :, :]).all(-1).any(1).all())


def test_proposal_network_train_and_eval():
    model = build_model(_cfg("ProposalNetwork"))
    assert isinstance(model, ProposalNetwork)
    losses = model.train()(_inputs())
    assert sorted(losses) == ["loss_rpn_cls", "loss_rpn_loc"]
    with torch.inference_mode():
        outputs = model.eval()(_inputs(with_gt=False))
    props = outputs[0]["proposals"]
    assert props.image_size == (128, 192) and len(props) == 50
    assert float(props.proposal_boxes.tensor[:, 2].max()) <= 192
    assert sorted(props.get_fields()) == ["level_ids", "objectness_logits", "proposal_boxes"]


@pytest.mark.parametrize("key", ["MODEL.RPN.IN_FEATURES", "MODEL.ROI_HEADS.IN_FEATURES"])
def test_in_features_the_neck_lacks_name_the_key(key):
    with pytest.raises(ValueError, match=rf"^{key} names \['p7'\], which the neck does not produce; "
                                         r"it outputs \['p3', 'p4', 'p5'\]\.$"):
        build_model(_cfg(**{key: "['p3', 'p7']"}))


def test_channels_last_means_backbone_and_neck_as_for_fcos():
    """MODEL.CHANNELS_LAST has one meaning for every meta-arch (DetectorBase): backbone and neck weights
    NHWC, the heads as built; the proposals match the all-NCHW model's."""
    models = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        models[channels_last] = build_model(_cfg(**{"MODEL.CHANNELS_LAST": channels_last,
                                                    "TEST.AMP.ENABLED": False})).eval()
    nhwc = models[True]
    assert nhwc.backbone.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert nhwc.neck.output_convs[0].weight.is_contiguous(memory_format=torch.channels_last)
    heads = [p for m in (nhwc.proposal_generator, nhwc.roi_heads) for p in m.parameters() if p.dim() == 4]
    assert heads and all(p.is_contiguous() for p in heads)
    inputs = _inputs(with_gt=False)
    with torch.inference_mode():
        a, b = (models[k].inference(inputs, do_postprocess=False) for k in (False, True))
    for x, y in zip(a, b):
        assert len(x) == len(y)
        assert torch.allclose(x.scores, y.scores, atol=1e-4)
