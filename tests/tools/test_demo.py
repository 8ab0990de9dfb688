"""End-to-end test of tools/demo.py: PNGs with the drawn detections."""
import glob
import os

import numpy as np
from PIL import Image

from tools_testing import run_tool


def test_demo_writes_pngs(trained_run, tmp_path):
    cfg, out, _ = trained_run
    images = sorted(glob.glob(os.path.join(os.environ["DETKIT_DATASETS"], "shapes", "shapes_tools_val_*",
                                           "images", "*")))[:2]
    assert len(images) == 2
    proc = run_tool("demo.py", "--config", out / "config.yaml", "--input", *images, "--output", tmp_path / "demo",
                    "--confidence-threshold", "0.0", "MODEL.WEIGHTS", out / "model_final.pth")
    for path in images:
        png = tmp_path / "demo" / (os.path.splitext(os.path.basename(path))[0] + ".png")
        drawn, original = np.asarray(Image.open(png)), np.asarray(Image.open(path).convert("RGB"))
        assert Image.open(png).format == "PNG" and drawn.shape == original.shape
        assert (drawn != original).any()  # boxes were drawn (threshold 0 keeps every detection)
        assert f"{path}: " in proc.stdout
