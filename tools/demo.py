#!/usr/bin/env python
"""Run a trained detector on images and write them, with boxes, class names and scores drawn, as PNGs.

--input takes files and glob patterns (quote them: "imgs/*.jpg"). Config overrides go after
--opts or at the end of the line, as in detectron2; either way after the other flags, since
--input takes every name up to the next flag. Example:

    python tools/demo.py --config-file output/fcos_shapes/config.yaml --input "imgs/*.png" \\
        --output demo_out/ --confidence-threshold 0.5 --opts MODEL.WEIGHTS output/fcos_shapes/model_final.pth
"""
import glob
import os
import sys
import time

from detkit.data import ImageReadError, read_image
from detkit.engine import DefaultPredictor, config_argument_parser, setup_cfg
from detkit.utils.logger import setup_logger
from detkit.utils.visualizer import Visualizer


def expand_inputs(patterns):
    """Each glob pattern's matches (sorted) in order; a plain path stays as given (its errors come later)."""
    paths = []
    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        if not glob.has_magic(pattern):
            paths.append(pattern)
            continue
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise SystemExit(f"error: --input pattern '{pattern}' matches no file.")
        paths.extend(matches)
    return paths


def main(argv=None) -> int:
    parser = config_argument_parser(__doc__.splitlines()[0], config_required=True)
    parser.add_argument("--input", nargs="+", required=True, metavar="IMG", help="image files or glob patterns")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the drawn PNGs")
    parser.add_argument("--confidence-threshold", type=float, default=0.5, help="minimum score to draw")
    args = parser.parse_args(argv)
    setup_logger(name="detkit")
    inputs = expand_inputs(args.input)
    cfg = setup_cfg(args)
    if not cfg.MODEL.WEIGHTS:
        print("warning: MODEL.WEIGHTS is empty; drawing the predictions of an untrained model.", file=sys.stderr)
    predictor = DefaultPredictor(cfg)
    os.makedirs(args.output, exist_ok=True)
    failed = 0
    for path in inputs:
        try:
            image = read_image(path, format=cfg.INPUT.FORMAT)
        except ImageReadError as e:  # name the file and go on with the others
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        start = time.perf_counter()
        instances = predictor(image)["instances"].to("cpu")
        elapsed = time.perf_counter() - start
        instances = instances[instances.scores >= args.confidence_threshold]
        rgb = image if cfg.INPUT.FORMAT == "RGB" else image[:, :, ::-1]
        out = os.path.join(args.output, os.path.splitext(os.path.basename(path))[0] + ".png")
        Visualizer(rgb, predictor.metadata).draw_instance_predictions(instances).save(out)
        print(f"{path}: {len(instances)} detections (score >= {args.confidence_threshold}) in {elapsed:.3f} s "
              f"-> {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
