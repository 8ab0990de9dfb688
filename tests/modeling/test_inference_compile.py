"""TEST.COMPILE.ENABLED: inference through torch.compile with frozen weights, recompiled when a weight changes."""
import os

import torch

from detkit.config import get_cfg
from detkit.modeling import build_model

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def _tiny_fcos(compile_inference: bool):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(CONFIGS, "Base-FCOS.yaml"))
    cfg.merge_from_list(["MODEL.FCOS.NUM_CLASSES", 2, "MODEL.FPN.OUT_CHANNELS", 16, "MODEL.FCOS.NUM_CONVS", 1,
                         "MODEL.FCOS.SCORE_THRESH_TEST", 0.0, "TEST.AMP.ENABLED", False,
                         "TEST.COMPILE.ENABLED", compile_inference])
    torch.manual_seed(0)
    return build_model(cfg).eval()


def _outputs(model, images):
    features = model.extract_features(images)
    return [t for level in model.network("head")([features[f] for f in model.head_in_features]) for t in level]


def test_compiled_inference_matches_eager_and_follows_weight_changes():
    model = _tiny_fcos(True)
    images = model.preprocess_image([{"image": torch.randint(0, 255, (3, 64, 96), dtype=torch.uint8)}])
    assert model.network("backbone") is model.backbone  # autograd on: the parts themselves
    expected = [t.detach() for t in _outputs(model, images)]
    with torch.no_grad():
        compiled = model.network("backbone")
        assert isinstance(compiled.compiled, torch._dynamo.eval_frame.OptimizedModule)
        assert compiled.compiled._orig_mod is model.backbone
        got = _outputs(model, images)
        assert model.network("backbone") is compiled  # no weight changed: compiled once
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)
        # A training step changes weights in place; frozen constants would go stale, so it compiles again.
        model.head.cls_logits.bias.add_(1.0)
        after = _outputs(model, images)
        assert model.network("backbone") is not compiled
    torch.testing.assert_close(after[0], expected[0] + 1.0, rtol=1e-4, atol=1e-4)  # p3 class logits moved by 1
    model.train()
    assert model.network("head") is model.head


def test_compile_is_off_by_default():
    model = _tiny_fcos(False)
    with torch.no_grad():
        assert model.network("backbone") is model.backbone and model.network("head") is model.head
