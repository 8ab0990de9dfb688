#!/usr/bin/env python
"""Analyze a model: parameter counts, fvcore FLOPs per module, or its structure, as tables.

Example:
    python tools/analyze_model.py --config configs/quickstart/fcos_shapes.yaml --tasks parameter flop structure
"""
import argparse
import logging
import os
import sys
from typing import List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import torch  # noqa: E402

logger = logging.getLogger("detkit.tools.analyze_model")


class _FlatOutputs(torch.nn.Module):
    """Wrap a detector so it takes one (3, H, W) uint8 image tensor and returns plain tensors
    (boxes, scores, classes), which is what fvcore's jit-based FLOP counter can trace."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        h, w = int(image.shape[-2]), int(image.shape[-1])
        inst = self.model([{"image": image, "height": h, "width": w}])[0]["instances"]
        return inst.pred_boxes.tensor, inst.scores, inst.pred_classes


def _images(cfg, n: int) -> List[torch.Tensor]:
    """``n`` test images of DATASETS.TEST[0] (as the test loader makes them), or random images of
    INPUT.MIN_SIZE_TEST px when no test set is configured."""
    if cfg.DATASETS.TEST:
        from detkit.data import build_detection_test_loader

        out = []
        for batch in build_detection_test_loader(cfg, cfg.DATASETS.TEST[0]):
            out.extend(x["image"] for x in batch)
            if len(out) >= n:
                return out[:n]
        return out
    side = cfg.INPUT.MIN_SIZE_TEST or 512
    return [torch.randint(0, 256, (3, side, side), dtype=torch.uint8) for _ in range(n)]


def do_flop(cfg, model, num_inputs: int) -> str:
    from fvcore.nn import FlopCountAnalysis, flop_count_table

    wrapped = _FlatOutputs(model).eval()
    tables, totals = [], []
    for i, image in enumerate(_images(cfg, num_inputs)):
        with torch.no_grad():
            flops = FlopCountAnalysis(wrapped, (image,))
            flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            totals.append(flops.total())
            if i == 0:
                tables.append(f"FLOPs per module (image 0, {tuple(image.shape)}):\n"
                              + flop_count_table(flops, max_depth=4))
                skipped = flops.unsupported_ops()
                if skipped:
                    counted = ", ".join(f"{k} x{v}" for k, v in sorted(skipped.items()))
                    tables.append("Operators not counted: " + counted)
    mean = sum(totals) / len(totals)
    tables.append(f"Total GFLOPs: {mean / 1e9:.3f} (mean over {len(totals)} image(s); fvcore counts one "
                  "multiply-add as one flop)")
    return "\n".join(tables)


def do_parameter(model, max_depth: int) -> str:
    from fvcore.nn import parameter_count_table

    return "Parameters per module:\n" + parameter_count_table(model, max_depth=max_depth)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "--config-file", dest="config_file", required=True, metavar="FILE")
    parser.add_argument("--tasks", nargs="+", required=True, metavar="{parameter,flop,structure}",
                        help="one or more of: parameter flop structure")
    parser.add_argument("--num-inputs", type=int, default=1, help="images to average FLOPs over")
    parser.add_argument("--max-depth", type=int, default=3, help="module depth of the parameter table")
    parser.add_argument("--plugin", action="append", default=[], metavar="SPEC", help="repeatable")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE")
    return parser


TASKS = ("parameter", "flop", "structure")


def parse_args(argv=None) -> argparse.Namespace:
    """Parse the flags; ``--tasks`` takes the task names that follow it, the rest are KEY VALUE overrides."""
    parser = get_parser()
    args = parser.parse_args(argv)
    n = 0
    while n < len(args.tasks) and args.tasks[n] in TASKS:
        n += 1
    if n == 0:
        parser.error(f"--tasks needs one or more of {', '.join(TASKS)}; got {args.tasks[0]!r}")
    args.tasks, args.opts = args.tasks[:n], args.tasks[n:] + list(args.opts)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from detkit.checkpoint import DetectionCheckpointer
    from detkit.engine import setup_cfg
    from detkit.modeling import build_model
    from detkit.utils.logger import setup_logger

    setup_logger(name="detkit")
    cfg = setup_cfg(args)
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    for task in args.tasks:
        if task == "parameter":
            print(do_parameter(model, args.max_depth))
        elif task == "flop":
            print(do_flop(cfg, model, args.num_inputs))
        else:
            print("Model structure:\n" + str(model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
