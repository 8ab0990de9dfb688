"""Side-by-side CPU speed of an exported detector: ONNX Runtime, detkit eager and torchvision eager.

Every runner takes the same original images and does the same work per image: the test-time
resize (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``), the network, post-processing and rescaling
to the original image. They run interleaved (``detkit.benchmark.timing.time_interleaved``) with
the same number of intra-op threads. torchvision's twin (``detkit.benchmark.twins``) has random
weights: it times the same architecture, not the trained model.
"""
import logging
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from detkit.benchmark.timing import time_interleaved

from .predictor import ONNXPredictor

__all__ = ["onnx_speed", "format_speed"]

logger = logging.getLogger(__name__)


def _resized_runner(model, aug) -> Callable[[np.ndarray], object]:
    """image -> outputs of a model with detkit's call convention, after the test resize ``aug``."""

    def run(image: np.ndarray):
        with torch.inference_mode():
            resized = aug.get_transform(image).apply_image(image)
            tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
            return model([{"image": tensor, "height": image.shape[0], "width": image.shape[1]}])[0]

    return run


def _runners(cfg, onnx_path: str, threads: int) -> Tuple[Dict[str, Callable], Dict[str, str]]:
    from detkit.benchmark.twins import build_torchvision_twin
    from detkit.engine import DefaultPredictor
    from detkit.utils.env import autocast_dtype

    runners, skipped = {}, {}
    onnx = ONNXPredictor(onnx_path, num_threads=threads)
    runners[f"onnxruntime {onnx.precision}"] = onnx
    fp32 = cfg.clone()
    fp32.defrost()
    fp32.MODEL.DEVICE = "cpu"
    fp32.TEST.AMP.ENABLED = False
    runners["detkit eager fp32"] = DefaultPredictor(fp32)
    dtype = autocast_dtype("cpu", "TEST.AMP.ENABLED")
    if cfg.TEST.AMP.ENABLED and dtype is not None:
        amp = fp32.clone()
        amp.TEST.AMP.ENABLED = True
        runners[f"detkit eager {str(dtype).replace('torch.', '')} (TEST.AMP)"] = DefaultPredictor(amp)
    try:
        twin = build_torchvision_twin(fp32).eval()
        runners["torchvision eager fp32"] = _resized_runner(twin, onnx.aug)
    except (ValueError, KeyError) as e:
        skipped["torchvision eager fp32"] = str(e)
    return runners, skipped


def onnx_speed(cfg, onnx_path: str, images: Sequence[np.ndarray], threads: int = 1, warmup: int = 2,
               iters: int = 5) -> Tuple[Dict[str, float], Dict[str, str]]:
    """Milliseconds per image of each runner on ``images`` (each call runs them all).

    Args:
        cfg: the config the model was exported from (``MODEL.WEIGHTS`` for detkit eager).
        onnx_path: the exported ``model.onnx``.
        images: (H, W, C) uint8 arrays in ``INPUT.FORMAT``.
        threads: intra-op threads of torch and onnxruntime alike.
        warmup, iters: passes over ``images`` before timing, and timed passes (median taken).

    Returns:
        {runner: ms per image} and {runner left out: why}.
    """
    if not images:
        raise ValueError("onnx_speed needs at least one image.")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        runners, skipped = _runners(cfg, onnx_path, threads)

        fns = {name: (lambda fn=fn: [fn(im) for im in images]) for name, fn in runners.items()}
        seconds = time_interleaved(fns, warmup, iters)
    finally:
        torch.set_num_threads(previous)
    return {name: 1000.0 * s / len(images) for name, s in seconds.items()}, skipped


def format_speed(ms: Dict[str, float], skipped: Optional[Dict[str, str]] = None,
                 reference: Optional[str] = None) -> str:
    """A text table: runner, ms/img, and its time over ``reference``'s (``x`` > 1: slower than it);
    the reference is the first runner (ONNX Runtime's, in ``onnx_speed``) unless named."""
    reference = reference or next(iter(ms), "")
    base = ms.get(reference)
    width = max(len(n) for n in list(ms) + list(skipped or {}))
    lines: List[str] = [f"{'runner':<{width}}  {'ms/img':>8}  {'vs ' + reference:>8}"]
    for name, value in ms.items():
        ratio = f"{value / base:.2f}x" if base else "-"
        lines.append(f"{name:<{width}}  {value:8.1f}  {ratio:>8}")
    for name, why in (skipped or {}).items():
        lines.append(f"{name:<{width}}  skipped: {why}")
    return "\n".join(lines)
