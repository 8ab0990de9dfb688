"""detkit.benchmark.parity: the shared schedule, the rows, and both sides trained through the Trainer."""
import argparse
import json
import os

import pytest

from detkit.benchmark import parity

FCOS_CFG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "Base-FCOS.yaml")


def _cfg(*opts, iters=600, batch=4, **kwargs):
    args = argparse.Namespace(config_file=FCOS_CFG, plugin=[], opts=list(opts))
    return parity.parity_cfg(args, iters=iters, batch=batch, lr=0.002, **kwargs)


def test_parity_schedule_is_the_trainers_warmup_cosine_adamw():
    cfg = _cfg("SOLVER.WEIGHT_DECAY", "0.01", iters=600)
    s = cfg.SOLVER
    assert (s.OPTIMIZER, s.LR_SCHEDULER_NAME, s.BASE_LR, s.MAX_ITER, s.IMS_PER_BATCH) == (
        "AdamW", "WarmupCosineLR", 0.002, 600, 4)
    assert s.WARMUP_ITERS == 50 and _cfg(iters=100).SOLVER.WARMUP_ITERS == 25  # min(50, iters / 4)
    assert s.WEIGHT_DECAY == 0.01  # the user's override wins over the schedule's 0.05
    assert cfg.MODEL.FCOS.NUM_CLASSES == 3 and tuple(cfg.DATASETS.TEST) == ("shapes_val",)
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (320,) and cfg.INPUT.MIN_SIZE_TEST == 320


def test_row_configs():
    cfg = _cfg("SOLVER.AMP.ENABLED", "True", "TEST.AMP.ENABLED", "True", "MODEL.CHANNELS_LAST", "True")
    for row in ("torchvision", "detkit-fp32"):
        c = parity.row_cfg(cfg, row, 7, "/tmp/x")
        assert (c.SOLVER.AMP.ENABLED, c.TEST.AMP.ENABLED, c.MODEL.CHANNELS_LAST) == (False, False, False)
    c = parity.row_cfg(cfg, "detkit", 7, "/tmp/x")
    assert (c.SOLVER.AMP.ENABLED, c.TEST.AMP.ENABLED, c.MODEL.CHANNELS_LAST, c.SEED) == (True, True, True, 7)
    with pytest.raises(ValueError, match="Unknown parity row 'tv'"):
        parity.row_cfg(cfg, "tv", 0, "/tmp/x")


def test_parse_rows():
    assert parity.parse_rows("torchvision,detkit-fp32") == ["torchvision", "detkit-fp32"]
    with pytest.raises(ValueError, match=r"unknown row\(s\) \['foo'\]"):
        parity.parse_rows("detkit,foo")


def test_format_parity_means_over_seeds():
    results = {"torchvision": [{"AP": 2.0, "AP50": 5.0, "AP75": 1.0, "train_s": 10.0},
                               {"AP": 3.0, "AP50": 8.0, "AP75": 2.0, "train_s": 12.0}],
               "detkit": [{"AP": 4.5, "AP50": 9.0, "AP75": 3.0, "train_s": 5.0},
                          {"AP": 5.5, "AP50": 10.0, "AP75": 4.0, "train_s": 6.0}]}
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in parity.format_parity(results, [0, 1]).splitlines()[2:]]
    assert rows[:4] == [["0", "torchvision fp32", "2.00", "5.00", "1.00", "10"],
                        ["0", "detkit default", "4.50", "9.00", "3.00", "5"],
                        ["1", "torchvision fp32", "3.00", "8.00", "2.00", "12"],
                        ["1", "detkit default", "5.50", "10.00", "4.00", "6"]]
    assert rows[4][:4] == ["mean", "torchvision fp32", "2.50", "6.50"]
    assert rows[5][:4] == ["mean", "detkit default", "5.00", "9.50"]


def test_both_sides_train_through_the_trainer_and_are_scored(tmp_path):
    from detkit.data.datasets.shapes import register_shapes

    register_shapes("parity_train_tiny", 8, 64, 11)
    register_shapes("parity_val_tiny", 4, 64, 12)
    cfg = _cfg("MODEL.FCOS.NUM_CONVS", "1", "MODEL.FPN.OUT_CHANNELS", "32", "DATALOADER.NUM_WORKERS", "0",
               "LOG_PERIOD", "1", iters=3, batch=2, train="parity_train_tiny", test="parity_val_tiny", image_size=64)
    results = parity.run_parity(cfg, seeds=[0], rows=["torchvision", "detkit"], threads=1, output_dir=str(tmp_path))
    assert set(results) == {"torchvision", "detkit"}
    for row, (metrics,) in results.items():
        assert 0.0 <= metrics["AP"] <= 100.0 and metrics["train_s"] > 0
        # The Trainer's own outputs: metrics.json with one line per iteration, the LR of the shared
        # schedule (warm-up over min(50, 3 // 4) = 0 steps: the cosine from 0.002), and the COCO results.
        folder = tmp_path / f"{row}_seed0"
        lines = [json.loads(line) for line in (folder / "metrics.json").read_text().splitlines()]
        lrs = [line["lr"] for line in lines if "lr" in line]
        assert lrs[:3] == pytest.approx([0.002, 0.0015, 0.0005])
        assert (folder / "inference" / "parity_val_tiny" / "coco_instances_results.json").exists()
