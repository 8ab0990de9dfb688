#!/usr/bin/env python
"""Side-by-side timing of a detkit detector and torchvision's matching FCOS / FasterRCNN.

Used by ``tools/benchmark.py --compare-torchvision``; also runs on its own:

    python tools/benchmark_compare.py --config configs/Base-FCOS.yaml
    python tools/benchmark_compare.py --config configs/Base-RCNN-FPN.yaml --modes default fp32
    python tools/benchmark_compare.py --config configs/Base-FCOS.yaml --scaling

Both models get the same architecture (torchvision RegNetX-400MF trunk, FPN 128 channels on p3-p5
with no extra levels, 1 foreground class), the same post-processing settings (torchvision's
defaults), the same init policy (random, seeded; or ``--pretrain-iters`` steps on the same
synthetic images), the same inputs and the same thread count, in one process. Peak memory is
the peak RSS of a fresh subprocess per model and phase (the script re-invokes itself).

Precision modes (``--modes``):
  default  detkit as its config says (MODEL.CHANNELS_LAST, TEST.AMP, SOLVER.AMP) vs torchvision fp32;
  matched  torchvision also runs under detkit's autocast settings (same precision);
  fp32     both fp32 (detkit's AMP keys switched off; channels_last kept as configured).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import torch  # noqa: E402
from compare_models import (  # noqa: E402
    MODES, build_pair, count_nms_inputs, infer_fn, make_inputs, mode_cfg, precision_of, pretrain, setup_cfg,
    time_interleaved, train_step_fn,
)


# ---------------------------------------------------------------------------- measuring
SIDES = ("detkit", "torchvision")


def measure(cfg, mode: str, *, warmup: int = 2, iters: int = 10, image_size: int = 400, pretrain_iters: int = 0,
            seed: int = 0) -> Dict[str, Dict[str, object]]:
    """Time both models in ``mode``: inference ms/img at batch 1 and 4, the boxes entering NMS, the training step.

    Both models are built first; every figure is then timed with the two sides' calls
    interleaved (:func:`compare_models.time_interleaved`).

    Returns:
        {side: {"infer_b1_ms", "infer_b4_ms" (per image), "train_s" (per iteration of 4 images),
        "nms_boxes" (boxes of each batched_nms call on the first image), "losses" (last step)}}.
    """
    samples = make_inputs(4, image_size, seed=seed + 1)
    models, precision = {}, {}
    for side in SIDES:
        precision[side] = precision_of(cfg, side, mode)  # (train autocast, inference autocast)
        models[side] = build_pair(cfg, side, seed, image_size)
        pretrain(models[side], side, make_inputs(16, image_size, seed=seed + 2), pretrain_iters,
                 amp=precision[side][0])
    out: Dict[str, Dict[str, object]] = {side: {} for side in SIDES}
    for key, batch in (("infer_b1_ms", samples[:1]), ("infer_b4_ms", samples)):
        runs = {side: infer_fn(models[side], side, batch, precision[side][1]) for side in SIDES}
        for side, seconds in time_interleaved(runs, warmup, iters).items():
            out[side][key] = 1000.0 * seconds / len(batch)
    for side in SIDES:
        with count_nms_inputs() as counts:
            infer_fn(models[side], side, samples[:1], precision[side][1])()
        out[side]["nms_boxes"] = list(counts)
    steps = {side: train_step_fn(models[side], side, samples, precision[side][0]) for side in SIDES}
    for side, seconds in time_interleaved(steps, warmup, iters).items():
        out[side]["train_s"] = seconds
        out[side]["losses"] = steps[side]()
    return out


def _worker(cfg_file: str, side: str, phase: str, mode: str, image_size: int, warmup: int, iters: int,
            threads: int) -> None:
    """Run one phase of one model in this (fresh) process and print its peak RSS as JSON."""
    torch.set_num_threads(threads)
    from detkit.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(cfg_file)
    train_amp, infer_amp = precision_of(cfg, side, mode)
    model = build_pair(cfg, side, 0, image_size)
    samples = make_inputs(4, image_size, seed=1)
    fn = train_step_fn(model, side, samples, train_amp) if phase == "train" else infer_fn(model, side, samples, infer_amp)
    for _ in range(warmup + iters):
        fn()
    print(json.dumps({"maxrss_mb": _peak_rss_kib() / 1024.0}))


def _peak_rss_kib() -> int:
    """This process's peak RSS in KiB: VmHWM on Linux (ru_maxrss survives exec, so a child
    started from a large parent would report the parent's size), ru_maxrss elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss_mb(cfg, side: str, phase: str, mode: str, *, image_size: int, warmup: int, iters: int,
                threads: int) -> float:
    """Peak RSS (MiB) of a fresh subprocess that builds ``side``'s model and runs ``phase`` (train / infer)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(mode_cfg(cfg, mode).dump())
        path = f.name
    try:
        cmd = [sys.executable, os.path.abspath(__file__), "--config", path, "--worker", f"{side}:{phase}:{mode}",
               "--image-size", str(image_size), "--warmup", str(warmup), "--iters", str(iters),
               "--threads", str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"memory worker {side}:{phase} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return float(json.loads(proc.stdout.strip().splitlines()[-1])["maxrss_mb"])
    finally:
        os.unlink(path)


def compare(cfg, *, modes: Sequence[str] = ("default", "matched"), warmup: int = 2, iters: int = 10,
            image_size: int = 400, threads: int = 2, memory: bool = True, pretrain_iters: int = 0,
            seed: int = 0) -> Dict[str, Dict[str, Dict[str, object]]]:
    """Measure detkit (built from ``cfg``) and torchvision's match in every precision ``mode``.

    Returns:
        {mode: {"detkit": figures, "torchvision": figures}}, figures as :func:`measure` gives
        them plus "rss_train_mb" / "rss_infer_mb" when ``memory``.
    """
    torch.set_num_threads(threads)
    results: Dict[str, Dict[str, Dict[str, object]]] = {}
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"Unknown mode '{mode}'; use some of {MODES}.")
        mcfg = mode_cfg(cfg, mode)
        results[mode] = measure(mcfg, mode, warmup=warmup, iters=iters, image_size=image_size,
                                pretrain_iters=pretrain_iters, seed=seed)
        if memory:
            for side in SIDES:
                for phase in ("train", "infer"):
                    results[mode][side][f"rss_{phase}_mb"] = peak_rss_mb(mcfg, side, phase, mode, image_size=image_size,
                                                                         warmup=1, iters=2, threads=threads)
    return results


def describe_mode(cfg, mode: str) -> str:
    """A one-line description of what each side runs in ``mode``."""
    from detkit.utils.env import autocast_dtype

    onoff = {True: "on", False: "off"}
    # detkit's own settings (its model applies TEST.AMP itself), off altogether in fp32 mode.
    d_train, d_infer = (bool(k) and mode != "fp32" for k in (cfg.SOLVER.AMP.ENABLED, cfg.TEST.AMP.ENABLED))
    t_train, t_infer = precision_of(cfg, "torchvision", mode)
    dtype = autocast_dtype(torch.device(cfg.MODEL.DEVICE).type)
    what = f"autocast = {str(dtype).replace('torch.', '')}" if dtype else "no native bf16 here: autocast runs float32"
    return (f"mode {mode}: detkit channels_last={onoff[bool(cfg.MODEL.CHANNELS_LAST)]}, train autocast "
            f"{onoff[d_train]}, inference autocast {onoff[d_infer]}; torchvision channels_last=off, train autocast "
            f"{onoff[t_train]}, inference autocast {onoff[t_infer]} ({what})")


def format_table(results: Dict[str, Dict[str, Dict[str, object]]]) -> str:
    """One table per mode: each figure for detkit, torchvision, and detkit / torchvision."""
    from tabulate import tabulate

    rows_spec = [("training step, batch 4 (s/iter)", "train_s", "{:.3f}"),
                 ("inference, batch 1 (ms/img)", "infer_b1_ms", "{:.1f}"),
                 ("inference, batch 4 (ms/img)", "infer_b4_ms", "{:.1f}"),
                 ("peak RSS, training (MiB)", "rss_train_mb", "{:.0f}"),
                 ("peak RSS, inference (MiB)", "rss_infer_mb", "{:.0f}")]
    parts = []
    for mode, sides in results.items():
        d, t = sides["detkit"], sides["torchvision"]
        rows = []
        for label, key, fmt in rows_spec:
            if key in d and key in t:
                rows.append([label, fmt.format(d[key]), fmt.format(t[key]), f"{d[key] / t[key]:.2f}"])
        rows.append(["boxes entering NMS, 1 image (per call)", "+".join(map(str, d["nms_boxes"])) or "0",
                     "+".join(map(str, t["nms_boxes"])) or "0", ""])
        parts.append(f"[{mode}]\n" + tabulate(rows, headers=["", "detkit", "torchvision", "detkit/torchvision"],
                                              tablefmt="github", disable_numparse=True))
    return "\n\n".join(parts)


def scaling(cfg, *, sizes: Sequence[int] = (320, 512, 800), objects: Sequence[int] = (1, 10, 50), warmup: int = 1,
            iters: int = 3, threads: int = 2, pretrain_iters: int = 0, seed: int = 0) -> str:
    """Inference ms/img (batch 1, default mode) against image size and objects per image, both models.

    With ``pretrain_iters``, each side is trained once, at the smallest size, and those weights are
    used at every size (only torchvision's resize setting depends on the size).
    """
    from tabulate import tabulate

    torch.set_num_threads(threads)
    weights = {}
    for side in SIDES:
        model = build_pair(cfg, side, seed, min(sizes))
        pretrain(model, side, make_inputs(16, min(sizes), seed=seed + 2), pretrain_iters,
                 amp=precision_of(cfg, side, "default")[0])
        weights[side] = model.state_dict()
    rows = []
    for size in sizes:
        models = {}
        for side in SIDES:
            models[side] = build_pair(cfg, side, seed, size)
            models[side].load_state_dict(weights[side])
        for n in objects:
            samples = make_inputs(1, size, seed=seed + 3, num_objects=n)
            runs = {side: infer_fn(model, side, samples, precision_of(cfg, side, "default")[1])
                    for side, model in models.items()}
            ms = {side: 1000 * seconds for side, seconds in time_interleaved(runs, warmup, iters).items()}
            nms = {}
            for side, run in runs.items():
                with count_nms_inputs() as counts:
                    run()
                nms[side] = sum(counts)
            rows.append([size, n, f"{ms['detkit']:.1f}", f"{ms['torchvision']:.1f}",
                         f"{ms['detkit'] / ms['torchvision']:.2f}", nms["detkit"], nms["torchvision"]])
    return tabulate(rows, headers=["size", "objects", "detkit ms/img", "torchvision ms/img", "ratio",
                                   "detkit NMS boxes", "torchvision NMS boxes"], tablefmt="github",
                    disable_numparse=True)


# ---------------------------------------------------------------------------- entry points
def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "--config-file", dest="config_file", required=True, metavar="FILE")
    parser.add_argument("--modes", nargs="+", default=["default", "matched"], choices=MODES)
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    parser.add_argument("--iters", type=int, default=10, help="timed calls per side (the median is reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for both models")
    parser.add_argument("--image-size", type=int, default=400)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    parser.add_argument("--pretrain-iters", type=int, default=0,
                        help="train both models this many steps on the same synthetic images first (0: random init)")
    parser.add_argument("--scaling", action="store_true", help="inference time vs image size and objects per image")
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 512, 800])
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--json", default="", metavar="FILE", help="also write the raw figures here")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                        help="detkit config overrides")
    return parser


def main(cfg_file: str, overrides: Sequence[str] = (), **options) -> int:
    """Build both models, print the comparison table (or the scaling table with ``scaling=True``).

    Args:
        cfg_file: a detkit config (FCOS or GeneralizedRCNN).
        overrides: KEY VALUE config overrides, applied last.
        options: ``modes``, ``warmup``, ``iters``, ``threads``, ``image_size``, ``memory``,
            ``pretrain_iters``, ``scaling``, ``sizes``, ``objects``, ``json`` (see ``--help``).
    """
    import platform

    image_size = options.get("image_size", 400)
    threads = options.get("threads", 2)
    cfg = setup_cfg(cfg_file, overrides, image_size)
    load = os.getloadavg()
    print(f"detkit vs torchvision: {cfg_file} ({cfg.MODEL.META_ARCHITECTURE}), {image_size}x{image_size}, "
          f"{threads} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"device {cfg.MODEL.DEVICE}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if options.get("scaling"):
        print(scaling(cfg, sizes=options.get("sizes", (320, 512, 800)), objects=options.get("objects", (1, 10, 50)),
                      threads=threads, pretrain_iters=options.get("pretrain_iters", 0)))
        return 0
    modes = options.get("modes", ("default", "matched"))
    results = compare(cfg, modes=modes, warmup=options.get("warmup", 2), iters=options.get("iters", 10),
                      image_size=image_size, threads=threads, memory=options.get("memory", True),
                      pretrain_iters=options.get("pretrain_iters", 0))
    for mode in modes:
        print(describe_mode(cfg, mode))
    print(format_table(results))
    if options.get("json"):
        with open(options["json"], "w") as f:
            json.dump(results, f, indent=1)
    return 0


def cli(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    if args.worker:
        side, phase, mode = args.worker.split(":")
        _worker(args.config_file, side, phase, mode, args.image_size, args.warmup, args.iters, args.threads)
        return 0
    return main(args.config_file, args.opts, modes=args.modes, warmup=args.warmup, iters=args.iters,
                threads=args.threads, image_size=args.image_size, memory=not args.no_memory,
                pretrain_iters=args.pretrain_iters, scaling=args.scaling, sizes=args.sizes, objects=args.objects,
                json=args.json)


if __name__ == "__main__":
    sys.exit(cli())
