"""Normalisation layers by name: "", "BN", "SyncBN", "FrozenBN", "GN"; freezing BN in place, and
folding it into the convolutions for inference."""
import copy
import functools
from typing import Callable, Optional, Union

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse as fx_fuse_conv_bn
from torchvision.ops import misc as tv_misc

__all__ = ["FrozenBatchNorm2d", "get_norm", "get_norm_layer", "convert_frozen_batchnorm", "group_norm_groups",
           "fold_batch_norms"]

NORM_NAMES = ("", "BN", "SyncBN", "FrozenBN", "GN")


def group_norm_groups(num_channels: int, max_groups: int = 32) -> int:
    """The largest number of groups <= ``max_groups`` that divides ``num_channels`` (32 when it can)."""
    for groups in range(min(max_groups, num_channels), 0, -1):
        if num_channels % groups == 0:
            return groups
    raise ValueError(f"GroupNorm needs at least one channel, got {num_channels}.")


def get_norm(norm: Union[str, Callable[[int], nn.Module], None], out_channels: int) -> Optional[nn.Module]:
    """Build the normalisation layer named ``norm`` for ``out_channels`` channels.

    Args:
        norm: "" (none), "BN", "SyncBN", "FrozenBN", "GN" (32 groups, or the largest divisor of
            the channels below 32), or a callable ``f(channels) -> nn.Module``.
        out_channels: channels of the normalised feature map.

    Returns:
        The module, or None for "" / None.
    """
    if norm is None or norm == "":
        return None
    if callable(norm):
        return norm(out_channels)
    if norm == "BN":
        return nn.BatchNorm2d(out_channels)
    if norm == "SyncBN":
        return nn.SyncBatchNorm(out_channels)
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(out_channels)
    if norm == "GN":
        return nn.GroupNorm(group_norm_groups(out_channels), out_channels)
    raise ValueError(f"Unknown norm {norm!r}; use one of {', '.join(repr(n) for n in NORM_NAMES)} "
                     "(MODEL.BACKBONE.NORM, MODEL.FPN.NORM, MODEL.FCOS.HEAD_NORM).")


def get_norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """A ``norm_layer(channels)`` factory for torchvision models; "" gives ``nn.Identity``."""
    if norm == "":
        return lambda channels: nn.Identity()
    get_norm(norm, 32)  # validate the name now, not deep inside a torchvision constructor
    return functools.partial(get_norm, norm)


class FrozenBatchNorm2d(tv_misc.FrozenBatchNorm2d):
    """BatchNorm2d with fixed statistics and affine parameters (buffers ``weight``, ``bias``,
    ``running_mean``, ``running_var``): ``y = (x - mean) / sqrt(var + eps) * weight + bias``.

    torchvision's layer (same buffers, same state dicts), with detectron2's
    ``FrozenBatchNorm2d.convert_frozen_batchnorm``.
    """

    @classmethod
    def convert_frozen_batchnorm(cls, module: nn.Module) -> nn.Module:
        """Replace every BatchNorm2d / SyncBatchNorm in ``module`` by a FrozenBatchNorm2d with its statistics.

        Args:
            module: converted in place (children); if it is itself a batch norm, a new module is returned.

        Returns:
            The converted module.
        """
        if isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)):
            ref = module.weight if module.affine else module.running_mean
            frozen = cls(module.num_features, eps=module.eps)
            if ref is not None:
                frozen = frozen.to(ref.device)  # stays where the batch norm was
            with torch.no_grad():
                if module.affine:
                    frozen.weight.copy_(module.weight.detach())
                    frozen.bias.copy_(module.bias.detach())
                if module.track_running_stats:
                    frozen.running_mean.copy_(module.running_mean)
                    frozen.running_var.copy_(module.running_var)
            return frozen
        for name, child in module.named_children():
            new_child = cls.convert_frozen_batchnorm(child)
            if new_child is not child:
                setattr(module, name, new_child)
        return module


def convert_frozen_batchnorm(module: nn.Module) -> nn.Module:
    """Same as ``FrozenBatchNorm2d.convert_frozen_batchnorm(module)``."""
    return FrozenBatchNorm2d.convert_frozen_batchnorm(module)


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """An inference copy of ``module`` with every batch norm that directly follows a convolution
    folded into that convolution's weight and bias (``torch.fx``'s conv-BN fusion).

    Eval-mode ``BatchNorm2d`` and ``FrozenBatchNorm2d`` are both affine maps of their input, so the
    copy computes the same function (up to float rounding) with one pass over each feature map fewer.
    ``module`` itself is left as it is.

    Args:
        module: in eval mode, and traceable by ``torch.fx.symbolic_trace`` (torchvision's trunks are).

    Returns:
        The folded copy (a ``torch.fx.GraphModule``), or ``module`` itself when it has no batch norm.
    """
    norms = [m for m in module.modules() if isinstance(m, (nn.BatchNorm2d, tv_misc.FrozenBatchNorm2d))]
    if not norms:
        return module
    if any(m.training for m in norms):
        raise ValueError(f"fold_batch_norms needs the batch norms of {type(module).__name__} in eval mode: in "
                         "training they use the batch's statistics, which no fixed weight can fold. "
                         "Call .eval() first.")
    folded = copy.deepcopy(module)
    _thaw_frozen_batchnorm(folded)
    return fx_fuse_conv_bn(folded, inplace=True)


def _thaw_frozen_batchnorm(module: nn.Module) -> None:
    """Replace each FrozenBatchNorm2d in ``module`` by an eval-mode BatchNorm2d with the same statistics
    and affine parameters (the same function), so that torch's conv-BN fusion recognises it."""
    for name, child in module.named_children():
        if isinstance(child, tv_misc.FrozenBatchNorm2d):
            bn = nn.BatchNorm2d(child.weight.numel(), eps=child.eps).to(child.weight.device).eval()
            with torch.no_grad():
                bn.weight.copy_(child.weight)
                bn.bias.copy_(child.bias)
                bn.running_mean.copy_(child.running_mean)
                bn.running_var.copy_(child.running_var)
            setattr(module, name, bn)
        else:
            _thaw_frozen_batchnorm(child)
