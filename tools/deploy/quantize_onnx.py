#!/usr/bin/env python
"""Quantize an exported detector to int8 with ONNX Runtime (opt-in), calibrated on training images.

Writes DIR/model.onnx (int8 convolutions and matrix products, QDQ) and a copy of model.yaml, which
ONNXPredictor and benchmark_onnx.py run like the float32 export. --evaluate scores both models
on DATASETS.TEST[0] with the COCO evaluator, so the accuracy cost is measured, not assumed.

Example:
    python tools/deploy/quantize_onnx.py --onnx deploy/fcos_shapes/model.onnx --output deploy/fcos_shapes_int8 \
        --calibration-images 32 --evaluate
"""
import argparse
import sys

from detkit.utils.logger import setup_logger


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", required=True, metavar="FILE", help="model.onnx written by export_model.py")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the int8 model.onnx and model.yaml")
    parser.add_argument("--calibration-images", type=int, default=32,
                        help="images of DATASETS.TRAIN[0] whose activations set the int8 ranges")
    parser.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor, not per channel")
    parser.add_argument("--evaluate", action="store_true", help="COCO AP of both models on DATASETS.TEST[0]")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads for --evaluate")
    args = parser.parse_args(argv)
    setup_logger(name="detkit")
    from detkit.config import CfgNode
    from detkit.data import DatasetCatalog, read_image
    from detkit.export import evaluate_onnx, quantize_onnx, read_model_yaml

    cfg = CfgNode(read_model_yaml(args.onnx)["config"])  # the config saved beside the export
    if not cfg.DATASETS.TRAIN:
        parser.error(f"{args.onnx}'s model.yaml names no DATASETS.TRAIN to calibrate on")
    records = DatasetCatalog.get(cfg.DATASETS.TRAIN[0])[: args.calibration_images]
    images = [read_image(r["file_name"], format=cfg.INPUT.FORMAT, image_id=r.get("image_id")) for r in records]
    path = quantize_onnx(args.onnx, args.output, images, per_channel=not args.per_tensor)
    print(f"wrote {path} ({len(images)} calibration images of {cfg.DATASETS.TRAIN[0]})")
    if args.evaluate:
        if not cfg.DATASETS.TEST:
            parser.error(f"{args.onnx}'s model.yaml names no DATASETS.TEST to evaluate on")
        name = cfg.DATASETS.TEST[0]
        for label, model in (("float32", args.onnx), ("int8", path)):
            bbox = evaluate_onnx(model, name, num_threads=args.threads)["bbox"]
            print(f"{label:8s} {name}: AP {bbox['AP']:.2f}  AP50 {bbox['AP50']:.2f}  AP75 {bbox['AP75']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
