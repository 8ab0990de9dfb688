"""Tests for detkit.modeling.backbone: RegNetX400MF / ResNet outputs, FREEZE_AT, norms, weights loading."""
import logging
import os

import pytest
import torch
from torch import nn
from torchvision.models import regnet_x_400mf

from detkit.config import get_cfg
from detkit.layers import FrozenBatchNorm2d
from detkit.modeling import BACKBONE_REGISTRY, build_backbone
from detkit.modeling.backbone import RegNetX400MF, ResNet, load_backbone_weights
from detkit.modeling.backbone import weights as weights_module


def _shapes(outputs):
    return {k: tuple(v.shape) for k, v in outputs.items()}


def test_regnet_outputs_shapes_channels_strides():
    model = RegNetX400MF()
    out = model(torch.randn(2, 3, 64, 64))
    # strides 8/16/32 on 64x64 -> 8, 4, 2; channels 64/160/400.
    assert _shapes(out) == {"c3": (2, 64, 8, 8), "c4": (2, 160, 4, 4), "c5": (2, 400, 2, 2)}
    assert {k: (s.channels, s.stride) for k, s in model.output_shape().items()} == \
        {"c3": (64, 8), "c4": (160, 16), "c5": (400, 32)}
    assert model.size_divisibility == 32
    assert set(RegNetX400MF(out_features=["c2", "c4"])(torch.randn(1, 3, 32, 32))) == {"c2", "c4"}
    with pytest.raises(ValueError, match=r"out_features \['c6'\]"):
        RegNetX400MF(out_features=["c6"])


def test_resnet_outputs_by_depth():
    model = ResNet(depth=18)
    assert _shapes(model(torch.randn(1, 3, 64, 64))) == {"c3": (1, 128, 8, 8), "c4": (1, 256, 4, 4), "c5": (1, 512, 2, 2)}
    assert {k: s.channels for k, s in ResNet(depth=50).output_shape().items()} == {"c3": 512, "c4": 1024, "c5": 2048}
    with pytest.raises(ValueError, match="MODEL.RESNETS.DEPTH = 152"):
        ResNet(depth=152)


def _bn_types(module):
    return {type(m) for m in module.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d, nn.GroupNorm))}


def test_freeze_at():
    model = RegNetX400MF(freeze_at=0)
    assert all(p.requires_grad for p in model.parameters())
    model = RegNetX400MF(freeze_at=2)  # stem + block1 (c2)
    blocks = model.trunk_output
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert not any(p.requires_grad for p in blocks.block1.parameters())
    assert all(p.requires_grad for m in (blocks.block2, blocks.block3, blocks.block4) for p in m.parameters())
    assert _bn_types(model.stem) == {FrozenBatchNorm2d} and _bn_types(blocks.block1) == {FrozenBatchNorm2d}
    assert _bn_types(blocks.block2) == {nn.BatchNorm2d}
    # A frozen stem keeps its statistics in train mode.
    model.train()
    before = model.stem[1].running_mean.clone()
    model(torch.randn(2, 3, 32, 32) + 3)
    assert torch.equal(model.stem[1].running_mean, before)
    resnet = ResNet(depth=18, freeze_at=1)  # the stem only; its bn1 is a top-level child
    assert isinstance(resnet.bn1, FrozenBatchNorm2d) and not resnet.conv1.weight.requires_grad
    assert all(p.requires_grad for p in resnet.layer1.parameters())
    with pytest.raises(ValueError, match="FREEZE_AT = 6"):
        RegNetX400MF(freeze_at=6)


def _randomise_statistics(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)


@pytest.mark.parametrize("make", [lambda: RegNetX400MF(freeze_at=2), lambda: ResNet(depth=18, norm="FrozenBN")])
def test_eval_without_autograd_folds_batch_norms(make):
    """In eval mode under no_grad the backbone runs a copy with its batch norms folded into the convs:
    the same outputs, no batch norm left in the copy, the copy reused until a weight changes."""
    torch.manual_seed(0)
    model = make().eval()
    _randomise_statistics(model)
    x = torch.randn(1, 3, 64, 64)
    expected = model(x)  # autograd on: the batch norms run as they are
    assert model._folded is None
    with torch.no_grad():
        out = model(x)
    parts = model._folded[1]
    assert not any(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) for p in parts for m in p.modules())
    for name in expected:
        torch.testing.assert_close(out[name], expected[name].detach(), rtol=1e-4, atol=1e-4)
    with torch.inference_mode():
        model(x)
    assert model._folded[1] is parts  # nothing changed: the same copy
    with torch.no_grad():
        next(model.parameters()).mul_(2.0)  # an in-place update, as an optimizer step makes
        changed = model(x)
    assert model._folded[1] is not parts
    assert not torch.allclose(changed["c5"], out["c5"])
    torch.testing.assert_close(changed["c5"], model(x)["c5"].detach(), rtol=1e-4, atol=1e-4)


def test_training_mode_runs_batch_norms_as_they_are():
    model = RegNetX400MF().train()
    before = model.stem[1].running_mean.clone()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32) + 3)
    assert model._folded is None
    assert not torch.equal(model.stem[1].running_mean, before)  # the batch norm ran and updated its statistics


@pytest.mark.parametrize("norm, expected", [("BN", nn.BatchNorm2d), ("FrozenBN", FrozenBatchNorm2d),
                                            ("GN", nn.GroupNorm)])
def test_norms(norm, expected):
    assert _bn_types(RegNetX400MF(norm=norm)) == {expected}
    assert _bn_types(ResNet(depth=18, norm=norm)) == {expected}


def test_build_backbone_from_config():
    cfg = get_cfg()
    assert isinstance(build_backbone(cfg), RegNetX400MF)
    cfg.MODEL.BACKBONE.NAME = "ResNet"
    cfg.MODEL.RESNETS.DEPTH = 34
    cfg.MODEL.BACKBONE.NORM = "FrozenBN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    model = build_backbone(cfg)
    assert isinstance(model, ResNet) and model.output_shape()["c5"].channels == 512
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert set(BACKBONE_REGISTRY.names()) >= {"RegNetX400MF", "ResNet"}
    cfg.MODEL.BACKBONE.NAME = "RegNetX400"
    with pytest.raises(KeyError, match="RegNetX400MF"):
        build_backbone(cfg)


# ---------------------------------------------------------------- weights
def _torchvision_state_dict():
    """A torchvision regnet_x_400mf state dict (with its classifier), with recognisable values."""
    torch.manual_seed(0)
    sd = regnet_x_400mf().state_dict()
    for v in sd.values():
        if v.is_floating_point():
            v.uniform_(-1, 1)
    return sd


def _assert_loaded(model, sd):
    own = model.state_dict()
    for k, v in sd.items():
        if not k.startswith("fc."):
            assert torch.equal(own[k], v), k


@pytest.fixture
def no_download(monkeypatch):
    def offline(url):
        raise OSError(f"network unreachable: {url}")

    monkeypatch.setattr(weights_module, "_download", offline)


def test_weights_from_local_file_exact(tmp_path, caplog):
    sd = _torchvision_state_dict()
    path = tmp_path / "regnet.pth"
    torch.save(sd, path)
    _assert_loaded(RegNetX400MF(weights=str(path)), sd)
    # {"model": ...} with a DDP "module." prefix, one key missing, one unknown: both logged by name.
    wrapped = {"module." + k: v for k, v in sd.items() if k != "trunk_output.block4.block4-0.proj.0.weight"}
    wrapped["module.extra.weight"] = torch.zeros(1)
    torch.save({"model": wrapped}, tmp_path / "wrapped.pth")
    with caplog.at_level(logging.WARNING, logger="detkit.modeling.backbone.weights"):
        model = RegNetX400MF(weights=str(tmp_path / "wrapped.pth"), freeze_at=2)  # frozen BN loads too
    assert "trunk_output.block4.block4-0.proj.0.weight" in caplog.text and "module.extra.weight" in caplog.text
    assert "fc.weight" not in caplog.text
    assert torch.equal(model.stem[1].running_var, sd["stem.1.running_var"])
    assert torch.equal(model.trunk_output.block3.state_dict()["block3-0.proj.0.weight"],
                       sd["trunk_output.block3.block3-0.proj.0.weight"])


def test_weights_by_torchvision_name_from_hub_cache(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    sd = _torchvision_state_dict()
    ckpt_dir = tmp_path / "hub" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    torch.save(sd, ckpt_dir / "regnet_x_400mf-62229a5f.pth")  # the file of IMAGENET1K_V2's URL
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.WEIGHTS = "RegNet_X_400MF_Weights.IMAGENET1K_V2"
    _assert_loaded(build_backbone(cfg), sd)


def test_weights_offline_error_names_url_and_path(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = "https://example.com/models/trunk-1234.pth"
    with pytest.raises(RuntimeError) as e:
        load_backbone_weights(RegNetX400MF(), url)
    msg = str(e.value)
    assert url in msg and os.path.join(str(tmp_path), "hub", "checkpoints", "trunk-1234.pth") in msg
    with pytest.raises(RuntimeError, match="regnet_x_400mf-62229a5f.pth"):
        load_backbone_weights(RegNetX400MF(), "RegNet_X_400MF_Weights.IMAGENET1K_V2")


def test_weights_bad_specs(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_backbone_weights(RegNetX400MF(), str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="RegNet_X_400MF_Weights.IMAGENET9K"):
        load_backbone_weights(RegNetX400MF(), "RegNet_X_400MF_Weights.IMAGENET9K")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="list.pth holds neither a state dict"):
        load_backbone_weights(RegNetX400MF(), str(tmp_path / "list.pth"))
