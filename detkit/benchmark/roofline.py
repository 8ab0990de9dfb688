"""The physical limit of a detector's inference on this machine: its FLOP count against the measured
throughput of a plain 3x3 convolution.

A detector at 400 px is almost all convolutions, so the fastest any implementation could run it is
its FLOP count divided by the rate this CPU reaches on one well-shaped convolution. The report gives
that rate (3x3, 128 channels in and out, 50x50, batch 1) in float32 and, where the CPU has native
bf16, in bfloat16, in both memory formats; then the model's fvcore FLOP count, its measured time per
image, and that time as a multiple of the ideal. FLOPs follow fvcore's convention throughout: one
multiply-add counts as one flop, for the model and for the probe convolution alike.
"""
import logging
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from tabulate import tabulate

from detkit.utils.env import autocast_dtype, describe_cpu_flags

from .timing import time_interleaved

__all__ = ["conv_flops", "conv_throughput", "roofline_report"]

logger = logging.getLogger(__name__)


def conv_flops(channels: int, size: int, kernel: int = 3, batch: int = 1) -> int:
    """Multiply-adds of a ``kernel`` x ``kernel`` convolution, ``channels`` -> ``channels``, on a
    ``size`` x ``size`` map with same padding (fvcore's count for it)."""
    return batch * channels * channels * kernel * kernel * size * size


def conv_throughput(dtype: torch.dtype = torch.float32, channels_last: bool = False, *, channels: int = 128,
                    size: int = 50, warmup: int = 5, iters: int = 30) -> float:
    """Measured GFLOP/s (fvcore flops) of one 3x3 ``channels``-channel convolution at ``size`` x ``size``.

    ``dtype`` float32 runs the convolution directly; bfloat16 runs it under CPU autocast, as detkit's
    mixed precision does.
    """
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(1, channels, size, size).contiguous(memory_format=fmt)
    w = torch.randn(channels, channels, 3, 3).contiguous(memory_format=fmt)
    b = torch.randn(channels)
    enabled = dtype != torch.float32

    def step():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            F.conv2d(x, w, b, padding=1)

    seconds = time_interleaved({"conv": step}, warmup, iters)["conv"]
    return conv_flops(channels, size) / seconds / 1e9


def _precisions() -> List[torch.dtype]:
    bf16 = autocast_dtype("cpu", "TEST.AMP") == torch.bfloat16
    return [torch.float32] + ([torch.bfloat16] if bf16 else [])


def roofline_report(model: torch.nn.Module, image: torch.Tensor, flops: float, *, iters: int = 10,
                    rates: Optional[Dict[str, float]] = None) -> str:
    """The conv-throughput table, then ``model``'s time on ``image`` against ``flops`` at the best rate.

    Args:
        model: a detector in eval mode, called as detkit calls it (at its own TEST.AMP precision).
        image: one (3, H, W) uint8 image.
        flops: the model's fvcore FLOP count on ``image``.
        iters: timed inference calls (the median is reported).
        rates: precomputed GFLOP/s per "<dtype> <format>" row; measured when None.
    """
    if rates is None:
        rates = {}
        for dtype in _precisions():
            for cl in (False, True):
                name = f"{str(dtype).replace('torch.', '')} {'channels_last' if cl else 'NCHW'}"
                rates[name] = conv_throughput(dtype, cl)
    h, w = int(image.shape[-2]), int(image.shape[-1])
    inputs = [{"image": image, "height": h, "width": w}]

    def infer():
        with torch.no_grad():
            model(inputs)

    seconds = time_interleaved({"model": infer}, 2, iters)["model"]
    best_name, best = max(rates.items(), key=lambda kv: kv[1])
    ideal = flops / 1e9 / best
    lines = [f"CPU flags: {describe_cpu_flags()}; torch threads: {torch.get_num_threads()}",
             tabulate([(name, f"{r:.1f}") for name, r in rates.items()],
                      headers=["3x3 conv, 128 ch, 50x50", "GFLOP/s"]),
             tabulate([("image", f"{h}x{w}"), ("fvcore GFLOPs", f"{flops / 1e9:.2f}"),
                       ("measured ms/img (median)", f"{seconds * 1e3:.1f}"),
                       (f"ideal ms/img at {best_name}", f"{ideal * 1e3:.1f}"),
                       ("measured / ideal", f"{seconds / ideal:.2f}")], headers=["inference", ""])]
    return "\n".join(lines)
