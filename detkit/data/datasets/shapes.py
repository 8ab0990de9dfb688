"""Builtin synthetic "shapes" dataset: squares, circles and triangles on noisy backgrounds.

Images are generated on first use into ``<root>/shapes/<name>_<num_images>_<size>_<seed>/``
(``images/*.jpg`` + ``annotations.json`` in COCO format) and then read back through
``load_coco_json``, so they travel the same code path as COCO.

Image ``i`` is drawn from a generator seeded by ``(seed, i)``, so the first k images are the same
whatever ``num_images`` is. To overfit on the first 4 images of ``shapes_train`` cheaply::

    from detkit.data.datasets import register_shapes, SHAPES_TRAIN_SEED
    register_shapes("shapes_train_4", 4, 320, SHAPES_TRAIN_SEED)

Generation is atomic (built in a temporary folder, then renamed), so several processes (DDP
ranks, test workers) asking at once are safe: the first rename wins and the others use its files.
"""
import json
import logging
import math
import multiprocessing as mp
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from ..catalog import DatasetCatalog, MetadataCatalog
from .coco import load_coco_json

__all__ = ["SHAPES_CLASSES", "SHAPES_TRAIN_SEED", "SHAPES_VAL_SEED", "register_shapes",
           "generate_shapes", "draw_shapes_image", "shapes_folder"]

logger = logging.getLogger(__name__)

SHAPES_CLASSES = ("square", "circle", "triangle")
SHAPES_TRAIN_SEED = 1234  # seed of the builtin shapes_train
SHAPES_VAL_SEED = 5678  # seed of the builtin shapes_val

_MIN_SIZE = 12.0  # smallest object side / diameter, px
_MAX_OBJECTS = 8
_NOISE_STD = 10.0  # per-pixel Gaussian noise over the whole image
_MIN_IN_IMAGE = 0.5  # an object keeps at least this fraction of its area inside the image
_MIN_UNOCCLUDED = 0.6  # ... and at least this fraction of its in-image pixels unoccluded
_REGISTERED: Dict[str, tuple] = {}


def _object_mask(cls: int, cx: float, cy: float, size: float, angle: float,
                 image_size: int) -> Tuple[np.ndarray, float]:
    """Rasterise one object. Returns its (H, W) bool mask and its full (unclipped) area."""
    canvas = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    if cls == 1:  # circle of diameter `size`
        r = size / 2
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        area = math.pi * r * r
    else:
        if cls == 0:  # square of side `size`
            radius, angles = size / math.sqrt(2), [angle + math.pi / 4 + k * math.pi / 2 for k in range(4)]
            area = size * size
        else:  # equilateral triangle of side `size`
            radius, angles = size / math.sqrt(3), [angle + k * 2 * math.pi / 3 for k in range(3)]
            area = math.sqrt(3) / 4 * size * size
        draw.polygon([(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in angles], fill=255)
    return np.asarray(canvas) > 0, area


def _background(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """A textured, noisy background: base colour + low-frequency colour blobs + clutter lines."""
    base = rng.uniform(30, 225, size=3).astype(np.float32)
    grid = rng.normal(0, 35, size=(rng.integers(3, 9), rng.integers(3, 9), 3))
    low = np.asarray(Image.fromarray(np.clip(grid + 128, 0, 255).astype(np.uint8)).resize(
        (image_size, image_size), Image.BILINEAR), dtype=np.float32) - 128  # (H, W, 3)
    img = Image.fromarray(np.clip(base + low, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(0, 5)):
        pts = rng.uniform(0, image_size, size=4).tolist()
        draw.line(pts, fill=tuple(int(v) for v in rng.integers(0, 256, size=3)), width=int(rng.integers(1, 4)))
    return np.asarray(img, dtype=np.float32)


def draw_shapes_image(seed: int, index: int, image_size: int) -> Tuple[np.ndarray, List[dict]]:
    """Draw image ``index`` of the shapes dataset with seed ``seed``.

    Returns:
        (image, objects): an (H, W, 3) uint8 RGB image, and one dict per visible object with
        ``bbox`` (tight XYXY pixel-edge box around its visible pixels), ``category_id`` (0-based)
        and ``area`` (visible pixel count).
    """
    rng = np.random.default_rng([seed, index])
    image = _background(rng, image_size)
    base = image.mean(axis=(0, 1))
    max_size = image_size / 2
    target = int(rng.integers(2, _MAX_OBJECTS + 1))
    objects, visible, unoccluded = [], [], []  # per object: class/colour, visible mask, in-image pixel count
    for _ in range(3 * target):
        if len(objects) == target:
            break
        cls = int(rng.integers(0, len(SHAPES_CLASSES)))
        size = float(np.exp(rng.uniform(math.log(_MIN_SIZE), math.log(max_size))))
        cx, cy = rng.uniform(0, image_size, size=2)
        mask, area = _object_mask(cls, cx, cy, size, float(rng.uniform(0, 2 * math.pi)), image_size)
        n_in = int(mask.sum())
        if n_in < _MIN_IN_IMAGE * area:
            continue
        if any(((vis & ~mask).sum() < _MIN_UNOCCLUDED * full) for vis, full in zip(visible, unoccluded)):
            continue  # would hide too much of an object already placed
        color = rng.uniform(0, 255, size=3)
        for _ in range(20):  # keep the object distinguishable from the background
            if np.abs(color - base).sum() > 200:
                break
            color = rng.uniform(0, 255, size=3)
        visible = [vis & ~mask for vis in visible]
        visible.append(mask)
        unoccluded.append(n_in)
        objects.append((cls, color))
    for (_, color), vis in zip(objects, visible):  # visible masks are disjoint: paint order is moot
        image[vis] = color
    image += rng.standard_normal(size=image.shape, dtype=np.float32) * np.float32(_NOISE_STD)
    image = np.clip(image, 0, 255).astype(np.uint8)
    out = []
    for (cls, _), vis in zip(objects, visible):
        ys, xs = np.nonzero(vis.any(axis=1))[0], np.nonzero(vis.any(axis=0))[0]
        out.append({"bbox": [int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1],
                    "category_id": cls, "area": int(vis.sum())})
    return image, out


def _write_images(folder: str, indices: range, image_size: int, seed: int) -> List[List[dict]]:
    """Draw and save images ``indices`` into ``folder/images``; returns their objects."""
    objects = []
    for i in indices:
        image, objs = draw_shapes_image(seed, i, image_size)
        Image.fromarray(image).save(os.path.join(folder, "images", f"{i:06d}.jpg"), quality=92)
        objects.append(objs)
    return objects


def _write_dataset(folder: str, num_images: int, image_size: int, seed: int) -> None:
    """Write ``images/*.jpg`` and ``annotations.json`` (COCO format, ids from 1) into ``folder``.

    Large sets are drawn by one forked process per CPU (at most 4); every image depends only on
    (seed, index), so the result is the same for any number of processes.
    """
    os.makedirs(os.path.join(folder, "images"))
    procs = min(os.cpu_count() or 1, 4) if num_images >= 200 and "fork" in mp.get_all_start_methods() else 1
    bounds = np.linspace(0, num_images, procs + 1).astype(int)
    chunks = [range(bounds[k], bounds[k + 1]) for k in range(procs)]
    if procs > 1:
        with mp.get_context("fork").Pool(procs) as pool:
            per_chunk = pool.starmap(_write_images, [(folder, c, image_size, seed) for c in chunks])
    else:
        per_chunk = [_write_images(folder, chunks[0], image_size, seed)]
    images, annotations = [], []
    for i, objects in enumerate(obj for chunk in per_chunk for obj in chunk):
        images.append({"id": i + 1, "file_name": f"{i:06d}.jpg", "height": image_size, "width": image_size})
        for obj in objects:
            x0, y0, x1, y1 = obj["bbox"]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": obj["category_id"] + 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": obj["area"], "iscrowd": 0})
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(SHAPES_CLASSES)]
    with open(os.path.join(folder, "annotations.json"), "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)


def shapes_folder(name: str, num_images: int, image_size: int, seed: int, root: Optional[str] = None) -> str:
    """The cache folder of a shapes dataset: ``<root>/shapes/<name>_<num_images>_<image_size>_<seed>``."""
    root = root if root is not None else os.environ.get("DETKIT_DATASETS", "datasets")
    return os.path.join(root, "shapes", f"{name}_{num_images}_{image_size}_{seed}")


def generate_shapes(folder: str, num_images: int, image_size: int, seed: int) -> str:
    """Generate a shapes dataset into ``folder`` unless it is already there; safe across processes.

    Builds in a temporary sibling folder and renames it into place; if another process renamed
    first, its (identical) files are used and ours are discarded.

    Returns:
        ``folder``.
    """
    if os.path.isfile(os.path.join(folder, "annotations.json")):
        return folder
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.tmp-", dir=parent)
    logger.info("Generating %d shapes images of %dx%d px (seed %d) into %s ...",
                num_images, image_size, image_size, seed, folder)
    try:
        _write_dataset(tmp, num_images, image_size, seed)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not os.path.isfile(os.path.join(folder, "annotations.json")):
                raise
            logger.info("Another process generated %s first; using its files.", folder)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def register_shapes(name: str, num_images: int, image_size: int, seed: int, root: Optional[str] = None) -> None:
    """Register a shapes dataset; images are generated on the first ``DatasetCatalog.get(name)``.

    Metadata is complete at registration (nothing is generated): ``evaluator_type="coco"``,
    ``json_file`` (the path it will have), ``image_root``, ``thing_classes`` and
    ``thing_dataset_id_to_contiguous_id``. Registering the same name again with the same
    arguments is a no-op (so test modules can share a subset such as ``shapes_train_4``).

    Args:
        name: dataset name.
        num_images: how many images.
        image_size: side of the square images, px.
        seed: image i is drawn from a generator seeded by (seed, i).
        root: datasets root; default ``$DETKIT_DATASETS`` (or ``./datasets``) read now.

    Raises:
        KeyError: ``name`` is already registered with different arguments or by another loader.
    """
    folder = shapes_folder(name, num_images, image_size, seed, root)
    key = (num_images, image_size, seed, folder)
    if _REGISTERED.get(name) == key and name in DatasetCatalog:
        return
    if name in DatasetCatalog:
        raise KeyError(f"Dataset '{name}' is already registered (as {_REGISTERED.get(name, 'another dataset')}); "
                       f"cannot register it as shapes {key}. Pick another name.")
    json_file = os.path.join(folder, "annotations.json")
    image_root = os.path.join(folder, "images")

    def _load():
        generate_shapes(folder, num_images, image_size, seed)
        return load_coco_json(json_file, image_root, name)

    DatasetCatalog.register(name, _load)
    _REGISTERED[name] = key
    MetadataCatalog.get(name).set(
        evaluator_type="coco", json_file=json_file, image_root=image_root, thing_classes=list(SHAPES_CLASSES),
        thing_dataset_id_to_contiguous_id={k + 1: k for k in range(len(SHAPES_CLASSES))})
