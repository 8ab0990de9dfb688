"""detkit.benchmark.speed and .analysis (tools/benchmark.py, tools/analyze_model.py) on a tiny FCOS."""
import argparse

import pytest

from detkit.benchmark import analysis, roofline, speed
from tools_testing import run_tool, write_tiny_config


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory):
    from detkit.engine import setup_cfg

    folder = tmp_path_factory.mktemp("bench")
    path = write_tiny_config(str(folder), str(folder / "out"))
    return setup_cfg(argparse.Namespace(config_file=path, opts=[], plugin=[]))


def test_benchmark_tasks_report_speed(tiny_cfg):
    for task in ("train", "eval", "data"):
        result = speed.TASKS[task](tiny_cfg, warmup=1, iters=2)
        assert result.name == task and len(result.seconds) == 2 and all(s > 0 for s in result.seconds)
        assert result.images_per_iter == (1 if task == "eval" else 4)
        line = speed.report(result, 1)
        assert line.startswith(f"{task}: ") and " s/iter " in line and " images/s " in line
        assert result.images_per_s == pytest.approx(result.images_per_iter / result.s_per_iter)


def test_analyze_model_tables(tiny_cfg):
    from detkit.modeling import build_model

    model = build_model(tiny_cfg).eval()
    params = analysis.parameter_table(model, max_depth=1)
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in params.splitlines()[3:]}
    total = sum(p.numel() for p in model.parameters())
    assert set(rows) == {"model", "backbone", "neck", "head"}
    assert rows["model"] == f"{total / 1e6:.1f}M"
    assert rows["head"] == f"{sum(p.numel() for p in model.head.parameters()) / 1e3:.1f}K"
    flops = analysis.flop_table(tiny_cfg, model, num_inputs=1)
    assert "FLOPs per module" in flops and "backbone" in flops and "Total GFLOPs:" in flops


def test_analyze_model_tool_splits_tasks_from_overrides(tiny_cfg, tmp_path):
    """``--tasks`` stops at the first word that is not a task: the rest are KEY VALUE overrides."""
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(tiny_cfg.dump())
    proc = run_tool("analyze_model.py", "--config", cfg_file, "--tasks", "parameter", "MODEL.FPN.OUT_CHANNELS", "8")
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in proc.stdout.splitlines()
            if line.count("|") >= 3}
    tiny_cfg_8 = tiny_cfg.clone()
    tiny_cfg_8.defrost()
    tiny_cfg_8.MODEL.FPN.OUT_CHANNELS = 8
    from detkit.modeling import build_model

    neck = build_model(tiny_cfg_8).neck
    assert rows["neck"] == f"{sum(p.numel() for p in neck.parameters()) / 1e3:.1f}K"  # the override applied


def test_conv_flops_counts_multiply_adds():
    # 128 -> 128 channels, 3x3 taps, 50x50 outputs: 128 * 128 * 9 * 2500 multiply-adds
    assert roofline.conv_flops(128, 50) == 368_640_000
    assert roofline.conv_flops(8, 4, kernel=1, batch=2) == 2 * 8 * 8 * 16


def test_roofline_report_divides_flops_by_the_best_rate(tiny_cfg):
    from detkit.modeling import build_model

    model = build_model(tiny_cfg).eval()
    image = analysis._images(tiny_cfg, 1)[0]
    report = roofline.roofline_report(model, image, flops=2e9, iters=2,
                                      rates={"float32 NCHW": 50.0, "float32 channels_last": 80.0})
    rows = {line.split("  ")[0].strip(): line.split()[-1] for line in report.splitlines()}
    assert report.splitlines()[0].startswith("CPU flags: ")
    assert rows["fvcore GFLOPs"] == "2.00"
    assert rows["ideal ms/img at float32 channels_last"] == "25.0"  # 2 GFLOP at 80 GFLOP/s
    measured = float(rows["measured ms/img (median)"])
    assert float(rows["measured / ideal"]) == pytest.approx(measured / 25.0, abs=0.01)


def test_conv_throughput_is_positive():
    assert roofline.conv_throughput(channels=8, size=8, warmup=1, iters=2) > 0
