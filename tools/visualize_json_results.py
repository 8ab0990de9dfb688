#!/usr/bin/env python
"""Draw a results file's detections beside the ground truth, one PNG per image (left: truth, right: predictions).

Example:

    python tools/visualize_json_results.py --input output/inference/coco_instances_results.json \\
        --dataset shapes_val --output /tmp/vis --conf-threshold 0.5
"""
import sys

from detkit.engine import config_argument_parser, setup_cfg
from detkit.evaluation import draw_results_file
from detkit.utils.logger import setup_logger


def main(argv=None) -> int:
    """Write the PNGs; returns how many were written."""
    parser = config_argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, metavar="FILE", help="a coco_instances_results.json")
    parser.add_argument("--dataset", required=True, help="registered dataset name")
    parser.add_argument("--output", required=True, metavar="DIR", help="where the PNGs go")
    parser.add_argument("--conf-threshold", type=float, default=0.5, help="draw detections scoring at least this")
    parser.add_argument("--max-images", type=int, default=0, help="stop after this many images (0: all)")
    args = parser.parse_args(argv)
    setup_cfg(args)  # loads the plugins (e.g. one registering the dataset), the config's included
    return draw_results_file(args.input, args.dataset, args.output, args.conf_threshold, args.max_images)


if __name__ == "__main__":
    setup_logger(name="detkit", color=sys.stdout.isatty())
    print(f"wrote {main()} images")
