"""Register detkit's builtin datasets (VOC, COCO 2017, shapes) under ``$DETKIT_DATASETS``.

Registration reads nothing; loading a dataset whose folder is missing raises a
``FileNotFoundError`` that names the path, the ``DETKIT_DATASETS`` variable and the layout.
"""
import os
from typing import Callable, List

from ..catalog import DatasetCatalog, MetadataCatalog
from .coco import load_coco_json, read_coco_categories
from .pascal_voc import CLASS_NAMES, load_voc_instances
from .shapes import SHAPES_TRAIN_SEED, SHAPES_VAL_SEED, register_shapes

__all__ = ["register_all_builtin", "datasets_root"]

_VOC_SPLITS = {
    "voc_2007_train": ("VOC2007", "train", 2007),
    "voc_2007_val": ("VOC2007", "val", 2007),
    "voc_2007_trainval": ("VOC2007", "trainval", 2007),
    "voc_2007_test": ("VOC2007", "test", 2007),
    "voc_2012_trainval": ("VOC2012", "trainval", 2012),
}
_COCO_SPLITS = {
    "coco_2017_train": ("coco/train2017", "coco/annotations/instances_train2017.json"),
    "coco_2017_val": ("coco/val2017", "coco/annotations/instances_val2017.json"),
}
_DONE = []  # roots already registered (importing twice must not register twice)
_VOC_LAYOUT = "VOC2007/{Annotations,ImageSets/Main,JPEGImages}/ and VOC2012/... (VOCdevkit year folders)"
_COCO_LAYOUT = "coco/{train2017,val2017}/*.jpg and coco/annotations/instances_{train,val}2017.json"


def datasets_root() -> str:
    """The datasets root: ``$DETKIT_DATASETS``, or ``./datasets`` when unset."""
    return os.environ.get("DETKIT_DATASETS", "datasets")


def _checked(paths: List[str], root: str, layout: str, load: Callable[[], list]) -> Callable[[], list]:
    def _load():
        for p in paths:
            if not os.path.exists(p):
                raise FileNotFoundError(
                    f"Dataset path '{p}' does not exist. Builtin datasets live under $DETKIT_DATASETS "
                    f"(here '{root}'; default ./datasets) with the layout {layout}. "
                    "Download the dataset there or set DETKIT_DATASETS.")
        return load()
    return _load


def _register_voc(root: str) -> None:
    for name, (folder, split, year) in _VOC_SPLITS.items():
        dirname = os.path.join(root, folder)
        DatasetCatalog.register(name, _checked([dirname], root, _VOC_LAYOUT,
                                               lambda d=dirname, s=split: load_voc_instances(d, s, CLASS_NAMES)))
        MetadataCatalog.get(name).set(thing_classes=list(CLASS_NAMES), dirname=dirname, year=year, split=split,
                                      evaluator_type="pascal_voc")


def _register_coco(root: str) -> None:
    for name, (image_dir, json_rel) in _COCO_SPLITS.items():
        image_root, json_file = os.path.join(root, image_dir), os.path.join(root, json_rel)
        DatasetCatalog.register(name, _checked([json_file, image_root], root, _COCO_LAYOUT,
                                               lambda j=json_file, r=image_root, n=name: load_coco_json(j, r, n)))
        meta = MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco")
        cache = {}

        def _cats(j=json_file, c=cache):
            if "v" not in c:
                _checked([j], root, _COCO_LAYOUT, lambda: None)()
                c["v"] = read_coco_categories(j)
            return c["v"]

        meta.set_lazy("thing_dataset_id_to_contiguous_id", lambda f=_cats: f()[0])
        meta.set_lazy("thing_classes", lambda f=_cats: f()[1])


def register_all_builtin(root: str = None) -> None:
    """Register voc_2007_{train,val,trainval,test}, voc_2012_trainval, coco_2017_{train,val},
    shapes_train (1000 images) and shapes_val (200 images, another seed), 320x320 px."""
    root = root if root is not None else datasets_root()
    if _DONE:
        return
    _DONE.append(root)
    _register_voc(root)
    _register_coco(root)
    register_shapes("shapes_train", 1000, 320, SHAPES_TRAIN_SEED, root)
    register_shapes("shapes_val", 200, 320, SHAPES_VAL_SEED, root)
