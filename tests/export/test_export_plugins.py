"""Export of models with plugin-registered backbones: a plain custom backbone exports (through
tools/deploy/export_model.py) and matches eager; a backbone with an operator ONNX can't translate,
or with a Python branch on a tensor's value, fails with an ExportError naming the module."""
import os
import textwrap

import numpy as np
import pytest
import torch

from detkit.config import get_cfg, load_plugins
from detkit.export import ExportError, ONNXPredictor, export_model
from detkit.modeling import build_model

from tools_testing import REPO, run_tool

PLUGIN = textwrap.dedent('''
    """Tiny backbones for the export tests: plain, with a custom operator, with a value-dependent branch."""
    import torch
    from torch import nn

    from detkit.layers import ShapeSpec
    from detkit.modeling import BACKBONE_REGISTRY


    @torch.library.custom_op("detkit_export_test::mystery", mutates_args=())
    def mystery(x: torch.Tensor) -> torch.Tensor:
        return x.clone()


    @mystery.register_fake
    def _(x):
        return torch.empty_like(x)


    class MysteryLayer(nn.Module):
        def forward(self, x):
            return mystery(x)


    class _Tiny(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
            self.c3 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
            self.c4 = nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU())
            self.c5 = nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU())

        def output_shape(self):
            return {n: ShapeSpec(channels=16, stride=s) for n, s in (("c3", 8), ("c4", 16), ("c5", 32))}

        def forward(self, x):
            c3 = self.c3(self.stem(x))
            c4 = self.c4(c3)
            return {"c3": c3, "c4": c4, "c5": self.c5(c4)}


    @BACKBONE_REGISTRY.register()
    class TinyExportBackbone(_Tiny):
        pass


    @BACKBONE_REGISTRY.register()
    class MysteryOpBackbone(_Tiny):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.mystery = MysteryLayer()

        def forward(self, x):
            return super().forward(self.mystery(x))


    @BACKBONE_REGISTRY.register()
    class BranchyBackbone(_Tiny):
        def forward(self, x):
            if x.mean().item() > 0:  # a Python branch on a value: torch.export cannot capture it
                x = x * 2
            return super().forward(x)
''')

OVERRIDES = ["MODEL.FPN.OUT_CHANNELS", "16", "MODEL.FCOS.NUM_CLASSES", "2", "MODEL.FCOS.NUM_CONVS", "1",
             "MODEL.FCOS.SCORE_THRESH_TEST", "0.0", "MODEL.CHANNELS_LAST", "False", "TEST.AMP.ENABLED", "False",
             "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96"]


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugin") / "export_backbones.py"
    path.write_text(PLUGIN)
    load_plugins([str(path)])
    return str(path)


def _cfg(backbone: str, weights: str = ""):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "Base-FCOS.yaml"))
    cfg.merge_from_list(OVERRIDES + ["MODEL.BACKBONE.NAME", backbone, "MODEL.WEIGHTS", weights])
    return cfg


def test_plugin_backbone_exports_with_the_tool_and_matches_eager(plugin, tmp_path):
    torch.manual_seed(0)
    model = build_model(_cfg("TinyExportBackbone")).eval()
    weights = str(tmp_path / "tiny.pth")
    torch.save({"model": model.state_dict()}, weights)
    run_tool("deploy/export_model.py", "--plugin", plugin, "--config-file",
             os.path.join(REPO, "configs", "Base-FCOS.yaml"), "--format", "onnx", "--output", tmp_path / "out",
             *OVERRIDES, "MODEL.BACKBONE.NAME", "TinyExportBackbone", "MODEL.WEIGHTS", weights)
    predictor = ONNXPredictor(str(tmp_path / "out" / "model.onnx"))
    image = np.random.default_rng(1).integers(0, 256, (70, 100, 3), dtype=np.uint8)  # resized to 64 x 91
    result = predictor(image)["instances"]
    with torch.no_grad():
        tensor = torch.as_tensor(predictor.aug.get_transform(image).apply_image(image).transpose(2, 0, 1).copy())
        eager = model([{"image": tensor, "height": 70, "width": 100}])[0]["instances"]
    assert len(eager) == 100  # score threshold 0: the per-image cap
    assert len(result) == len(eager)
    order = torch.argsort(result.scores, descending=True)
    torch.testing.assert_close(result.scores[order], eager.scores, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.pred_classes[order], eager.pred_classes)
    torch.testing.assert_close(result.pred_boxes.tensor[order], eager.pred_boxes.tensor, atol=1e-3, rtol=0)


def test_operator_without_onnx_translation_is_named(plugin, tmp_path):
    with pytest.raises(ExportError) as info:
        export_model(_cfg("MysteryOpBackbone"), str(tmp_path))
    message = str(info.value)
    assert message.startswith("ONNX export of FCOS failed: no ONNX translation for operator "
                              "'detkit_export_test::mystery' in module 'backbone.mystery' (MysteryLayer). "), message


def test_value_dependent_branch_is_named(plugin, tmp_path):
    with pytest.raises(ExportError) as info:
        export_model(_cfg("BranchyBackbone"), str(tmp_path))
    message = str(info.value)
    line = 1 + next(i for i, text in enumerate(PLUGIN.splitlines()) if "if x.mean().item()" in text)
    assert message.startswith("ONNX export of FCOS failed in module 'backbone' (BranchyBackbone), at "
                              f"{plugin}:{line}: torch.export cannot capture it (GuardOnDataDependentSymNode"), message
    assert not os.path.exists(tmp_path / "model.onnx")
