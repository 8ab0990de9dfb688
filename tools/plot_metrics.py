#!/usr/bin/env python
"""Draw a finished run's plots again (OUTPUT_DIR/plots), without the model; overlay several runs' losses.

Each run's ``config.yaml`` gives its test datasets and settings; its ``metrics.json`` and
``inference/<dataset>/coco_instances_results.json`` give the numbers. Given several runs, their loss
and AP curves are also drawn together, labelled by folder, in ``--output``/losses.png.

Examples:
    python tools/plot_metrics.py output/fcos_shapes
    python tools/plot_metrics.py output/run_a output/run_b --output plots_compare
"""
import argparse
import logging
import os
import sys
from argparse import Namespace

from detkit.engine import setup_cfg
from detkit.evaluation.reports import replot_run, write_loss_plot
from detkit.utils.logger import setup_logger

logger = logging.getLogger("detkit.tools.plot_metrics")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dirs", nargs="+", metavar="OUTPUT_DIR", help="a finished run's OUTPUT_DIR")
    parser.add_argument("--output", default="plots_compare", metavar="DIR",
                        help="where the overlaid losses.png of several runs goes (default: plots_compare)")
    parser.add_argument("--plugin", action="append", default=[], metavar="SPEC",
                        help="module name or .py file registering the runs' datasets; repeatable")
    return parser.parse_args(argv)


def _labels(dirs):
    """Each run's label: its folder's name, or the path as given where two runs share a name."""
    names = [os.path.basename(os.path.normpath(d)) for d in dirs]
    return [n if names.count(n) == 1 else os.path.normpath(d) for n, d in zip(names, dirs)]


def main(argv=None) -> int:
    """Redraw every run's plots (and the overlay); returns how many plots were written."""
    args = parse_args(argv)
    written = 0
    for folder in args.output_dirs:
        config = os.path.join(folder, "config.yaml")
        if not os.path.isfile(config):
            raise FileNotFoundError(f"{config} does not exist: is {folder} the OUTPUT_DIR of a detkit run?")
        cfg = setup_cfg(Namespace(config_file=config, opts=[], plugin=args.plugin))
        plots = replot_run(folder, list(cfg.DATASETS.TEST), cfg.TEST.REPORT_CONF_THRESH,
                           cfg.TEST.DETECTIONS_PER_IMAGE, cfg.TEST.COCO_EVAL_BACKEND)
        logger.info("%s: wrote %s to %s", folder, ", ".join(plots) or "nothing", os.path.join(folder, "plots"))
        written += len(plots)
    if len(args.output_dirs) > 1:
        path = os.path.join(args.output, "losses.png")
        if write_loss_plot(dict(zip(_labels(args.output_dirs), args.output_dirs)), path):
            logger.info("Overlaid the losses of %d runs in %s", len(args.output_dirs), path)
            written += 1
    return written


if __name__ == "__main__":
    setup_logger(name="detkit", color=sys.stdout.isatty())
    print(f"wrote {main()} plots")
