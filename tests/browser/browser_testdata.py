"""The browser tests' hand-made dataset: five images with known predictions (the fixtures are in conftest.py).

Five images (classes cat=0, dog=1, bird=2), each a flat colour so that image bytes can be told
apart. The matching at IoU 0.5, worked out by hand (A, B: image 0's ground truth):

image 0 (100x80): A cat [10,10,50,50], B dog [60,10,90,40]
    p0 cat  0.9 [10,10,50,50]  tp (A, IoU 1)
    p1 cat  0.8 [12,10,50,50]  fp dupe (A taken; IoU 0.95)
    p2 bird 0.6 [60,10,90,40]  fp cls (B taken by p5; IoU 1)
    p3 dog  0.4 [0,60,20,78]   fp bkg (overlaps nothing)
    p4 cat  0.3 [30,10,70,50]  fp loc (IoU 1/3 with A)
    p5 dog  0.7 [60,10,90,40]  tp (B, IoU 1): B is missed above 0.7
image 1 (64x64): bird [5,5,30,30], no prediction: missed
image 2 (64x64): no box; dog 0.95 [0,0,10,10]: fp bkg
image 3 (64x64): dog [0,0,32,32]; dog 0.5 [0,0,32,30]: tp (IoU 0.9375)
image 4 (64x64): crowd cat [0,0,64,64], cat [40,40,60,60] missed; cat 0.6 [10,10,20,20] in the crowd: ignored
"""
import io

import numpy as np
from PIL import Image

NAME = "browser_toy"
CLASSES = ["cat", "dog", "bird"]
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (40, 220, 220)]
SIZES = [(100, 80), (64, 64), (64, 64), (64, 64), (64, 64)]  # (width, height)
GT = [  # per image: (class, XYXY box, iscrowd)
    [(0, [10, 10, 50, 50], 0), (1, [60, 10, 90, 40], 0)],
    [(2, [5, 5, 30, 30], 0)],
    [],
    [(1, [0, 0, 32, 32], 0)],
    [(0, [0, 0, 64, 64], 1), (0, [40, 40, 60, 60], 0)],
]
PREDS = [  # per image: (class, score, XYXY box)
    [(0, 0.9, [10, 10, 50, 50]), (0, 0.8, [12, 10, 50, 50]), (2, 0.6, [60, 10, 90, 40]),
     (1, 0.4, [0, 60, 20, 78]), (0, 0.3, [30, 10, 70, 50]), (1, 0.7, [60, 10, 90, 40])],
    [],
    [(1, 0.95, [0, 0, 10, 10])],
    [(1, 0.5, [0, 0, 32, 30])],
    [(0, 0.6, [10, 10, 20, 20])],
]
IMAGE_IDS = [10, 11, 12, 13, 14]


def coco_results():
    return [{"image_id": IMAGE_IDS[i], "category_id": c, "score": s, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
            for i, preds in enumerate(PREDS) for c, s, b in preds]


def mean_colour(jpeg_bytes: bytes):
    image = Image.open(io.BytesIO(jpeg_bytes))
    return image.size, np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)


def write_toy_run(folder, dataset_name: str = "browser_toy_run", report_thresh: float = 0.4):
    """A finished run's folder for the toy dataset, as a COCO json registered by a plugin the config names.

    Writes ``images/``, ``annotations.json`` (category ids 1..3), ``toy_plugin.py``, ``config.yaml``
    (``PLUGINS``, ``DATASETS.TEST``, ``TEST.REPORT_CONF_THRESH``) and
    ``inference/<dataset_name>/coco_instances_results.json``. Returns the folder.
    """
    import json
    import os

    images_dir = os.path.join(folder, "images")
    os.makedirs(images_dir, exist_ok=True)
    images, annotations = [], []
    for i, ((w, h), colour) in enumerate(zip(SIZES, COLOURS)):
        Image.new("RGB", (w, h), colour).save(os.path.join(images_dir, f"img{i}.png"))
        images.append({"id": IMAGE_IDS[i], "file_name": f"img{i}.png", "width": w, "height": h})
        for c, b, crowd in GT[i]:
            annotations.append({"id": len(annotations) + 1, "image_id": IMAGE_IDS[i], "category_id": c + 1,
                                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "iscrowd": crowd,
                                "area": float((b[2] - b[0]) * (b[3] - b[1]))})
    json_file = os.path.join(folder, "annotations.json")
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]}, f)
    with open(os.path.join(folder, "toy_plugin.py"), "w") as f:
        f.write("from detkit.data.datasets import register_coco_instances\n\n"
                f"register_coco_instances({dataset_name!r}, {{}}, {json_file!r}, {images_dir!r})\n")
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write(f'PLUGINS: ["toy_plugin.py"]\nDATASETS:\n  TEST: ["{dataset_name}"]\n'
                f"TEST:\n  REPORT_CONF_THRESH: {report_thresh}\nOUTPUT_DIR: {folder}\n")
    inference = os.path.join(folder, "inference", dataset_name)
    os.makedirs(inference, exist_ok=True)
    with open(os.path.join(inference, "coco_instances_results.json"), "w") as f:
        json.dump([dict(r, category_id=r["category_id"] + 1) for r in coco_results()], f)
    return str(folder)
