"""detkit.data.visualize (tools/visualize_data.py): PNGs with boxes for both sources, from a config file."""
import argparse
import os

import numpy as np
import pytest
from PIL import Image

from detkit.data import DatasetCatalog
from detkit.data.datasets import register_shapes

from detkit.data.visualize import visualize_training_data
from detkit.engine import setup_cfg


def _cfg(config, *opts):
    """The config as the tool builds it: the file, then trailing KEY VALUE overrides."""
    return setup_cfg(argparse.Namespace(config_file=config, plugin=[], opts=list(opts)))


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    root = tmp_path_factory.mktemp("vis")
    register_shapes("shapes_tiny_vis_test", 4, 64, seed=13, root=str(root))
    path = root / "cfg.yaml"
    path.write_text("DATASETS:\n  TRAIN: ['shapes_tiny_vis_test']\nINPUT:\n  MIN_SIZE_TRAIN: [64]\n"
                    "  MAX_SIZE_TRAIN: 64\nSOLVER:\n  IMS_PER_BATCH: 2\nDATALOADER:\n  NUM_WORKERS: 0\n")
    return str(path)


def _changed_on_edges(png, original, annotations):
    """How many boxes' left-edge midpoints differ from the original image (XYXY boxes)."""
    drawn = np.asarray(Image.open(png).convert("RGB")).astype(int)
    source = np.asarray(Image.open(original).convert("RGB")).astype(int)
    assert drawn.shape == source.shape
    points = [(int((a["bbox"][1] + a["bbox"][3]) / 2), int(a["bbox"][0])) for a in annotations]  # (y, x)
    return sum(bool((drawn[y, x] != source[y, x]).any()) for y, x in points)


def test_annotation_source(config, tmp_path):
    out = str(tmp_path / "ann")
    assert visualize_training_data(_cfg(config), "annotation", out, num=3) == 3
    assert sorted(os.listdir(out)) == [f"shapes_tiny_vis_test_{i:06d}.png" for i in range(3)]
    d = DatasetCatalog.get("shapes_tiny_vis_test")[0]
    png = os.path.join(out, "shapes_tiny_vis_test_000000.png")
    assert Image.open(png).size == (64, 64)
    assert d["annotations"] and all(a["bbox_mode"] == 0 for a in d["annotations"])  # XYXY_ABS
    assert _changed_on_edges(png, d["file_name"], d["annotations"]) == len(d["annotations"])  # every box outlined


def test_dataloader_source_with_overrides(config, tmp_path):
    out = str(tmp_path / "dl")
    cfg = _cfg(config, "INPUT.MIN_SIZE_TRAIN", "(32,)", "INPUT.MAX_SIZE_TRAIN", "32")
    assert visualize_training_data(cfg, "dataloader", out, num=3) == 3
    files = sorted(os.listdir(out))
    assert len(files) == 3 and files[0].startswith("0000_") and files[0].endswith(".png")
    assert Image.open(os.path.join(out, files[0])).size == (32, 32)  # the loader's resized image


def test_bad_source_is_refused(config, tmp_path):
    with pytest.raises(ValueError, match=r"Unknown source 'raw'; use one of \('annotation', 'dataloader'\)"):
        visualize_training_data(_cfg(config), "raw", str(tmp_path))
