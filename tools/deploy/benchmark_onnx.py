#!/usr/bin/env python
"""ms/img of an exported detector under ONNX Runtime, detkit eager and torchvision eager, side by side.

All runners get the same images (the first N of DATASETS.TEST) and the same number of threads;
each includes the test resize, post-processing and rescaling. Ratios are against ONNX Runtime.

Example:
    python tools/deploy/benchmark_onnx.py --config-file output/fcos_shapes/config.yaml \
        --onnx deploy/fcos_shapes/model.onnx --threads 2 MODEL.WEIGHTS output/fcos_shapes/model_final.pth
"""
import sys

from detkit.engine import config_argument_parser, setup_cfg
from detkit.utils.logger import setup_logger


def main(argv=None) -> int:
    parser = config_argument_parser(__doc__.splitlines()[0], config_required=True)
    parser.add_argument("--onnx", required=True, metavar="FILE", help="model.onnx written by export_model.py")
    parser.add_argument("--num-images", type=int, default=10, help="images of DATASETS.TEST[0] timed per pass")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for torch and onnxruntime")
    parser.add_argument("--warmup", type=int, default=2, help="untimed passes over the images")
    parser.add_argument("--iters", type=int, default=5, help="timed passes (median reported)")
    args = parser.parse_args(argv)
    setup_logger(name="detkit")
    cfg = setup_cfg(args)
    from detkit.data import DatasetCatalog, read_image
    from detkit.export.speed import format_speed, onnx_speed

    if not cfg.DATASETS.TEST:
        parser.error("the config names no DATASETS.TEST to take images from")
    dicts = DatasetCatalog.get(cfg.DATASETS.TEST[0])[: args.num_images]
    images = [read_image(d["file_name"], format=cfg.INPUT.FORMAT, image_id=d.get("image_id")) for d in dicts]
    ms, skipped = onnx_speed(cfg, args.onnx, images, threads=args.threads, warmup=args.warmup, iters=args.iters)
    print(f"{len(images)} images of {cfg.DATASETS.TEST[0]}, {args.threads} thread(s), median of {args.iters} passes")
    print(format_speed(ms, skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
