#!/usr/bin/env python
"""Write PNGs of training images with their ground-truth boxes and class names.

--source annotation draws the dataset dicts of DATASETS.TRAIN on the original images;
--source dataloader draws what the model sees: batches of the training loader, after
augmentation. Example:

    python tools/visualize_data.py --config configs/quickstart/fcos_shapes.yaml \\
        --source dataloader --output-dir /tmp/vis --num 8 INPUT.MIN_SIZE_TRAIN "(320,)"
"""
import argparse
import itertools
import os
import sys

import numpy as np
from PIL import Image

from detkit.config import get_cfg
from detkit.data import DatasetCatalog, MetadataCatalog, build_detection_train_loader, read_image
from detkit.data.detection_utils import annotations_to_arrays
from detkit.utils.plugins import load_plugins
from detkit.utils.visualizer import draw_boxes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, metavar="FILE", help="config file")
    parser.add_argument("--source", required=True, choices=["annotation", "dataloader"],
                        help="draw the raw annotations or the training loader's output")
    parser.add_argument("--output-dir", required=True, metavar="DIR", help="where the PNGs go")
    parser.add_argument("--num", type=int, default=20, help="number of images to write")
    parser.add_argument("--plugin", action="append", default=[], metavar="SPEC",
                        help="plugin module or .py file to load first (repeatable)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def setup_cfg(args):
    cfg = get_cfg()
    load_plugins(args.plugin, cfg, relative_to=os.path.dirname(os.path.abspath(args.config)))
    cfg.merge_from_file(args.config)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    return cfg


def _save(image_rgb: np.ndarray, boxes, classes, names, path: str) -> None:
    Image.fromarray(draw_boxes(image_rgb, boxes, classes, names)).save(path)
    print(f"wrote {path}")


def from_annotations(cfg, out_dir: str, num: int) -> int:
    written = 0
    names = [cfg.DATASETS.TRAIN] if isinstance(cfg.DATASETS.TRAIN, str) else list(cfg.DATASETS.TRAIN)
    for name in names:
        classes = MetadataCatalog.get(name).get("thing_classes")
        for d in DatasetCatalog.get(name):
            if written >= num:
                return written
            boxes, cls = annotations_to_arrays(d.get("annotations"))
            stem = os.path.splitext(os.path.basename(d["file_name"]))[0]
            image = read_image(d["file_name"], "RGB", image_id=d.get("image_id"))
            _save(image, boxes, cls, classes, os.path.join(out_dir, f"{name}_{stem}.png"))
            written += 1
    return written


def from_dataloader(cfg, out_dir: str, num: int) -> int:
    names = [cfg.DATASETS.TRAIN] if isinstance(cfg.DATASETS.TRAIN, str) else list(cfg.DATASETS.TRAIN)
    classes = MetadataCatalog.get(names[0]).get("thing_classes")
    written = 0
    for batch in itertools.islice(build_detection_train_loader(cfg), num):
        for item in batch:
            if written >= num:
                return written
            image = item["image"].permute(1, 2, 0).numpy()  # (H, W, C)
            if cfg.INPUT.FORMAT == "BGR":
                image = image[:, :, ::-1]
            inst = item["instances"]
            stem = os.path.splitext(os.path.basename(item["file_name"]))[0]
            _save(np.ascontiguousarray(image), inst.gt_boxes.tensor.tolist(), inst.gt_classes.tolist(), classes,
                  os.path.join(out_dir, f"{written:04d}_{stem}.png"))
            written += 1
    return written


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = setup_cfg(args)
    os.makedirs(args.output_dir, exist_ok=True)
    run = from_annotations if args.source == "annotation" else from_dataloader
    written = run(cfg, args.output_dir, args.num)
    print(f"{written} image(s) written to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
