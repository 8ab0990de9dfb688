"""Builtin registrations: names, cheap metadata, and the error for a missing folder."""
import os

import pytest

from detkit.data import DatasetCatalog, MetadataCatalog
from detkit.data.datasets import SHAPES_CLASSES

BUILTIN = ["voc_2007_train", "voc_2007_val", "voc_2007_trainval", "voc_2007_test", "voc_2012_trainval",
           "coco_2017_train", "coco_2017_val", "shapes_train", "shapes_val"]


def test_all_builtin_names_are_registered():
    assert set(BUILTIN) <= set(DatasetCatalog.list())


def test_missing_voc_folder_names_path_env_and_layout():
    root = os.environ["DETKIT_DATASETS"]
    with pytest.raises(FileNotFoundError) as e:
        DatasetCatalog.get("voc_2012_trainval")
    msg = str(e.value)
    assert f"'{os.path.join(root, 'VOC2012')}' does not exist" in msg
    assert "$DETKIT_DATASETS" in msg and "Annotations,ImageSets/Main,JPEGImages" in msg


def test_missing_coco_folder_names_path_env_and_layout():
    with pytest.raises(FileNotFoundError) as e:
        DatasetCatalog.get("coco_2017_val")
    msg = str(e.value)
    assert "coco/annotations/instances_val2017.json' does not exist" in msg
    assert "$DETKIT_DATASETS" in msg and "coco/{train2017,val2017}" in msg


def test_voc_and_coco_metadata_without_files():
    voc = MetadataCatalog.get("voc_2007_test")
    assert (voc.evaluator_type, voc.year, voc.split, len(voc.thing_classes)) == ("pascal_voc", 2007, "test", 20)
    coco = MetadataCatalog.get("coco_2017_val")
    assert coco.evaluator_type == "coco" and coco.json_file.endswith("coco/annotations/instances_val2017.json")
    with pytest.raises(FileNotFoundError, match="instances_val2017.json' does not exist"):
        coco.thing_classes  # read lazily from the (missing) JSON


def test_shapes_metadata_is_complete_without_generating():
    root = os.environ["DETKIT_DATASETS"]
    meta = MetadataCatalog.get("shapes_train")
    assert meta.evaluator_type == "coco"
    assert meta.json_file == os.path.join(root, "shapes", "shapes_train_1000_320_1234", "annotations.json")
    assert meta.image_root == os.path.join(root, "shapes", "shapes_train_1000_320_1234", "images")
    assert meta.thing_classes == list(SHAPES_CLASSES)
    assert meta.thing_dataset_id_to_contiguous_id == {1: 0, 2: 1, 3: 2}
    assert MetadataCatalog.get("shapes_val").json_file.endswith("shapes_val_200_320_5678/annotations.json")
