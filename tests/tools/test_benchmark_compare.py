"""Tests for tools/benchmark_compare.py: matching architectures, shared inputs, NMS counting, tables."""
import math
import os
import sys

import pytest
import torch
from torchvision.ops import batched_nms

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import benchmark_compare as bc  # noqa: E402
import compare_models as cm  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
FCOS_CFG = os.path.join(ROOT, "configs", "Base-FCOS.yaml")
RCNN_CFG = os.path.join(ROOT, "configs", "Base-RCNN-FPN.yaml")


def _count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("cfg_file", [FCOS_CFG, RCNN_CFG])
def test_shared_trunk_and_fpn_have_the_same_parameter_count(cfg_file):
    cfg = cm.setup_cfg(cfg_file, image_size=64)
    detkit = cm.build_pair(cfg, "detkit", image_size=64)
    tv = cm.build_pair(cfg, "torchvision", image_size=64)
    # RegNetX-400MF (5,495,976 parameters) without its classifier (400 * 1000 + 1000), and an FPN of
    # 128 channels on 64/160/400 input channels: 1x1 laterals and 3x3 outputs, all with biases.
    assert _count(detkit.backbone) == _count(tv.backbone.body) == 5_495_976 - 401_000
    fpn = (64 + 160 + 400) * 128 + 3 * 128 + 3 * (128 * 128 * 9 + 128)
    assert _count(detkit.neck) == _count(tv.backbone.fpn) == fpn
    assert list(detkit.neck.output_shape()) == ["p3", "p4", "p5"]


def test_setup_cfg_reference_architecture_and_torchvision_defaults():
    cfg = cm.setup_cfg(FCOS_CFG, ["MODEL.FCOS.NMS_THRESH_TEST", "0.5"], image_size=320)
    assert cfg.MODEL.FCOS.NUM_CLASSES == 1
    assert cfg.MODEL.FPN.OUT_CHANNELS == 128 and cfg.MODEL.FPN.TOP_BLOCK == ""
    assert cfg.MODEL.FCOS.SCORE_THRESH_TEST == 0.2 and cfg.TEST.DETECTIONS_PER_IMAGE == 100
    assert cfg.MODEL.FCOS.NMS_THRESH_TEST == 0.5  # user overrides come last
    assert cfg.INPUT.MIN_SIZE_TEST == 320
    rcnn = cm.setup_cfg(RCNN_CFG)
    assert rcnn.MODEL.ROI_HEADS.NUM_CLASSES == 1 and rcnn.MODEL.RPN.POST_NMS_TOPK_TRAIN == 2000
    assert cm.mode_cfg(rcnn, "fp32").TEST.AMP.ENABLED is False


def test_setup_cfg_rejects_architecture_without_torchvision_match(tmp_path):
    path = tmp_path / "proposals.yaml"
    path.write_text(f'_BASE_: "{os.path.abspath(RCNN_CFG)}"\nMODEL:\n  META_ARCHITECTURE: "ProposalNetwork"\n')
    with pytest.raises(SystemExit, match="proposals.yaml: MODEL.META_ARCHITECTURE 'ProposalNetwork'"):
        cm.setup_cfg(str(path))


def test_make_inputs_deterministic_and_inside_image():
    a, b = cm.make_inputs(3, 64, seed=5), cm.make_inputs(3, 64, seed=5)
    for (ia, ba), (ib, bb) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(ba, bb)
        assert ia.dtype == torch.uint8 and ia.shape == (3, 64, 64)
        assert (ba[:, :2] >= 0).all() and (ba[:, 2:] <= 64).all() and (ba[:, 2:] > ba[:, :2]).all()
    fixed = cm.make_inputs(2, 64, seed=1, num_objects=9)
    assert [len(boxes) for _, boxes in fixed] == [9, 9]


def test_count_nms_inputs_records_each_call_and_restores():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    with cm.count_nms_inputs() as counts:
        keep = batched_nms(boxes, scores, torch.tensor([0, 0, 1]), 0.5)
        batched_nms(boxes[:1], scores[:1], torch.tensor([0]), 0.5)
    assert keep.tolist() == [0, 2]
    assert counts == [3, 1]
    batched_nms(boxes, scores, torch.tensor([0, 0, 1]), 0.5)
    assert counts == [3, 1]  # unpatched after the block


def test_precision_modes():
    cfg = cm.setup_cfg(FCOS_CFG, ["SOLVER.AMP.ENABLED", "True", "TEST.AMP.ENABLED", "True"])
    assert cm.precision_of(cfg, "detkit", "default") == (True, False)  # inference autocast is the model's job
    assert cm.precision_of(cfg, "torchvision", "default") == (False, False)
    assert cm.precision_of(cfg, "torchvision", "matched") == (True, True)
    assert cm.precision_of(cm.mode_cfg(cfg, "fp32"), "detkit", "fp32") == (False, False)


def test_time_interleaved_alternates_the_sides_after_their_warmup():
    calls = []
    medians = cm.time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, warmup=2, iters=3)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert set(medians) == {"a", "b"} and all(m >= 0 for m in medians.values())


def test_one_tiny_step_of_both_models():
    cfg = cm.setup_cfg(FCOS_CFG, image_size=64)
    results = bc.measure(cfg, "default", warmup=0, iters=1, image_size=64)
    assert set(results) == {"detkit", "torchvision"}
    for side, figures in results.items():
        assert figures["train_s"] > 0 and figures["infer_b1_ms"] > 0 and figures["infer_b4_ms"] > 0
        assert all(math.isfinite(v) for v in figures["losses"].values()), figures["losses"]
        assert set(figures["losses"]) == ({"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"} if side == "detkit"
                                          else {"classification", "bbox_regression", "bbox_ctrness"})
        assert isinstance(figures["nms_boxes"], list)


def test_format_table_ratios():
    d = {"train_s": 1.5, "infer_b1_ms": 70.0, "infer_b4_ms": 50.0, "nms_boxes": [12]}
    t = {"train_s": 2.0, "infer_b1_ms": 100.0, "infer_b4_ms": 80.0, "nms_boxes": []}
    table = bc.format_table({"default": {"detkit": d, "torchvision": t}})
    lines = table.splitlines()
    assert lines[0] == "[default]"
    assert [c.strip() for c in lines[3].split("|")[1:-1]] == ["training step, batch 4 (s/iter)", "1.500", "2.000",
                                                               "0.75"]
    assert [c.strip() for c in lines[4].split("|")[1:-1]][-1] == "0.70"
    assert [c.strip() for c in lines[5].split("|")[1:-1]][-1] == "0.62"
    assert [c.strip() for c in lines[6].split("|")[1:-1]][1:3] == ["12", "0"]


def test_scaling_table_has_a_row_per_size_and_object_count():
    cfg = cm.setup_cfg(FCOS_CFG, image_size=64)
    table = bc.scaling(cfg, sizes=(64, 96), objects=(1, 3), warmup=0, iters=1, pretrain_iters=1)
    lines = table.splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == [
        "size", "objects", "detkit ms/img", "torchvision ms/img", "ratio", "detkit NMS boxes", "torchvision NMS boxes"]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]]
    assert [(r[0], r[1]) for r in rows] == [("64", "1"), ("64", "3"), ("96", "1"), ("96", "3")]
    for r in rows:
        assert float(r[2]) > 0 and float(r[3]) > 0
        assert float(r[4]) == pytest.approx(float(r[2]) / float(r[3]), abs=0.01, rel=0.05)  # rounded figures
        assert int(r[5]) >= 0 and int(r[6]) >= 0


def test_describe_mode_names_the_autocast_dtype(monkeypatch):
    import detkit.utils.env as env

    cfg = cm.setup_cfg(FCOS_CFG, ["SOLVER.AMP.ENABLED", "True", "TEST.AMP.ENABLED", "True"])
    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: True)
    line = bc.describe_mode(cfg, "matched")
    assert line.startswith("mode matched: detkit channels_last=on, train autocast on, inference autocast on; "
                           "torchvision channels_last=off, train autocast on, inference autocast on")
    assert line.endswith("(autocast = bfloat16)")
    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: False)
    assert bc.describe_mode(cfg, "fp32").endswith("(no native bf16 here: autocast runs float32)")
