#!/usr/bin/env python
"""Draw a results file's detections beside the ground truth, one PNG per image (left: truth, right: predictions).

Example:

    python tools/visualize_json_results.py --input output/inference/coco_instances_results.json \\
        --dataset shapes_val --output /tmp/vis --conf-threshold 0.5
"""
import argparse
import json
import logging
import os
import sys
from collections import defaultdict

import numpy as np
from iopath.common.file_io import g_pathmgr
from PIL import Image

from detkit.data import DatasetCatalog, MetadataCatalog, read_image
from detkit.evaluation.coco_conversion import load_coco_ground_truth
from detkit.structures import BoxMode
from detkit.utils.logger import setup_logger
from detkit.utils.plugins import load_plugins
from detkit.utils.visualizer import draw_boxes

logger = logging.getLogger("detkit.tools.visualize_json_results")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, metavar="FILE", help="a coco_instances_results.json")
    parser.add_argument("--dataset", required=True, help="registered dataset name")
    parser.add_argument("--output", required=True, metavar="DIR", help="where the PNGs go")
    parser.add_argument("--conf-threshold", type=float, default=0.5, help="draw detections scoring at least this")
    parser.add_argument("--max-images", type=int, default=0, help="stop after this many images (0: all)")
    parser.add_argument("--plugin", action="append", default=[], metavar="SPEC",
                        help="plugin module or .py file to load first (repeatable)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Write the PNGs; returns how many were written."""
    args = parse_args(argv)
    load_plugins(args.plugin)
    with g_pathmgr.open(args.input, "r") as f:
        results = json.load(f)
    _, image_id_map, to_dataset_id = load_coco_ground_truth(args.dataset)
    to_contiguous = {d: c for c, d in to_dataset_id.items()}
    by_image = defaultdict(list)
    for r in results:
        if r["score"] >= args.conf_threshold:
            by_image[r["image_id"]].append(r)
    names = MetadataCatalog.get(args.dataset).get("thing_classes")
    g_pathmgr.mkdirs(args.output)
    written = 0
    for record in DatasetCatalog.get(args.dataset):
        if args.max_images and written >= args.max_images:
            break
        image = read_image(record["file_name"], "RGB", image_id=record.get("image_id"))
        anns = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
        gt_boxes = [BoxMode.convert(a["bbox"], a.get("bbox_mode", BoxMode.XYXY_ABS), BoxMode.XYXY_ABS) for a in anns]
        truth = draw_boxes(image, gt_boxes, [a["category_id"] for a in anns], names)
        dets = by_image.get(image_id_map.get(record["image_id"], record["image_id"]), [])
        pred_boxes = [BoxMode.convert(d["bbox"], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) for d in dets]
        pred_classes = [to_contiguous.get(d["category_id"], -1) for d in dets]
        predicted = draw_boxes(image, pred_boxes, pred_classes, names, scores=[d["score"] for d in dets])
        path = os.path.join(args.output, os.path.splitext(os.path.basename(record["file_name"]))[0] + ".png")
        with g_pathmgr.open(path, "wb") as f:
            Image.fromarray(np.concatenate([truth, predicted], axis=1)).save(f, format="PNG")
        written += 1
    logger.info("Wrote %d images to %s", written, args.output)
    return written


if __name__ == "__main__":
    setup_logger(name="detkit", color=sys.stdout.isatty())
    print(f"wrote {main()} images")
