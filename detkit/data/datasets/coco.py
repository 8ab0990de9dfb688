"""COCO-format JSON: files -> standard dataset dicts, their registration, and dataset dicts -> COCO json."""
import json
import logging
import os
from typing import Any, Dict, List, Optional

import numpy as np
from iopath.common.file_io import g_pathmgr as PathManager

from detkit.structures import BoxMode

from ..catalog import DatasetCatalog, MetadataCatalog

__all__ = ["load_coco_json", "register_coco_instances", "read_coco_categories", "convert_to_coco_dict",
           "convert_to_coco_json", "contiguous_to_dataset_ids"]

logger = logging.getLogger(__name__)


def _read_json(json_file: str) -> Dict[str, Any]:
    if not PathManager.exists(json_file):
        raise FileNotFoundError(f"COCO json file '{json_file}' does not exist.")
    with PathManager.open(json_file, "r") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"COCO json file '{json_file}' is not valid JSON: {e}.") from e
    if not isinstance(data, dict):
        raise ValueError(f"COCO json file '{json_file}' must hold a JSON object, got {type(data).__name__}.")
    return data


def _require(obj: dict, key: str, json_file: str, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ValueError(f"COCO json file '{json_file}': {where} has no '{key}' key. "
                         "Check the file follows the COCO detection format.")
    return obj[key]


def _category_map(categories: List[dict], json_file: str):
    """Sorted dataset category ids -> (id map to 0..K-1, class names in that order)."""
    cats = {}
    for i, c in enumerate(categories):
        cid = _require(c, "id", json_file, f"categories[{i}]")
        cats[cid] = _require(c, "name", json_file, f"category id {cid}")
    ids = sorted(cats)
    return {cid: i for i, cid in enumerate(ids)}, [cats[cid] for cid in ids]


def read_coco_categories(json_file: str):
    """Read only what the metadata needs from a COCO file.

    Returns:
        (thing_dataset_id_to_contiguous_id, thing_classes): sorted dataset ids map to 0..K-1.
    """
    data = _read_json(json_file)
    return _category_map(_require(data, "categories", json_file, "the top level"), json_file)


def load_coco_json(json_file: str, image_root: str, dataset_name: Optional[str] = None,
                   extra_annotation_keys: Optional[List[str]] = None) -> List[dict]:
    """Load a COCO instances file as a list of standard dataset dicts.

    Category ids become contiguous 0-based ids in sorted id order; boxes go from XYWH to
    XYXY_ABS; ``iscrowd`` is kept; boxes of zero or negative size are dropped (one warning).

    Args:
        json_file: path (any iopath path) of the COCO instances JSON.
        image_root: folder the images' ``file_name`` entries are relative to.
        dataset_name: if given, ``thing_classes`` and ``thing_dataset_id_to_contiguous_id`` are
            stored in ``MetadataCatalog.get(dataset_name)``.
        extra_annotation_keys: more annotation keys to copy as they are into each annotation
            dict (e.g. ``["area", "attributes"]``), where the annotation has them. The keys
            detkit sets itself (``bbox``, ``bbox_mode``, ``category_id``, ``iscrowd``) keep
            their converted values.

    Returns:
        One dict per image: ``file_name``, ``image_id`` (the file's id), ``height``, ``width``,
        ``annotations`` (``bbox``, ``bbox_mode``, ``category_id``, ``iscrowd``, and the extra keys).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: malformed JSON, a missing key, or an annotation pointing at an unknown image or
            category; the message names the file and the image / annotation id.
    """
    data = _read_json(json_file)
    extra_keys = list(extra_annotation_keys or [])
    id_map, classes = _category_map(_require(data, "categories", json_file, "the top level"), json_file)
    if dataset_name is not None:
        MetadataCatalog.get(dataset_name).set(thing_classes=classes, thing_dataset_id_to_contiguous_id=id_map)

    records: Dict[Any, dict] = {}
    for i, img in enumerate(_require(data, "images", json_file, "the top level")):
        image_id = _require(img, "id", json_file, f"images[{i}]")
        where = f"image id {image_id}"
        records[image_id] = {
            "file_name": os.path.join(image_root, _require(img, "file_name", json_file, where)),
            "height": int(_require(img, "height", json_file, where)),
            "width": int(_require(img, "width", json_file, where)),
            "image_id": image_id,
            "annotations": [],
        }

    anns = data.get("annotations", [])  # test-set files have none
    parsed = []
    for i, ann in enumerate(anns):
        ann_id = ann.get("id", f"#{i}") if isinstance(ann, dict) else f"#{i}"
        where = f"annotation id {ann_id}"
        image_id = _require(ann, "image_id", json_file, where)
        cat = _require(ann, "category_id", json_file, where)
        bbox = _require(ann, "bbox", json_file, where)
        if image_id not in records:
            raise ValueError(f"COCO json file '{json_file}': annotation id {ann_id} refers to image id "
                             f"{image_id}, which is not in 'images'.")
        if cat not in id_map:
            raise ValueError(f"COCO json file '{json_file}': annotation id {ann_id} has category_id {cat}, "
                             f"which is not in 'categories' (known ids: {sorted(id_map)}).")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise ValueError(f"COCO json file '{json_file}': annotation id {ann_id} has bbox {bbox!r}; "
                             "expected [x, y, width, height].")
        extra = {k: ann[k] for k in extra_keys if k in ann}
        parsed.append((image_id, id_map[cat], int(ann.get("iscrowd", 0)), extra))

    if parsed:
        xywh = np.asarray([a["bbox"] for a in anns], dtype=np.float64)  # (A, 4)
        valid = (xywh[:, 2] > 0) & (xywh[:, 3] > 0)  # (A,)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).tolist()  # (A, 4)
        num_dropped = int((~valid).sum())
        if num_dropped:
            logger.warning("Dropped %d annotation(s) with zero or negative box size from %s.", num_dropped, json_file)
        for (image_id, cat, crowd, extra), box, ok in zip(parsed, xyxy, valid.tolist()):
            if ok:
                records[image_id]["annotations"].append(
                    {**extra, "bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": cat, "iscrowd": crowd})
    logger.info("Loaded %d images and %d annotations from %s.", len(records), len(parsed), json_file)
    return list(records.values())


def register_coco_instances(name: str, metadata: Dict[str, Any], json_file: str, image_root: str) -> None:
    """Register a COCO-format dataset under ``name``.

    Registration reads nothing. The metadata gets ``evaluator_type="coco"``, ``json_file``,
    ``image_root`` and the given ``metadata``; ``thing_classes`` and
    ``thing_dataset_id_to_contiguous_id`` (unless given) are read from the JSON's categories the
    first time they are asked for, so an evaluator works before the dataset is loaded.

    Args:
        name: dataset name, e.g. ``"my_coco_train"``.
        metadata: extra metadata attributes (may be empty).
        json_file: path of the COCO instances JSON.
        image_root: folder holding the images.
    """
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
    meta = MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco",
                                         **metadata)
    cache: Dict[str, Any] = {}

    def _categories():
        if "v" not in cache:
            cache["v"] = read_coco_categories(json_file)
        return cache["v"]

    meta.set_lazy("thing_dataset_id_to_contiguous_id", lambda: _categories()[0])
    meta.set_lazy("thing_classes", lambda: _categories()[1])


# Key under which a converted COCO "images" entry keeps the dataset dict's own image_id.
ORIGINAL_IMAGE_ID = "detkit_image_id"


def contiguous_to_dataset_ids(dataset_name: str, coco_categories: Optional[List[dict]] = None) -> Dict[int, int]:
    """Map contiguous 0-based class ids to the dataset's category ids.

    Uses ``thing_dataset_id_to_contiguous_id`` from the metadata when present; otherwise the
    sorted category ids of ``coco_categories`` (the COCO convention), or the identity.

    Args:
        dataset_name: a name in ``MetadataCatalog``.
        coco_categories: the ``categories`` list of the dataset's COCO json, if it has one.
    """
    meta = MetadataCatalog.get(dataset_name)
    to_contiguous = meta.get("thing_dataset_id_to_contiguous_id")
    if to_contiguous:
        return {int(c): int(d) for d, c in to_contiguous.items()}
    if coco_categories:
        return {i: int(c["id"]) for i, c in enumerate(sorted(coco_categories, key=lambda c: c["id"]))}
    num_classes = len(meta.get("thing_classes", []) or [])
    return {i: i for i in range(num_classes)}


def _coco_image_ids(image_ids: List[Any]) -> List[int]:
    """Integer COCO ids for the dataset's image ids: themselves if they are unique ints, else 1..N."""
    ints = all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in image_ids)
    if ints and len(set(image_ids)) == len(image_ids):
        return [int(i) for i in image_ids]
    return list(range(1, len(image_ids) + 1))


def convert_to_coco_dict(dataset_name: str) -> Dict[str, Any]:
    """Convert a registered dataset's dicts to a COCO-format ground-truth dict (boxes only).

    Image ids that are not unique integers (e.g. VOC's "2007_000027") get integer ids 1..N; each
    image entry keeps the original under ``"detkit_image_id"``. Boxes become XYWH, ``area`` is the
    box area unless the annotation gives one, ``iscrowd`` defaults to 0, and contiguous
    ``category_id`` values map back to the dataset's ids (see ``contiguous_to_dataset_ids``).

    Args:
        dataset_name: a name registered in ``DatasetCatalog`` and ``MetadataCatalog``.

    Returns:
        A dict with ``info``, ``images``, ``annotations`` and ``categories``.
    """
    dataset_dicts = DatasetCatalog.get(dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    thing_classes = list(meta.get("thing_classes", []) or [])
    to_dataset_id = contiguous_to_dataset_ids(dataset_name)
    if not thing_classes:
        raise ValueError(
            f"Dataset '{dataset_name}' has no metadata 'thing_classes'; set "
            f"MetadataCatalog.get('{dataset_name}').thing_classes before evaluating it."
        )
    categories = [{"id": to_dataset_id.get(i, i), "name": name} for i, name in enumerate(thing_classes)]

    original_ids = [d.get("image_id", i) for i, d in enumerate(dataset_dicts)]
    coco_ids = _coco_image_ids(original_ids)
    images, annotations = [], []
    for record, orig_id, coco_id in zip(dataset_dicts, original_ids, coco_ids):
        images.append({"id": coco_id, "width": int(record["width"]), "height": int(record["height"]),
                       "file_name": record.get("file_name", ""), ORIGINAL_IMAGE_ID: orig_id})
        for ann in record.get("annotations", []):
            mode = ann.get("bbox_mode", BoxMode.XYXY_ABS)
            x, y, w, h = BoxMode.convert(ann["bbox"], mode, BoxMode.XYWH_ABS)
            contiguous = int(ann["category_id"])
            if contiguous not in to_dataset_id and to_dataset_id:
                raise ValueError(
                    f"Dataset '{dataset_name}', image {orig_id!r}: category_id {contiguous} is not one of the "
                    f"{len(thing_classes)} contiguous ids of thing_classes."
                )
            annotations.append({
                "id": len(annotations) + 1, "image_id": coco_id, "bbox": [x, y, w, h],
                "area": float(ann.get("area", w * h)), "iscrowd": int(ann.get("iscrowd", 0)),
                "category_id": to_dataset_id.get(contiguous, contiguous),
            })
    logger.info("Converted dataset '%s' to COCO format: %d images, %d annotations.",
                dataset_name, len(images), len(annotations))
    return {"info": {"description": f"detkit conversion of '{dataset_name}'"}, "images": images,
            "annotations": annotations, "categories": categories}


def convert_to_coco_json(dataset_name: str, output_file: str, allow_cached: bool = True) -> str:
    """Write ``convert_to_coco_dict(dataset_name)`` to ``output_file``, or reuse a file already there.

    Args:
        dataset_name: a registered dataset.
        output_file: where the json goes (iopath path).
        allow_cached: reuse an existing ``output_file`` instead of converting again.

    Returns:
        ``output_file``.
    """
    if allow_cached and PathManager.exists(output_file):
        logger.info("Using the cached COCO-format annotations of '%s' at %s (delete it to convert again).",
                    dataset_name, output_file)
        return output_file
    coco_dict = convert_to_coco_dict(dataset_name)
    PathManager.mkdirs(os.path.dirname(os.path.abspath(output_file)))
    tmp_file = f"{output_file}.tmp{os.getpid()}"
    with PathManager.open(tmp_file, "w") as f:
        f.write(json.dumps(coco_dict))
    os.replace(tmp_file, output_file)  # atomic: a reader never sees half a file
    logger.info("Cached COCO-format annotations of '%s' at %s", dataset_name, output_file)
    return output_file
