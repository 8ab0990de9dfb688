"""check_dataset: a generated dataset seeded with one of each problem; the cache; --fix-sizes; the tool."""
import json
import os
import subprocess
import sys

import pytest

import detkit.data.image_scan as image_scan
from detkit.data import DatasetCatalog, MetadataCatalog, check_dataset, write_fixed_sizes
from detkit.data.datasets import register_coco_instances
from detkit.structures import BoxMode

from .broken_dataset import make_broken_coco
from .conftest import write_image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def broken_coco(tmp_path, unique_name):
    json_file, image_root, expected = make_broken_coco(str(tmp_path / "data"))
    name = unique_name("broken")
    register_coco_instances(name, {}, json_file, image_root)
    return name, json_file, image_root, expected


def _found(report):
    return {(p.kind, p.file_name, p.image_id, p.annotation_id) for p in report.problems}


def test_finds_exactly_the_seeded_problems(broken_coco, tmp_path):
    name, json_file, image_root, expected = broken_coco
    report = check_dataset(name, num_workers=2, cache_dir=str(tmp_path / "cache"), progress=False)
    assert _found(report) == expected
    assert len(report.problems) == len(expected)  # each problem once
    assert {p.kind for p in report.errors} == {"unreadable", "size_mismatch", "duplicate_image_id", "nan_box",
                                               "unknown_category_id", "unknown_image_id", "bad_bbox"}
    reasons = {p.file_name: p.message for p in report.problems if p.kind == "unreadable"}
    assert "the file is truncated" in reasons[os.path.join(image_root, "cut.jpg")]
    assert reasons[os.path.join(image_root, "zero.jpg")] == "cannot be read: the file is empty (0 bytes)"
    assert reasons[os.path.join(image_root, "missing.jpg")] == "cannot be read: the file does not exist"
    mismatch = next(p for p in report.problems if p.kind == "size_mismatch")
    assert mismatch.message == "decodes to 40x30 (WxH) after EXIF orientation, but the annotation says 41x30"
    assert report.num_images == 11 and report.num_annotations == 15  # 8 good + 6 seeded (one has no image)
    # Statistics over the valid non-crowd boxes: 8 of 2x3 px (class a), 1 of 20x10 (class b), 1 outside (a).
    assert report.class_histogram == {"a": 9, "b": 1}
    assert report.box_sizes == {"small": 10, "medium": 0, "large": 0}
    assert report.box_aspect_ratio == pytest.approx((2 / 3, 2.0))
    assert report.image_aspect_ratio == pytest.approx((4 / 6, 41 / 30))
    as_json = report.to_dict()
    assert as_json["num_errors"] == 9 and as_json["num_warnings"] == 4
    assert {(p["kind"], p["image_id"], p["annotation_id"], p["severity"]) for p in as_json["problems"]} >= \
        {("nan_box", 1, 2, "error"), ("empty_box", 1, 4, "warning")}
    table = report.format_table()
    assert f"error    '{os.path.join(image_root, 'cut.jpg')}' (image_id 2): cannot be read" in table
    assert "cmyk" not in table and "grey16" not in table and "rot.png" not in table  # only problem files named


def test_second_run_reads_the_cache_and_rescans_only_changed_files(broken_coco, tmp_path, monkeypatch):
    name, json_file, image_root, expected = broken_coco
    before = sorted(os.listdir(image_root))
    monkeypatch.setenv("DETKIT_CACHE", str(tmp_path / "cache"))
    first = check_dataset(name, num_workers=1, progress=False)
    cache_files = os.listdir(tmp_path / "cache" / "check_dataset")
    assert len(cache_files) == 1 and sorted(os.listdir(image_root)) == before  # nothing beside the dataset
    scanned = []
    real = image_scan._scan_one
    monkeypatch.setattr(image_scan, "_scan_one", lambda p: scanned.append(p) or real(p))
    second = check_dataset(name, num_workers=1, progress=False)
    # Only the missing file (which has no size or mtime to key on) is looked at again.
    assert scanned == [os.path.join(image_root, "missing.jpg")]
    assert _found(second) == _found(first) == expected
    write_image(os.path.join(image_root, "cut.jpg"), 40, 30, seed=9)  # the user repairs one file
    scanned.clear()
    third = check_dataset(name, num_workers=1, progress=False)
    assert sorted(scanned) == [os.path.join(image_root, "cut.jpg"), os.path.join(image_root, "missing.jpg")]
    assert _found(third) == expected - {("unreadable", os.path.join(image_root, "cut.jpg"), 2, None)}


def test_fix_sizes_writes_the_decoded_sizes(broken_coco, tmp_path, unique_name):
    name, json_file, image_root, _ = broken_coco
    report = check_dataset(name, num_workers=1, cache_dir="", progress=False)
    out = str(tmp_path / "fixed.json")
    assert write_fixed_sizes(report, out) == 1
    fixed = json.load(open(out))
    original = json.load(open(json_file))
    assert fixed["images"][4] == {"id": 5, "file_name": "size.png", "width": 40, "height": 30}
    assert [i for k, i in enumerate(fixed["images"]) if k != 4] == [i for k, i in enumerate(original["images"])
                                                                   if k != 4]
    assert len(fixed["annotations"]) == len(original["annotations"])
    again = unique_name("fixed")
    register_coco_instances(again, {}, out, image_root)
    assert "size_mismatch" not in {p.kind for p in check_dataset(again, num_workers=1, cache_dir="",
                                                                 progress=False).problems}


def test_dataset_dicts_are_checked_too(tmp_path, unique_name):
    write_image(str(tmp_path / "a.jpg"), 40, 30)
    ann = {"bbox": [1, 1, 5, 5], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0}
    dicts = [{"file_name": str(tmp_path / "a.jpg"), "image_id": "a", "height": 30, "width": 40,
              "annotations": [ann, dict(ann, category_id=2), dict(ann, bbox=[1, 1, float("nan"), 5])]}]
    name = unique_name("dicts")
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=["x", "y"])
    report = check_dataset(name, num_workers=1, cache_dir="", progress=False)
    assert report.source == "dataset dicts"
    assert _found(report) == {("unknown_category_id", str(tmp_path / "a.jpg"), "a", "#1"),
                              ("nan_box", str(tmp_path / "a.jpg"), "a", "#2")}
    assert report.class_histogram == {"x": 1, "y": 0}


PLUGIN = '''
import os
from detkit.data.datasets import register_coco_instances
from data.broken_dataset import make_broken_coco

root = os.environ["CHECK_ROOT"]
json_file, image_root, _ = make_broken_coco(root)
register_coco_instances("tool_broken", {}, json_file, image_root)
register_coco_instances("tool_warnings_only", {}, os.path.join(root, "warn.json"), image_root)
'''


def test_tool_exit_status_table_and_json_report(tmp_path):
    root = tmp_path / "data"
    make_broken_coco(str(root))
    (root / "warn.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "ok.jpg", "width": 40, "height": 30},
                   {"id": 2, "file_name": "empty.jpg", "width": 40, "height": 30}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 4, 4]}],
        "categories": [{"id": 3, "name": "a"}]}))
    (tmp_path / "plugin_check.py").write_text(PLUGIN)
    env = dict(os.environ, CHECK_ROOT=str(root), DETKIT_CACHE=str(tmp_path / "cache"), PYTHONPATH=os.pathsep.join(
        [REPO, os.path.join(REPO, "tests")]))

    def run(*args):
        return subprocess.run([sys.executable, os.path.join(REPO, "tools", "check_dataset.py"),
                               "--plugin", str(tmp_path / "plugin_check.py"), *args], cwd=str(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, timeout=240)

    bad = run("--dataset", "tool_broken", "--output", str(tmp_path / "report.json"),
              "--fix-sizes", str(tmp_path / "fixed.json"))
    assert bad.returncode == 1, bad.stderr
    assert "Dataset 'tool_broken'" in bad.stdout and "9 error(s), 4 warning(s)" in bad.stdout
    assert f"'{root / 'images' / 'zero.jpg'}' (image_id 3): cannot be read: the file is empty" in bad.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert [d["name"] for d in report["datasets"]] == ["tool_broken"]
    assert len(report["datasets"][0]["problems"]) == 13
    assert json.loads((tmp_path / "fixed.json").read_text())["images"][4]["width"] == 40
    assert "images.json" not in bad.stderr and "cut.jpg" not in bad.stderr  # the progress bar names no file
    warn = run("--dataset", "tool_warnings_only", "--output", str(tmp_path / "warn_report.json"))
    assert warn.returncode == 0, warn.stdout + warn.stderr
    assert "0 error(s), 1 warning(s)" in warn.stdout


def _one_image_coco(tmp_path, unique_name, images, anns):
    write_image(str(tmp_path / "im" / "a.jpg"), 40, 30)
    write_image(str(tmp_path / "im" / "b.jpg"), 40, 30, seed=1)
    json_file = tmp_path / "one.json"
    json_file.write_text(json.dumps({"images": images, "annotations": anns,
                                     "categories": [{"id": 1, "name": "thing"}]}))
    name = unique_name("one")
    register_coco_instances(name, {}, str(json_file), str(tmp_path / "im"))
    return check_dataset(name, num_workers=1, cache_dir="", progress=False)


A = {"id": 5, "file_name": "a.jpg", "width": 40, "height": 30}
GOOD = {"id": 50, "image_id": 5, "category_id": 1, "bbox": [1, 1, 4, 4]}


def test_nan_box_is_an_error_naming_file_image_and_annotation(tmp_path, unique_name):
    report = _one_image_coco(tmp_path, unique_name, [A], [GOOD, dict(GOOD, id=51, bbox=[1, 1, float("nan"), 4])])
    [p] = report.problems
    assert (p.kind, p.severity, p.file_name, p.image_id, p.annotation_id) == \
        ("nan_box", "error", str(tmp_path / "im" / "a.jpg"), 5, 51)
    assert p.message == "bbox [1, 1, nan, 4] has a NaN or infinite coordinate"
    assert report.class_histogram == {"thing": 1}  # the good box is still counted


def test_unknown_category_is_an_error_naming_file_image_and_annotation(tmp_path, unique_name):
    report = _one_image_coco(tmp_path, unique_name, [A], [GOOD, dict(GOOD, id=52, category_id=4)])
    [p] = report.problems
    assert (p.kind, p.severity, p.file_name, p.image_id, p.annotation_id) == \
        ("unknown_category_id", "error", str(tmp_path / "im" / "a.jpg"), 5, 52)
    assert p.message == "category_id 4 is not one of the dataset's categories [1]"


def test_duplicate_ids_are_an_error_naming_both_files(tmp_path, unique_name):
    report = _one_image_coco(tmp_path, unique_name, [A, dict(A, file_name="b.jpg")], [GOOD])
    [p] = report.problems
    assert (p.kind, p.severity, p.file_name, p.image_id, p.annotation_id) == \
        ("duplicate_image_id", "error", str(tmp_path / "im" / "b.jpg"), 5, None)
    assert p.message == f"image id 5 is also used by '{tmp_path / 'im' / 'a.jpg'}'"
