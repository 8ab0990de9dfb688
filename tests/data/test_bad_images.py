"""Broken images: every read error names the file and the image id; conversions; ON_BAD_IMAGE skip."""
import itertools
import json
import re

import numpy as np
import pytest
from PIL import Image

from detkit.data import (DatasetFromList, DatasetMapper, ImageReadError, SizeMismatchError, TrainDataLoader,
                         TrainingSampler, read_image)
from detkit.structures import BoxMode
from detkit.utils.events import EventStorage

from .conftest import write_image


def _dict(path, image_id, height, width, boxes=((2, 3, 10, 12),)):
    return {"file_name": str(path), "image_id": image_id, "height": height, "width": width,
            "annotations": [{"bbox": list(b), "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0} for b in boxes]}


def _mapper():
    return DatasetMapper(is_train=True, augmentations=[], image_format="RGB")


def _truncated_jpeg(path):
    write_image(str(path), 40, 30, seed=5)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_jpeg_names_file_and_image_id(tmp_path):
    path = tmp_path / "cut.jpg"
    _truncated_jpeg(path)
    with pytest.raises(ImageReadError) as info:
        _mapper()(_dict(path, 41, 30, 40))
    msg = str(info.value)
    assert msg.startswith(f"Image '{path}' (image_id 41) cannot be read: the file is truncated or corrupt")
    assert "tools/check_dataset.py" in msg and "DATALOADER.ON_BAD_IMAGE skip" in msg
    assert info.value.file_name == str(path) and info.value.image_id == 41
    assert isinstance(info.value, OSError)  # code catching OSError (what PIL raised) still does


def test_zero_byte_file_names_file_and_image_id(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match=re.escape(f"Image '{path}' (image_id 7) cannot be read: "
                                                        "the file is empty (0 bytes).")):
        _mapper()(_dict(path, 7, 30, 40))


def test_missing_file_names_file_and_image_id(tmp_path):
    path = tmp_path / "gone.jpg"
    with pytest.raises(ImageReadError, match=re.escape(f"Image '{path}' (image_id 2007_000027) cannot be read: "
                                                        "the file does not exist.")):
        _mapper()(_dict(path, "2007_000027", 30, 40))  # VOC-style string ids are named as they are


def test_undecodable_file_names_file_and_image_id(tmp_path):
    path = tmp_path / "text.png"
    path.write_bytes(b"this is not an image")
    with pytest.raises(ImageReadError, match=re.escape(f"Image '{path}' (image_id 3) cannot be read: it is not an "
                                                        "image PIL can decode")):
        read_image(str(path), image_id=3)


def test_size_mismatch_names_file_image_id_and_both_sizes(tmp_path):
    path = tmp_path / "a.png"
    write_image(str(path), 40, 30, fmt="PNG")
    with pytest.raises(SizeMismatchError, match=re.escape(
            f"Image '{path}' (image_id 9) decodes to 40x30 (WxH) after EXIF orientation, but its dataset dict "
            "says 41x30.")) as info:
        _mapper()(_dict(path, 9, 30, 41))
    assert isinstance(info.value, ValueError) and "--fix-sizes" in str(info.value)


def test_exif_rotated_image_with_rotated_size_in_its_dict_loads(tmp_path):
    path = tmp_path / "rot.png"
    pixels = write_image(str(path), 6, 4, fmt="PNG", exif_orientation=6)  # stored 6x4; viewed rotated 90 cw
    out = _mapper()(_dict(path, 5, height=6, width=4, boxes=[(0, 1, 3, 5)]))
    viewed = np.rot90(pixels, k=-1)  # (6, 4, 3): what a viewer shows
    assert out["image"].permute(1, 2, 0).numpy().tolist() == viewed.tolist()
    assert (out["height"], out["width"]) == (6, 4)
    assert out["instances"].gt_boxes.tensor.tolist() == [[0.0, 1.0, 3.0, 5.0]]  # nothing dropped or clipped


def test_cmyk_and_16_bit_png_convert_to_rgb(tmp_path):
    cmyk = tmp_path / "cmyk.tif"
    Image.new("CMYK", (5, 4), (0, 100, 200, 50)).save(cmyk)  # lossless, so the values are exact
    # PIL's CMYK -> RGB: channel = round((255 - C/M/Y) * (255 - K) / 255): 255*205/255, 155*205/255, 55*205/255.
    assert read_image(str(cmyk), image_id=1)[0, 0].tolist() == [205, 125, 44]
    assert read_image(str(cmyk), "BGR", image_id=1)[0, 0].tolist() == [44, 125, 205]

    grey16 = tmp_path / "grey16.png"
    values = np.array([[0, 255, 256, 4660], [40000, 65535, 511, 512]], dtype=np.uint16)
    Image.fromarray(values).save(grey16)
    assert Image.open(grey16).mode == "I;16"
    out = _mapper()(_dict(grey16, 2, 2, 4, boxes=[]))["image"]  # (3, 2, 4)
    # 16-bit values keep their top 8 bits: v >> 8, on all three channels.
    assert out[0].tolist() == out[2].tolist() == [[0, 0, 1, 18], [156, 255, 1, 2]]


def test_unsupported_mode_names_file_image_id_and_mode(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.zeros((3, 3), dtype=np.float32)).save(path)
    with pytest.raises(ImageReadError, match=re.escape(f"Image '{path}' (image_id 8) has PIL mode 'F', which "
                                                        "detkit cannot convert to RGB")):
        read_image(str(path), image_id=8)


def test_raise_mode_error_crosses_worker_processes_with_file_and_id(tmp_path):
    dicts = [_dict(tmp_path / f"{i}.jpg", 100 + i, 30, 40) for i in range(4)]
    for i in range(4):
        write_image(dicts[i]["file_name"], 40, 30, seed=i)
    _truncated_jpeg(tmp_path / "2.jpg")
    loader = TrainDataLoader(DatasetFromList(dicts), _mapper(), 2, seed=0, num_workers=2)
    with pytest.raises(ImageReadError, match=re.escape(f"Image '{tmp_path / '2.jpg'}' (image_id 102) cannot be "
                                                        "read: the file is truncated")):
        for _ in itertools.islice(loader, 8):  # 16 samples: image 2 comes up in the first 4 epochs
            pass


def _skip_setup(tmp_path, n=6, bad=(1, 4)):
    dicts = [_dict(tmp_path / f"{i}.jpg", 10 + i, 30, 40) for i in range(n)]
    for i in range(n):
        write_image(dicts[i]["file_name"], 40, 30, seed=i)
    _truncated_jpeg(tmp_path / f"{bad[0]}.jpg")
    (tmp_path / f"{bad[1]}.jpg").write_bytes(b"")
    return dicts


def _expected_ids(sampler_seed, n, batch_size, batches, bad):
    """The image ids a skipping loader must deliver, from the sampler alone: a bad index gives way to the next."""
    stream = itertools.islice(TrainingSampler(n, seed=sampler_seed, rank=0, world_size=1).positions(),
                              batches * batch_size)
    ids, skips = [], 0
    for _, idx in stream:
        while idx in bad:
            idx, skips = (idx + 1) % n, skips + 1
        ids.append(10 + idx)
    return [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)], skips


def test_skip_mode_replaces_bad_images_warns_once_and_counts(tmp_path, caplog):
    dicts = _skip_setup(tmp_path)
    loader = TrainDataLoader(DatasetFromList(dicts), _mapper(), 3, seed=4, num_workers=0, on_bad_image="skip")
    with EventStorage(0) as storage, caplog.at_level("WARNING", logger="detkit.data.build"):
        got = [[d["image_id"] for d in b] for b in itertools.islice(loader, 6)]
    expected, skips = _expected_ids(4, 6, 3, 6, bad={1, 4})
    assert got == expected and skips >= 4  # 18 samples over 3 epochs: each bad image came up 3 times
    assert loader.num_skipped == skips and loader.state_dict()["skipped_images"] == skips
    assert storage.latest()["skipped_images"][0] == skips
    warned = [r.getMessage() for r in caplog.records if "Skipping image" in r.getMessage()]
    assert len(warned) == 2  # once per bad image, however often it came up
    assert warned[0].startswith(f"Skipping image '{tmp_path / '1.jpg'}' (image_id 11)") or \
        warned[0].startswith(f"Skipping image '{tmp_path / '4.jpg'}' (image_id 14)")
    assert {w.split("'")[1] for w in warned} == {str(tmp_path / "1.jpg"), str(tmp_path / "4.jpg")}
    assert "the file is empty (0 bytes)" in " ".join(warned) and "truncated" in " ".join(warned)


def test_skip_mode_resumes_exactly_with_workers(tmp_path):
    dicts = _skip_setup(tmp_path)

    def make():
        return TrainDataLoader(DatasetFromList(dicts), _mapper(), 3, seed=4, num_workers=2, on_bad_image="skip")

    full = make()
    ids_full = [[d["image_id"] for d in b] for b in itertools.islice(full, 7)]
    first = make()
    list(itertools.islice(first, 3))
    state = json.loads(json.dumps(first.state_dict()))
    second = make()
    second.load_state_dict(state)
    ids_rest = [[d["image_id"] for d in b] for b in itertools.islice(second, 4)]
    assert ids_rest == ids_full[3:]
    assert second.state_dict() == full.state_dict()  # skip count included
    assert full.num_skipped == _expected_ids(4, 6, 3, 7, bad={1, 4})[1]


def test_evaluation_loader_names_file_and_image_id(tmp_path, unique_name):
    from detkit.config import get_cfg
    from detkit.data import DatasetCatalog, build_detection_test_loader

    dicts = [_dict(tmp_path / f"{i}.jpg", 200 + i, 30, 40) for i in range(3)]
    for i in range(3):
        write_image(dicts[i]["file_name"], 40, 30, seed=i)
    _truncated_jpeg(tmp_path / "1.jpg")
    name = unique_name("eval")
    DatasetCatalog.register(name, lambda: dicts)
    cfg = get_cfg()
    cfg.DATALOADER.NUM_WORKERS = 0
    seen = []
    with pytest.raises(ImageReadError, match=re.escape(f"Image '{tmp_path / '1.jpg'}' (image_id 201) cannot be "
                                                        "read: the file is truncated")):
        for batch in build_detection_test_loader(cfg, name):
            seen.extend(d["image_id"] for d in batch)
    assert seen == [200]  # in order, up to the broken one
