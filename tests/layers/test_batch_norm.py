"""Tests for detkit.layers.batch_norm: norms by name, GN group choice, converting BN to frozen BN, folding BN."""
import pytest
import torch
from torch import nn

from detkit.layers import (FrozenBatchNorm2d, convert_frozen_batchnorm, fold_batch_norms, get_norm, get_norm_layer,
                           group_norm_groups)


def test_get_norm_by_name():
    assert get_norm("", 8) is None and get_norm(None, 8) is None
    assert type(get_norm("BN", 8)) is nn.BatchNorm2d and get_norm("BN", 8).num_features == 8
    assert type(get_norm("SyncBN", 8)) is nn.SyncBatchNorm
    assert isinstance(get_norm("FrozenBN", 8), FrozenBatchNorm2d)
    gn = get_norm("GN", 64)
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 32 and gn.num_channels == 64
    assert isinstance(get_norm(lambda c: nn.LayerNorm(c), 4), nn.LayerNorm)
    with pytest.raises(ValueError, match=r"Unknown norm 'LN'.*'GN'"):
        get_norm("LN", 8)


@pytest.mark.parametrize("channels, groups", [(64, 32), (160, 32), (400, 25), (48, 24), (16, 16), (7, 7)])
def test_group_norm_groups(channels, groups):
    # 32 when it divides; else the largest divisor below 32: 400 = 25 * 16, 48 = 24 * 2; fewer channels -> one each.
    assert group_norm_groups(channels) == groups


def test_get_norm_layer_factory():
    assert isinstance(get_norm_layer("")(8), nn.Identity)
    assert get_norm_layer("GN")(64).num_groups == 32
    with pytest.raises(ValueError, match="Unknown norm"):
        get_norm_layer("bn")


def test_convert_frozen_batchnorm_keeps_statistics():
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1., 2., 3.]))
        bn.bias.copy_(torch.tensor([0.5, 0., -1.]))
        bn.running_mean.copy_(torch.tensor([1., 1., 1.]))
        bn.running_var.copy_(torch.tensor([4., 1., 0.25]))
    model = nn.Sequential(nn.Conv2d(3, 3, 1), bn)
    model = convert_frozen_batchnorm(model)
    frozen = model[1]
    assert isinstance(frozen, FrozenBatchNorm2d)
    assert torch.equal(frozen.running_var, torch.tensor([4., 1., 0.25]))
    # y = (x - mean) / sqrt(var + eps) * w + b; x = 3 -> (2/2)*1+0.5 = 1.5, (2/1)*2+0 = 4, (2/0.5)*3-1 = 11.
    x = torch.full((1, 3, 1, 1), 3.0)
    torch.testing.assert_close(frozen(x).flatten(), torch.tensor([1.5, 4.0, 11.0]), rtol=1e-4, atol=1e-4)
    assert isinstance(convert_frozen_batchnorm(nn.BatchNorm2d(2)), FrozenBatchNorm2d)


def test_frozen_batchnorm_classmethod_converts_in_place():
    bn = nn.BatchNorm2d(2, eps=0.0)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2., 1.]))
        bn.bias.copy_(torch.tensor([1., -1.]))
        bn.running_mean.copy_(torch.tensor([1., 0.]))
        bn.running_var.copy_(torch.tensor([4., 1.]))
    model = nn.Sequential(nn.Sequential(nn.Conv2d(2, 2, 1), bn), nn.ReLU())
    out = FrozenBatchNorm2d.convert_frozen_batchnorm(model)
    assert out is model  # a container is converted in place
    frozen = model[0][1]
    assert type(frozen) is FrozenBatchNorm2d and frozen.eps == 0.0
    # y = (x - mean) / sqrt(var) * w + b; x = 5: (4 / 2) * 2 + 1 = 5 and (5 / 1) * 1 - 1 = 4.
    assert frozen(torch.full((1, 2, 1, 1), 5.0)).flatten().tolist() == [5.0, 4.0]
    assert sum(p.numel() for p in frozen.parameters()) == 0  # nothing left to train
    assert set(frozen.state_dict()) == {"weight", "bias", "running_mean", "running_var"}
    # A batch norm itself gives a new module; anything else comes back unchanged.
    assert type(FrozenBatchNorm2d.convert_frozen_batchnorm(nn.SyncBatchNorm(3))) is FrozenBatchNorm2d
    relu = nn.ReLU()
    assert FrozenBatchNorm2d.convert_frozen_batchnorm(relu) is relu


def _conv_bn(norm: nn.Module) -> nn.Sequential:
    """1x1 conv (weight 2, bias 1) -> ``norm`` with mean 1, var 4, weight 3, bias 0.5, eps 0: the whole
    block is y = ((2x + 1) - 1) / 2 * 3 + 0.5 = 3x + 0.5."""
    conv = nn.Conv2d(1, 1, 1)
    norm.eps = 0.0
    with torch.no_grad():
        conv.weight.fill_(2.0)
        conv.bias.fill_(1.0)
        norm.running_mean.fill_(1.0)
        norm.running_var.fill_(4.0)
        norm.weight.fill_(3.0)
        norm.bias.fill_(0.5)
    return nn.Sequential(conv, norm, nn.ReLU())


@pytest.mark.parametrize("norm", [nn.BatchNorm2d(1), FrozenBatchNorm2d(1)])
def test_fold_batch_norms_exact_weights(norm):
    block = _conv_bn(norm).eval()
    folded = fold_batch_norms(block)
    convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 and not any(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) for m in folded.modules())
    assert convs[0].weight.item() == 3.0 and convs[0].bias.item() == 0.5
    x = torch.tensor([-1.0, 0.0, 2.0]).view(1, 1, 1, 3)
    assert folded(x).flatten().tolist() == [0.0, 0.5, 6.5]
    # the original is untouched: still a conv and its batch norm, with their own weights
    assert isinstance(block[1], type(norm)) and block[0].weight.item() == 2.0


def test_fold_batch_norms_without_batch_norm_returns_module():
    block = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4)).eval()
    assert fold_batch_norms(block) is block


def test_fold_batch_norms_refuses_training_mode():
    block = _conv_bn(nn.BatchNorm2d(1))
    with pytest.raises(ValueError,
                       match=r"fold_batch_norms needs the batch norms of Sequential in eval mode.*\.eval\(\)"):
        fold_batch_norms(block)
