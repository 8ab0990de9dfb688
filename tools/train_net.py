#!/usr/bin/env python
"""Train a detector from a config, or evaluate one (--eval-only); detectron2's train_net flags.

Examples:
    python tools/train_net.py --config configs/quickstart/fcos_shapes.yaml
    python tools/train_net.py --config configs/quickstart/fcos_shapes.yaml --resume
    python tools/train_net.py --config output/fcos_shapes/config.yaml --eval-only \
        MODEL.WEIGHTS output/fcos_shapes/model_final.pth
    python tools/train_net.py --config ... --num-gpus 2   # 2 processes (GPUs, or CPU processes with gloo)
"""
import logging

from detkit.checkpoint import DetectionCheckpointer
from detkit.engine import Trainer, default_argument_parser, default_setup, launch, setup_cfg

logger = logging.getLogger("detkit.tools.train_net")


def main(args):
    """Train (or only evaluate) in this process; ``launch`` calls it once per process."""
    cfg = setup_cfg(args)
    default_setup(cfg, args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv=None):
    args = default_argument_parser().parse_args(argv)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    cli()
