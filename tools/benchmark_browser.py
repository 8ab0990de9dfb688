#!/usr/bin/env python
"""Time the results browser's routes on a generated shapes dataset with synthetic predictions.

Example (the README's figures):

    python tools/benchmark_browser.py --num-images 5000 --image-size 128
"""
import argparse
import json
import sys

from detkit.browser.benchmark import benchmark_browser
from detkit.utils.logger import setup_logger


def main(argv=None) -> dict:
    """Run the benchmark; prints a table and returns the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=5000, help="images in the generated dataset")
    parser.add_argument("--image-size", type=int, default=128, help="side of the generated images, px")
    parser.add_argument("--per-image", type=int, default=20, help="predictions per image")
    parser.add_argument("--requests", type=int, default=40, help="requests per route")
    parser.add_argument("--root", default=None, help="datasets root (default: $DETKIT_DATASETS or ./datasets)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    out = benchmark_browser(args.num_images, args.image_size, args.per_image, args.requests, args.root)
    if args.json:
        print(json.dumps(out, indent=1))
        return out
    print(f"{out['num_images']} images, {out['num_boxes']} boxes, {out['num_predictions']} predictions; "
          f"generated in {out['generate_s']:.1f} s; startup (COCOeval + matching) {out['startup_s']:.1f} s")
    print(f"{'route':52s} {'median ms':>10s} {'p95 ms':>8s} {'max ms':>8s}")
    for route, t in out["routes"].items():
        print(f"{route:52s} {t['median_ms']:10.1f} {t['p95_ms']:8.1f} {t['max_ms']:8.1f}")
    return out


if __name__ == "__main__":
    setup_logger(name="detkit", color=sys.stdout.isatty())
    main()
