"""Fixtures for the data tests: tiny real images, COCO JSON files and VOC folders in tmp_path."""
import json
import os
import uuid

import numpy as np
import pytest
from PIL import Image

from detkit.data import DatasetCatalog, MetadataCatalog


def write_image(path, width, height, seed=0, fmt="JPEG", exif_orientation=None):
    """A small random RGB image on disk; returns its (H, W, 3) pixels as written (before any EXIF)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    kwargs = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif
    img.save(path, fmt, **kwargs)
    return pixels


@pytest.fixture
def unique_name(request):
    """A dataset name unique to this test; removed from both catalogs afterwards."""
    names = []

    def make(prefix="t"):
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        names.append(name)
        return name

    yield make
    for n in names:
        if n in DatasetCatalog:
            DatasetCatalog.remove(n)
        MetadataCatalog.pop(n, None)


@pytest.fixture
def coco_files(tmp_path):
    """A COCO file with category ids 7 ("b") and 3 ("a"), images 10 (40x30) and 20 (24x16), 4 annotations."""
    root = tmp_path / "images"
    write_image(str(root / "a.jpg"), 40, 30, seed=1)
    write_image(str(root / "b.jpg"), 24, 16, seed=2)
    data = {
        "images": [{"id": 10, "file_name": "a.jpg", "height": 30, "width": 40},
                   {"id": 20, "file_name": "b.jpg", "height": 16, "width": 24}],
        "categories": [{"id": 7, "name": "b"}, {"id": 3, "name": "a"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [1, 2, 3, 4], "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [10.5, 0, 20, 5.25], "iscrowd": 1},
            {"id": 3, "image_id": 20, "category_id": 3, "bbox": [5, 5, 0, 4], "iscrowd": 0},  # zero width
            {"id": 4, "image_id": 20, "category_id": 7, "bbox": [0, 1, 24, 15]},  # no iscrowd key
        ],
    }
    json_file = tmp_path / "instances.json"
    json_file.write_text(json.dumps(data))
    return str(json_file), str(root), data


def write_voc_xml(path, width, height, objects, filename="x.jpg"):
    """Write a VOC annotation; objects are (name, (xmin, ymin, xmax, ymax), difficult or None)."""
    parts = [f"<annotation><filename>{filename}</filename>",
             f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for name, (x0, y0, x1, y1), difficult in objects:
        diff = "" if difficult is None else f"<difficult>{difficult}</difficult>"
        parts.append(f"<object><name>{name}</name>{diff}<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
                     f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")
    parts.append("</annotation>")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(parts))


@pytest.fixture
def voc_dir(tmp_path):
    """A VOCdevkit year folder with split 'train' = [000001, 000002] and classes cat, dog."""
    d = tmp_path / "VOC2007"
    write_voc_xml(str(d / "Annotations" / "000001.xml"), 40, 30,
                  [("dog", (1, 1, 40, 30), 0), ("cat", (5, 10, 20, 25), 1)])
    write_voc_xml(str(d / "Annotations" / "000002.xml"), 24, 16, [("cat", (3, 4, 10, 12), None)])
    write_image(str(d / "JPEGImages" / "000001.jpg"), 40, 30, seed=3)
    write_image(str(d / "JPEGImages" / "000002.jpg"), 24, 16, seed=4)
    (d / "ImageSets" / "Main").mkdir(parents=True)
    (d / "ImageSets" / "Main" / "train.txt").write_text("000001\n000002\n")
    return str(d)
