#!/usr/bin/env python
"""Check datasets before training: unreadable images, wrong sizes, bad boxes, unknown categories, statistics.

Prints a table per dataset and writes a JSON report naming every problem's file, image id and
annotation id. Exit status: 1 if any dataset has errors, 0 if there are only warnings (or nothing).

Examples:
    python tools/check_dataset.py --dataset my_coco_train
    python tools/check_dataset.py --config-file configs/my.yaml           # DATASETS.TRAIN and TEST
    python tools/check_dataset.py --dataset my_coco_train --fix-sizes fixed.json
"""
import json
import sys

from detkit.data import check_dataset, write_fixed_sizes
from detkit.engine import config_argument_parser, setup_cfg
from detkit.utils.logger import setup_logger


def get_parser():
    parser = config_argument_parser(__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[5:]))
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME",
                        help="a registered dataset name; repeatable (default: the config's DATASETS.TRAIN and TEST)")
    parser.add_argument("--fix-sizes", default="", metavar="OUT.json",
                        help="write the (one, COCO-format) dataset's JSON with each image's decoded size")
    parser.add_argument("--output", default="check_dataset_report.json", metavar="REPORT.json",
                        help="where the JSON report goes (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: min(8, CPUs))")
    parser.add_argument("--no-cache", action="store_true", help="decode every image even if $DETKIT_CACHE knows it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    setup_logger(name="detkit")
    cfg = setup_cfg(args)
    names = args.dataset or list(dict.fromkeys(list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)))
    if not names:
        print("error: no dataset to check; give --dataset NAME (or a --config-file with DATASETS.TRAIN).",
              file=sys.stderr)
        return 2
    if args.fix_sizes and len(names) != 1:
        print(f"error: --fix-sizes writes one dataset's JSON; got {len(names)} datasets ({', '.join(names)}).",
              file=sys.stderr)
        return 2
    reports = [check_dataset(n, num_workers=args.workers, cache_dir="" if args.no_cache else None,
                             progress=not args.no_progress) for n in names]
    for r in reports:
        print(r.format_table())
        print()
    with open(args.output, "w") as f:
        json.dump({"datasets": [r.to_dict() for r in reports]}, f, indent=1)
    print(f"JSON report: {args.output}")
    if args.fix_sizes:
        fixed = write_fixed_sizes(reports[0], args.fix_sizes)
        print(f"Wrote {args.fix_sizes} with {fixed} corrected image size(s); register it in place of "
              f"{reports[0].json_file}.")
    errors = sum(len(r.errors) for r in reports)
    print(f"{errors} error(s), {sum(len(r.warnings) for r in reports)} warning(s) in {len(reports)} dataset(s).")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
