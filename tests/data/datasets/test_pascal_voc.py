"""Pascal VOC loading: detectron2's box convention, difficult flags, errors, registration."""
import os

import pytest

from detkit.data import DatasetCatalog, MetadataCatalog
from detkit.data.datasets import VOC_CLASS_NAMES, load_voc_instances, register_pascal_voc
from detkit.structures import BoxMode

from ..conftest import write_voc_xml


def test_boxes_and_difficult(voc_dir):
    dicts = load_voc_instances(voc_dir, "train", ["cat", "dog"])
    assert [d["image_id"] for d in dicts] == ["000001", "000002"]
    assert dicts[0]["file_name"] == os.path.join(voc_dir, "JPEGImages", "000001.jpg")
    assert (dicts[0]["height"], dicts[0]["width"]) == (30, 40)
    # 1-based inclusive pixels: (1, 1, 40, 30) covers the whole 40x30 image -> (0, 0, 40, 30).
    assert dicts[0]["annotations"] == [
        {"bbox": [0.0, 0.0, 40.0, 30.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1, "difficult": 0},
        {"bbox": [4.0, 9.0, 20.0, 25.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "difficult": 1},
    ]
    assert dicts[1]["annotations"] == [  # no <difficult> element -> 0
        {"bbox": [2.0, 3.0, 10.0, 12.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "difficult": 0}]


def test_unknown_class_names_the_file(voc_dir):
    xml = os.path.join(voc_dir, "Annotations", "000001.xml")
    with pytest.raises(ValueError, match=f"'{xml}' has an object of class 'dog', which is not in class_names"):
        load_voc_instances(voc_dir, "train", ["cat"])


def test_malformed_xml_names_the_file(voc_dir):
    xml = os.path.join(voc_dir, "Annotations", "000002.xml")
    with open(xml, "w") as f:
        f.write("<annotation><size>")
    with pytest.raises(ValueError, match=f"'{xml}' is not valid XML"):
        load_voc_instances(voc_dir, "train", ["cat", "dog"])


def test_missing_element_names_the_file(voc_dir):
    xml = os.path.join(voc_dir, "Annotations", "000002.xml")
    with open(xml, "w") as f:
        f.write("<annotation><size><width>3</width></size></annotation>")
    with pytest.raises(ValueError, match=f"'{xml}' has no <size/height> element"):
        load_voc_instances(voc_dir, "train", ["cat", "dog"])


def test_missing_box_coordinate_names_the_file(voc_dir):
    xml = os.path.join(voc_dir, "Annotations", "000002.xml")
    write_voc_xml(xml, 24, 16, [("cat", (3, 4, 10, 12), None)])
    with open(xml) as f:
        text = f.read().replace("<ymax>12</ymax>", "")
    with open(xml, "w") as f:
        f.write(text)
    with pytest.raises(ValueError, match=f"'{xml}' has no <bndbox/ymax> element"):
        load_voc_instances(voc_dir, "train", ["cat", "dog"])


def test_missing_split_file(voc_dir):
    with pytest.raises(FileNotFoundError, match="ImageSets/Main/val.txt' does not exist"):
        load_voc_instances(voc_dir, "val", ["cat", "dog"])


def test_missing_annotation_file(voc_dir):
    os.remove(os.path.join(voc_dir, "Annotations", "000002.xml"))
    with pytest.raises(FileNotFoundError, match="000002.xml' \\(listed in '.*train.txt'\\) does not exist"):
        load_voc_instances(voc_dir, "train", ["cat", "dog"])


def test_register_sets_metadata(voc_dir, unique_name):
    name = unique_name()
    register_pascal_voc(name, voc_dir, "train", 2007, class_names=("cat", "dog"))
    meta = MetadataCatalog.get(name)
    assert (meta.thing_classes, meta.dirname, meta.year, meta.split, meta.evaluator_type) == \
        (["cat", "dog"], voc_dir, 2007, "train", "pascal_voc")
    assert len(DatasetCatalog.get(name)) == 2


def test_default_classes_are_the_20_voc_classes():
    assert len(VOC_CLASS_NAMES) == 20 and VOC_CLASS_NAMES[0] == "aeroplane" and VOC_CLASS_NAMES[-1] == "tvmonitor"
