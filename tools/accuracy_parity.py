#!/usr/bin/env python
"""Accuracy parity: detkit vs torchvision FCOS / Faster R-CNN trained the same way on shapes, COCO AP.

    python tools/accuracy_parity.py --config configs/Base-FCOS.yaml --iters 600 --seeds 0 1
    python tools/accuracy_parity.py --config configs/Base-RCNN-FPN.yaml --iters 150 --seeds 0 1   # short
    python tools/accuracy_parity.py --config configs/Base-FCOS.yaml --models detkit   # one row only

Both models get the reference architecture of tools/benchmark_compare.py (RegNetX-400MF, FPN 128 on
p3-p5, torchvision's default post-processing) with 3 classes, and the same schedule: AdamW (lr
``--lr``, weight decay 0.05), linear warm-up then cosine decay, ``--iters`` steps of ``--batch``
images of shapes_train (320x320, no augmentation), drawn in the same seeded order for both; the
model's init uses the same seed too. All are scored with detkit's COCOEvaluator on shapes_val.
detkit is trained and scored twice: in pure fp32 (NCHW, no autocast), and with its config's speed
settings (MODEL.CHANNELS_LAST, SOLVER.AMP and TEST.AMP: bf16 autocast on CPU), to show that the
reduced-precision default costs no AP. torchvision runs its fp32 default. The table gives each
seed and the mean.
"""
import argparse
import math
import os
import statistics
import sys
import time
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import compare_models as cm  # noqa: E402

NUM_CLASSES = 3  # square, circle, triangle
IMAGE_SIZE = 320


def load_split(name: str, limit: int = 0) -> List[Dict]:
    """The dataset dicts of ``name`` with each image read as a uint8 (3, H, W) tensor and XYXY boxes."""
    import detkit.data  # noqa: F401  (registers the builtin datasets)
    from detkit.data import DatasetCatalog
    from detkit.structures import BoxMode

    records = DatasetCatalog.get(name)
    records = records[:limit] if limit else records
    out = []
    for r in records:
        image = torch.from_numpy(np.asarray(Image.open(r["file_name"]).convert("RGB")).copy()).permute(2, 0, 1)
        anns = [a for a in r.get("annotations", []) if not a.get("iscrowd", 0)]
        boxes = torch.tensor([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns],
                             dtype=torch.float32).reshape(-1, 4)
        classes = torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)
        out.append({"image": image.contiguous(), "boxes": boxes, "classes": classes, "image_id": r["image_id"],
                    "height": r["height"], "width": r["width"]})
    return out


def lr_at(it: int, iters: int, base_lr: float, warmup: int) -> float:
    """Linear warm-up from 1% over ``warmup`` steps, then cosine decay to 0 (WarmupCosineLR)."""
    cosine = 0.5 * (1 + math.cos(math.pi * it / iters))
    if it < warmup:
        alpha = it / warmup
        return base_lr * cosine * (0.01 * (1 - alpha) + alpha)
    return base_lr * cosine


def make_batch(records: List[Dict], side: str, device):
    """The training call's arguments for ``side`` from shared records."""
    from detkit.structures import Boxes, Instances

    if side == "detkit":
        return ([{"image": r["image"].to(device), "height": r["height"], "width": r["width"],
                  "instances": Instances(tuple(r["image"].shape[-2:]), gt_boxes=Boxes(r["boxes"].to(device)),
                                         gt_classes=r["classes"].to(device))} for r in records],)
    images = [r["image"].to(device).float() / 255.0 for r in records]
    targets = [{"boxes": r["boxes"].to(device), "labels": r["classes"].to(device) + 1} for r in records]
    return images, targets


def train(model, side: str, train_set: List[Dict], *, iters: int, batch: int, lr: float, seed: int,
          amp: bool = False, log_every: int = 50) -> float:
    """Train ``model`` in place; returns the seconds taken."""
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    g = torch.Generator().manual_seed(seed)
    order: List[int] = []
    model.train()
    start = time.perf_counter()
    for it in range(iters):
        while len(order) < batch:
            order += torch.randperm(len(train_set), generator=g).tolist()
        chunk, order = [train_set[i] for i in order[:batch]], order[batch:]
        for group in opt.param_groups:
            group["lr"] = lr_at(it, iters, lr, min(50, iters // 4))
        with cm.autocast(device, amp):
            losses = model(*make_batch(chunk, side, device))
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{side}: non-finite loss at iteration {it}: "
                                     f"{ {k: float(v) for k, v in losses.items()} }")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log_every and (it % log_every == 0 or it == iters - 1):
            print(f"  {side} it {it}/{iters} loss {float(loss.detach()):.3f} lr {opt.param_groups[0]['lr']:.2e}", flush=True)
    return time.perf_counter() - start


@torch.inference_mode()
def evaluate(model, side: str, val_set: List[Dict], amp: bool = False, batch: int = 4,
             dataset: str = "shapes_val") -> Dict[str, float]:
    """COCO bbox metrics of ``model`` on ``val_set`` (records of ``dataset``), via detkit's COCOEvaluator."""
    from detkit.evaluation import COCOEvaluator
    from detkit.structures import Boxes, Instances

    device = next(model.parameters()).device
    evaluator = COCOEvaluator(dataset, distributed=False)
    evaluator.reset()
    model.eval()
    for i in range(0, len(val_set), batch):
        records = val_set[i:i + batch]
        inputs = [{"image_id": r["image_id"]} for r in records]
        with cm.autocast(device, amp):
            if side == "detkit":
                outputs = model([{"image": r["image"].to(device), "height": r["height"], "width": r["width"]}
                                 for r in records])
            else:
                raw = model([r["image"].to(device).float() / 255.0 for r in records])
                outputs = [{"instances": Instances((r["height"], r["width"]), pred_boxes=Boxes(o["boxes"].float()),
                                                   scores=o["scores"].float(), pred_classes=o["labels"] - 1)}
                           for r, o in zip(records, raw)]
        evaluator.process(inputs, outputs)
    return evaluator.evaluate()["bbox"]


ROWS = ("torchvision", "detkit-fp32", "detkit")


def run(cfg_file: str, overrides, *, iters: int, batch: int, lr: float, seeds, threads: int, val_limit: int,
        models=ROWS, train_name: str = "shapes_train", val_name: str = "shapes_val",
        image_size: int = IMAGE_SIZE) -> None:
    """Train and score the ``models`` rows for every seed; print each result and the table."""
    from tabulate import tabulate

    torch.set_num_threads(threads)
    cfg = cm.setup_cfg(cfg_file, list(overrides), image_size)
    key = "MODEL.FCOS.NUM_CLASSES" if cfg.MODEL.META_ARCHITECTURE == "FCOS" else "MODEL.ROI_HEADS.NUM_CLASSES"
    cfg.merge_from_list([key, str(NUM_CLASSES)])
    fp32_cfg = cm.mode_cfg(cfg, "fp32")
    fp32_cfg.merge_from_list(["MODEL.CHANNELS_LAST", "False"])
    train_set = load_split(train_name, limit=min(1000, iters * batch))
    val_set = load_split(val_name, limit=val_limit)
    load = os.getloadavg()
    print(f"accuracy parity: {cfg_file} ({cfg.MODEL.META_ARCHITECTURE}), {iters} iters x {batch} images, lr {lr}, "
          f"seeds {list(seeds)}, {threads} threads, {len(val_set)} val images, load {load[0]:.1f}; detkit default: "
          f"CHANNELS_LAST {cfg.MODEL.CHANNELS_LAST}, SOLVER.AMP {cfg.SOLVER.AMP.ENABLED}, "
          f"TEST.AMP {cfg.TEST.AMP.ENABLED}", flush=True)
    every_row = {"torchvision": ("torchvision fp32", "torchvision", cfg, False),  # (table name, side, cfg, amp)
                 "detkit-fp32": ("detkit fp32", "detkit", fp32_cfg, False),
                 "detkit": ("detkit default", "detkit", cfg, bool(cfg.SOLVER.AMP.ENABLED))}
    sides = {every_row[row][0]: every_row[row][1:] for row in ROWS if row in models}
    rows, aps = [], {name: [] for name in sides}
    for seed in seeds:
        for name, (side, side_cfg, train_amp) in sides.items():
            model = cm.build_pair(side_cfg, side, seed, image_size)  # the same init for every row of a seed
            seconds = train(model, side, train_set, iters=iters, batch=batch, lr=lr, seed=seed, amp=train_amp)
            metrics = evaluate(model, side, val_set, dataset=val_name)  # detkit applies its TEST.AMP itself
            aps[name].append(metrics["AP"])
            rows.append([seed, name, f"{metrics['AP']:.2f}", f"{metrics['AP50']:.2f}", f"{metrics['AP75']:.2f}",
                         f"{seconds:.0f}"])
            print(f"  seed {seed}: {name}: AP {metrics['AP']:.2f}, AP50 {metrics['AP50']:.2f}, "
                  f"AP75 {metrics['AP75']:.2f}, trained in {seconds:.0f}s", flush=True)
            del model
    for name, values in aps.items():
        rows.append(["mean", name, f"{statistics.mean(values):.2f}", "", "", ""])
    print(tabulate(rows, headers=["seed", "model", "AP", "AP50", "AP75", "train s"], tablefmt="github"))


def _rows(text: str) -> List[str]:
    rows = [r for r in text.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown or not rows:
        raise argparse.ArgumentTypeError(f"unknown row(s) {unknown or [text]}; use a comma-separated list of {ROWS}")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "--config-file", dest="config_file", required=True, metavar="FILE")
    parser.add_argument("--iters", type=int, default=600, help="training steps (the schedule's length)")
    parser.add_argument("--batch", type=int, default=4, help="images per step")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW base learning rate")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--val-limit", type=int, default=0, help="score only the first N shapes_val images (0: all)")
    parser.add_argument("--models", type=_rows, default=list(ROWS), metavar="ROW[,ROW]",
                        help=f"comma-separated rows to train, of {','.join(ROWS)} (the default: all): torchvision "
                             "fp32, detkit fp32, detkit at its config's precision")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE")
    args = parser.parse_args(argv)
    run(args.config_file, args.opts, iters=args.iters, batch=args.batch, lr=args.lr, seeds=args.seeds,
        threads=args.threads, val_limit=args.val_limit, models=args.models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
