"""Tests of detkit.evaluation.reports: PR numbers against pycocotools, hand-counted matching, warnings."""
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detkit.evaluation import COCOEvaluator
from detkit.evaluation.coco_eval_backend import run_coco_eval
from detkit.evaluation.coco_evaluation import CocoEvalResults
from detkit.evaluation.reports import (
    match_coco_results, match_image, replot_run, write_dataset_report, write_evaluation_report, write_loss_plot,
)
from detkit.evaluation.reports import report as report_module
from evaluation_testdata import CLASS_NAMES, DATASET_IDS, model_outputs

A, B, C = 0, 1, 2  # contiguous ids of "cat", "dog", "bird" (dataset ids 1, 3, 7)


def _pycocotools_precision(gt, dets):
    """eval["precision"] straight from pycocotools, independently of detkit."""
    coco = COCO()
    coco.dataset = json.loads(json.dumps(gt))
    coco.createIndex()
    coco_eval = COCOeval(coco, coco.loadRes(json.loads(json.dumps(dets))), "bbox")
    coco_eval.evaluate()
    coco_eval.accumulate()
    return coco_eval.eval["precision"], coco_eval.params.catIds


def test_pr_curves_json_equals_pycocotools_precision(coco_dataset, tmp_path, caplog):
    name, gt, dets, _ = coco_dataset
    # The generated case has several classes, crowd boxes and images without ground truth or detections.
    assert any(a["iscrowd"] for a in gt["annotations"])
    assert {img["id"] for img in gt["images"]} - {a["image_id"] for a in gt["annotations"]}
    evaluator = COCOEvaluator(name, distributed=False)
    evaluator.reset()
    evaluator.process(*model_outputs(gt, dets))
    evaluator.evaluate()
    with caplog.at_level(logging.WARNING, logger="detkit"):
        written = write_evaluation_report(evaluator, str(tmp_path))
    assert {"pr_curves", "per_class_ap", "confusion_matrix", "errors"} <= {w.split("/")[1] for w in written}
    # predictions.png needs the images, which this dataset does not have: a warning, not an error.
    assert f"'{name}/predictions'" in caplog.text
    curves = json.loads((tmp_path / name / "pr_curves.json").read_text())
    assert list(curves) == ["recall"] + CLASS_NAMES
    assert curves["recall"] == pytest.approx([i / 100 for i in range(101)], abs=1e-12)
    precision, cat_ids = _pycocotools_precision(gt, dets)
    assert cat_ids == DATASET_IDS
    for k, cls in enumerate(CLASS_NAMES):
        assert curves[cls]["0.50"] == precision[0, :, k, 0, 2].tolist()
        assert np.allclose(curves[cls]["0.50:0.95"], precision[:, :, k, 0, 2].mean(axis=0), rtol=0, atol=1e-12)
        assert min(curves[cls]["0.50"]) >= 0  # every class has ground truth here


def test_pr_curves_keep_minus_one_for_a_class_without_ground_truth(coco_dataset, tmp_path):
    name, gt, dets, _ = coco_dataset
    gt = dict(gt, annotations=[a for a in gt["annotations"] if a["category_id"] != DATASET_IDS[B]])
    run = run_coco_eval(gt, dets)
    to_dataset_id = dict(enumerate(DATASET_IDS))
    write_dataset_report(CocoEvalResults(name, gt, dets, to_dataset_id, {"bbox": run}), str(tmp_path))
    curves = json.loads((tmp_path / "pr_curves.json").read_text())
    assert curves["dog"] == {"0.50": [-1.0] * 101, "0.50:0.95": [-1.0] * 101}
    assert max(curves["cat"]["0.50"]) > 0


def _box(x0, y0, x1, y1):
    return [x0, y0, x1, y1]


# One image with every outcome. Classes A (cat), B (dog), C (bird); IoUs are exact fractions of 10x10 boxes.
GT1 = [(_box(0, 0, 10, 10), A, 0),  # 0: taken by p0 (tp)
       (_box(20, 0, 30, 10), B, 0),  # 1: taken by p2, an A: a class confusion
       (_box(40, 0, 50, 10), A, 0),  # 2: missed (p3 overlaps it at 0.4 only)
       (_box(60, 0, 100, 40), B, 1),  # 3: crowd
       (_box(0, 50, 10, 60), C, 0),  # 4: missed (p4, a B, overlaps it at 0.4)
       (_box(100, 0, 110, 10), C, 0)]  # 5: taken by p9 (tp)
PRED1 = [(_box(0, 0, 10, 10), 0.9, A),  # p0 tp of gt 0, IoU 1
         (_box(0, 0, 10, 9), 0.8, A),  # p1 dupe: IoU 0.9 with gt 0, already taken
         (_box(20, 0, 30, 10), 0.7, A),  # p2 cls: matched to gt 1 of class B
         (_box(40, 0, 44, 10), 0.6, A),  # p3 loc: IoU 0.4 with gt 2 of its class
         (_box(0, 50, 4, 60), 0.55, B),  # p4 both: IoU 0.4 with gt 4 of another class only
         (_box(200, 200, 210, 210), 0.5, C),  # p5 bkg
         (_box(62, 2, 72, 12), 0.45, B),  # p6 inside the crowd box of its class: ignored
         (_box(80, 80, 90, 90), 0.1, B),  # p7 below the 0.25 threshold
         (_box(100, 0, 110, 10), 0.3, C)]  # p8 tp of gt 5
# Image 2: no ground truth, one B prediction (bkg). Image 3: one A box, no prediction (missed).
# Image 4: a B box found by a B (tp) and then by an A, whose box of the other class is taken (cls).
IMAGES = {
    1: (GT1, PRED1),
    2: ([], [(_box(10, 10, 20, 20), 0.9, B)]),
    3: ([(_box(0, 0, 10, 10), A, 0)], []),
    4: ([(_box(0, 0, 10, 10), B, 0)], [(_box(0, 0, 10, 10), 0.9, B), (_box(0, 0, 10, 10), 0.8, A)]),
}


def test_match_image_per_prediction_and_per_box():
    gt_boxes, gt_classes, gt_crowd = zip(*GT1)
    pred_boxes, scores, classes = zip(*PRED1)
    m = match_image(torch.tensor(pred_boxes, dtype=torch.float32), torch.tensor(scores), torch.tensor(classes),
                    torch.tensor(gt_boxes, dtype=torch.float32), torch.tensor(gt_classes), torch.tensor(gt_crowd),
                    score_thresh=0.25)
    assert m.status == ["tp", "fp", "fp", "fp", "fp", "fp", "ignored", "below_thresh", "tp"]
    assert m.category == ["", "dupe", "cls", "loc", "both", "bkg", "", "", ""]
    assert m.matched_gt.tolist() == [0, -1, 1, -1, -1, -1, -1, -1, 5]
    assert m.overlap_gt.tolist() == [0, 0, 1, 2, 4, -1, -1, -1, 5]
    assert m.iou.tolist() == pytest.approx([1.0, 0.9, 1.0, 0.4, 0.4, 0.0, 0.0, 0.0, 1.0])
    assert m.gt_missed.tolist() == [False, False, True, False, True, False]


def test_match_image_prefers_a_free_box_of_its_own_class():
    # The A prediction overlaps a B box more (IoU 0.9) than an A box (IoU 0.6): it still takes the A box.
    m = match_image(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0.9]), torch.tensor([A]),
                    torch.tensor([[0.0, 0, 10, 9], [0.0, 0, 10, 6]]), torch.tensor([B, A]))
    assert (m.status, m.matched_gt.tolist(), m.gt_missed.tolist()) == (["tp"], [1], [True, False])


def test_match_image_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 pred_boxes, 1 scores"):
        match_image(torch.zeros(2, 4), torch.zeros(1), torch.zeros(2), torch.zeros(0, 4), torch.zeros(0))


def _hand_built_case(tmp_path, register):
    """The four images above as a registered COCO dataset with image files, and its COCO evaluation."""
    images, anns, dets = [], [], []
    for image_id, (gts, preds) in IMAGES.items():
        Image.fromarray(np.full((220, 220, 3), 40 * image_id, dtype=np.uint8)).save(tmp_path / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": 220, "width": 220})
        for (x0, y0, x1, y1), cls, crowd in gts:
            anns.append({"id": len(anns) + 1, "image_id": image_id, "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "area": (x1 - x0) * (y1 - y0), "iscrowd": crowd, "category_id": DATASET_IDS[cls]})
        for (x0, y0, x1, y1), score, cls in preds:
            dets.append({"image_id": image_id, "category_id": DATASET_IDS[cls], "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "score": score})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": d, "name": n} for d, n in zip(DATASET_IDS, CLASS_NAMES)]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    name = register(lambda: [], json_file=str(tmp_path / "gt.json"), image_root=str(tmp_path),
                    thing_classes=list(CLASS_NAMES), evaluator_type="coco",
                    thing_dataset_id_to_contiguous_id={d: i for i, d in enumerate(DATASET_IDS)})
    return name, gt, dets


def test_confusion_matrix_and_errors_equal_hand_counts(tmp_path, register):
    name, gt, dets = _hand_built_case(tmp_path, register)
    coco_eval = CocoEvalResults(name, gt, dets, dict(enumerate(DATASET_IDS)), {"bbox": run_coco_eval(gt, dets)})
    out = tmp_path / "plots"
    written = write_dataset_report(coco_eval, str(out), score_thresh=0.25)
    assert written == ["pr_curves", "per_class_ap", "confusion_matrix", "errors", "predictions"]
    assert (out / "confusion_matrix.csv").read_text() == (
        "true\\pred,cat,dog,bird,background\n"
        "cat,1,0,0,2\n"  # p0 on gt 0; gt 2 and image 3's box missed
        "dog,1,1,0,0\n"  # p2 (a cat) on gt 1; image 4's dog found
        "bird,0,0,1,1\n"  # p8 on gt 5; gt 4 missed
        "background,3,2,1,0\n"  # unmatched: p1, p3, image 4's cat | p4, image 2's dog | p5
    )
    errors = json.loads((out / "errors.json").read_text())
    assert errors["total"] == {"tp": 3, "cls": 2, "loc": 1, "both": 1, "dupe": 1, "bkg": 2, "missed": 3}
    assert errors["per_class"] == {
        "cat": {"tp": 1, "cls": 2, "loc": 1, "both": 0, "dupe": 1, "bkg": 0, "missed": 2},
        "dog": {"tp": 1, "cls": 0, "loc": 0, "both": 1, "dupe": 0, "bkg": 1, "missed": 0},
        "bird": {"tp": 1, "cls": 0, "loc": 0, "both": 0, "dupe": 0, "bkg": 1, "missed": 1},
    }
    assert errors["score_thresh"] == 0.25
    for png in ("pr_curves", "per_class_ap", "confusion_matrix", "errors", "predictions"):
        pixels = np.asarray(Image.open(out / f"{png}.png").convert("L"))
        assert pixels.std() > 5, png  # decodes and is not blank


def test_a_failing_plot_is_a_warning_naming_it(tmp_path, register, monkeypatch, caplog):
    name, gt, dets = _hand_built_case(tmp_path, register)
    coco_eval = CocoEvalResults(name, gt, dets, dict(enumerate(DATASET_IDS)), {"bbox": run_coco_eval(gt, dets)})

    def broken(*args, **kwargs):
        raise RuntimeError("no ink left")

    monkeypatch.setattr(report_module, "plot_confusion_matrix", broken)
    with caplog.at_level(logging.WARNING, logger="detkit"):
        written = write_dataset_report(coco_eval, str(tmp_path / "plots"))
    assert "confusion_matrix" not in written and "errors" in written and "predictions" in written
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"'{name}/confusion_matrix'" in warnings[0].getMessage() and "no ink left" in warnings[0].getMessage()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="detkit"):
        assert write_loss_plot({"run": str(tmp_path / "nowhere")}, str(tmp_path / "losses.png")) is False
    assert "'losses'" in caplog.text and "metrics.json" in caplog.text


def test_replot_run_names_the_missing_results_file(tmp_path, register):
    name, _, _ = _hand_built_case(tmp_path, register)
    with pytest.raises(FileNotFoundError, match=f"inference/{name}/coco_instances_results.json does not exist"):
        replot_run(str(tmp_path), [name])


def test_match_coco_results_names_an_unknown_category(tmp_path, register):
    _, gt, dets = _hand_built_case(tmp_path, register)
    dets = dets + [{"image_id": 2, "category_id": 99, "bbox": [0, 0, 5, 5], "score": 0.9}]
    with pytest.raises(ValueError, match=r"Image 2 has category ids \[99\], which are not among the dataset's "
                                         r"\[1, 3, 7\]"):
        list(match_coco_results(gt, dets, dict(enumerate(DATASET_IDS))))
