"""Every shipped YAML under configs/ merges over the defaults and builds its model offline."""
from pathlib import Path

import pytest
import torch

from detkit.config import get_cfg
from detkit.modeling import build_model

CONFIGS = Path(__file__).parents[2] / "configs"
SHIPPED = sorted(p for p in CONFIGS.rglob("*.yaml"))


def test_configs_are_found():
    names = {str(p.relative_to(CONFIGS)) for p in SHIPPED}
    assert {"Base-FCOS.yaml", "quickstart/faster_rcnn_shapes.yaml", "VOC/faster_rcnn_R_X_400MF_FPN.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(CONFIGS)) for p in SHIPPED])
def test_shipped_config_builds_and_runs(path):
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    cfg.merge_from_list(["MODEL.BACKBONE.WEIGHTS", ""])  # no download here; the names are checked elsewhere
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model([{"image": torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8), "height": 96, "width": 128}])
    assert len(out) == 1 and out[0]["instances"].image_size == (96, 128)


def test_faster_rcnn_quick_start_has_the_gn_conv_box_head():
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "quickstart" / "faster_rcnn_shapes.yaml"))
    head = build_model(cfg).roi_heads.box_head
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in head.modules() if isinstance(m, torch.nn.GroupNorm)]
    fcs = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert [c.out_channels for c in convs] == [64] * 4 and len(norms) == 4
    assert [f.out_features for f in fcs] == [256]
