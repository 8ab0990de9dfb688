"""Tests for detkit.engine.defaults: the shared argument parser, setup_cfg order, DefaultPredictor."""
import argparse

import numpy as np
import pytest
import torch

from detkit.checkpoint import DetectionCheckpointer
from detkit.config import ConfigError
import detkit.engine.defaults
from detkit.engine import DefaultPredictor, DefaultTrainer, Trainer, default_argument_parser, setup_cfg
from detkit.modeling import build_model

from engine_testing import tiny_fcos_cfg


def test_argument_parser_flags():
    p = default_argument_parser()
    a = p.parse_args(["--config-file", "a.yaml", "--resume", "--num-gpus", "2", "--plugin", "x.py", "--plugin", "mod",
                      "SOLVER.BASE_LR", "0.1", "OUTPUT_DIR", "o"])
    assert a.config_file == "a.yaml" and a.resume and not a.eval_only and a.num_gpus == 2
    assert a.plugin == ["x.py", "mod"] and a.opts == ["SOLVER.BASE_LR", "0.1", "OUTPUT_DIR", "o"]
    b = p.parse_args(["--config", "b.yaml", "--eval-only", "--num-machines", "2", "--machine-rank", "1",
                      "--dist-url", "tcp://h:1"])
    got = (b.config_file, b.eval_only, b.num_machines, b.machine_rank, b.dist_url)
    assert got == ("b.yaml", True, 2, 1, "tcp://h:1")
    assert p.parse_args([]).dist_url == "auto" and p.parse_args([]).num_gpus == 1


def test_overrides_trailing_or_after_opts_all_land_in_args_opts():
    p = default_argument_parser()
    assert p.parse_args(["--config-file", "a.yaml", "--opts", "A.B", "1", "C", "2"]).opts == ["A.B", "1", "C", "2"]
    both = p.parse_args(["--resume", "A.B", "1", "--opts", "C", "2"])  # trailing first, then --opts
    assert both.resume and both.opts == ["A.B", "1", "C", "2"]
    assert not hasattr(both, "_opts_flag") and p.parse_args([]).opts == []


def test_a_flag_after_the_overrides_is_named():
    args = default_argument_parser().parse_args(["SOLVER.BASE_LR", "0.1", "--resume"])
    assert args.opts == ["SOLVER.BASE_LR", "0.1", "--resume"] and not args.resume
    with pytest.raises(ConfigError, match="The flag --resume comes after the KEY VALUE overrides"):
        setup_cfg(args)


def test_default_trainer_is_trainer():
    assert DefaultTrainer is Trainer and detkit.engine.defaults.DefaultTrainer is Trainer


def test_setup_cfg_loads_plugins_before_the_file(tmp_path):
    plugin = tmp_path / "engine_defaults_keys.py"
    plugin.write_text("from detkit.config import CfgNode as CN\n\n"
                      "def add_config(cfg):\n    cfg.ENGINE_TEST_PLUGIN = CN()\n    cfg.ENGINE_TEST_PLUGIN.SIZE = 1\n")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("ENGINE_TEST_PLUGIN:\n  SIZE: 5\nSOLVER:\n  BASE_LR: 0.5\n")
    cfg = setup_cfg(argparse.Namespace(config_file=str(cfg_file), plugin=[str(plugin)],
                                       opts=["SOLVER.BASE_LR", "0.25"]))
    assert cfg.ENGINE_TEST_PLUGIN.SIZE == 5 and cfg.SOLVER.BASE_LR == 0.25 and cfg.is_frozen()
    assert str(plugin) in cfg.PLUGINS


def test_default_predictor_matches_model_on_resized_image(tmp_path):
    cfg = tiny_fcos_cfg(tmp_path, "MODEL.FCOS.SCORE_THRESH_TEST", "0.0")
    torch.manual_seed(0)
    model = build_model(cfg)
    DetectionCheckpointer(model, str(tmp_path)).save("weights")
    cfg.MODEL.WEIGHTS = str(tmp_path / "weights.pth")
    predictor = DefaultPredictor(cfg)
    assert list(predictor.metadata.thing_classes) == ["square", "circle", "triangle"]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    out = predictor(image)["instances"]
    assert out.image_size == (50, 70) and len(out) > 0
    boxes = out.pred_boxes.tensor
    assert (boxes[:, 0::2] <= 70).all() and (boxes[:, 1::2] <= 50).all() and (boxes >= 0).all()
    # Same as the model on the test-time resize (short side 64 capped by max 64 -> 46 x 64).
    from PIL import Image

    resized = np.asarray(Image.fromarray(image).resize((64, 46), Image.BILINEAR))
    model.eval()
    with torch.inference_mode():
        ref = model([{"image": torch.as_tensor(resized.transpose(2, 0, 1).copy()), "height": 50, "width": 70}])
    ref = ref[0]["instances"]
    assert torch.allclose(ref.scores, out.scores) and torch.allclose(ref.pred_boxes.tensor, boxes)
    with pytest.raises(ValueError, match=r"expects an \(H, W, 3\) uint8 array"):
        predictor(image.astype(np.float32))
