"""Ground truth in COCO format for any registered dataset: read its COCO json, or convert its dicts."""
import json
import logging
import os
from typing import Any, Dict, Optional, Tuple

from iopath.common.file_io import g_pathmgr

from detkit.data import DatasetCatalog, MetadataCatalog
from detkit.data.datasets.coco import (ORIGINAL_IMAGE_ID, contiguous_to_dataset_ids, convert_to_coco_dict,
                                       convert_to_coco_json)

__all__ = ["load_coco_ground_truth"]

logger = logging.getLogger(__name__)


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
