"""COCOEvaluator equals pycocotools' COCOeval run directly, with either backend, and never crashes."""
import contextlib
import io
import json
import logging
import math
import sys

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from evaluation_testdata import CLASS_NAMES, DATASET_IDS, coco_to_dataset_dicts, make_coco_dataset, model_outputs
from detkit.evaluation import COCOEvaluator
from detkit.structures import Boxes, Instances

SIX = ["AP", "AP50", "AP75", "APs", "APm", "APl"]


def _reference(gt, dets, cat_ids=None, max_dets=(1, 10, 100)):
    """pycocotools' own numbers: stats[:6] x100 over all classes, or over ``cat_ids`` only."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt))
        coco_gt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes([dict(d) for d in dets]), "bbox")
        coco_eval.params.maxDets = list(max_dets)
        if cat_ids is not None:
            coco_eval.params.catIds = list(cat_ids)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return [float(s * 100) if s >= 0 else float("nan") for s in coco_eval.stats[:6]]


def _run(evaluator, inputs, outputs, batch=3):
    evaluator.reset()
    for i in range(0, len(inputs), batch):
        evaluator.process(inputs[i:i + batch], outputs[i:i + batch])
    return evaluator.evaluate()


def _assert_same(a, b):
    assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-9), (a, b)


def test_equals_pycocotools_direct(coco_dataset, tmp_path):
    name, gt, dets, _ = coco_dataset
    inputs, outputs = model_outputs(gt, dets)
    assert any(len(o["instances"]) == 0 for o in outputs)  # an image without detections
    assert any(a["iscrowd"] for a in gt["annotations"])
    results = _run(COCOEvaluator(name, output_dir=str(tmp_path / "out"), distributed=False), inputs, outputs)
    bbox = results["bbox"]
    ref = _reference(gt, dets)
    assert 5 < ref[0] < 95 and not any(math.isnan(v) for v in ref)  # a non-trivial case, all ranges present
    for key, value in zip(SIX, ref):
        _assert_same(bbox[key], value)
    for dataset_id, cls in zip(DATASET_IDS, CLASS_NAMES):
        _assert_same(bbox[f"AP-{cls}"], _reference(gt, dets, cat_ids=[dataset_id])[0])
    assert set(bbox) == set(SIX) | {f"AP-{c}" for c in CLASS_NAMES}

    saved = json.loads((tmp_path / "out" / "coco_instances_results.json").read_text())
    assert len(saved) == len(dets)
    assert {d["category_id"] for d in saved} == {d["category_id"] for d in dets}  # dataset ids, not contiguous
    assert sorted((d["image_id"], d["score"]) for d in saved) == sorted((d["image_id"], d["score"]) for d in dets)


def test_faster_backend_equals_pycocotools(coco_dataset):
    name, gt, dets, _ = coco_dataset
    inputs, outputs = model_outputs(gt, dets)
    slow = _run(COCOEvaluator(name, distributed=False, backend="pycocotools"), inputs, outputs)["bbox"]
    fast = _run(COCOEvaluator(name, distributed=False, backend="faster"), inputs, outputs)["bbox"]
    assert slow.keys() == fast.keys()
    for key in slow:
        _assert_same(fast[key], slow[key])


def test_max_dets_per_image(coco_dataset):
    name, gt, dets, _ = coco_dataset
    inputs, outputs = model_outputs(gt, dets)
    bbox = _run(COCOEvaluator(name, distributed=False, max_dets_per_image=2), inputs, outputs)["bbox"]
    # pycocotools' summarize() hard-codes 100 detections for "AP": average its precision array directly.
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt))
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes([dict(d) for d in dets]), "bbox")
        ev.params.maxDets = [1, 2, 2]
        ev.evaluate()
        ev.accumulate()
    p = ev.eval["precision"][:, :, :, 0, -1]
    _assert_same(bbox["AP"], float(np.mean(p[p > -1])) * 100)
    assert bbox["AP"] < _run(COCOEvaluator(name, distributed=False), inputs, outputs)["bbox"]["AP"]


@pytest.mark.parametrize("backend", ["pycocotools", "faster"])
def test_zero_detections_give_zeros_and_one_warning(coco_dataset, caplog, backend):
    name, gt, _, _ = coco_dataset
    inputs, outputs = model_outputs(gt, [])
    with caplog.at_level(logging.INFO, logger="detkit"):
        bbox = _run(COCOEvaluator(name, distributed=False, backend=backend), inputs, outputs)["bbox"]
    assert all(v == 0.0 for v in bbox.values()), bbox
    assert len(bbox) == 6 + len(CLASS_NAMES)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "no detections" in warnings[0].getMessage()


def test_size_range_without_ground_truth_is_nan(tmp_path, register, caplog):
    gt = {"images": [{"id": 1, "width": 400, "height": 400, "file_name": "a.jpg"}],
          "annotations": [{"id": 1, "image_id": 1, "bbox": [10.0, 10.0, 200.0, 200.0], "area": 40000.0,
                           "iscrowd": 0, "category_id": 1}],
          "categories": [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 7, "name": "bird"}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    name = register(lambda: coco_to_dataset_dicts(gt), json_file=str(path), thing_classes=list(CLASS_NAMES),
                    thing_dataset_id_to_contiguous_id={1: 0, 3: 1, 7: 2})
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10.0, 10.0, 200.0, 200.0], "score": 0.5}]
    inputs, outputs = model_outputs(gt, dets)
    with caplog.at_level(logging.INFO, logger="detkit"):
        bbox = _run(COCOEvaluator(name, distributed=False), inputs, outputs)["bbox"]
    assert bbox["AP"] == pytest.approx(100.0) and bbox["APl"] == pytest.approx(100.0)
    assert math.isnan(bbox["APs"]) and math.isnan(bbox["APm"])
    assert bbox["AP-cat"] == pytest.approx(100.0) and math.isnan(bbox["AP-dog"])
    text = caplog.text
    assert "copypaste:" not in text  # printed once per dataset, by Trainer.test, not by the evaluator
    assert "| category   | AP" in text and "| cat " in text  # per-category table by class name
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000" in text


def test_non_coco_dataset_is_converted_and_cached(tmp_path, register, caplog):
    gt, dets = make_coco_dataset(seed=1, num_images=8)
    dicts = coco_to_dataset_dicts(gt)
    for d in dicts:  # VOC-style string ids
        d["image_id"] = f"2007_{d['image_id']:06d}"
    name = register(lambda: dicts, thing_classes=list(CLASS_NAMES), evaluator_type="pascal_voc")
    inputs, outputs = model_outputs(gt, dets, image_key=lambda img: f"2007_{img['id']:06d}")
    out = tmp_path / "out"
    bbox = _run(COCOEvaluator(name, output_dir=str(out), distributed=False), inputs, outputs)["bbox"]
    # Without metadata ids, the COCO category ids are the contiguous ids themselves.
    to_contiguous = {d: i for i, d in enumerate(DATASET_IDS)}
    gt_c = {**gt, "categories": [{"id": i, "name": n} for i, n in enumerate(CLASS_NAMES)],
            "annotations": [{**a, "category_id": to_contiguous[a["category_id"]]} for a in gt["annotations"]]}
    dets_c = [{**d, "category_id": to_contiguous[d["category_id"]]} for d in dets]
    # Image ids are remapped to 1..N in dataset order; the evaluator's results must not depend on that.
    remap = {img["id"]: k + 1 for k, img in enumerate(gt["images"])}
    gt_c["images"] = [{**img, "id": remap[img["id"]]} for img in gt["images"]]
    gt_c["annotations"] = [{**a, "image_id": remap[a["image_id"]]} for a in gt_c["annotations"]]
    dets_c = [{**d, "image_id": remap[d["image_id"]]} for d in dets_c]
    for key, value in zip(SIX, _reference(gt_c, dets_c)):
        _assert_same(bbox[key], value)
    cache = out / f"{name}_coco_format.json"
    converted = json.loads(cache.read_text())
    assert [img["detkit_image_id"] for img in converted["images"]] == [d["image_id"] for d in dicts]
    with caplog.at_level(logging.INFO, logger="detkit"):
        again = _run(COCOEvaluator(name, output_dir=str(out), distributed=False), inputs, outputs)["bbox"]
    assert "Using the cached COCO-format annotations" in caplog.text
    assert again == bbox


def test_json_file_created_on_first_load(tmp_path, register):
    gt, dets = make_coco_dataset(seed=2, num_images=4)
    path = tmp_path / "later" / "gt.json"
    calls = []

    def load():  # a builtin dataset writes its json the first time it is loaded
        calls.append(1)
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(gt))
        return coco_to_dataset_dicts(gt)

    name = register(load, json_file=str(path), thing_classes=list(CLASS_NAMES),
                    thing_dataset_id_to_contiguous_id={d: i for i, d in enumerate(DATASET_IDS)})
    inputs, outputs = model_outputs(gt, dets)
    bbox = _run(COCOEvaluator(name, distributed=False), inputs, outputs)["bbox"]
    assert calls == [1]
    _assert_same(bbox["AP"], _reference(gt, dets)[0])


def test_errors_name_the_problem(coco_dataset, register, monkeypatch):
    name, gt, dets, _ = coco_dataset
    with pytest.raises(ValueError, match=r"unsupported task\(s\) \['segm'\]"):
        COCOEvaluator(name, tasks=("bbox", "segm"))
    with pytest.raises(ValueError, match="unknown backend 'fast'.*TEST.COCO_EVAL_BACKEND"):
        COCOEvaluator(name, backend="fast")
    with monkeypatch.context() as m:  # faster-coco-eval not installed: say how to get it, before any inference
        m.setitem(sys.modules, "faster_coco_eval", None)
        with pytest.raises(ImportError, match=r"pip install faster-coco-eval.*TEST.COCO_EVAL_BACKEND pycocotools"):
            COCOEvaluator(name, backend="faster")
    inputs, outputs = model_outputs(gt, dets)
    evaluator = COCOEvaluator(name, distributed=False)
    evaluator.process([{**inputs[0], "image_id": 999999}], outputs[:1])
    with pytest.raises(KeyError, match="image_id 999999.*not in the dataset"):
        evaluator.evaluate()
    bad = Instances((10, 10), pred_boxes=Boxes(torch.tensor([[0.0, 0.0, 5.0, 5.0]])), scores=torch.tensor([0.5]),
                    pred_classes=torch.tensor([3]))
    evaluator.reset()
    evaluator.process(inputs[:1], [{"instances": bad}])
    with pytest.raises(ValueError, match=r"image 100 has pred_classes \[3\], outside the 3 classes"):
        evaluator.evaluate()
    missing = register(lambda: [], json_file="/nonexistent/gt.json", thing_classes=["a"])
    evaluator = COCOEvaluator(missing, distributed=False)
    evaluator.process(inputs[:1], outputs[:1])
    with pytest.raises(FileNotFoundError, match=f"'{missing}'.*/nonexistent/gt.json"):
        evaluator.evaluate()


def test_no_predictions_returns_empty(coco_dataset, caplog):
    name, _, _, _ = coco_dataset
    with caplog.at_level(logging.WARNING, logger="detkit"):
        assert _run(COCOEvaluator(name, distributed=False), [], []) == {}
    assert "received no predictions" in caplog.text


def test_box_proposals_through_the_evaluator(tmp_path, register):
    """The hand-made case of test_proposal_evaluation, fed as a ProposalNetwork's output."""
    gt = {"images": [{"id": 1, "width": 400, "height": 400, "file_name": "a.jpg"}],
          "annotations": [
              {"id": 1, "image_id": 1, "bbox": [0.0, 0.0, 10.0, 10.0], "area": 100.0, "iscrowd": 0, "category_id": 1},
              {"id": 2, "image_id": 1, "bbox": [0.0, 0.0, 100.0, 100.0], "area": 10000.0, "iscrowd": 0,
               "category_id": 1},
              {"id": 3, "image_id": 1, "bbox": [200.0, 200.0, 50.0, 50.0], "area": 2500.0, "iscrowd": 0,
               "category_id": 1},
              {"id": 4, "image_id": 1, "bbox": [300.0, 300.0, 50.0, 50.0], "area": 2500.0, "iscrowd": 1,
               "category_id": 1}],
          "categories": [{"id": 1, "name": "cat"}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    name = register(lambda: [], json_file=str(path), thing_classes=["cat"])
    good = torch.tensor([[0, 0, 10, 5], [0, 0, 100, 72], [200, 200, 250, 246]], dtype=torch.float32)
    junk = torch.tensor([[390, 390, 399, 399]], dtype=torch.float32).repeat(100, 1)
    boxes = torch.cat([junk[:50], good, junk[50:], torch.tensor([[0.0, 0.0, 10.0, 10.0]])])  # exact A box last
    logits = torch.cat([torch.full((50,), 5.0), torch.tensor([9.0, 8.0, 7.0]), torch.full((50,), 4.0),
                        torch.tensor([-1.0])])
    perm = torch.randperm(len(boxes), generator=torch.Generator().manual_seed(0))  # evaluator sorts by objectness
    props = Instances((400, 400), proposal_boxes=Boxes(boxes[perm]), objectness_logits=logits[perm])
    res = _run(COCOEvaluator(name, distributed=False), [{"image_id": 1, "height": 400, "width": 400}],
               [{"proposals": props}])["box_proposals"]
    # top 100 lack the exact box of A: A 0.5 (1/10 thresholds), B 0.72 (5/10), C 0.92 (9/10) -> 15/30
    expected = {"AR@100": 50.0, "ARs@100": 10.0, "ARm@100": 90.0, "ARl@100": 50.0,
                "AR@1000": 80.0, "ARs@1000": 100.0, "ARm@1000": 90.0, "ARl@1000": 50.0}
    assert res.keys() == expected.keys()
    for key, value in expected.items():
        assert res[key] == pytest.approx(value, abs=1e-4), key
