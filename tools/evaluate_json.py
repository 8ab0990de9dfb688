#!/usr/bin/env python
"""Re-score a saved coco_instances_results.json against a registered dataset's ground truth.

Prints COCOeval's summary, the AP table, the per-category AP table and "copypaste:" lines.
Example:

    python tools/evaluate_json.py --dataset shapes_val --results output/inference/coco_instances_results.json
"""
import sys

from detkit.engine import config_argument_parser, setup_cfg
from detkit.evaluation import COCO_EVAL_BACKENDS, rescore_results_file
from detkit.utils.logger import setup_logger


def main(argv=None) -> dict:
    """Score the results file; returns ``{"bbox": {...}}``."""
    parser = config_argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="registered dataset name, e.g. shapes_val")
    parser.add_argument("--results", required=True, metavar="FILE", help="a coco_instances_results.json")
    parser.add_argument("--output", metavar="DIR", default=None,
                        help="folder for the converted ground truth of datasets without a COCO json")
    parser.add_argument("--backend", choices=COCO_EVAL_BACKENDS, default="pycocotools", help="COCOeval implementation")
    parser.add_argument("--max-dets-per-image", type=int, default=100, help="detections per image that count")
    args = parser.parse_args(argv)
    setup_cfg(args)  # loads the plugins (e.g. one registering the dataset), the config's included
    return rescore_results_file(args.dataset, args.results, args.output, args.backend, args.max_dets_per_image)


if __name__ == "__main__":
    setup_logger(name="detkit", color=sys.stdout.isatty())
    main()
