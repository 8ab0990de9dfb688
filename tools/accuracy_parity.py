#!/usr/bin/env python
"""Accuracy parity: detkit and torchvision's FCOS / Faster R-CNN trained the same way through detkit's
Trainer on shapes, COCO AP on shapes_val, per seed and as the mean.

    python tools/accuracy_parity.py --config configs/Base-FCOS.yaml --iters 600 --seeds 0 1
    python tools/accuracy_parity.py --config configs/Base-RCNN-FPN.yaml --iters 600 --lr 0.002 --seeds 0 1
    python tools/accuracy_parity.py --config configs/Base-FCOS.yaml --models detkit   # one row only

Both get the comparison architecture (RegNetX-400MF, FPN 128 on p3-p5, torchvision's default
post-processing) with 3 classes and the same schedule (detkit.benchmark.parity): AdamW, warm-up then
cosine, --iters steps of --batch 320 px images. Rows: torchvision fp32, detkit fp32, and detkit at its
config's precision (bf16 autocast on a CPU with native bf16).
"""
import argparse
import sys

from detkit.benchmark.parity import ROWS, format_parity, parity_cfg, parse_rows, run_parity
from detkit.engine import config_argument_parser
from detkit.utils.logger import setup_logger


def _rows(text: str):
    try:
        return parse_rows(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv=None) -> int:
    parser = config_argument_parser(__doc__.splitlines()[0], config_required=True)
    parser.add_argument("--iters", type=int, default=600, help="training steps (the schedule's length)")
    parser.add_argument("--batch", type=int, default=4, help="images per step")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW base learning rate")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", type=_rows, default=list(ROWS), metavar="ROW[,ROW]",
                        help=f"comma-separated rows to train, of {','.join(ROWS)} (the default: all)")
    parser.add_argument("--output-dir", default="", help="keep each run's OUTPUT_DIR here (default: a temp folder)")
    args = parser.parse_args(argv)
    setup_logger(name="detkit")
    cfg = parity_cfg(args, iters=args.iters, batch=args.batch, lr=args.lr)
    results = run_parity(cfg, seeds=args.seeds, rows=args.models, threads=args.threads, output_dir=args.output_dir)
    print(format_parity(results, args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
