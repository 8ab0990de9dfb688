"""Side-by-side speed of a detkit detector and torchvision's twin, through the engine's train loop.

Both models take the same inputs (synthetic images with filled rectangles), the same thread count
and the same timers in one process. Training steps run through ``create_train_loop``
(``SimpleTrainer`` or ``AMPTrainer``, as ``SOLVER.AMP.ENABLED`` says) with ``build_optimizer``;
inference calls the model in eval mode under ``torch.inference_mode``. Precision modes:

* ``default``: detkit as its config says (MODEL.CHANNELS_LAST, SOLVER.AMP, TEST.AMP) against
  torchvision's fp32 default;
* ``matched``: torchvision also runs under detkit's autocast settings (same precision);
* ``fp32``: both fp32 (detkit's AMP keys off; channels_last kept as configured).
"""
import itertools
import json
import os
import subprocess
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from detkit.engine import hooks
from detkit.engine.trainer import create_train_loop
from detkit.modeling import build_model
from detkit.solver import build_lr_scheduler, build_optimizer
from detkit.structures import Boxes, Instances
from detkit.utils.env import autocast_dtype
from detkit.utils.events import EventStorage

from .timing import count_nms_inputs, time_interleaved
from .twins import build_torchvision_twin

__all__ = ["SIDES", "MODES", "side_cfg", "build_side", "make_inputs", "train_step_fn", "infer_fn", "pretrain",
           "measure", "compare_speed", "describe_mode", "format_table", "scaling"]

SIDES = ("detkit", "torchvision")
MODES = ("default", "matched", "fp32")
_AMP_OFF = ["SOLVER.AMP.ENABLED", "False", "TEST.AMP.ENABLED", "False"]


def side_cfg(cfg, side: str, mode: str):
    """The config ``side`` runs under in precision ``mode`` (see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"Unknown mode '{mode}'; use some of {MODES}.")
    out = cfg.clone()
    out.defrost()
    if mode == "fp32" or (side == "torchvision" and mode == "default"):
        out.merge_from_list(_AMP_OFF)
    if side == "torchvision":
        out.MODEL.CHANNELS_LAST = False
    out.freeze()
    return out


def build_side(cfg, side: str, seed: int = 0) -> nn.Module:
    """detkit's model of ``cfg`` or torchvision's twin, initialised from ``seed``."""
    torch.manual_seed(seed)
    return build_model(cfg) if side == "detkit" else build_torchvision_twin(cfg)


def make_inputs(num_images: int, image_size: int, seed: int = 0, num_objects: Optional[int] = None,
                device="cpu") -> List[Dict]:
    """Deterministic training inputs (the model's input dicts) with filled rectangles as 1-class objects.

    Args:
        num_objects: rectangles per image; None draws 3-7 per image.
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num_images):
        image = (torch.rand(3, image_size, image_size, generator=g) * 60 + 90).to(torch.uint8)
        n = int(torch.randint(3, 8, (1,), generator=g)) if num_objects is None else num_objects
        wh = torch.randint(16, max(17, image_size // 2), (n, 2), generator=g)
        xy = (torch.rand(n, 2, generator=g) * (image_size - wh)).long()
        boxes = torch.cat([xy, xy + wh], 1)  # (n, 4) XYXY
        for (x0, y0, x1, y1) in boxes.tolist():
            image[:, y0:y1, x0:x1] = torch.randint(0, 256, (3, 1, 1), generator=g).to(torch.uint8)
        instances = Instances((image_size, image_size), gt_boxes=Boxes(boxes.float().to(device)),
                              gt_classes=torch.zeros(n, dtype=torch.int64, device=device))
        out.append({"image": image.to(device), "height": image_size, "width": image_size, "instances": instances})
    return out


def train_step_fn(cfg, model: nn.Module, batch: List[Dict]) -> Callable[[], Dict[str, float]]:
    """A closure running one step of the engine's train loop for ``cfg`` (forward, backward, update)
    on ``batch``; it returns the step's losses.

    The optimizer is ``cfg``'s with SOLVER.BASE_LR 0.001 and no schedule: the learning rate doesn't
    change a step's work, and a small one keeps a dozen steps on the same batch finite (Base-RCNN-FPN's
    0.02 without warm-up diverges within them).
    """
    cfg = cfg.clone()
    cfg.defrost()
    cfg.SOLVER.BASE_LR = 0.001
    loop = create_train_loop(cfg, model, itertools.repeat(batch), build_optimizer(cfg, model))
    losses: Dict[str, float] = {}

    def step():
        model.train()
        with EventStorage() as storage:
            loop.run_step()
            losses.update({k: v[0] for k, v in storage.latest().items() if k not in ("data_time", "total_loss")})
        return dict(losses)
    return step


def infer_fn(model: nn.Module, batch: List[Dict]) -> Callable[[], List[Dict]]:
    """A closure running inference on ``batch`` (eval mode, ``torch.inference_mode``)."""
    def run():
        model.eval()
        with torch.inference_mode():
            return model(batch)
    return run


def pretrain(cfg, model: nn.Module, samples: List[Dict], iters: int, batch_size: int = 4) -> None:
    """Train ``model`` ``iters`` steps over ``samples`` in order, through the engine's loop with
    ``cfg``'s precision: SGD 0.01, linear warm-up over a quarter of the steps, gradient norm clipped at 10."""
    if iters <= 0:
        return
    cfg = cfg.clone()
    cfg.defrost()
    cfg.merge_from_list(["SOLVER.OPTIMIZER", "SGD", "SOLVER.BASE_LR", "0.01", "SOLVER.MOMENTUM", "0.9",
                         "SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS",
                         str(max(1, iters // 4)), "SOLVER.WARMUP_FACTOR", "0.001",
                         "SOLVER.LR_SCHEDULER_NAME", "WarmupMultiStepLR", "SOLVER.CLIP_GRADIENTS.ENABLED", "True",
                         "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "norm", "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", "10.0"])
    batches = itertools.cycle([[samples[(i + k) % len(samples)] for k in range(batch_size)]
                               for i in range(0, len(samples), batch_size)])
    optimizer = build_optimizer(cfg, model)
    loop = create_train_loop(cfg, model, batches, optimizer)
    loop.register_hooks([hooks.LRScheduler(optimizer, build_lr_scheduler(cfg, optimizer))])
    loop.train(0, iters)


def measure(cfg, mode: str, *, warmup: int = 2, iters: int = 10, image_size: int = 400, pretrain_iters: int = 0,
            seed: int = 0) -> Dict[str, Dict[str, object]]:
    """Time both models in ``mode``: inference ms/img at batch 1 and 4, the boxes entering NMS, the training step.

    Both models are built first; every figure is then timed with the two sides' calls interleaved.

    Returns:
        {side: {"infer_b1_ms", "infer_b4_ms" (per image), "train_s" (per iteration of 4 images),
        "nms_boxes" (boxes of each batched_nms call on the first image), "losses" (last step)}}.
    """
    samples = make_inputs(4, image_size, seed=seed + 1)
    cfgs = {side: side_cfg(cfg, side, mode) for side in SIDES}
    models = {}
    for side in SIDES:
        models[side] = build_side(cfgs[side], side, seed)
        pretrain(cfgs[side], models[side], make_inputs(16, image_size, seed=seed + 2), pretrain_iters)
    out: Dict[str, Dict[str, object]] = {side: {} for side in SIDES}
    for key, batch in (("infer_b1_ms", samples[:1]), ("infer_b4_ms", samples)):
        runs = {side: infer_fn(models[side], batch) for side in SIDES}
        for side, seconds in time_interleaved(runs, warmup, iters).items():
            out[side][key] = 1000.0 * seconds / len(batch)
    for side in SIDES:
        with count_nms_inputs() as counts:
            infer_fn(models[side], samples[:1])()
        out[side]["nms_boxes"] = list(counts)
    steps = {side: train_step_fn(cfgs[side], models[side], samples) for side in SIDES}
    for side, seconds in time_interleaved(steps, warmup, iters).items():
        out[side]["train_s"] = seconds
        out[side]["losses"] = steps[side]()
    return out


def _peak_rss_mb(cfg, side: str, phase: str, mode: str, *, image_size: int, warmup: int, iters: int,
                 threads: int) -> float:
    """Peak RSS (MiB) of a fresh subprocess that builds ``side``'s model and runs ``phase`` (train / infer)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(cfg.dump())
        path = f.name
    try:
        cmd = [sys.executable, "-m", "detkit.benchmark.memory", path, side, phase, mode, str(image_size),
               str(warmup), str(iters), str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"memory worker {side}:{phase} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return float(json.loads(proc.stdout.strip().splitlines()[-1])["maxrss_mb"])
    finally:
        os.unlink(path)


def compare_speed(cfg, *, modes: Sequence[str] = ("default", "matched"), warmup: int = 2, iters: int = 10,
            image_size: int = 400, threads: int = 2, memory: bool = True, pretrain_iters: int = 0,
            seed: int = 0) -> Dict[str, Dict[str, Dict[str, object]]]:
    """Measure detkit (built from ``cfg``) and torchvision's twin in every precision ``mode``.

    Returns:
        {mode: {"detkit": figures, "torchvision": figures}}, figures as :func:`measure` gives
        them plus "rss_train_mb" / "rss_infer_mb" when ``memory``.
    """
    torch.set_num_threads(threads)
    results: Dict[str, Dict[str, Dict[str, object]]] = {}
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"Unknown mode '{mode}'; use some of {MODES}.")
        results[mode] = measure(cfg, mode, warmup=warmup, iters=iters, image_size=image_size,
                                pretrain_iters=pretrain_iters, seed=seed)
        if memory:
            for side in SIDES:
                for phase in ("train", "infer"):
                    results[mode][side][f"rss_{phase}_mb"] = _peak_rss_mb(
                        cfg, side, phase, mode, image_size=image_size, warmup=1, iters=2, threads=threads)
    return results


def describe_mode(cfg, mode: str) -> str:
    """A one-line description of what each side runs in ``mode``."""
    onoff = {True: "on", False: "off"}
    parts = []
    for side in SIDES:
        c = side_cfg(cfg, side, mode)
        parts.append(f"{side} channels_last={onoff[bool(c.MODEL.CHANNELS_LAST)]}, train autocast "
                     f"{onoff[bool(c.SOLVER.AMP.ENABLED)]}, inference autocast {onoff[bool(c.TEST.AMP.ENABLED)]}")
    dtype = autocast_dtype(torch.device(cfg.MODEL.DEVICE).type)
    what = f"autocast = {str(dtype).replace('torch.', '')}" if dtype else "no native bf16 here: autocast runs float32"
    return f"mode {mode}: " + "; ".join(parts) + f" ({what})"


def format_table(results: Dict[str, Dict[str, Dict[str, object]]]) -> str:
    """One table per mode: each figure for detkit, torchvision, and detkit / torchvision."""
    from tabulate import tabulate

    rows_spec = [("training step, batch 4 (s/iter)", "train_s", "{:.3f}"),
                 ("inference, batch 1 (ms/img)", "infer_b1_ms", "{:.1f}"),
                 ("inference, batch 4 (ms/img)", "infer_b4_ms", "{:.1f}"),
                 ("peak RSS, training (MiB)", "rss_train_mb", "{:.0f}"),
                 ("peak RSS, inference (MiB)", "rss_infer_mb", "{:.0f}")]
    parts = []
    for mode, sides in results.items():
        d, t = sides["detkit"], sides["torchvision"]
        rows = []
        for label, key, fmt in rows_spec:
            if key in d and key in t:
                rows.append([label, fmt.format(d[key]), fmt.format(t[key]), f"{d[key] / t[key]:.2f}"])
        rows.append(["boxes entering NMS, 1 image (per call)", "+".join(map(str, d["nms_boxes"])) or "0",
                     "+".join(map(str, t["nms_boxes"])) or "0", ""])
        parts.append(f"[{mode}]\n" + tabulate(rows, headers=["", "detkit", "torchvision", "detkit/torchvision"],
                                              tablefmt="github", disable_numparse=True))
    return "\n\n".join(parts)


def scaling(cfg, *, sizes: Sequence[int] = (320, 512, 800), objects: Sequence[int] = (1, 10, 50), warmup: int = 1,
            iters: int = 3, threads: int = 2, pretrain_iters: int = 0, seed: int = 0) -> str:
    """Inference ms/img (batch 1, default mode) against image size and objects per image, both models.

    With ``pretrain_iters``, each side is trained once, at the smallest size, and those weights are
    used at every size (only torchvision's resize setting depends on the size).
    """
    from tabulate import tabulate

    torch.set_num_threads(threads)

    def at_size(c, size):
        c = c.clone()
        c.defrost()
        c.merge_from_list(["INPUT.MIN_SIZE_TEST", str(size), "INPUT.MAX_SIZE_TEST", str(size)])
        c.freeze()
        return c

    cfgs = {side: side_cfg(cfg, side, "default") for side in SIDES}
    weights = {}
    for side in SIDES:
        model = build_side(at_size(cfgs[side], min(sizes)), side, seed)
        pretrain(cfgs[side], model, make_inputs(16, min(sizes), seed=seed + 2), pretrain_iters)
        weights[side] = model.state_dict()
    rows = []
    for size in sizes:
        models = {}
        for side in SIDES:
            models[side] = build_side(at_size(cfgs[side], size), side, seed)
            models[side].load_state_dict(weights[side])
        for n in objects:
            samples = make_inputs(1, size, seed=seed + 3, num_objects=n)
            runs = {side: infer_fn(model, samples) for side, model in models.items()}
            ms = {side: 1000 * seconds for side, seconds in time_interleaved(runs, warmup, iters).items()}
            nms = {}
            for side, run in runs.items():
                with count_nms_inputs() as counts:
                    run()
                nms[side] = sum(counts)
            rows.append([size, n, f"{ms['detkit']:.1f}", f"{ms['torchvision']:.1f}",
                         f"{ms['detkit'] / ms['torchvision']:.2f}", nms["detkit"], nms["torchvision"]])
    return tabulate(rows, headers=["size", "objects", "detkit ms/img", "torchvision ms/img", "ratio",
                                   "detkit NMS boxes", "torchvision NMS boxes"], tablefmt="github",
                    disable_numparse=True)
