"""Converting dataset dicts to COCO format, caching it, and mapping ids."""
import json
import logging

import pytest

from detkit.data.datasets.coco import contiguous_to_dataset_ids, convert_to_coco_dict, convert_to_coco_json
from detkit.evaluation.coco_conversion import load_coco_ground_truth
from detkit.structures import BoxMode

DICTS = [
    {"file_name": "a.jpg", "image_id": "2007_000005", "height": 50, "width": 60, "annotations": [
        {"bbox": [1.0, 2.0, 11.0, 22.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1, "difficult": 1},
        {"bbox": [5.0, 5.0, 10.0, 20.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 1}]},
    {"file_name": "b.jpg", "image_id": "2007_000007", "height": 40, "width": 30, "annotations": []},
]


def test_convert_maps_ids_boxes_and_areas(register):
    name = register(lambda: DICTS, thing_classes=["cat", "dog"], thing_dataset_id_to_contiguous_id={5: 0, 9: 1})
    coco = convert_to_coco_dict(name)
    assert coco["categories"] == [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}]
    # String ids become 1..N; the original is kept for mapping predictions.
    assert [(i["id"], i["detkit_image_id"], i["width"], i["height"]) for i in coco["images"]] == \
        [(1, "2007_000005", 60, 50), (2, "2007_000007", 30, 40)]
    assert coco["annotations"] == [
        {"id": 1, "image_id": 1, "bbox": [1.0, 2.0, 10.0, 20.0], "area": 200.0, "iscrowd": 0, "category_id": 9},
        {"id": 2, "image_id": 1, "bbox": [5.0, 5.0, 10.0, 20.0], "area": 200.0, "iscrowd": 1, "category_id": 5},
    ]


def test_integer_ids_are_kept_and_identity_categories(register):
    dicts = [{**d, "image_id": i} for i, d in zip((42, 7), DICTS)]
    name = register(lambda: dicts, thing_classes=["cat", "dog"])
    coco = convert_to_coco_dict(name)
    assert [i["id"] for i in coco["images"]] == [42, 7]
    assert [c["id"] for c in coco["categories"]] == [0, 1]
    assert contiguous_to_dataset_ids(name) == {0: 0, 1: 1}
    # Without metadata ids, a COCO json's sorted category ids define the contiguous order.
    assert contiguous_to_dataset_ids(name, [{"id": 90}, {"id": 2}]) == {0: 2, 1: 90}


def test_cache_is_written_once_and_reused(register, tmp_path, caplog):
    calls = []

    def load():
        calls.append(1)
        return DICTS

    name = register(load, thing_classes=["cat", "dog"])
    out = tmp_path / "cache.json"
    assert convert_to_coco_json(name, str(out)) == str(out)
    with caplog.at_level(logging.INFO, logger="detkit"):
        convert_to_coco_json(name, str(out))
    assert calls == [1] and "Using the cached" in caplog.text
    gt, image_map, cat_map = load_coco_ground_truth(name, str(tmp_path))
    assert (tmp_path / f"{name}_coco_format.json").exists()
    assert image_map == {"2007_000005": 1, "2007_000007": 2} and cat_map == {0: 0, 1: 1}
    assert gt == json.loads(out.read_text())
    # With no output_dir the conversion stays in memory.
    assert load_coco_ground_truth(name, None)[0] == gt


def test_errors_name_dataset_and_fix(register):
    nameless = register(lambda: DICTS)
    with pytest.raises(ValueError, match=f"'{nameless}' has no metadata 'thing_classes'"):
        convert_to_coco_dict(nameless)
    bad = register(lambda: [{**DICTS[0], "annotations": [{"bbox": [0, 0, 1, 1], "category_id": 4}]}],
                   thing_classes=["cat", "dog"])
    with pytest.raises(ValueError, match="image '2007_000005': category_id 4 is not one of the 2"):
        convert_to_coco_dict(bad)
