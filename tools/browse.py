#!/usr/bin/env python
"""Browse a dataset and a model's predictions in a local web page (TP / FP / missed at IoU 0.5).

Examples:

    python tools/browse.py output/fcos_shapes                  # a finished run: its DATASETS.TEST and results
    python tools/browse.py --dataset shapes_val --results output/fcos_shapes/inference/shapes_val/coco_instances_results.json
    python tools/browse.py --dataset my_val --plugin my_data.py --port 8080   # a custom dataset, ground truth only

Then open the printed address (http://127.0.0.1:8000/ by default).
"""
import sys

from detkit.browser import add_browser_arguments, browse, split_output_dir
from detkit.engine import config_argument_parser
from detkit.utils.logger import setup_logger


def main(argv=None) -> None:
    """Serve the page until Ctrl-C."""
    parser = config_argument_parser(__doc__.splitlines()[0], epilog="OUTPUT_DIR is a finished run's folder: its "
                                    "config.yaml and inference/<dataset>/coco_instances_results.json are read.")
    parser.usage = "browse.py [OUTPUT_DIR] [--dataset NAME [--results FILE]] [options] [KEY VALUE ...]"
    add_browser_arguments(parser)
    args = split_output_dir(parser, parser.parse_args(argv))
    browse(args)


if __name__ == "__main__":
    setup_logger(name="detkit", color=sys.stdout.isatty())
    main()
