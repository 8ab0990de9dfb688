"""Conv2d with an optional norm and activation, and detectron2-style (Caffe2) weight init."""
from typing import Callable, Optional, Union

from torch import nn

from .batch_norm import get_norm

__all__ = ["Conv2d", "conv_norm_act", "c2_msra_fill", "c2_xavier_fill"]


# fvcore.nn has the same two initialisers, but importing fvcore.nn scripts a loss with torch.jit
# (slow, and deprecated in recent torch); they are two lines each.
def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2's "XavierFill": weights ~ kaiming_uniform(a=1), i.e. U(+-sqrt(3 / fan_in)); bias 0."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


def c2_msra_fill(module: nn.Module) -> None:
    """Caffe2's "MSRAFill": weights ~ kaiming_normal(fan_out, relu); bias 0."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` followed by an optional ``norm`` module and ``activation`` callable (detectron2's)."""

    def __init__(self, *args, norm: Optional[nn.Module] = None, activation: Optional[Callable] = None, **kwargs):
        """
        Args:
            args, kwargs: those of ``nn.Conv2d``.
            norm: a normalisation module applied after the convolution, or None.
            activation: a callable applied last, e.g. ``F.relu``, or None.
        """
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x):
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def conv_norm_act(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                  norm: Union[str, Callable, None] = "", activation: Optional[Callable] = None) -> Conv2d:
    """A same-padded ``Conv2d`` with norm by name; the conv has a bias only when there is no norm.

    Args:
        in_channels, out_channels, kernel_size, stride: of the convolution (padding kernel_size // 2).
        norm: a name for ``get_norm`` ("", "BN", "GN", ...).
        activation: applied after the norm, e.g. ``F.relu``.

    Returns:
        The ``Conv2d`` module.
    """
    norm_module = get_norm(norm, out_channels)
    return Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                  bias=norm_module is None, norm=norm_module, activation=activation)
