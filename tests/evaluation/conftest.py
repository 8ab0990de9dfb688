"""Fixtures for the evaluation tests: datasets registered under fresh names, removed afterwards."""
import json
import logging
import uuid

import pytest

from detkit.data import DatasetCatalog, MetadataCatalog
from evaluation_testdata import CLASS_NAMES, DATASET_IDS, coco_to_dataset_dicts, make_coco_dataset


@pytest.fixture(autouse=True)
def _detkit_logs_reach_caplog():
    """setup_logger (e.g. from default_setup in an earlier test) stops "detkit" propagating; undo that here."""
    logger = logging.getLogger("detkit")
    old = logger.propagate
    logger.propagate = True
    yield
    logger.propagate = old


@pytest.fixture
def register():
    """Register datasets under fresh names; removes them afterwards. Call as register(dicts_fn, **metadata)."""
    names = []

    def _register(func, **metadata):
        name = f"evaltest_{uuid.uuid4().hex[:8]}"
        DatasetCatalog.register(name, func)
        MetadataCatalog.get(name).set(**metadata)
        names.append(name)
        return name

    yield _register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.fixture
def coco_dataset(tmp_path, register):
    """A registered COCO-json dataset: (name, gt dict, detections, json path)."""
    gt, dets = make_coco_dataset()
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    name = register(lambda: coco_to_dataset_dicts(gt), json_file=str(path), image_root=str(tmp_path),
                    thing_classes=list(CLASS_NAMES), evaluator_type="coco",
                    thing_dataset_id_to_contiguous_id={d: i for i, d in enumerate(DATASET_IDS)})
    return name, gt, dets, path
