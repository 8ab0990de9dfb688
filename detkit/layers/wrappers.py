"""Small tensor helpers under detectron2's names: ``cat`` and ``nonzero_tuple``."""
from typing import Sequence, Tuple

import torch

__all__ = ["cat", "nonzero_tuple"]


def cat(tensors: Sequence[torch.Tensor], dim: int = 0) -> torch.Tensor:
    """``torch.cat`` that returns a single tensor itself (no copy).

    Args:
        tensors: a list or tuple of tensors.
        dim: the dimension to concatenate along.

    Returns:
        ``tensors[0]`` when there is one tensor, else ``torch.cat(tensors, dim)``.
    """
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"cat takes a list or tuple of tensors, got {type(tensors).__name__}.")
    if len(tensors) == 1:
        return tensors[0]
    return torch.cat(list(tensors), dim)


def nonzero_tuple(x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """``x.nonzero(as_tuple=True)``: one (K,) int64 index tensor per dimension of ``x``."""
    return x.nonzero(as_tuple=True)
