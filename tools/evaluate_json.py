#!/usr/bin/env python
"""Re-score a saved coco_instances_results.json against a registered dataset's ground truth.

Prints COCOeval's summary, the AP table, the per-category AP table and "copypaste:" lines.
Example:

    python tools/evaluate_json.py --dataset shapes_val --results output/inference/coco_instances_results.json
"""
import argparse
import json
import logging
import sys

from iopath.common.file_io import g_pathmgr

import detkit.data  # noqa: F401  (registers the builtin datasets)
from detkit.evaluation import print_csv_format
from detkit.evaluation.coco_conversion import load_coco_ground_truth
from detkit.evaluation.coco_eval_backend import COCO_EVAL_BACKENDS
from detkit.evaluation.coco_evaluation import score_coco_results
from detkit.utils.logger import setup_logger
from detkit.utils.plugins import load_plugins

logger = logging.getLogger("detkit.tools.evaluate_json")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="registered dataset name, e.g. shapes_val")
    parser.add_argument("--results", required=True, metavar="FILE", help="a coco_instances_results.json")
    parser.add_argument("--output", metavar="DIR", default=None,
                        help="folder for the converted ground truth of datasets without a COCO json")
    parser.add_argument("--backend", choices=COCO_EVAL_BACKENDS, default="pycocotools", help="COCOeval implementation")
    parser.add_argument("--max-dets-per-image", type=int, default=100, help="detections per image that count")
    parser.add_argument("--plugin", action="append", default=[], metavar="SPEC",
                        help="plugin module or .py file to load first, e.g. one registering a dataset (repeatable)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Score the results file; returns ``{"bbox": {...}}``."""
    args = parse_args(argv)
    load_plugins(args.plugin)
    if not g_pathmgr.exists(args.results):
        raise FileNotFoundError(f"Results file '{args.results}' does not exist.")
    with g_pathmgr.open(args.results, "r") as f:
        results = json.load(f)
    if not isinstance(results, list):
        raise ValueError(f"'{args.results}' must hold a JSON list of detections (COCO results format), "
                         f"got {type(results).__name__}.")
    gt, _, to_dataset_id = load_coco_ground_truth(args.dataset, args.output)
    logger.info("Scoring %d detections from %s on '%s'", len(results), args.results, args.dataset)
    max_dets = [1, min(10, args.max_dets_per_image), args.max_dets_per_image]
    scores = score_coco_results(args.dataset, gt, results, to_dataset_id, ("bbox",), max_dets, args.backend)
    print_csv_format(scores)
    return scores


if __name__ == "__main__":
    setup_logger(name="detkit", color=sys.stdout.isatty())
    main()
