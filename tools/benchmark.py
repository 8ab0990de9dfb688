#!/usr/bin/env python
"""Measure a config's speed: training, inference or data loading, or side by side with torchvision.

Examples:
    python tools/benchmark.py --config configs/quickstart/fcos_shapes.yaml --task train
    python tools/benchmark.py --config configs/quickstart/fcos_shapes.yaml --task eval --iters 50
    python tools/benchmark.py --config configs/quickstart/fcos_shapes.yaml --task data
    python tools/benchmark.py --config configs/Base-FCOS.yaml --compare-torchvision
    python tools/benchmark.py --config configs/Base-RCNN-FPN.yaml --compare-torchvision --modes default fp32
    python tools/benchmark.py --config configs/Base-FCOS.yaml --compare-torchvision --scaling --pretrain-iters 30

--compare-torchvision builds torchvision's own FCOS / FasterRCNN following the config (detkit.benchmark.twins)
and times both models interleaved in one process, both training through detkit's train loop.
"""
import json
import platform
import sys

import torch

from detkit.benchmark import TASKS, compare_speed, comparison_cfg, describe_mode, format_table, report, scaling
from detkit.benchmark.compare import MODES
from detkit.engine import config_argument_parser, setup_cfg
from detkit.utils.collect_env import collect_env_info
from detkit.utils.env import describe_cpu_flags, seed_all_rng
from detkit.utils.logger import setup_logger


def get_parser():
    parser = config_argument_parser(__doc__.splitlines()[0], config_required=True)
    parser.add_argument("--task", choices=sorted(TASKS))
    parser.add_argument("--iters", type=int, default=None, help="timed iterations (default: 20; compare: 10)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed iterations first (default: 3; compare: 2)")
    comp = parser.add_argument_group("side by side with torchvision")
    comp.add_argument("--compare-torchvision", action="store_true", help="time against torchvision's twin")
    comp.add_argument("--modes", nargs="+", default=["default", "matched"], choices=MODES)
    comp.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for both models")
    comp.add_argument("--image-size", type=int, default=400)
    comp.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    comp.add_argument("--pretrain-iters", type=int, default=0,
                      help="train both models this many steps on the same synthetic images first (0: random init)")
    comp.add_argument("--scaling", action="store_true", help="inference time vs image size and objects per image")
    comp.add_argument("--sizes", type=int, nargs="+", default=[320, 512, 800])
    comp.add_argument("--objects", type=int, nargs="+", default=[1, 10, 50])
    comp.add_argument("--json", default="", metavar="FILE", help="also write the raw figures here")
    return parser


def main(argv=None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    setup_logger(name="detkit")
    if args.compare_torchvision:
        cfg = comparison_cfg(args, args.image_size)
        print(f"detkit vs torchvision: {args.config_file} ({cfg.MODEL.META_ARCHITECTURE}), {args.image_size} px, "
              f"{args.threads} threads, torch {torch.__version__}, {platform.machine()} CPU flags: "
              f"{describe_cpu_flags()}")
        if args.scaling:
            print(scaling(cfg, sizes=args.sizes, objects=args.objects, threads=args.threads,
                          pretrain_iters=args.pretrain_iters))
            return 0
        results = compare_speed(cfg, modes=args.modes, warmup=2 if args.warmup is None else args.warmup,
                          iters=args.iters or 10, image_size=args.image_size, threads=args.threads,
                          memory=not args.no_memory, pretrain_iters=args.pretrain_iters)
        print("\n".join(describe_mode(cfg, mode) for mode in args.modes) + "\n" + format_table(results))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
        return 0
    if not args.task:
        parser.error("give --task (train, eval or data) or --compare-torchvision")
    cfg = setup_cfg(args)
    seed_all_rng(cfg.SEED if cfg.SEED >= 0 else 0)
    print(collect_env_info())
    warmup = 3 if args.warmup is None else args.warmup
    print(report(TASKS[args.task](cfg, warmup=warmup, iters=args.iters or 20), warmup))
    return 0


if __name__ == "__main__":
    sys.exit(main())
