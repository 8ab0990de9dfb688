"""Generated data for the evaluation tests: small COCO-style datasets, detections and model outputs."""
import numpy as np
import torch

from detkit.structures import Boxes, BoxMode, Instances

CLASS_NAMES = ["cat", "dog", "bird"]
DATASET_IDS = [1, 3, 7]  # non-contiguous COCO category ids


def _q(x):
    """Quantise to quarter pixels, so XYXY <-> XYWH round-trips exactly in float32 and float64."""
    return np.round(np.asarray(x, dtype=np.float64) * 4) / 4


def make_coco_dataset(seed=0, num_images=14):
    """A COCO ground-truth dict with crowd boxes, empty images and all three size ranges, and detections.

    Returns:
        (gt dict with dataset category ids, detections: list of COCO result dicts in dataset ids,
        the ids of images that get no detections).
    """
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    no_det_image = 3
    for i in range(num_images):
        image_id = 100 + i
        h, w = int(rng.integers(200, 400)), int(rng.integers(200, 400))
        images.append({"id": image_id, "width": w, "height": h, "file_name": f"img{i}.jpg"})
        num_gt = 0 if i in (1, 5) else int(rng.integers(1, 7))  # images 1 and 5 have no ground truth
        for _ in range(num_gt):
            side = float(rng.choice([12.0, 50.0, 130.0])) * rng.uniform(0.8, 1.2)  # small / medium / large
            bw, bh = _q(side * rng.uniform(0.7, 1.3)), _q(side * rng.uniform(0.7, 1.3))
            x, y = _q(rng.uniform(0, max(w - bw, 1))), _q(rng.uniform(0, max(h - bh, 1)))
            cat = int(rng.integers(0, 3))
            crowd = int(len(anns) % 7 == 3)  # every 7th box is a crowd region
            anns.append({"id": len(anns) + 1, "image_id": image_id, "bbox": [float(x), float(y), float(bw), float(bh)],
                         "area": float(bw * bh), "iscrowd": crowd, "category_id": DATASET_IDS[cat]})
            if i == no_det_image:
                continue
            for _ in range(int(rng.integers(0, 3))):  # 0-2 jittered detections per object
                jit = _q(rng.normal(0, 0.07 * side, 4))
                dcat = cat if rng.random() < 0.85 else int(rng.integers(0, 3))
                dets.append({"image_id": image_id, "category_id": DATASET_IDS[dcat],
                             "bbox": [float(x + jit[0]), float(y + jit[1]), float(max(bw + jit[2], 1.0)),
                                      float(max(bh + jit[3], 1.0))],
                             "score": float(np.float32(rng.random()))})
        if i != no_det_image:
            for _ in range(int(rng.integers(0, 4))):  # background false positives
                bw, bh = _q(rng.uniform(8, 120, 2))
                x, y = _q(rng.uniform(0, w - bw)), _q(rng.uniform(0, h - bh))
                dets.append({"image_id": image_id, "category_id": DATASET_IDS[int(rng.integers(0, 3))],
                             "bbox": [float(x), float(y), float(bw), float(bh)],
                             "score": float(np.float32(rng.random()))})
    categories = [{"id": d, "name": n} for d, n in zip(DATASET_IDS, CLASS_NAMES)]
    return {"images": images, "annotations": anns, "categories": categories}, dets


def coco_to_dataset_dicts(gt):
    """detkit dataset dicts (XYXY_ABS, contiguous category ids) of a COCO dict."""
    to_contiguous = {d: i for i, d in enumerate(DATASET_IDS)}
    by_image = {img["id"]: [] for img in gt["images"]}
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        by_image[a["image_id"]].append({"bbox": [x, y, x + w, y + h], "bbox_mode": BoxMode.XYXY_ABS,
                                        "category_id": to_contiguous[a["category_id"]], "iscrowd": a["iscrowd"]})
    return [{"file_name": img["file_name"], "image_id": img["id"], "height": img["height"], "width": img["width"],
             "annotations": by_image[img["id"]]} for img in gt["images"]]


def model_outputs(gt, dets, image_key=None):
    """(inputs, outputs) the evaluator sees for COCO-format detections (contiguous classes, XYXY boxes)."""
    to_contiguous = {d: i for i, d in enumerate(DATASET_IDS)}
    inputs, outputs = [], []
    for img in gt["images"]:
        mine = [d for d in dets if d["image_id"] == img["id"]]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in mine)],
                             dtype=torch.float32).reshape(-1, 4)
        inst = Instances((img["height"], img["width"]), pred_boxes=Boxes(boxes),
                         scores=torch.tensor([d["score"] for d in mine], dtype=torch.float32),
                         pred_classes=torch.tensor([to_contiguous[d["category_id"]] for d in mine], dtype=torch.int64))
        image_id = image_key(img) if image_key else img["id"]
        inputs.append({"image_id": image_id, "height": img["height"], "width": img["width"],
                       "file_name": img["file_name"]})
        outputs.append({"instances": inst})
    return inputs, outputs
