"""A generated COCO dataset seeded with one of each problem check_dataset reports (shared with a tool test)."""
import json
import os

import numpy as np
from PIL import Image

from .conftest import write_image


def make_broken_coco(root):
    """A COCO dataset with one of each problem; returns (json_file, image_root, the expected problems)."""
    img = os.path.join(root, "images")
    os.makedirs(img, exist_ok=True)
    for name in ("ok.jpg", "cut.jpg", "dupid.jpg", "empty.jpg"):
        write_image(os.path.join(img, name), 40, 30, seed=len(name))
    data = open(os.path.join(img, "cut.jpg"), "rb").read()
    open(os.path.join(img, "cut.jpg"), "wb").write(data[: len(data) // 2])
    open(os.path.join(img, "zero.jpg"), "wb").close()
    write_image(os.path.join(img, "size.png"), 40, 30, fmt="PNG")
    write_image(os.path.join(img, "rot.png"), 6, 4, fmt="PNG", exif_orientation=6)  # viewed 4 wide, 6 high
    Image.new("CMYK", (40, 30), (0, 100, 200, 50)).save(os.path.join(img, "cmyk.jpg"))
    Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16)).save(os.path.join(img, "grey16.png"))

    def im(i, name, w=40, h=30):
        return {"id": i, "file_name": name, "width": w, "height": h}

    images = [im(1, "ok.jpg"), im(2, "cut.jpg"), im(3, "zero.jpg"), im(4, "missing.jpg"), im(5, "size.png", w=41),
              im(6, "rot.png", w=4, h=6), im(7, "cmyk.jpg"), im(8, "grey16.png"), im(1, "dupid.jpg"),
              im(10, "ok.jpg"), im(11, "empty.jpg")]
    good = [{"id": 100 + i["id"], "image_id": i["id"], "category_id": 3, "bbox": [1, 1, 2, 3], "iscrowd": 0}
            for i in images if i["id"] not in (1, 11)]
    anns = good + [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [2, 3, 20, 10]},  # a good box, large enough: medium
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [1, float("nan"), 5, 5]},
        {"id": 3, "image_id": 1, "category_id": 99, "bbox": [1, 1, 5, 5]},
        {"id": 4, "image_id": 1, "category_id": 3, "bbox": [5, 5, 0, 4]},
        {"id": 5, "image_id": 1, "category_id": 3, "bbox": [35, 5, 10, 10]},
        {"id": 6, "image_id": 555, "category_id": 3, "bbox": [1, 1, 5, 5]},
        {"id": 7, "image_id": 1, "category_id": 3, "bbox": [1, 2, 3]},
    ]
    json_file = os.path.join(root, "instances.json")
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": anns,
                   "categories": [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}]}, f)  # NaN is written as NaN
    p = lambda name: os.path.join(img, name)  # noqa: E731
    expected = {
        ("unreadable", p("cut.jpg"), 2, None), ("unreadable", p("zero.jpg"), 3, None),
        ("unreadable", p("missing.jpg"), 4, None), ("size_mismatch", p("size.png"), 5, None),
        ("duplicate_image_id", p("dupid.jpg"), 1, None), ("duplicate_file_name", p("ok.jpg"), 10, None),
        ("no_annotations", p("empty.jpg"), 11, None), ("nan_box", p("ok.jpg"), 1, 2),
        ("unknown_category_id", p("ok.jpg"), 1, 3), ("empty_box", p("ok.jpg"), 1, 4),
        ("box_outside_image", p("ok.jpg"), 1, 5), ("unknown_image_id", None, 555, 6), ("bad_bbox", p("ok.jpg"), 1, 7),
    }
    return json_file, img, expected
