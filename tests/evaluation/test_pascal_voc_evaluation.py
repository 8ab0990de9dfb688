"""PascalVOCDetectionEvaluator equals the VOC devkit formula on a hand-checked case."""
import logging

import numpy as np
import pytest
import torch

from detkit.evaluation import PascalVOCDetectionEvaluator
from detkit.evaluation.pascal_voc_evaluation import voc_ap
from detkit.structures import Boxes, BoxMode, Instances

CLASSES = ["cat", "dog", "bird"]
# Dataset dicts in detectron2's VOC convention (XYXY_ABS, xmin/ymin already minus 1).
DICTS = [
    {"file_name": "a.jpg", "image_id": "2007_000001", "height": 100, "width": 100, "annotations": [
        {"bbox": [0, 0, 10, 10], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "difficult": 0},
        {"bbox": [50, 50, 60, 60], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "difficult": 1},
        {"bbox": [70, 70, 90, 90], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 2, "difficult": 1}]},
    {"file_name": "b.jpg", "image_id": "2007_000002", "height": 100, "width": 100, "annotations": [
        {"bbox": [0, 0, 20, 20], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "difficult": 0},
        {"bbox": [10, 10, 30, 30], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1}]},
]
# (image, score, box, class): d1 TP, d2 duplicate FP, d3 on a difficult box (ignored),
# d4 IoU exactly 0.6 (TP at 0.50 / 0.55, FP from 0.60 on: the devkit needs IoU > t), d5 FP; bird on difficult.
DETS = [
    ("2007_000001", 0.9, [0, 0, 10, 10], 0),
    ("2007_000001", 0.8, [0, 0, 10, 10], 0),
    ("2007_000001", 0.7, [50, 50, 60, 60], 0),
    ("2007_000002", 0.6, [0, 0, 20, 12], 0),
    ("2007_000002", 0.5, [30, 30, 40, 40], 0),
    ("2007_000001", 0.4, [70, 70, 90, 90], 2),
]


def _devkit_reference(use_07, thresh):
    """A literal, loop-by-loop translation of the devkit's voc_eval for this case: {class: ap}."""
    aps = {}
    for k in range(len(CLASSES)):
        recs = {d["image_id"]: [a for a in d["annotations"] if a["category_id"] == k] for d in DICTS}
        npos = sum(1 for r in recs.values() for a in r if not a.get("difficult", 0))
        if npos == 0:
            continue
        used = {i: [False] * len(r) for i, r in recs.items()}
        dets = sorted([d for d in DETS if d[3] == k], key=lambda d: -d[1])
        tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
        for n, (image, _, box, _) in enumerate(dets):
            bb = [box[0] + 1.0, box[1] + 1.0, box[2], box[3]]
            ovmax, jmax = -np.inf, -1
            for j, a in enumerate(recs[image]):
                g = [a["bbox"][0] + 1.0, a["bbox"][1] + 1.0, a["bbox"][2], a["bbox"][3]]
                iw = max(min(g[2], bb[2]) - max(g[0], bb[0]) + 1.0, 0.0)
                ih = max(min(g[3], bb[3]) - max(g[1], bb[1]) + 1.0, 0.0)
                inter = iw * ih
                uni = (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0) + (g[2] - g[0] + 1.0) * (g[3] - g[1] + 1.0) - inter
                if inter / uni > ovmax:
                    ovmax, jmax = inter / uni, j
            if ovmax > thresh:
                if not recs[image][jmax].get("difficult", 0):
                    if not used[image][jmax]:
                        tp[n], used[image][jmax] = 1.0, True
                    else:
                        fp[n] = 1.0
            else:
                fp[n] = 1.0
        fp, tp = np.cumsum(fp), np.cumsum(tp)
        rec = tp / float(npos)
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        if use_07:
            ap = 0.0
            for t in np.arange(0.0, 1.1, 0.1):
                p = 0.0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
                ap += p / 11.0
        else:
            mrec, mpre = np.concatenate(([0.0], rec, [1.0])), np.concatenate(([0.0], prec, [0.0]))
            for i in range(mpre.size - 1, 0, -1):
                mpre[i - 1] = max(mpre[i - 1], mpre[i])
            i = np.where(mrec[1:] != mrec[:-1])[0]
            ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
        aps[CLASSES[k]] = ap
    return aps


def _evaluate(register, year, caplog):
    name = register(lambda: DICTS, thing_classes=list(CLASSES), evaluator_type="pascal_voc", year=year, split="test")
    evaluator = PascalVOCDetectionEvaluator(name, distributed=False)
    evaluator.reset()
    for image in ("2007_000001", "2007_000002"):
        mine = [d for d in DETS if d[0] == image]
        inst = Instances((100, 100), pred_boxes=Boxes(torch.tensor([d[2] for d in mine], dtype=torch.float32)),
                         scores=torch.tensor([d[1] for d in mine]), pred_classes=torch.tensor([d[3] for d in mine]))
        evaluator.process([{"image_id": image, "height": 100, "width": 100}], [{"instances": inst}])
    with caplog.at_level(logging.INFO, logger="detkit"):
        return evaluator.evaluate()["bbox"]


def test_area_metric_hand_checked(register, caplog):
    bbox = _evaluate(register, 2012, caplog)
    # cat: AP 5/6 at IoU 0.50 and 0.55, 1/2 from 0.60 on; dog: no detection, 0; bird: only difficult, left out.
    assert bbox["AP50"] == pytest.approx(100 * (5 / 6 + 0) / 2, abs=1e-9)  # 41.6667
    assert bbox["AP75"] == pytest.approx(100 * (1 / 2 + 0) / 2, abs=1e-9)  # 25.0
    assert bbox["AP"] == pytest.approx(100 * ((2 * 5 / 6 + 8 * 1 / 2) / 10) / 2, abs=1e-9)  # 28.3333
    for thresh, key in ((0.5, "AP50"), (0.75, "AP75")):
        ref = _devkit_reference(False, thresh)
        assert set(ref) == {"cat", "dog"}
        assert bbox[key] == pytest.approx(100 * np.mean(list(ref.values())), abs=1e-9)
    assert "have no non-difficult ground truth" in caplog.text and "'bird'" in caplog.text
    # AP50 under both metrics is logged: 11-point 14/33 = 42.4242, area 41.6667.
    assert "42.4242 (VOC2007 11-point metric), 41.6667 (area metric)" in caplog.text
    assert "| category   |" in caplog.text and "| cat " in caplog.text


def test_11_point_metric_for_2007(register, caplog):
    bbox = _evaluate(register, 2007, caplog)
    # cat: 11-point AP (6 * 1 + 5 * 2/3) / 11 = 28/33 at 0.50 / 0.55, 6/11 from 0.60 on.
    assert bbox["AP50"] == pytest.approx(100 * 14 / 33, abs=1e-9)
    assert bbox["AP75"] == pytest.approx(100 * 3 / 11, abs=1e-9)
    assert bbox["AP"] == pytest.approx(100 * 100 / 330, abs=1e-9)
    all_thresh = [np.mean(list(_devkit_reference(True, t / 100.0).values())) for t in range(50, 100, 5)]
    assert bbox["AP"] == pytest.approx(100 * np.mean(all_thresh), abs=1e-9)
    assert "Evaluation results for bbox:" in caplog.text and "copypaste:" not in caplog.text


def test_voc_ap_formula():
    rec, prec = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    assert voc_ap(rec, prec) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0 and voc_ap(np.zeros(0), np.zeros(0), True) == 0.0


def test_zero_detections_and_unknown_image(register, caplog):
    name = register(lambda: DICTS, thing_classes=list(CLASSES), year=2012)
    evaluator = PascalVOCDetectionEvaluator(name, distributed=False)
    empty = Instances((100, 100), pred_boxes=Boxes(torch.zeros(0, 4)), scores=torch.zeros(0),
                      pred_classes=torch.zeros(0, dtype=torch.int64))
    evaluator.process([{"image_id": "2007_000001"}], [{"instances": empty}])
    with caplog.at_level(logging.WARNING, logger="detkit"):
        bbox = evaluator.evaluate()["bbox"]
    assert bbox == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    assert "made no detections" in caplog.text
    evaluator.reset()
    evaluator.process([{"image_id": "2099_999999"}], [{"instances": empty}])
    with pytest.raises(KeyError, match="2099_999999"):
        evaluator.evaluate()
