"""Pascal VOC (VOCdevkit layout) -> detkit's standard dataset dicts, and their registration."""
import logging
import os
import xml.etree.ElementTree as ET
from typing import List, Sequence

from iopath.common.file_io import g_pathmgr as PathManager

from detkit.structures import BoxMode

from ..catalog import DatasetCatalog, MetadataCatalog

__all__ = ["CLASS_NAMES", "load_voc_instances", "register_pascal_voc"]

logger = logging.getLogger(__name__)

# The 20 Pascal VOC classes, in the usual (alphabetical) order.
CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def _text(node: ET.Element, path: str, xml_file: str) -> str:
    found = node.find(path)
    if found is None or found.text is None:
        raise ValueError(f"VOC annotation '{xml_file}' has no <{path}> element; "
                         "it does not follow the VOCdevkit Annotations format.")
    return found.text.strip()


def _parse_xml(xml_file: str, fileid: str, jpeg_dir: str, class_names: Sequence[str]) -> dict:
    with PathManager.open(xml_file, "r") as f:
        try:
            tree = ET.parse(f)
        except ET.ParseError as e:
            raise ValueError(f"VOC annotation '{xml_file}' is not valid XML: {e}.") from e
    try:
        height = int(float(_text(tree, "size/height", xml_file)))
        width = int(float(_text(tree, "size/width", xml_file)))
    except ValueError as e:
        if "VOC annotation" in str(e):
            raise
        raise ValueError(f"VOC annotation '{xml_file}' has a non-numeric image size: {e}.") from e
    instances = []
    for obj in tree.findall("object"):
        cls = _text(obj, "name", xml_file)
        if cls not in class_names:
            raise ValueError(f"VOC annotation '{xml_file}' has an object of class '{cls}', which is not in "
                             f"class_names ({', '.join(class_names)}). Pass the dataset's classes as class_names.")
        difficult = obj.find("difficult")
        try:
            box = [float(_text(obj, f"bndbox/{k}", xml_file)) for k in ("xmin", "ymin", "xmax", "ymax")]
            difficult = int(float(difficult.text)) if difficult is not None and difficult.text else 0
        except ValueError as e:
            if "VOC annotation" in str(e):
                raise
            raise ValueError(f"VOC annotation '{xml_file}' has a non-numeric box or difficult flag: {e}.") from e
        # VOC boxes are 1-based inclusive pixel indices: a box covering the whole image is
        # (1, 1, W, H). In continuous coordinates that is (0, 0, W, H), so only the minima move.
        box[0] -= 1.0
        box[1] -= 1.0
        instances.append({"bbox": box, "bbox_mode": BoxMode.XYXY_ABS,
                          "category_id": class_names.index(cls), "difficult": difficult})
    return {
        "file_name": os.path.join(jpeg_dir, fileid + ".jpg"),
        "image_id": fileid,
        "height": height,
        "width": width,
        "annotations": instances,
    }


def load_voc_instances(dirname: str, split: str, class_names: Sequence[str] = CLASS_NAMES) -> List[dict]:
    """Load one split of a VOCdevkit folder as standard dataset dicts.

    Args:
        dirname: folder holding ``Annotations/``, ``ImageSets/Main/`` and ``JPEGImages/``
            (e.g. ``VOCdevkit/VOC2007``).
        split: ``"train"``, ``"val"``, ``"trainval"`` or ``"test"`` (``ImageSets/Main/{split}.txt``).
        class_names: the classes; ``category_id`` is the index into this list.

    Returns:
        One dict per image: ``file_name``, ``image_id`` (the VOC file id, a string), ``height``,
        ``width``, ``annotations`` (``bbox`` XYXY_ABS in detectron2's convention, ``category_id``,
        ``difficult``).

    Raises:
        FileNotFoundError: the split file or an annotation file is missing.
        ValueError: malformed XML, or a class outside ``class_names``; the message names the file.
    """
    class_names = list(class_names)
    split_file = os.path.join(dirname, "ImageSets", "Main", split + ".txt")
    if not PathManager.exists(split_file):
        raise FileNotFoundError(f"VOC split file '{split_file}' does not exist. Expected the VOCdevkit layout: "
                                f"{dirname}/{{Annotations,ImageSets/Main,JPEGImages}}.")
    with PathManager.open(split_file, "r") as f:
        fileids = [line.strip() for line in f if line.strip()]
    ann_dir = os.path.join(dirname, "Annotations")
    jpeg_dir = os.path.join(dirname, "JPEGImages")
    dicts = []
    for fileid in fileids:
        xml_file = os.path.join(ann_dir, fileid + ".xml")
        if not PathManager.exists(xml_file):
            raise FileNotFoundError(f"VOC annotation '{xml_file}' (listed in '{split_file}') does not exist.")
        dicts.append(_parse_xml(xml_file, fileid, jpeg_dir, class_names))
    logger.info("Loaded %d images from %s (split '%s').", len(dicts), dirname, split)
    return dicts


def register_pascal_voc(name: str, dirname: str, split: str, year: int,
                        class_names: Sequence[str] = CLASS_NAMES) -> None:
    """Register a VOCdevkit split under ``name``; metadata gets classes, dirname, year, split.

    Args:
        name: dataset name, e.g. ``"voc_2007_trainval"``.
        dirname: the VOCdevkit year folder (e.g. ``datasets/VOC2007``).
        split: the ``ImageSets/Main`` split.
        year: 2007 or 2012 (the VOC evaluator uses the 11-point metric for 2007).
        class_names: the classes, in ``category_id`` order.
    """
    class_names = list(class_names)
    DatasetCatalog.register(name, lambda: load_voc_instances(dirname, split, class_names))
    MetadataCatalog.get(name).set(thing_classes=class_names, dirname=dirname, year=year, split=split,
                                  evaluator_type="pascal_voc")
