"""tools/demo.py on a broken input file: the error names the file, the other inputs are still drawn."""
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from tools_testing import REPO, tool_env, write_tiny_config


def test_demo_names_a_broken_input_and_draws_the_rest(tmp_path):
    cfg = write_tiny_config(str(tmp_path / "cfg"), str(tmp_path / "out"))
    good, cut = tmp_path / "good.png", tmp_path / "cut.jpg"
    Image.fromarray(np.full((64, 64, 3), 90, dtype=np.uint8)).save(good)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(cut)
    cut.write_bytes(cut.read_bytes()[:300])
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "demo.py"), "--config", cfg,
                           "--input", str(cut), str(good), "--output", str(tmp_path / "demo")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=tool_env(), timeout=240)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"error: Image '{cut}' cannot be read: the file is truncated" in proc.stderr
    assert os.listdir(tmp_path / "demo") == ["good.png"]
    assert f"{good}: " in proc.stdout
