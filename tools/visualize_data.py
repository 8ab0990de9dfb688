#!/usr/bin/env python
"""Write PNGs of training images with their ground-truth boxes and class names.

--source annotation draws the dataset dicts of DATASETS.TRAIN on the original images;
--source dataloader draws what the model sees: batches of the training loader, after
augmentation. Example:

    python tools/visualize_data.py --config-file configs/quickstart/fcos_shapes.yaml \\
        --source dataloader --output-dir /tmp/vis --num 8 INPUT.MIN_SIZE_TRAIN "(320,)"
"""
import sys

from detkit.data.visualize import SOURCES, visualize_training_data
from detkit.engine import config_argument_parser, setup_cfg
from detkit.utils.logger import setup_logger


def main(argv=None) -> int:
    parser = config_argument_parser(__doc__.splitlines()[0], config_required=True)
    parser.add_argument("--source", required=True, choices=SOURCES,
                        help="draw the raw annotations or the training loader's output")
    parser.add_argument("--output-dir", required=True, metavar="DIR", help="where the PNGs go")
    parser.add_argument("--num", type=int, default=20, help="number of images to write")
    args = parser.parse_args(argv)
    setup_logger(name="detkit")
    written = visualize_training_data(setup_cfg(args), args.source, args.output_dir, args.num)
    print(f"{written} image(s) written to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
