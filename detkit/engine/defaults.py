"""Entry-point helpers: the tools' argument parser, run setup (logs, config dump, seed), DefaultPredictor."""
import argparse
import logging
import os
from typing import Any, Dict, Optional

import numpy as np
import torch

import detkit.utils.comm as comm
from detkit.checkpoint import DetectionCheckpointer
from detkit.config import ConfigError, get_cfg, load_installed_plugins, load_plugins
from detkit.checkpoint.detection_checkpoint import atomic_write_bytes
from detkit.utils.collect_env import collect_env_info
from detkit.utils.env import seed_all_rng
from detkit.utils.logger import setup_logger

from .trainer import Trainer, create_ddp_model, default_writers

logger = logging.getLogger(__name__)

__all__ = ["config_argument_parser", "default_argument_parser", "default_setup", "setup_cfg", "DefaultPredictor",
           "DefaultTrainer", "create_ddp_model", "default_writers"]

# detectron2's name for the trainer: one class under two names.
DefaultTrainer = Trainer


class _ConfigArgumentParser(argparse.ArgumentParser):
    """Joins the two ways of giving overrides (trailing ``KEY VALUE`` and ``--opts KEY VALUE``) into ``opts``."""

    def parse_known_args(self, args=None, namespace=None):
        ns, extras = super().parse_known_args(args, namespace)
        flagged = ns.__dict__.pop("_opts_flag", None) or []
        ns.opts = [t for t in list(ns.opts or []) + list(flagged) if t != "--opts"]
        return ns, extras


def config_argument_parser(description: Optional[str] = None, config_required: bool = False,
                           epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """The flags every tool that builds a config shares: ``--config``/``--config-file``, a repeatable
    ``--plugin`` and ``KEY VALUE`` overrides, trailing or after ``--opts`` (as detectron2's demo takes
    them). Both forms end up in ``args.opts``; read them with :func:`setup_cfg`."""
    parser = _ConfigArgumentParser(
        description=description,
        epilog=epilog or "Trailing KEY VALUE pairs override config keys, e.g. SOLVER.MAX_ITER 100 OUTPUT_DIR out/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", "--config-file", dest="config_file", default="", metavar="FILE",
                        required=config_required, help="path to a YAML config")
    parser.add_argument("--plugin", action="append", default=[], metavar="SPEC",
                        help="module name or .py file registering components / config keys; repeatable")
    parser.add_argument("--opts", dest="_opts_flag", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                        help="config overrides (the rest of the command line), as detectron2's demo takes them")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                        help="config overrides, e.g. SOLVER.BASE_LR 0.02")
    return parser


def default_argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """The flags of detectron2's training / evaluation tools, on top of :func:`config_argument_parser`'s."""
    parser = config_argument_parser(epilog=epilog)
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/last_checkpoint if it exists (else start from MODEL.WEIGHTS)")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate MODEL.WEIGHTS on DATASETS.TEST")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per machine (one per GPU; on CPU, "
                                                                "CPU processes)")
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument("--machine-rank", type=int, default=0, help="this machine's rank (0 .. num-machines - 1)")
    parser.add_argument("--dist-url", default="auto",
                        help="tcp://host:port of machine 0; 'auto' picks a free local port (one machine)")
    return parser


def setup_cfg(args: argparse.Namespace, freeze: bool = True):
    """The one way every tool builds its config from ``args``: installed plugins, then each
    ``--plugin``, then ``--config`` (which loads the plugins its ``PLUGINS`` key names), then the
    trailing ``KEY VALUE`` overrides; frozen unless ``freeze=False``."""
    cfg = get_cfg()
    load_installed_plugins(cfg)
    load_plugins(getattr(args, "plugin", []) or [], cfg)
    if getattr(args, "config_file", ""):
        cfg.merge_from_file(args.config_file)
    opts = list(getattr(args, "opts", []) or [])
    for key in opts[0::2]:
        if str(key).startswith("--"):
            raise ConfigError(f"The flag {key} comes after the KEY VALUE overrides, which take the rest of the "
                              "command line; give the flags first.")
    cfg.merge_from_list(opts)
    if freeze:
        cfg.freeze()
    return cfg


def default_setup(cfg, args: Optional[argparse.Namespace] = None) -> None:
    """Prepare a run: OUTPUT_DIR, ``log.txt`` (environment table first), ``config.yaml``, seeds.

    On the main process it writes ``OUTPUT_DIR/config.yaml``: the fully resolved config, which
    ``--config`` accepts again to reproduce the run. Each process seeds its RNGs with
    ``SEED + rank`` (a generated seed when SEED < 0).
    """
    output_dir = cfg.OUTPUT_DIR
    rank = comm.get_rank()
    if comm.is_main_process() and output_dir:
        os.makedirs(output_dir, exist_ok=True)
    comm.synchronize()
    setup_logger(output_dir or None, distributed_rank=rank, name="detkit")
    setup_logger(output_dir or None, distributed_rank=rank, name="fvcore")
    log = logging.getLogger("detkit")
    log.info("Environment info:\n%s", collect_env_info())
    log.info("Rank of current process: %d. World size: %d", rank, comm.get_world_size())
    if args is not None:
        log.info("Command line arguments: %s", args)
        if getattr(args, "config_file", ""):
            with open(args.config_file, "r") as f:
                log.info("Contents of config file %s:\n%s", args.config_file, f.read())
    if comm.is_main_process() and output_dir:
        path = os.path.join(output_dir, "config.yaml")
        atomic_write_bytes(path, cfg.dump().encode())
        log.info("Full config saved to %s", path)
    seed = cfg.SEED
    seed_all_rng(None if seed < 0 else seed + rank)
    if cfg.CUDNN_BENCHMARK:
        torch.backends.cudnn.benchmark = True


class DefaultPredictor:
    """Run a trained detector on single images.

    Builds the model from ``cfg``, loads ``cfg.MODEL.WEIGHTS``, and on each call resizes the image
    with the test loader's augmentations (``INPUT.MIN_SIZE_TEST`` / ``INPUT.MAX_SIZE_TEST``), so
    its outputs match evaluation's.

    Usage::

        predictor = DefaultPredictor(cfg)
        outputs = predictor(image)  # image: HxWxC uint8 numpy array in cfg.INPUT.FORMAT
        outputs["instances"].pred_boxes  # in the image's own coordinates
    """

    def __init__(self, cfg):
        from detkit.data import MetadataCatalog
        from detkit.data import transforms as T
        from detkit.modeling import build_model

        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        names = list(cfg.DATASETS.TEST) or list(cfg.DATASETS.TRAIN)
        self.metadata = MetadataCatalog.get(names[0]) if names else None
        self.aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
        DetectionCheckpointer(self.model, save_to_disk=False).load(cfg.MODEL.WEIGHTS)
        self.input_format = cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT is '{self.input_format}'; DefaultPredictor supports 'RGB' and 'BGR'.")

    def __call__(self, original_image: np.ndarray) -> Dict[str, Any]:
        """
        Args:
            original_image: an (H, W, 3) uint8 array, channels in ``INPUT.FORMAT`` order.

        Returns:
            The model's output for this image: ``{"instances": Instances}`` in original coordinates.
        """
        if not (isinstance(original_image, np.ndarray) and original_image.ndim == 3 and original_image.shape[2] == 3
                and original_image.dtype == np.uint8):
            got = getattr(original_image, "shape", None), getattr(original_image, "dtype", type(original_image))
            raise ValueError(f"DefaultPredictor expects an (H, W, 3) uint8 array; got shape/dtype {got}.")
        with torch.inference_mode():
            height, width = original_image.shape[:2]
            image = self.aug.get_transform(original_image).apply_image(original_image)
            tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))  # (3, H', W') uint8
            return self.model([{"image": tensor, "height": height, "width": width}])[0]
