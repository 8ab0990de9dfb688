#!/usr/bin/env python
"""Analyze a model: parameter counts, fvcore FLOPs per module, its structure, or its physical limit, as tables.

Example:
    python tools/analyze_model.py --config configs/quickstart/fcos_shapes.yaml --tasks parameter flop structure
    python tools/analyze_model.py --config configs/Base-FCOS.yaml --tasks roofline INPUT.MIN_SIZE_TEST 400 \
        DATASETS.TEST "()"
"""
import argparse
import sys

from detkit.benchmark.analysis import ANALYSIS_TASKS, flop_table, parameter_table, roofline_table
from detkit.checkpoint import DetectionCheckpointer
from detkit.engine import config_argument_parser, setup_cfg
from detkit.modeling import build_model
from detkit.utils.logger import setup_logger


def parse_args(argv=None) -> argparse.Namespace:
    """Parse the flags; ``--tasks`` takes the task names that follow it, the rest are KEY VALUE overrides."""
    parser = config_argument_parser(__doc__.splitlines()[0], config_required=True)
    parser.add_argument("--tasks", nargs="+", required=True, metavar="{parameter,flop,structure,roofline}",
                        help="one or more of: parameter flop structure roofline")
    parser.add_argument("--num-inputs", type=int, default=1, help="images to average FLOPs over")
    parser.add_argument("--max-depth", type=int, default=3, help="module depth of the parameter table")
    args = parser.parse_args(argv)
    n = 0
    while n < len(args.tasks) and args.tasks[n] in ANALYSIS_TASKS:
        n += 1
    if n == 0:
        parser.error(f"--tasks needs one or more of {', '.join(ANALYSIS_TASKS)}; got {args.tasks[0]!r}")
    args.tasks, args.opts = args.tasks[:n], args.tasks[n:] + list(args.opts)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logger(name="detkit")
    cfg = setup_cfg(args)
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    for task in args.tasks:
        if task == "parameter":
            print(parameter_table(model, args.max_depth))
        elif task == "flop":
            print(flop_table(cfg, model, args.num_inputs))
        elif task == "roofline":
            print(roofline_table(cfg, model))
        else:
            print("Model structure:\n" + str(model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
