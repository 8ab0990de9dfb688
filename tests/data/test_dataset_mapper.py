"""DatasetMapper: output keys and shapes, resized and flipped boxes, test mode, errors."""
import numpy as np
import pytest
import torch

from detkit.config import get_cfg
from detkit.data import DatasetFromList, DatasetMapper, MapDataset
from detkit.data.transforms import RandomFlip, ResizeShortestEdge
from detkit.structures import BoxMode, Instances

from .conftest import write_image


@pytest.fixture
def record(tmp_path):
    path = str(tmp_path / "img.png")
    pixels = write_image(path, 40, 20, fmt="PNG")
    anns = [{"bbox": [4, 2, 10, 6], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1, "iscrowd": 0},
            {"bbox": [0, 0, 8, 8], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "iscrowd": 1},
            {"bbox": [39.9, 5, 60, 9], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 2}]
    return {"file_name": path, "image_id": 7, "height": 20, "width": 40, "annotations": anns}, pixels


def test_train_output_resized(record):
    d, _ = record
    mapper = DatasetMapper(True, augmentations=[ResizeShortestEdge(10, 1000, "choice")])
    out = mapper(d)
    assert set(out) == {"image", "height", "width", "image_id", "file_name", "instances"}
    assert out["image"].shape == (3, 10, 20) and out["image"].dtype == torch.uint8
    assert (out["height"], out["width"], out["image_id"], out["file_name"]) == (20, 40, 7, d["file_name"])
    inst = out["instances"]
    assert isinstance(inst, Instances) and inst.image_size == (10, 20)
    # XYWH (4, 2, 10, 6) -> XYXY (4, 2, 14, 8) -> halved; the crowd box is left out; the third box is
    # clipped at x = 20 to (19.95, 2.5, 20, 4.5): it keeps a width of 0.05 px.
    torch.testing.assert_close(inst.gt_boxes.tensor, torch.tensor([[2, 1, 7, 4], [19.95, 2.5, 20, 4.5]]))
    assert inst.gt_classes.tolist() == [1, 2] and inst.gt_classes.dtype == torch.int64
    assert d["annotations"][0]["bbox"] == [4, 2, 10, 6]  # the input dict is unchanged


def test_flip_moves_image_and_boxes_exactly(record):
    d, pixels = record
    out = DatasetMapper(True, augmentations=[RandomFlip(prob=1.0)])(d)
    np.testing.assert_array_equal(out["image"].permute(1, 2, 0).numpy(), pixels[:, ::-1])
    torch.testing.assert_close(out["instances"].gt_boxes.tensor, torch.tensor([[26.0, 2, 36, 8], [0, 5, 0.1, 9]]))


def test_degenerate_boxes_are_dropped(record):
    d, _ = record
    d["annotations"].append({"bbox": [45, 1, 50, 3], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0})
    out = DatasetMapper(True, augmentations=[])(d)
    assert out["instances"].gt_classes.tolist() == [1, 2]  # the box outside the image is gone


def test_test_mode_has_no_annotations(record):
    d, pixels = record
    out = DatasetMapper(False, augmentations=[], image_format="BGR")(d)
    assert set(out) == {"image", "height", "width", "image_id", "file_name"}
    np.testing.assert_array_equal(out["image"].permute(1, 2, 0).numpy(), pixels[:, :, ::-1])


def test_size_mismatch_names_file_and_image_id(record):
    d, _ = record
    d["height"] = 21
    with pytest.raises(ValueError, match=f"Image '{d['file_name']}' \\(image_id 7\\) decodes to 40x20"):
        DatasetMapper(True, augmentations=[])(d)


def test_from_config_draws_from_numpys_global_generator(record):
    d, _ = record
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = (10, 30)
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "range"
    mapper = DatasetMapper(cfg, is_train=True)
    assert mapper.is_train and mapper.image_format == "RGB"
    for seed in range(6):
        # detectron2's order: ResizeShortestEdge draws randint(10, 31), then RandomFlip one uniform.
        rs = np.random.RandomState(seed)
        size, flip = rs.randint(10, 31), rs.random_sample() < 0.5
        s, w = size / 20, 2 * size  # the 20x40 image becomes size x 2 * size
        boxes = np.array([[4 * s, 2 * s, 14 * s, 8 * s], [39.9 * s, 5 * s, w, 9 * s]])  # the 2nd clipped at x = w
        if flip:
            boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
        np.random.seed(seed)
        a = mapper(d)
        assert a["image"].shape == (3, size, w) and a["instances"].image_size == (size, w)
        torch.testing.assert_close(a["instances"].gt_boxes.tensor, torch.tensor(boxes, dtype=torch.float32))
        np.random.seed(seed)
        b = mapper(d)
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["instances"].gt_boxes.tensor,
                                                                    b["instances"].gt_boxes.tensor)
    test_mapper = DatasetMapper(cfg, is_train=False)
    # 20x40 -> short side 800 gives 800x1600; the long side is capped at 1333: 666.5x1333 -> 667x1333.
    assert test_mapper(d)["image"].shape == (3, 667, 1333)


def test_loader_seeds_each_sample_from_seed_and_position(record):
    # The mapper takes no rng: MapDataset seeds numpy's global generator per (seed, stream position),
    # so a resumed run maps each position exactly as the first run did.
    d, _ = record
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = (10, 30)
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "range"
    mapper = DatasetMapper(cfg, is_train=True)
    dataset = MapDataset(DatasetFromList([d]), mapper, seed=3)
    outs = [dataset[(0, position)] for position in range(6)]
    again = [dataset[(0, position)] for position in (5, 4, 3, 2, 1, 0)][::-1]
    for a, b in zip(outs, again):
        assert torch.equal(a["image"], b["image"])
        assert torch.equal(a["instances"].gt_boxes.tensor, b["instances"].gt_boxes.tensor)
    assert len({tuple(o["image"].shape) for o in outs}) > 1  # positions get different sizes
