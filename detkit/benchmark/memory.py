"""Peak memory of one side of the comparison, measured in a fresh process.

``python -m detkit.benchmark.memory CFG.yaml SIDE PHASE MODE IMAGE_SIZE WARMUP ITERS THREADS`` builds
``SIDE``'s model (detkit or torchvision) from the dumped comparison config, runs ``PHASE`` (train or
infer) ``WARMUP + ITERS`` times, and prints ``{"maxrss_mb": ...}`` as its last line.
"""
import json
import sys

import torch

from detkit.config import get_cfg

from .compare import build_side, infer_fn, make_inputs, side_cfg, train_step_fn
from .timing import peak_rss_kib


def main(argv) -> None:
    path, side, phase, mode, image_size, warmup, iters, threads = argv
    torch.set_num_threads(int(threads))
    cfg = get_cfg()
    cfg.merge_from_file(path)
    cfg = side_cfg(cfg, side, mode)
    model = build_side(cfg, side, 0)
    samples = make_inputs(4, int(image_size), seed=1)
    fn = train_step_fn(cfg, model, samples) if phase == "train" else infer_fn(model, samples)
    for _ in range(int(warmup) + int(iters)):
        fn()
    sys.stdout.write(json.dumps({"maxrss_mb": peak_rss_kib() / 1024.0}) + "\n")  # the parent reads this line


if __name__ == "__main__":
    main(sys.argv[1:])
