"""COCO JSON loading: box conversion, id map, crowd, dropped boxes, errors, registration."""
import json
import logging

import pytest

from detkit.data import DatasetCatalog, MetadataCatalog
from detkit.data.datasets import load_coco_json, register_coco_instances
from detkit.structures import BoxMode


def test_boxes_ids_and_crowd(coco_files, caplog):
    json_file, root, _ = coco_files
    with caplog.at_level(logging.WARNING, logger="detkit.data.datasets.coco"):
        dicts = load_coco_json(json_file, root)
    assert [d["image_id"] for d in dicts] == [10, 20]
    assert dicts[0]["file_name"] == f"{root}/a.jpg"
    assert (dicts[0]["height"], dicts[0]["width"]) == (30, 40)
    # XYWH -> XYXY; ids 3 -> 0 and 7 -> 1 (sorted), iscrowd kept, missing iscrowd is 0.
    assert dicts[0]["annotations"] == [
        {"bbox": [1.0, 2.0, 4.0, 6.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1, "iscrowd": 0},
        {"bbox": [10.5, 0.0, 30.5, 5.25], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "iscrowd": 1},
    ]
    assert dicts[1]["annotations"] == [
        {"bbox": [0.0, 1.0, 24.0, 16.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1, "iscrowd": 0}]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "Dropped 1 annotation(s)" in warnings[0] and json_file in warnings[0]


def test_metadata_from_dataset_name(coco_files, unique_name):
    json_file, root, _ = coco_files
    name = unique_name()
    load_coco_json(json_file, root, name)
    meta = MetadataCatalog.get(name)
    assert meta.thing_classes == ["a", "b"]
    assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1}


def test_register_fills_metadata_before_loading(coco_files, unique_name):
    json_file, root, _ = coco_files
    name = unique_name()
    register_coco_instances(name, {"extra": 1}, json_file, root)
    meta = MetadataCatalog.get(name)
    assert (meta.evaluator_type, meta.json_file, meta.image_root, meta.extra) == ("coco", json_file, root, 1)
    assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1}  # read lazily from the JSON
    assert meta.thing_classes == ["a", "b"]
    assert [d["image_id"] for d in DatasetCatalog.get(name)] == [10, 20]
    with pytest.raises(KeyError, match="already registered"):
        register_coco_instances(name, {}, json_file, root)


def _write(tmp_path, data):
    path = tmp_path / "bad.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_malformed_json_names_the_file(tmp_path):
    path = _write(tmp_path, '{"images": [')
    with pytest.raises(ValueError, match=f"'{path}' is not valid JSON"):
        load_coco_json(path, str(tmp_path))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.json' does not exist"):
        load_coco_json(str(tmp_path / "nothere.json"), str(tmp_path))


def test_missing_top_level_key(tmp_path, coco_files):
    data = dict(coco_files[2])
    del data["images"]
    path = _write(tmp_path, data)
    with pytest.raises(ValueError, match=f"'{path}': the top level has no 'images' key"):
        load_coco_json(path, str(tmp_path))


def test_missing_image_key_names_the_image(tmp_path, coco_files):
    data = dict(coco_files[2])
    data["images"] = [{"id": 10, "file_name": "a.jpg", "width": 40}]
    path = _write(tmp_path, data)
    with pytest.raises(ValueError, match=f"'{path}': image id 10 has no 'height' key"):
        load_coco_json(path, str(tmp_path))


def test_missing_annotation_key_names_the_annotation(tmp_path, coco_files):
    data = dict(coco_files[2])
    data["annotations"] = [{"id": 5, "image_id": 10, "category_id": 3}]
    path = _write(tmp_path, data)
    with pytest.raises(ValueError, match=f"'{path}': annotation id 5 has no 'bbox' key"):
        load_coco_json(path, str(tmp_path))


def test_unknown_image_names_annotation_and_image(tmp_path, coco_files):
    data = dict(coco_files[2])
    data["annotations"] = [{"id": 6, "image_id": 99, "category_id": 3, "bbox": [0, 0, 1, 1]}]
    path = _write(tmp_path, data)
    with pytest.raises(ValueError, match=f"'{path}': annotation id 6 refers to image id 99"):
        load_coco_json(path, str(tmp_path))


def test_unknown_category_names_annotation_and_category(tmp_path, coco_files):
    data = dict(coco_files[2])
    data["annotations"] = [{"id": 8, "image_id": 10, "category_id": 4, "bbox": [0, 0, 1, 1]}]
    path = _write(tmp_path, data)
    with pytest.raises(ValueError, match=f"'{path}': annotation id 8 has category_id 4, which is not in "
                                         "'categories' \\(known ids: \\[3, 7\\]\\)"):
        load_coco_json(path, str(tmp_path))


def test_file_without_annotations_gives_empty_lists(tmp_path, coco_files):
    data = dict(coco_files[2])
    del data["annotations"]
    dicts = load_coco_json(_write(tmp_path, data), str(tmp_path))
    assert [d["annotations"] for d in dicts] == [[], []]


def test_extra_annotation_keys_are_kept(tmp_path):
    data = {
        "images": [{"id": 5, "file_name": "x.jpg", "height": 20, "width": 30}],
        "categories": [{"id": 11, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 11, "bbox": [2, 3, 4, 5], "area": 17.5,
             "attributes": {"occluded": True}},
            {"id": 2, "image_id": 5, "category_id": 11, "bbox": [0, 0, 10, 10], "iscrowd": 1},
        ],
    }
    json_file = tmp_path / "extra.json"
    json_file.write_text(json.dumps(data))
    plain = load_coco_json(str(json_file), "imgs")
    assert plain[0]["annotations"][0] == {"bbox": [2.0, 3.0, 6.0, 8.0], "bbox_mode": BoxMode.XYXY_ABS,
                                          "category_id": 0, "iscrowd": 0}
    dicts = load_coco_json(str(json_file), "imgs", extra_annotation_keys=["area", "attributes", "id", "bbox"])
    # Keys copied where the annotation has them; bbox stays the converted XYXY box.
    assert dicts[0]["annotations"] == [
        {"bbox": [2.0, 3.0, 6.0, 8.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "iscrowd": 0,
         "area": 17.5, "attributes": {"occluded": True}, "id": 1},
        {"bbox": [0.0, 0.0, 10.0, 10.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "iscrowd": 1, "id": 2},
    ]


def test_convert_to_coco_dict_and_json_in_the_data_package(unique_name, tmp_path):
    from detkit.data.datasets.coco import convert_to_coco_dict, convert_to_coco_json

    name = unique_name()
    dicts = [
        {"file_name": "a.jpg", "image_id": 3, "height": 10, "width": 20, "annotations": [
            {"bbox": [2.0, 1.0, 8.0, 5.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1},
            {"bbox": [0.0, 0.0, 3.0, 2.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 1}]},
        {"file_name": "b.jpg", "image_id": 9, "height": 6, "width": 7, "annotations": []},
    ]
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=["person", "dog"], thing_dataset_id_to_contiguous_id={1: 0, 18: 1})
    coco = convert_to_coco_dict(name)
    assert coco["categories"] == [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in coco["images"]] == \
        [(3, "a.jpg", 20, 10), (9, "b.jpg", 7, 6)]
    # XYXY [2, 1, 8, 5] -> XYWH [2, 1, 6, 4], area 24; contiguous 1 -> dataset id 18.
    assert coco["annotations"] == [
        {"id": 1, "image_id": 3, "bbox": [2.0, 1.0, 6.0, 4.0], "area": 24.0, "iscrowd": 0, "category_id": 18},
        {"id": 2, "image_id": 3, "bbox": [0.0, 0.0, 3.0, 2.0], "area": 6.0, "iscrowd": 1, "category_id": 1},
    ]
    out = tmp_path / "gt" / "coco.json"
    assert convert_to_coco_json(name, str(out)) == str(out)
    assert json.loads(out.read_text())["annotations"] == coco["annotations"]
    out.write_text("{}")
    convert_to_coco_json(name, str(out))  # allow_cached: the file there is reused
    assert out.read_text() == "{}"
    convert_to_coco_json(name, str(out), allow_cached=False)
    assert json.loads(out.read_text())["categories"] == coco["categories"]
