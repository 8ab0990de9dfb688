"""Start the results browser from command-line arguments: a finished run's folder, or a dataset and a results file."""
import argparse
import gc
import logging
import os
import re

from iopath.common.file_io import g_pathmgr

from detkit.engine import setup_cfg
from detkit.evaluation.json_results import load_results_file

from .index import BrowserIndex, build_index
from .server import make_server

__all__ = ["add_browser_arguments", "split_output_dir", "index_from_args", "browse"]

logger = logging.getLogger(__name__)

_CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*$")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_browser_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The browser's flags, on top of ``config_argument_parser``'s (``--config-file``, ``--plugin``, KEY VALUE)."""
    parser.add_argument("--dataset", default=None, metavar="NAME",
                        help="registered dataset to show; with OUTPUT_DIR, which of its DATASETS.TEST (default: first)")
    parser.add_argument("--results", default=None, metavar="FILE",
                        help="a coco_instances_results.json (default with OUTPUT_DIR: "
                             "OUTPUT_DIR/inference/<dataset>/coco_instances_results.json)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    parser.add_argument("--score", type=float, default=None,
                        help="score threshold the page starts with (default: TEST.REPORT_CONF_THRESH)")
    parser.add_argument("--thumb-size", type=int, default=256, help="longest side of thumbnails, px")
    return parser


def split_output_dir(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Take the positional OUTPUT_DIR out of ``args.opts``.

    ``config_argument_parser`` gathers every positional word, and every flag after the first one,
    into ``opts`` (the KEY VALUE overrides). A first word that is a folder, or not a config key,
    is the run's OUTPUT_DIR; the words after it are parsed again, so flags may follow it.
    Sets ``args.output_dir`` (None without one).
    """
    args.output_dir = None
    opts = list(args.opts or [])
    if opts and (os.path.isdir(opts[0]) or not _CONFIG_KEY.match(opts[0])):
        args.output_dir, args.opts = opts[0], []
        parser.parse_args(opts[1:], namespace=args)
    return args


def _test_dataset(cfg, output_dir: str, wanted: str) -> str:
    names = list(cfg.DATASETS.TEST)
    if wanted:
        if wanted not in names:
            raise ValueError(f"--dataset {wanted!r} is not one of the DATASETS.TEST of {output_dir}: {names}.")
        return wanted
    if not names:
        raise ValueError(f"{output_dir}/config.yaml has no DATASETS.TEST; name a dataset with --dataset NAME "
                         "--results FILE instead.")
    if len(names) > 1:
        logger.info("Showing '%s', the first of DATASETS.TEST %s; pick another with --dataset NAME.", names[0], names)
    return names[0]


def index_from_args(args: argparse.Namespace) -> BrowserIndex:
    """Build the ``BrowserIndex`` that ``args`` name (see ``tools/browse.py``).

    With ``args.output_dir`` the config is that run's ``config.yaml`` (unless ``--config-file`` names
    one), the dataset one of its ``DATASETS.TEST`` and the results its
    ``inference/<dataset>/coco_instances_results.json``. Otherwise ``--dataset`` names the dataset
    and ``--results`` (optional) the predictions.

    Raises:
        FileNotFoundError: the run's config.yaml or results file is missing (naming it and what to run).
        ValueError: neither OUTPUT_DIR nor --dataset is given, or --dataset is not a test dataset of the run.
    """
    output_dir = getattr(args, "output_dir", None)
    if output_dir:
        config_file = os.path.join(output_dir, "config.yaml")
        if not args.config_file:
            if not g_pathmgr.exists(config_file):
                raise FileNotFoundError(f"{config_file} does not exist: OUTPUT_DIR must be a run's folder (its "
                                        "config.yaml names DATASETS.TEST). Or use --dataset NAME [--results FILE].")
            args.config_file = config_file
    elif not args.dataset:
        raise ValueError("Name what to show: a finished run's OUTPUT_DIR, or --dataset NAME [--results FILE].")
    cfg = setup_cfg(args)
    name, results_file = args.dataset, args.results
    if output_dir:
        name = _test_dataset(cfg, output_dir, args.dataset)
        results_file = results_file or os.path.join(output_dir, "inference", name, "coco_instances_results.json")
        if not g_pathmgr.exists(results_file):
            raise FileNotFoundError(
                f"{results_file} does not exist. Evaluate the run to write it: tools/train_net.py --config-file "
                f"{output_dir}/config.yaml --eval-only MODEL.WEIGHTS {output_dir}/model_final.pth")
    results = load_results_file(results_file) if results_file else None
    score = args.score if args.score is not None else cfg.TEST.REPORT_CONF_THRESH
    return build_index(name, results, results_file, score, cfg.TEST.DETECTIONS_PER_IMAGE, cfg.TEST.COCO_EVAL_BACKEND)


def browse(args: argparse.Namespace) -> None:
    """Index what ``args`` name and serve the page until interrupted (Ctrl-C)."""
    index = index_from_args(args)
    # The dataset dicts and results are garbage now; what stays (the index's arrays) never needs the
    # collector again: freezing it keeps full collections from stalling a request.
    gc.collect()
    gc.freeze()
    try:
        server = make_server(index, args.host, args.port, args.thumb_size)
    except OSError as e:
        raise OSError(e.errno, f"Cannot listen on {args.host}:{args.port} ({e.strerror}); pick another port with "
                               "--port (0: any free one).") from e
    if args.host not in _LOOPBACK:
        logger.warning("Listening on %s: anyone who can reach this machine can browse '%s'.", args.host,
                       index.dataset_name)
    logger.info("Results browser for '%s' at %s (Ctrl-C to stop)", index.dataset_name, server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("Stopped.")
    finally:
        server.server_close()
