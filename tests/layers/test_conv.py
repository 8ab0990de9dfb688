"""Tests for detkit.layers.conv: Conv2d with norm / activation and conv_norm_act."""
import torch
import torch.nn.functional as F
from torch import nn

from detkit.layers import Conv2d, conv_norm_act


def test_conv2d_applies_norm_then_activation():
    conv = Conv2d(1, 1, 1, bias=False, norm=nn.Identity(), activation=F.relu)
    with torch.no_grad():
        conv.weight.fill_(-2.0)
    x = torch.tensor([[[[1.0, -1.0]]]])
    # -2 * x = (-2, 2) -> relu -> (0, 2)
    assert conv(x).flatten().tolist() == [0.0, 2.0]


def test_conv_norm_act_bias_only_without_norm_and_same_padding():
    plain = conv_norm_act(4, 8, kernel_size=3)
    assert plain.bias is not None and plain.norm is None and plain.padding == (1, 1)
    gn = conv_norm_act(4, 8, kernel_size=3, stride=2, norm="GN", activation=F.relu)
    assert gn.bias is None and isinstance(gn.norm, nn.GroupNorm) and gn.norm.num_groups == 8
    assert gn(torch.randn(2, 4, 9, 9)).shape == (2, 8, 5, 5)


def test_caffe2_fills():
    from detkit.layers import c2_msra_fill, c2_xavier_fill

    conv = nn.Conv2d(4, 8, 3)
    c2_xavier_fill(conv)
    # kaiming_uniform(a=1): bound = sqrt(6 / ((1 + 1) * fan_in)) = sqrt(3 / 36) with fan_in = 4 * 3 * 3.
    assert conv.weight.abs().max() <= (3 / 36) ** 0.5 and conv.bias.abs().sum() == 0
    c2_msra_fill(conv)
    assert conv.bias.abs().sum() == 0 and conv.weight.std() > 0
