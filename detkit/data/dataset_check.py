"""check_dataset: find every broken image and annotation of a dataset before training, with statistics."""
import json
import logging
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from iopath.common.file_io import g_pathmgr as PathManager

from detkit.structures import BoxMode

from .catalog import DatasetCatalog, MetadataCatalog
from .image_scan import scan_images

__all__ = ["check_dataset", "DatasetReport", "Problem", "write_fixed_sizes"]

logger = logging.getLogger(__name__)

# Problem kinds: errors stop training (or silently corrupt it); warnings are handled by the loader.
ERRORS = ("unreadable", "size_mismatch", "duplicate_image_id", "missing_key", "bad_bbox", "nan_box",
          "unknown_category_id", "unknown_image_id")
WARNINGS = ("empty_box", "box_outside_image", "duplicate_file_name", "no_annotations")
_OUTSIDE_TOLERANCE = 1.0  # px: boxes past the border by less (rounding) are not reported
_SMALL, _MEDIUM = 32 ** 2, 96 ** 2  # COCO's area ranges


@dataclass
class Problem:
    """One problem: its kind (see ERRORS / WARNINGS), where it is, and what is wrong."""

    kind: str
    message: str
    file_name: Optional[str] = None
    image_id: Any = None
    annotation_id: Any = None

    @property
    def severity(self) -> str:
        return "error" if self.kind in ERRORS else "warning"


@dataclass
class DatasetReport:
    """What ``check_dataset`` found in one dataset.

    Attributes:
        problems: every problem, in file order.
        class_histogram: class name -> number of (valid, non-crowd) boxes.
        box_sizes: ``{"small", "medium", "large"}`` box counts by COCO area (< 32^2, < 96^2, larger).
        box_aspect_ratio / image_aspect_ratio: (min, max) of width / height, or None.
        size_fixes: ``(index in the JSON's images, image_id, height, width)`` for each image whose
            decoded size differs from the annotation's (what ``write_fixed_sizes`` writes).
    """

    name: str
    source: str
    num_images: int = 0
    num_annotations: int = 0
    problems: List[Problem] = field(default_factory=list)
    class_histogram: Dict[str, int] = field(default_factory=dict)
    box_sizes: Dict[str, int] = field(default_factory=lambda: {"small": 0, "medium": 0, "large": 0})
    box_aspect_ratio: Optional[Tuple[float, float]] = None
    image_aspect_ratio: Optional[Tuple[float, float]] = None
    json_file: Optional[str] = None
    size_fixes: List[Tuple[int, Any, int, int]] = field(default_factory=list)

    @property
    def errors(self) -> List[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> List[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def to_dict(self) -> dict:
        """A JSON-serialisable dict: counts, statistics, and every problem with its severity."""
        out = asdict(self)
        out["problems"] = [dict(asdict(p), severity=p.severity) for p in self.problems]
        out.update(num_errors=len(self.errors), num_warnings=len(self.warnings))
        return json.loads(json.dumps(out, default=str))

    def format_table(self, max_rows: int = 20) -> str:
        """The human-readable summary: problems by kind, the first ``max_rows`` problems, statistics."""
        lines = [f"Dataset '{self.name}' ({self.source}): {self.num_images} images, {self.num_annotations} "
                 f"annotations, {len(self.errors)} error(s), {len(self.warnings)} warning(s)."]
        counts = Counter(p.kind for p in self.problems)
        if counts:
            lines.append(f"  {'problem':<22}{'severity':<10}{'count':>7}")
            for kind in ERRORS + WARNINGS:
                if counts[kind]:
                    lines.append(f"  {kind:<22}{'error' if kind in ERRORS else 'warning':<10}{counts[kind]:>7}")
            lines.append("")
            for p in self.problems[:max_rows]:
                where = (f"'{p.file_name}' " if p.file_name else "no such image ") + f"(image_id {p.image_id}" + \
                    ("" if p.annotation_id is None else f", annotation id {p.annotation_id}") + ")"
                lines.append(f"  {p.severity:<8} {where}: {p.message}")
            if len(self.problems) > max_rows:
                lines.append(f"  ... and {len(self.problems) - max_rows} more in the JSON report.")
        lines.append(f"  {'class':<24}{'boxes':>8}")
        for name, n in self.class_histogram.items():
            lines.append(f"  {name:<24}{n:>8}")
        s = self.box_sizes
        lines.append(f"  box sizes (COCO areas): small {s['small']}, medium {s['medium']}, large {s['large']}")
        for label, rng in (("box", self.box_aspect_ratio), ("image", self.image_aspect_ratio)):
            if rng is not None:
                lines.append(f"  {label} aspect ratio (w/h): {rng[0]:.3g} .. {rng[1]:.3g}")
        return "\n".join(lines)


def _read_json(json_file: str) -> dict:
    with PathManager.open(json_file, "r") as f:
        return json.load(f)


def _coco_records(data: dict, json_file: str, image_root: str, report: DatasetReport):
    """Raw COCO JSON -> (images as dicts with raw boxes, category id -> name), reporting what the loader refuses."""
    categories = {c.get("id"): str(c.get("name", c.get("id"))) for c in data.get("categories", [])
                  if isinstance(c, dict)}
    images, by_id = [], {}
    for i, img in enumerate(data.get("images", [])):
        image_id = img.get("id") if isinstance(img, dict) else None
        file_name = os.path.join(image_root, img["file_name"]) if isinstance(img, dict) and "file_name" in img \
            else None
        missing = [k for k in ("id", "file_name", "height", "width") if not isinstance(img, dict) or k not in img]
        if missing:
            report.problems.append(Problem("missing_key", f"images[{i}] has no {', '.join(missing)} in "
                                           f"'{json_file}'", file_name, image_id))
            if "id" in missing or "file_name" in missing:
                continue
        rec = {"index": i, "file_name": file_name, "image_id": image_id, "height": img.get("height"),
               "width": img.get("width"), "anns": []}
        images.append(rec)
        by_id.setdefault(image_id, rec)
    for i, ann in enumerate(data.get("annotations", [])):
        ann_id = ann.get("id", f"#{i}") if isinstance(ann, dict) else f"#{i}"
        ann_image = ann.get("image_id") if isinstance(ann, dict) else None
        rec = by_id.get(ann_image)
        where = (rec["file_name"], rec["image_id"]) if rec else (None, ann_image)
        missing = [k for k in ("image_id", "category_id", "bbox") if not isinstance(ann, dict) or k not in ann]
        if missing:
            report.problems.append(Problem("missing_key", f"annotation has no {', '.join(missing)}", *where, ann_id))
            continue
        if rec is None:
            report.problems.append(Problem("unknown_image_id", f"annotation refers to image id {ann['image_id']}, "
                                           "which is not in 'images'", *where, ann_id))
            continue
        bbox = ann["bbox"]
        xyxy = None
        if isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox):
            x, y, w, h = (float(v) for v in bbox)
            xyxy = [x, y, x + w, y + h]
        rec["anns"].append({"id": ann_id, "category_id": ann["category_id"], "bbox": bbox, "xyxy": xyxy,
                            "iscrowd": int(ann.get("iscrowd", 0) or 0)})
    return images, categories


def _dict_records(dicts: List[dict], classes: Optional[List[str]]):
    """Standard dataset dicts -> the same records as ``_coco_records`` (category ids are contiguous)."""
    images = []
    for i, d in enumerate(dicts):
        anns = []
        for k, a in enumerate(d.get("annotations", [])):
            bbox, xyxy = a.get("bbox"), None
            if isinstance(bbox, (list, tuple)) and len(bbox) == 4:
                try:
                    xyxy = [float(v) for v in BoxMode.convert(list(bbox), a.get("bbox_mode", BoxMode.XYXY_ABS),
                                                              BoxMode.XYXY_ABS)]
                except (TypeError, ValueError):
                    xyxy = None
            anns.append({"id": a.get("id", f"#{k}"), "category_id": a.get("category_id"), "bbox": bbox,
                         "xyxy": xyxy, "iscrowd": int(a.get("iscrowd", 0) or 0)})
        images.append({"index": i, "file_name": d.get("file_name"), "image_id": d.get("image_id"),
                       "height": d.get("height"), "width": d.get("width"), "anns": anns})
    categories = {i: c for i, c in enumerate(classes)} if classes is not None else None
    return images, categories


def _check_records(images: List[dict], categories: Optional[Dict[Any, str]], scans: Dict[str, dict],
                   report: DatasetReport) -> None:
    seen_ids, seen_files = {}, {}
    hist, areas, ratios, image_ratios = Counter(), report.box_sizes, [], []
    for rec in images:
        fn, iid = rec["file_name"], rec["image_id"]
        if iid in seen_ids:  # its annotations went to the first image with this id: nothing more to check
            report.problems.append(Problem("duplicate_image_id", f"image id {iid} is also used by "
                                           f"'{seen_ids[iid]}'", fn, iid))
            continue
        seen_ids[iid] = fn
        if fn in seen_files:
            report.problems.append(Problem("duplicate_file_name", f"the file is also listed as image id "
                                           f"{seen_files[fn]}", fn, iid))
        seen_files.setdefault(fn, iid)
        scan = scans.get(fn, {})
        h, w = rec["height"], rec["width"]
        if "error" in scan:
            report.problems.append(Problem("unreadable", f"cannot be read: {scan['error']}", fn, iid))
        elif scan and h is not None and w is not None and (int(h), int(w)) != (scan["height"], scan["width"]):
            report.problems.append(Problem(
                "size_mismatch", f"decodes to {scan['width']}x{scan['height']} (WxH) after EXIF orientation, but "
                f"the annotation says {w}x{h}", fn, iid))
            report.size_fixes.append((rec["index"], iid, scan["height"], scan["width"]))
        if h and w:
            image_ratios.append(float(w) / float(h))
        objects = 0
        for a in rec["anns"]:
            where = (fn, iid, a["id"])
            if categories is not None and a["category_id"] not in categories:
                report.problems.append(Problem("unknown_category_id", f"category_id {a['category_id']} is not one "
                                               f"of the dataset's categories {sorted(categories)}", *where))
                continue
            if a["xyxy"] is None:
                report.problems.append(Problem("bad_bbox", f"bbox {a['bbox']!r} is not 4 numbers", *where))
                continue
            x0, y0, x1, y1 = a["xyxy"]
            if not all(math.isfinite(v) for v in a["xyxy"]):
                report.problems.append(Problem("nan_box", f"bbox {a['bbox']!r} has a NaN or infinite coordinate",
                                               *where))
                continue
            bw, bh = x1 - x0, y1 - y0
            if bw <= 0 or bh <= 0:
                report.problems.append(Problem("empty_box", f"bbox {a['bbox']!r} has zero or negative area "
                                               "(the loader drops it)", *where))
                continue
            if h and w and (x0 < -_OUTSIDE_TOLERANCE or y0 < -_OUTSIDE_TOLERANCE or x1 > w + _OUTSIDE_TOLERANCE
                            or y1 > h + _OUTSIDE_TOLERANCE):
                report.problems.append(Problem("box_outside_image", f"bbox {a['bbox']!r} (XYXY {x0:g}, {y0:g}, "
                                               f"{x1:g}, {y1:g}) reaches outside the {w}x{h} image (the loader "
                                               "clips it)", *where))
            if a["iscrowd"]:
                continue
            objects += 1
            hist[categories[a["category_id"]] if categories is not None else str(a["category_id"])] += 1
            area = bw * bh
            areas["small" if area < _SMALL else "medium" if area < _MEDIUM else "large"] += 1
            ratios.append(bw / bh)
        if objects == 0:
            report.problems.append(Problem("no_annotations", "the image has no (non-crowd) annotation; training "
                                           "skips it unless DATALOADER.FILTER_EMPTY_ANNOTATIONS is False", fn, iid))
    names = list(categories.values()) if categories is not None else sorted(hist)
    report.class_histogram = {n: hist.get(n, 0) for n in names}
    report.box_aspect_ratio = (min(ratios), max(ratios)) if ratios else None
    report.image_aspect_ratio = (min(image_ratios), max(image_ratios)) if image_ratios else None


def check_dataset(name: str, *, num_workers: Optional[int] = None, cache_dir: Optional[str] = None,
                  progress: bool = True) -> DatasetReport:
    """Scan every image and annotation of a registered dataset and report what is wrong.

    A COCO-format dataset (metadata ``json_file`` and ``image_root``) is checked from its raw
    JSON, so what the loader would refuse or silently drop is reported too; any other dataset
    is checked from its dataset dicts. Every image is decoded fully in ``num_workers``
    processes (results cached by file size and mtime under ``$DETKIT_CACHE``, default
    ``~/.cache/detkit``).

    Errors: unreadable / truncated / empty / missing images, decoded size (after EXIF) differing
    from the annotation, duplicate image ids, NaN or malformed boxes, unknown category or image
    ids, missing keys. Warnings: boxes of zero or negative area, boxes outside the image,
    duplicate file names, images without annotations.

    Args:
        name: a name registered in ``DatasetCatalog``.
        num_workers: decoding processes; default ``min(8, cpu_count)``.
        cache_dir: the cache folder; default ``$DETKIT_CACHE``; ``""`` disables the cache.
        progress: show a progress bar with an ETA on stderr.

    Returns:
        A ``DatasetReport`` (``.errors``, ``.warnings``, ``.format_table()``, ``.to_dict()``).
    """
    meta = MetadataCatalog.get(name)
    json_file, image_root = meta.get("json_file"), meta.get("image_root")
    if json_file and image_root is not None and not PathManager.exists(json_file):
        DatasetCatalog.get(name)  # generated datasets (e.g. shapes) write their JSON when first loaded
    if json_file and image_root is not None and PathManager.exists(json_file):
        report = DatasetReport(name, f"COCO json '{json_file}'", json_file=json_file)
        data = _read_json(json_file)
        report.num_annotations = len(data.get("annotations", []))
        images, categories = _coco_records(data, json_file, image_root, report)
        key = f"{name}|{os.path.abspath(json_file)}"
    else:
        report = DatasetReport(name, "dataset dicts")
        images, categories = _dict_records(DatasetCatalog.get(name), meta.get("thing_classes"))
        report.num_annotations = sum(len(r["anns"]) for r in images)
        key = f"{name}|dicts"
    report.num_images = len(images)
    scans = scan_images([r["file_name"] for r in images if r["file_name"]], cache_key=key,
                        num_workers=num_workers, cache_dir=cache_dir, progress=progress, desc=f"check {name}")
    _check_records(images, categories, scans, report)
    logger.info("check_dataset '%s': %d images, %d errors, %d warnings.", name, report.num_images,
                len(report.errors), len(report.warnings))
    return report


def write_fixed_sizes(report: DatasetReport, output: str) -> int:
    """Write ``report``'s COCO JSON with each mismatched image's width/height set to its decoded size.

    Returns:
        How many images were corrected.

    Raises:
        ValueError: the report is not of a COCO-format dataset.
    """
    if not report.json_file:
        raise ValueError(f"--fix-sizes needs a COCO-format dataset; '{report.name}' was checked from its dataset "
                         "dicts (no json_file in its metadata).")
    data = _read_json(report.json_file)
    fixes = {index: (h, w) for index, _, h, w in report.size_fixes}
    for index, (h, w) in fixes.items():
        data["images"][index]["height"], data["images"][index]["width"] = int(h), int(w)
    with PathManager.open(output, "w") as f:
        json.dump(data, f)
    logger.info("Wrote %s with %d corrected image sizes.", output, len(fixes))
    return len(fixes)
