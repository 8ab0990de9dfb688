#!/usr/bin/env python
"""Run a trained detector on images and write them, with boxes, class names and scores drawn, as PNGs.

Example:
    python tools/demo.py --config output/fcos_shapes/config.yaml --input img1.png img2.jpg \
        --output demo_out/ --confidence-threshold 0.5 MODEL.WEIGHTS output/fcos_shapes/model_final.pth
"""
import os
import sys
import time

import numpy as np
from PIL import Image

from detkit.data import ImageReadError, read_image
from detkit.engine import DefaultPredictor, config_argument_parser, setup_cfg
from detkit.utils.logger import setup_logger
from detkit.utils.visualizer import draw_boxes


def main(argv=None) -> int:
    parser = config_argument_parser(__doc__.splitlines()[0], config_required=True)
    parser.add_argument("--input", nargs="+", required=True, metavar="IMG", help="image files")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the drawn PNGs")
    parser.add_argument("--confidence-threshold", type=float, default=0.5, help="minimum score to draw")
    args = parser.parse_args(argv)
    setup_logger(name="detkit")
    cfg = setup_cfg(args)
    if not cfg.MODEL.WEIGHTS:
        print("warning: MODEL.WEIGHTS is empty; drawing the predictions of an untrained model.", file=sys.stderr)
    predictor = DefaultPredictor(cfg)
    class_names = list(getattr(predictor.metadata, "thing_classes", []) or []) if predictor.metadata else None
    os.makedirs(args.output, exist_ok=True)
    failed = 0
    for path in args.input:
        try:
            image = read_image(path, format=cfg.INPUT.FORMAT)
        except ImageReadError as e:  # name the file and go on with the others
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        start = time.perf_counter()
        instances = predictor(image)["instances"].to("cpu")
        elapsed = time.perf_counter() - start
        keep = instances.scores >= args.confidence_threshold
        instances = instances[keep]
        rgb = image if cfg.INPUT.FORMAT == "RGB" else image[:, :, ::-1]
        drawn = draw_boxes(rgb, instances.pred_boxes.tensor.tolist(), instances.pred_classes.tolist(),
                           class_names, instances.scores.tolist())
        out = os.path.join(args.output, os.path.splitext(os.path.basename(path))[0] + ".png")
        Image.fromarray(np.asarray(drawn)).save(out)
        print(f"{path}: {len(instances)} detections (score >= {args.confidence_threshold}) in {elapsed:.3f} s "
              f"-> {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
