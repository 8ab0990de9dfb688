"""Dataset loaders (COCO JSON, Pascal VOC, synthetic shapes) and the builtin registrations."""
from .builtin import datasets_root, register_all_builtin
from .coco import (convert_to_coco_dict, convert_to_coco_json, load_coco_json, read_coco_categories,
                   register_coco_instances)
from .pascal_voc import CLASS_NAMES as VOC_CLASS_NAMES
from .pascal_voc import load_voc_instances, register_pascal_voc
from .shapes import (SHAPES_CLASSES, SHAPES_TRAIN_SEED, SHAPES_VAL_SEED, draw_shapes_image, generate_shapes,
                     register_shapes, shapes_folder)

__all__ = [
    "load_coco_json", "read_coco_categories", "register_coco_instances", "load_voc_instances",
    "register_pascal_voc", "VOC_CLASS_NAMES", "register_shapes", "generate_shapes", "draw_shapes_image",
    "shapes_folder", "SHAPES_CLASSES", "SHAPES_TRAIN_SEED", "SHAPES_VAL_SEED", "register_all_builtin",
    "datasets_root", "convert_to_coco_dict", "convert_to_coco_json",
]
