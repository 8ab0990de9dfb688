"""Ground truth in COCO format for any registered dataset: read its COCO json, or convert its dicts."""
import json
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from iopath.common.file_io import g_pathmgr

from detkit.data import DatasetCatalog, MetadataCatalog
from detkit.structures import BoxMode

__all__ = ["convert_to_coco_dict", "convert_to_coco_json", "load_coco_ground_truth", "contiguous_to_dataset_ids"]

logger = logging.getLogger(__name__)

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
    if allow_cached and g_pathmgr.exists(output_file):
        logger.info("Using the cached COCO-format annotations of '%s' at %s (delete it to convert again).",
                    dataset_name, output_file)
        return output_file
    coco_dict = convert_to_coco_dict(dataset_name)
    g_pathmgr.mkdirs(os.path.dirname(os.path.abspath(output_file)))
    tmp_file = f"{output_file}.tmp{os.getpid()}"
    with g_pathmgr.open(tmp_file, "w") as f:
        f.write(json.dumps(coco_dict))
    os.replace(tmp_file, output_file)  # atomic: a reader never sees half a file
    logger.info("Cached COCO-format annotations of '%s' at %s", dataset_name, output_file)
    return output_file


def _read_json(path: str) -> Dict[str, Any]:
    with g_pathmgr.open(path, "r") as f:
        return json.load(f)


def load_coco_ground_truth(dataset_name: str, output_dir: Optional[str] = None
                           ) -> Tuple[Dict[str, Any], Dict[Any, int], Dict[int, int]]:
    """Ground truth of ``dataset_name`` as a COCO dict, with the id maps predictions need.

    A dataset whose metadata names a ``json_file`` is read from it; if that file does not exist
    yet (a builtin dataset generated on first use), the dataset is loaded once to create it.
    Any other dataset is converted from its dicts, cached as
    ``<output_dir>/<dataset_name>_coco_format.json`` when ``output_dir`` is given.

    Args:
        dataset_name: a registered dataset.
        output_dir: folder for the converted json, or None to convert in memory.

    Returns:
        (coco_dict, image_id_map from the dataset's ``image_id`` to the COCO image id,
        map from contiguous class id to COCO category id).
    """
    meta = MetadataCatalog.get(dataset_name)
    json_file = meta.get("json_file")
    if json_file:
        if not g_pathmgr.exists(json_file):
            logger.info("'%s' does not exist yet; loading dataset '%s' once to create it.", json_file, dataset_name)
            DatasetCatalog.get(dataset_name)
        if not g_pathmgr.exists(json_file):
            raise FileNotFoundError(
                f"Metadata of dataset '{dataset_name}' names json_file '{json_file}', which does not exist even "
                "after loading the dataset. Fix the path or prepare the dataset."
            )
        coco_dict = _read_json(json_file)
    elif output_dir:
        cache = os.path.join(output_dir, f"{dataset_name}_coco_format.json")
        coco_dict = _read_json(convert_to_coco_json(dataset_name, cache))
    else:
        coco_dict = convert_to_coco_dict(dataset_name)
    image_id_map = {img.get(ORIGINAL_IMAGE_ID, img["id"]): img["id"] for img in coco_dict["images"]}
    return coco_dict, image_id_map, contiguous_to_dataset_ids(dataset_name, coco_dict.get("categories"))
