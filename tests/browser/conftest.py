"""Fixtures of the browser tests: the hand-made dataset (see browser_testdata.py), its index, a server on a free port."""
import pytest
from browser_testdata import CLASSES, COLOURS, GT, IMAGE_IDS, NAME, SIZES, coco_results
from PIL import Image

from detkit.browser import build_index, make_server, serve_in_thread
from detkit.data import DatasetCatalog, MetadataCatalog
from detkit.structures import BoxMode


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory):
    """Register ``browser_toy`` (once per session) with its images written to a temp folder."""
    folder = tmp_path_factory.mktemp("browser_toy")
    dicts = []
    for i, ((w, h), colour) in enumerate(zip(SIZES, COLOURS)):
        path = folder / f"img{i}.png"
        Image.new("RGB", (w, h), colour).save(path)
        anns = [{"bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": c, "iscrowd": crowd}
                for c, b, crowd in GT[i]]
        dicts.append({"file_name": str(path), "image_id": IMAGE_IDS[i], "width": w, "height": h, "annotations": anns})
    if NAME not in DatasetCatalog:
        DatasetCatalog.register(NAME, lambda: [dict(d) for d in dicts])
        MetadataCatalog.get(NAME).set(thing_classes=CLASSES, evaluator_type="coco")
    return NAME


@pytest.fixture(scope="session")
def toy_index(toy_dataset):
    return build_index(toy_dataset, coco_results(), results_file="toy_results.json", default_score=0.25)


@pytest.fixture(scope="module")
def toy_server(toy_index):
    server = make_server(toy_index, "127.0.0.1", 0, thumb_size=32)
    thread = serve_in_thread(server)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)
