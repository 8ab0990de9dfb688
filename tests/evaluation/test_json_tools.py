"""Saved results files: re-scored (tools/evaluate_json.py) and drawn (tools/visualize_json_results.py)."""
import json
import logging

import numpy as np
import pytest
from PIL import Image

from evaluation_testdata import CLASS_NAMES, DATASET_IDS, coco_to_dataset_dicts, make_coco_dataset, model_outputs
from detkit.evaluation import COCOEvaluator, draw_results_file, rescore_results_file


def test_evaluate_json_rescores_saved_results(coco_dataset, tmp_path, caplog):
    name, gt, dets, _ = coco_dataset
    inputs, outputs = model_outputs(gt, dets)
    evaluator = COCOEvaluator(name, output_dir=str(tmp_path), distributed=False)
    evaluator.reset()
    evaluator.process(inputs, outputs)
    direct = evaluator.evaluate()
    results_file = tmp_path / "coco_instances_results.json"
    with caplog.at_level(logging.INFO, logger="detkit"):
        again = rescore_results_file(name, str(results_file), backend="faster")
    assert again.keys() == {"bbox"} and again["bbox"] == pytest.approx(direct["bbox"], abs=1e-9)
    assert "Per-category bbox AP" in caplog.text and "copypaste: AP,AP50,AP75,APs,APm,APl" in caplog.text
    with pytest.raises(FileNotFoundError, match="nope.json"):
        rescore_results_file(name, str(tmp_path / "nope.json"))
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{**dets[0], "image_id": 424242}]))
    with pytest.raises(KeyError, match=r"image ids \[424242\]"):
        rescore_results_file(name, str(other))


def test_visualize_json_results_draws_truth_beside_predictions(tmp_path, register):
    gt, _ = make_coco_dataset(seed=3, num_images=2)
    for img in gt["images"]:
        Image.fromarray(np.full((img["height"], img["width"], 3), 40, np.uint8)).save(tmp_path / img["file_name"])
    dicts = coco_to_dataset_dicts(gt)
    for d in dicts:
        d["file_name"] = str(tmp_path / d["file_name"])
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    name = register(lambda: dicts, json_file=str(path), thing_classes=list(CLASS_NAMES),
                    thing_dataset_id_to_contiguous_id={d: i for i, d in enumerate(DATASET_IDS)})
    first = gt["images"][0]
    results = [
        {"image_id": first["id"], "category_id": DATASET_IDS[1], "bbox": [20.0, 150.0, 60.0, 40.0], "score": 0.9},
        {"image_id": first["id"], "category_id": DATASET_IDS[2], "bbox": [120.0, 20.0, 50.0, 50.0], "score": 0.1}]
    results_file = tmp_path / "res.json"
    results_file.write_text(json.dumps(results))
    out = tmp_path / "vis"
    written = draw_results_file(str(results_file), name, str(out), conf_threshold=0.5)
    assert written == 2 and sorted(p.name for p in out.iterdir()) == ["img0.png", "img1.png"]
    canvas = np.asarray(Image.open(out / "img0.png").convert("RGB"))
    w = first["width"]
    assert canvas.shape == (first["height"], 2 * w, 3)
    right = canvas[:, w:]
    # The 0.9 "dog" box (XYXY 20,150,80,190) is drawn on the right: class 1's colour, hue 0.618 at
    # saturation 0.85, is (0.15, 0.398, 1.0) * 255; at alpha 0.5 over the grey 40 its full-cover
    # pixels on the right edge (x=80) read (39, 71, 148).
    assert np.abs(right[170, 80].astype(int) - [39, 71, 148]).max() <= 1
    assert (right[170, 50] == 40).all()  # inside the box: untouched
    assert (right[20:71, 120:171] == 40).all()  # the 0.1 "bird" box (120,20,170,70) is not drawn
    left = canvas[:, :w]
    ann = [a for a in gt["annotations"] if a["image_id"] == first["id"] and not a["iscrowd"]][0]
    x0, y0, bw, bh = ann["bbox"]
    assert (left[int(y0 + bh / 2), int(x0)] != 40).any()  # the ground truth's left edge is drawn
