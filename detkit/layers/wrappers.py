"""Small helpers: ``cat`` and ``nonzero_tuple`` under detectron2's names; ``state_version`` and
``is_plain_inference`` for the inference-only copies of a model's parts."""
from typing import Sequence, Tuple

import torch
from torch import nn

__all__ = ["cat", "nonzero_tuple", "state_version", "is_graph_capture", "is_plain_inference"]


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


def state_version(module: nn.Module) -> tuple:
    """A value that changes whenever a parameter or buffer of ``module`` is replaced, moved or updated
    in place (an optimizer step, ``load_state_dict``, ``.to()``): the key of caches derived from the
    weights, such as folded or compiled inference copies."""
    tensors = list(module.parameters()) + list(module.buffers())
    return tuple((t.data_ptr(), t.dtype, t.device, None if t.is_inference() else t._version) for t in tensors)


def is_graph_capture() -> bool:
    """True while torch records a graph instead of running one: ``torch.jit.trace``, ``torch.compile``,
    ``torch.export`` and ONNX export. Eager-only kernels (sparse matrices, thread pools, cached
    copies) step aside then for the plain torch / torchvision ops those tools know."""
    # torch.compiler's is_compiling and is_exporting are newer than the oldest torch that setup.py allows
    compiling = getattr(torch.compiler, "is_compiling", bool)()
    exporting = getattr(torch.compiler, "is_exporting", bool)()
    return torch.jit.is_tracing() or compiling or exporting or torch.onnx.is_in_onnx_export()


def is_plain_inference(module: nn.Module) -> bool:
    """True when ``module`` runs in eval mode without autograd (``torch.no_grad`` or
    ``torch.inference_mode``), outside graph capture (``is_graph_capture``): the calls an
    inference-only copy of its weights (folded or compiled) may serve."""
    return not module.training and not torch.is_grad_enabled() and not is_graph_capture()
