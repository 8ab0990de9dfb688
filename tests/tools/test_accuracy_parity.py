"""Tests for tools/accuracy_parity.py: the shared schedule, row selection, and one end-to-end row."""
import argparse
import math
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import accuracy_parity as ap  # noqa: E402

FCOS_CFG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "Base-FCOS.yaml")


def test_lr_schedule_warmup_then_cosine():
    # Warm-up starts at 1% of the cosine value and reaches it linearly after `warmup` steps.
    assert ap.lr_at(0, 100, 1.0, 10) == pytest.approx(0.01)
    cosine_5 = 0.5 * (1 + math.cos(math.pi * 0.05))
    assert ap.lr_at(5, 100, 1.0, 10) == pytest.approx(cosine_5 * 0.505)
    assert ap.lr_at(10, 100, 2.0, 10) == pytest.approx(1 + math.cos(math.pi * 0.1))
    assert ap.lr_at(50, 100, 1.0, 10) == pytest.approx(0.5)


def test_models_option_parses_and_rejects():
    assert ap._rows("detkit") == ["detkit"]
    assert ap._rows("torchvision,detkit-fp32") == ["torchvision", "detkit-fp32"]
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown row\(s\) \['foo'\]"):
        ap._rows("detkit,foo")
    with pytest.raises(SystemExit):
        ap.main(["--config", FCOS_CFG, "--models", "tv"])


def test_one_detkit_row_trains_and_scores(capsys):
    from detkit.data.datasets.shapes import register_shapes

    register_shapes("parity_train_tiny", 8, 64, 11)
    register_shapes("parity_val_tiny", 4, 64, 12)
    ap.run(FCOS_CFG, ["MODEL.FCOS.NUM_CONVS", "1"], iters=2, batch=2, lr=1e-3, seeds=[0], threads=1, val_limit=0,
           models=["detkit"], train_name="parity_train_tiny", val_name="parity_val_tiny", image_size=64)
    out = capsys.readouterr().out
    assert "4 val images" in out and "2 iters x 2 images" in out
    assert "torchvision" not in out and "detkit fp32" not in out  # only the selected row was trained
    row = re.search(r"\| 0\s+\| detkit default\s+\|\s+([\d.]+) \|", out)
    mean = re.search(r"\| mean\s+\| detkit default\s+\|\s+([\d.]+) \|", out)
    assert row and mean and row.group(1) == mean.group(1)
    assert 0.0 <= float(row.group(1)) <= 100.0
