"""The two sides of a detkit-vs-torchvision comparison: matching models, shared inputs, one step each.

Used by ``tools/benchmark_compare.py`` (timing) and ``tools/accuracy_parity.py`` (AP).
"""
import contextlib
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import torch  # noqa: E402
from torch import nn  # noqa: E402

TORCHVISION_KIND = {"FCOS": "fcos", "GeneralizedRCNN": "faster_rcnn"}
MODES = ("default", "matched", "fp32")

# ---------------------------------------------------------------------------- torchvision side
class _RegNetFPN(nn.Module):
    """torchvision RegNetX-400MF trunk + FeaturePyramidNetwork on c3-c5, no extra levels."""

    def __init__(self, out_channels: int):
        super().__init__()
        from torchvision.models import regnet_x_400mf
        from torchvision.models.feature_extraction import create_feature_extractor
        from torchvision.ops import FeaturePyramidNetwork

        nodes = {"trunk_output.block2": "0", "trunk_output.block3": "1", "trunk_output.block4": "2"}
        self.body = create_feature_extractor(regnet_x_400mf(), nodes)
        self.fpn = FeaturePyramidNetwork([64, 160, 400], out_channels, extra_blocks=None)
        self.out_channels = out_channels

    def forward(self, x):
        return self.fpn(self.body(x))


def build_torchvision_model(kind: str, num_classes: int, image_size: int, fpn_channels: int) -> nn.Module:
    """torchvision's FCOS or FasterRCNN with detkit's reference architecture and torchvision's defaults.

    Args:
        kind: "fcos" or "faster_rcnn".
        num_classes: foreground classes (torchvision counts background too, so it gets +1).
        image_size: torchvision's transform resizes to min_size = max_size = this.
        fpn_channels: FPN output channels.
    """
    from torchvision.models.detection import FCOS, FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    backbone = _RegNetFPN(fpn_channels)
    common = dict(num_classes=num_classes + 1, min_size=image_size, max_size=image_size)
    if kind == "fcos":
        anchors = AnchorGenerator(sizes=((8,), (16,), (32,)), aspect_ratios=((1.0,),) * 3)
        return FCOS(backbone, anchor_generator=anchors, **common)
    anchors = AnchorGenerator(sizes=((32,), (64,), (128,)), aspect_ratios=((0.5, 1.0, 2.0),) * 3)
    pooler = MultiScaleRoIAlign(["0", "1", "2"], output_size=7, sampling_ratio=2)
    return FasterRCNN(backbone, rpn_anchor_generator=anchors, box_roi_pool=pooler, **common)


def torchvision_matching_overrides(kind: str) -> List[str]:
    """detkit config overrides that give torchvision's default post-processing settings."""
    if kind == "fcos":
        return ["MODEL.FCOS.SCORE_THRESH_TEST", "0.2", "MODEL.FCOS.NMS_THRESH_TEST", "0.6",
                "MODEL.FCOS.TOPK_CANDIDATES_TEST", "1000", "MODEL.FCOS.CENTER_SAMPLING_RADIUS", "1.5",
                "TEST.DETECTIONS_PER_IMAGE", "100"]
    return ["MODEL.RPN.PRE_NMS_TOPK_TRAIN", "2000", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "2000",
            "MODEL.RPN.PRE_NMS_TOPK_TEST", "1000", "MODEL.RPN.POST_NMS_TOPK_TEST", "1000",
            "MODEL.RPN.NMS_THRESH", "0.7", "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "256",
            "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "512", "MODEL.ROI_HEADS.POSITIVE_FRACTION", "0.25",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.05", "MODEL.ROI_HEADS.NMS_THRESH_TEST", "0.5",
            "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", "2", "TEST.DETECTIONS_PER_IMAGE", "100"]


def reference_overrides(kind: str, image_size: int) -> List[str]:
    """The shared architecture: 1 class, FPN 128 on p3-p5 without extra levels, random init."""
    out = ["MODEL.FPN.OUT_CHANNELS", "128", "MODEL.FPN.IN_FEATURES", "['c3', 'c4', 'c5']", "MODEL.FPN.TOP_BLOCK", "",
           "MODEL.BACKBONE.NAME", "RegNetX400MF", "MODEL.BACKBONE.WEIGHTS", "", "MODEL.WEIGHTS", "",
           "MODEL.BACKBONE.FREEZE_AT", "0", "MODEL.BACKBONE.NORM", "BN",
           "INPUT.MIN_SIZE_TEST", str(image_size), "INPUT.MAX_SIZE_TEST", str(image_size)]
    if kind == "fcos":
        return out + ["MODEL.FCOS.NUM_CLASSES", "1", "MODEL.FCOS.IN_FEATURES", "['p3', 'p4', 'p5']"]
    return out + ["MODEL.ROI_HEADS.NUM_CLASSES", "1", "MODEL.RPN.IN_FEATURES", "['p3', 'p4', 'p5']",
                  "MODEL.ROI_HEADS.IN_FEATURES", "['p3', 'p4', 'p5']"]


def setup_cfg(cfg_file: str, overrides: Sequence[str] = (), image_size: int = 400):
    """detkit's config for the comparison: ``cfg_file``, the shared architecture, torchvision's
    post-processing settings, then the user's ``overrides``."""
    from detkit.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(cfg_file)
    arch = cfg.MODEL.META_ARCHITECTURE
    if arch not in TORCHVISION_KIND:
        raise SystemExit(f"{cfg_file}: MODEL.META_ARCHITECTURE '{arch}' has no torchvision counterpart here; "
                         f"use one of {sorted(TORCHVISION_KIND)}.")
    kind = TORCHVISION_KIND[arch]
    cfg.merge_from_list(reference_overrides(kind, image_size) + torchvision_matching_overrides(kind) + list(overrides))
    return cfg


def mode_cfg(cfg, mode: str):
    """The config detkit runs under in ``mode`` (fp32 switches its AMP keys off)."""
    cfg = cfg.clone()
    if mode == "fp32":
        cfg.merge_from_list(["SOLVER.AMP.ENABLED", "False", "TEST.AMP.ENABLED", "False"])
    return cfg


# ---------------------------------------------------------------------------- shared inputs
def make_inputs(num_images: int, image_size: int, seed: int = 0, num_objects: Optional[int] = None
                ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """Deterministic (uint8 3xHxW image, (N, 4) XYXY boxes) pairs with filled rectangles.

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
        boxes = torch.cat([xy, xy + wh], 1)
        for (x0, y0, x1, y1) in boxes.tolist():
            image[:, y0:y1, x0:x1] = torch.randint(0, 256, (3, 1, 1), generator=g).to(torch.uint8)
        out.append((image, boxes.float()))
    return out


def detkit_batch(samples, training: bool, device="cpu") -> List[Dict]:
    from detkit.structures import Boxes, Instances

    batch = []
    for image, boxes in samples:
        h, w = image.shape[-2:]
        d = {"image": image.to(device), "height": h, "width": w}
        if training:
            d["instances"] = Instances((h, w), gt_boxes=Boxes(boxes.to(device)),
                                       gt_classes=torch.zeros(len(boxes), dtype=torch.int64, device=device))
        batch.append(d)
    return batch


def torchvision_batch(samples, training: bool, device="cpu"):
    """torchvision's input convention: float images in [0, 1], labels counting background as 0."""
    images = [image.to(device).float() / 255.0 for image, _ in samples]
    if not training:
        return images, None
    targets = [{"boxes": boxes.to(device), "labels": torch.ones(len(boxes), dtype=torch.int64, device=device)}
               for _, boxes in samples]
    return images, targets


# ---------------------------------------------------------------------------- models and steps
def autocast(device: torch.device, enabled: bool):
    """The autocast detkit's engine and TEST.AMP use: fp16 on CUDA, bf16 on a CPU with native bf16."""
    from detkit.utils.env import autocast_dtype

    dtype = autocast_dtype(device.type) if enabled else None
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def build_pair(cfg, side: str, seed: int = 0, image_size: int = 400) -> nn.Module:
    """Build detkit's model from ``cfg`` or torchvision's match, seeded, on MODEL.DEVICE."""
    torch.manual_seed(seed)
    if side == "detkit":
        from detkit.modeling import build_model

        model = build_model(cfg)
    else:
        kind = TORCHVISION_KIND[cfg.MODEL.META_ARCHITECTURE]
        num_classes = cfg.MODEL.FCOS.NUM_CLASSES if kind == "fcos" else cfg.MODEL.ROI_HEADS.NUM_CLASSES
        model = build_torchvision_model(kind, num_classes, image_size, cfg.MODEL.FPN.OUT_CHANNELS)
    return model.to(torch.device(cfg.MODEL.DEVICE))


def precision_of(cfg, side: str, mode: str) -> Tuple[bool, bool]:
    """(train autocast, inference autocast) applied *by this tool* to ``side`` in ``mode``.

    detkit's inference autocast (TEST.AMP.ENABLED) is applied by the model itself; its training
    autocast (SOLVER.AMP.ENABLED) by the engine's AMPTrainer, emulated here.
    """
    train_amp, infer_amp = bool(cfg.SOLVER.AMP.ENABLED), bool(cfg.TEST.AMP.ENABLED)
    if side == "detkit":
        return train_amp and mode != "fp32", False
    if mode == "matched":
        return train_amp, infer_amp
    return False, False


def train_step_fn(model, side: str, samples, amp: bool):
    """A closure running one SGD step (forward, backward, update) on ``samples``."""
    device = next(model.parameters()).device
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    if side == "detkit":
        batch = detkit_batch(samples, True, device)
        call = lambda: model(batch)  # noqa: E731
    else:
        images, targets = torchvision_batch(samples, True, device)
        call = lambda: model(images, targets)  # noqa: E731

    def step():
        model.train()
        with autocast(device, amp):
            losses = call()
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {k: float(v.detach()) for k, v in losses.items()}
    return step


def infer_fn(model, side: str, samples, amp: bool):
    """A closure running inference (eval mode, inference_mode) on ``samples``."""
    device = next(model.parameters()).device
    if side == "detkit":
        batch = detkit_batch(samples, False, device)
        call = lambda: model(batch)  # noqa: E731
    else:
        images, _ = torchvision_batch(samples, False, device)
        call = lambda: model(images)  # noqa: E731

    def run():
        model.eval()
        with torch.inference_mode(), autocast(device, amp):
            return call()
    return run


def time_interleaved(fns: Dict[str, Callable[[], object]], warmup: int, iters: int) -> Dict[str, float]:
    """Median seconds per call of each of ``fns`` after ``warmup`` calls each.

    The timed calls alternate between the functions (a, b, a, b, ...), so a slow drift of the
    machine (clock, another process) weighs on every side alike instead of on whichever ran last.
    """
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


@contextlib.contextmanager
def count_nms_inputs():
    """Record the number of boxes of every ``torchvision.ops.batched_nms`` call made inside.

    Both detkit and torchvision's detection models call batched_nms, which dispatches to one of
    two module-level helpers of torchvision.ops.boxes; those are wrapped while the block runs.
    """
    import torchvision.ops.boxes as tv_boxes

    counts: List[int] = []
    names = ("_batched_nms_vanilla", "_batched_nms_coordinate_trick")
    originals = {n: getattr(tv_boxes, n) for n in names}

    def wrap(fn):
        def counted(boxes, *args, **kwargs):
            counts.append(int(boxes.shape[0]))
            return fn(boxes, *args, **kwargs)
        return counted

    for n in names:
        setattr(tv_boxes, n, wrap(originals[n]))
    try:
        yield counts
    finally:
        for n, fn in originals.items():
            setattr(tv_boxes, n, fn)


def pretrain(model, side: str, samples, iters: int, batch_size: int = 4, amp: bool = False) -> None:
    """``iters`` SGD steps (lr 0.01, momentum 0.9, linear warm-up) over ``samples``, in order."""
    if iters <= 0:
        return
    device = next(model.parameters()).device
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                          weight_decay=1e-4)
    model.train()
    for it in range(iters):
        for group in opt.param_groups:
            group["lr"] = 0.01 * min(1.0, (it + 1) / max(1, iters // 4))
        start = (it * batch_size) % len(samples)
        chunk = [samples[(start + k) % len(samples)] for k in range(batch_size)]
        if side == "detkit":
            call = lambda: model(detkit_batch(chunk, True, device))  # noqa: E731
        else:
            images, targets = torchvision_batch(chunk, True, device)
            call = lambda: model(images, targets)  # noqa: E731
        with autocast(device, amp):
            losses = call()
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
