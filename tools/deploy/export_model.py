#!/usr/bin/env python
"""Export a trained detector to ONNX: DIR/model.onnx (uint8 image in, boxes/scores/classes out) + DIR/model.yaml.

Example:
    python tools/deploy/export_model.py --config-file output/fcos_shapes/config.yaml --format onnx \
        --output deploy/fcos_shapes MODEL.WEIGHTS output/fcos_shapes/model_final.pth
"""
import sys

from detkit.engine import config_argument_parser, setup_cfg
from detkit.utils.logger import setup_logger


def main(argv=None) -> int:
    parser = config_argument_parser(__doc__.splitlines()[0], config_required=True)
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for model.onnx and model.yaml")
    args = parser.parse_args(argv)
    setup_logger(name="detkit")
    cfg = setup_cfg(args)
    from detkit.export import ExportError, export_model

    try:
        path = export_model(cfg, args.output, fmt=args.format)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path} and its model.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
