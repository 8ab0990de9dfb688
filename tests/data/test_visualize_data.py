"""tools/visualize_data.py: writes PNGs with boxes for both sources, from a config file."""
import importlib.util
import os

import numpy as np
import pytest
from PIL import Image

from detkit.data import DatasetCatalog
from detkit.data.datasets import register_shapes
from detkit.utils.visualizer import class_color

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "visualize_data.py")


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("visualize_data_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    root = tmp_path_factory.mktemp("vis")
    register_shapes("shapes_tiny_vis_test", 4, 64, seed=13, root=str(root))
    path = root / "cfg.yaml"
    path.write_text("DATASETS:\n  TRAIN: ['shapes_tiny_vis_test']\nINPUT:\n  MIN_SIZE_TRAIN: [64]\n"
                    "  MAX_SIZE_TRAIN: 64\nSOLVER:\n  IMS_PER_BATCH: 2\nDATALOADER:\n  NUM_WORKERS: 0\n")
    return str(path)


def _box_pixels(png, class_ids):
    pixels = np.asarray(Image.open(png).convert("RGB"))
    return sum(int((pixels == class_color(c)).all(axis=2).sum()) for c in set(class_ids))


def test_annotation_source(tool, config, tmp_path):
    out = str(tmp_path / "ann")
    assert tool.main(["--config", config, "--source", "annotation", "--output-dir", out, "--num", "3"]) == 0
    assert sorted(os.listdir(out)) == [f"shapes_tiny_vis_test_{i:06d}.png" for i in range(3)]
    d = DatasetCatalog.get("shapes_tiny_vis_test")[0]
    png = os.path.join(out, "shapes_tiny_vis_test_000000.png")
    assert Image.open(png).size == (64, 64)
    assert _box_pixels(png, [a["category_id"] for a in d["annotations"]]) > 20  # outlines in class colours


def test_dataloader_source_with_overrides(tool, config, tmp_path):
    out = str(tmp_path / "dl")
    argv = ["--config", config, "--source", "dataloader", "--output-dir", out, "--num", "3",
            "INPUT.MIN_SIZE_TRAIN", "(32,)", "INPUT.MAX_SIZE_TRAIN", "32"]
    assert tool.main(argv) == 0
    files = sorted(os.listdir(out))
    assert len(files) == 3 and files[0].startswith("0000_") and files[0].endswith(".png")
    assert Image.open(os.path.join(out, files[0])).size == (32, 32)  # the loader's resized image


def test_bad_source_is_refused(tool, config, tmp_path):
    with pytest.raises(SystemExit):
        tool.main(["--config", config, "--source", "raw", "--output-dir", str(tmp_path)])
