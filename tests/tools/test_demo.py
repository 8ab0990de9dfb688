"""End-to-end tests of tools/demo.py: PNGs with the drawn detections; glob inputs, --opts and trailing overrides."""
import glob
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from tools_testing import REPO, run_tool, tool_env


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


def test_demo_globs_and_both_override_forms(trained_run, tmp_path):
    cfg, out, _ = trained_run
    sources = sorted(glob.glob(os.path.join(os.environ["DETKIT_DATASETS"], "shapes", "shapes_tools_val_*",
                                            "images", "*")))[:2]
    folder = tmp_path / "in"
    folder.mkdir()
    for name, src in zip(["a.png", "b.png"], sources):
        Image.open(src).convert("RGB").save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    weights = out / "model_final.pth"
    by_opts = run_tool("demo.py", "--config-file", cfg, "--input", folder / "*.png", "--output", tmp_path / "o1",
                       "--confidence-threshold", "0.0", "--opts", "MODEL.WEIGHTS", weights)
    trailing = run_tool("demo.py", "--config-file", cfg, "--input", folder / "b.png", folder / "a.png",
                        "--output", tmp_path / "o2", "--confidence-threshold", "0.0", "MODEL.WEIGHTS", weights)
    assert sorted(os.listdir(tmp_path / "o1")) == sorted(os.listdir(tmp_path / "o2")) == ["a.png", "b.png"]
    for proc in (by_opts, trailing):  # tiny.yaml names no weights: both forms set MODEL.WEIGHTS
        assert "MODEL.WEIGHTS is empty" not in proc.stdout
    assert by_opts.stdout.index(f"{folder / 'a.png'}: ") < by_opts.stdout.index(f"{folder / 'b.png'}: ")  # sorted
    for name in ["a.png", "b.png"]:
        first, second = np.asarray(Image.open(tmp_path / "o1" / name)), np.asarray(Image.open(tmp_path / "o2" / name))
        assert np.array_equal(first, second) and (first != np.asarray(Image.open(folder / name))).any()


def test_demo_names_a_pattern_that_matches_nothing(tmp_path):
    pattern = str(tmp_path / "*.jpg")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "demo.py"), "--config-file", "unused.yaml",
                           "--input", pattern, "--output", str(tmp_path / "o")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=tool_env(), timeout=240)
    assert proc.returncode == 1 and f"error: --input pattern '{pattern}' matches no file." in proc.stderr
    assert not (tmp_path / "o").exists()
