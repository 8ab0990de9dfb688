"""Tests of tools/benchmark.py and tools/analyze_model.py, called in-process on a tiny FCOS."""
import argparse
import importlib.util
import os

import pytest

from tools_testing import REPO, write_tiny_config


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"detkit_tool_{name}", os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory):
    from detkit.engine import setup_cfg

    folder = tmp_path_factory.mktemp("bench")
    path = write_tiny_config(str(folder), str(folder / "out"))
    return setup_cfg(argparse.Namespace(config_file=path, opts=[], plugin=[]))


def test_benchmark_tasks_report_speed(tiny_cfg):
    bench = _tool("benchmark")
    args = argparse.Namespace(warmup=1, iters=2)
    for task in ("train", "eval", "data"):
        result = bench.TASKS[task](tiny_cfg, args)
        assert result.name == task and len(result.seconds) == 2 and all(s > 0 for s in result.seconds)
        assert result.images_per_iter == (1 if task == "eval" else 4)
        line = bench.report(result, 1)
        assert line.startswith(f"{task}: ") and " s/iter " in line and " images/s " in line
        assert result.images_per_s == pytest.approx(result.images_per_iter / result.s_per_iter)


def test_analyze_model_tables(tiny_cfg):
    from detkit.modeling import build_model

    tool = _tool("analyze_model")
    model = build_model(tiny_cfg).eval()
    params = tool.do_parameter(model, max_depth=1)
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in params.splitlines()[3:]}
    total = sum(p.numel() for p in model.parameters())
    assert set(rows) == {"model", "backbone", "neck", "head"}
    assert rows["model"] == f"{total / 1e6:.1f}M"
    assert rows["head"] == f"{sum(p.numel() for p in model.head.parameters()) / 1e3:.1f}K"
    flops = tool.do_flop(tiny_cfg, model, num_inputs=1)
    assert "FLOPs per module" in flops and "backbone" in flops and "Total GFLOPs:" in flops
    args = tool.parse_args(["--config", "x.yaml", "--tasks", "flop", "parameter", "MODEL.WEIGHTS", "w.pth"])
    assert args.tasks == ["flop", "parameter"] and args.opts == ["MODEL.WEIGHTS", "w.pth"]
