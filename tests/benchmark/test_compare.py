"""detkit.benchmark.compare and .timing: precision modes, shared inputs, engine-driven steps, timers, tables."""
import argparse
import math
import os

import pytest
import torch
from torchvision.ops import batched_nms

from detkit.benchmark import compare as bc
from detkit.benchmark.timing import count_nms_inputs, time_interleaved
from detkit.benchmark.twins import comparison_cfg

FCOS_CFG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "Base-FCOS.yaml")


def _cfg(*opts, image_size=64):
    return comparison_cfg(argparse.Namespace(config_file=FCOS_CFG, plugin=[], opts=list(opts)), image_size)


def test_side_cfg_precision_modes():
    cfg = _cfg("SOLVER.AMP.ENABLED", "True", "TEST.AMP.ENABLED", "True", "MODEL.CHANNELS_LAST", "True")

    def flags(side, mode):
        c = bc.side_cfg(cfg, side, mode)
        return c.SOLVER.AMP.ENABLED, c.TEST.AMP.ENABLED, c.MODEL.CHANNELS_LAST

    assert flags("detkit", "default") == (True, True, True)
    assert flags("torchvision", "default") == (False, False, False)  # torchvision's fp32 default
    assert flags("torchvision", "matched") == (True, True, False)
    assert flags("detkit", "fp32") == (False, False, True) and flags("torchvision", "fp32") == (False, False, False)
    with pytest.raises(ValueError, match="Unknown mode 'bf16'"):
        bc.side_cfg(cfg, "detkit", "bf16")


def test_make_inputs_deterministic_and_inside_image():
    a, b = bc.make_inputs(3, 64, seed=5), bc.make_inputs(3, 64, seed=5)
    for da, db in zip(a, b):
        boxes = da["instances"].gt_boxes.tensor
        assert torch.equal(da["image"], db["image"]) and torch.equal(boxes, db["instances"].gt_boxes.tensor)
        assert da["image"].dtype == torch.uint8 and da["image"].shape == (3, 64, 64)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 64).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        assert da["instances"].gt_classes.tolist() == [0] * len(boxes)
    fixed = bc.make_inputs(2, 64, seed=1, num_objects=9)
    assert [len(d["instances"]) for d in fixed] == [9, 9]


def test_count_nms_inputs_records_each_call_and_restores():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    with count_nms_inputs() as counts:
        keep = batched_nms(boxes, scores, torch.tensor([0, 0, 1]), 0.5)
        batched_nms(boxes[:1], scores[:1], torch.tensor([0]), 0.5)
    assert keep.tolist() == [0, 2]
    assert counts == [3, 1]
    batched_nms(boxes, scores, torch.tensor([0, 0, 1]), 0.5)
    assert counts == [3, 1]  # unpatched after the block


def test_time_interleaved_alternates_the_sides_after_their_warmup():
    calls = []
    medians = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, warmup=2, iters=3)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert set(medians) == {"a", "b"}


def test_train_step_runs_the_engine_loop_and_updates_both_models(monkeypatch):
    """Each side's step is the engine's SimpleTrainer/AMPTrainer step: losses logged, weights updated."""
    import detkit.engine.trainer as engine_trainer

    loops = []
    real = engine_trainer.create_train_loop
    monkeypatch.setattr(bc, "create_train_loop", lambda *a, **k: loops.append(real(*a, **k)) or loops[-1])
    cfg = _cfg("MODEL.FCOS.NUM_CONVS", "1", "MODEL.FPN.OUT_CHANNELS", "32")
    batch = bc.make_inputs(2, 64, seed=3)
    for side, names in (("detkit", {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}),
                        ("torchvision", {"classification", "bbox_regression", "bbox_ctrness"})):
        c = bc.side_cfg(cfg, side, "default")
        model = bc.build_side(c, side, seed=0)
        before = [p.detach().clone() for p in model.parameters()]
        losses = bc.train_step_fn(c, model, batch)()
        assert set(losses) == names and all(math.isfinite(v) for v in losses.values()), losses
        changed = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
        assert changed > len(before) // 2, f"{side}: only {changed} of {len(before)} parameters moved"
    assert [type(loop).__name__ for loop in loops] == ["AMPTrainer" if bc.autocast_dtype("cpu") else "SimpleTrainer",
                                                       "SimpleTrainer"]


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
    cfg = _cfg("MODEL.FCOS.NUM_CONVS", "1", "MODEL.FPN.OUT_CHANNELS", "32")
    table = bc.scaling(cfg, sizes=(64, 96), objects=(1, 3), warmup=0, iters=1, pretrain_iters=1, threads=1)
    lines = table.splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == [
        "size", "objects", "detkit ms/img", "torchvision ms/img", "ratio", "detkit NMS boxes", "torchvision NMS boxes"]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]]
    assert [(r[0], r[1]) for r in rows] == [("64", "1"), ("64", "3"), ("96", "1"), ("96", "3")]
    for r in rows:
        assert float(r[4]) == pytest.approx(float(r[2]) / float(r[3]), abs=0.01, rel=0.05)  # rounded figures


def test_describe_mode_names_the_autocast_dtype(monkeypatch):
    import detkit.utils.env as env

    cfg = _cfg("SOLVER.AMP.ENABLED", "True", "TEST.AMP.ENABLED", "True", "MODEL.CHANNELS_LAST", "True")
    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: True)
    line = bc.describe_mode(cfg, "matched")
    assert line.startswith("mode matched: detkit channels_last=on, train autocast on, inference autocast on; "
                           "torchvision channels_last=off, train autocast on, inference autocast on")
    assert line.endswith("(autocast = bfloat16)")
    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: False)
    line = bc.describe_mode(cfg, "default")
    assert "torchvision channels_last=off, train autocast off, inference autocast off" in line
    assert line.endswith("(no native bf16 here: autocast runs float32)")
