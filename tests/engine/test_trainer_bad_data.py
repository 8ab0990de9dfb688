"""Training on broken data: ON_BAD_IMAGE skip with exact resume, and a data loader worker killed mid-run."""
import itertools
import json
import os
import re
import shutil
import signal

import pytest
import torch

from detkit.checkpoint import DetectionCheckpointer
from detkit.data import DatasetCatalog, DatasetMapper, MetadataCatalog, TrainingSampler
from detkit.data.build import DataLoaderWorkerError, build_detection_train_loader
from detkit.engine import Trainer
from detkit.utils.env import seed_all_rng

from engine_testing import Interrupt, StopAfter, TRAIN_SET, tiny_fcos_cfg


def _broken_copy(tmp_path, name, bad_indices):
    """TRAIN_SET's 8 images copied to tmp_path and registered as ``name``; the given ones truncated."""
    tiny_fcos_cfg(tmp_path / "unused")  # registers TRAIN_SET
    dicts = DatasetCatalog.get(TRAIN_SET)
    os.makedirs(tmp_path / "images", exist_ok=True)
    copies = []
    for i, d in enumerate(dicts):
        dst = tmp_path / "images" / os.path.basename(d["file_name"])
        shutil.copy(d["file_name"], dst)
        if i in bad_indices:
            dst.write_bytes(dst.read_bytes()[:200])
        copies.append(dict(d, file_name=str(dst)))
    DatasetCatalog.register(name, lambda: [dict(c) for c in copies])
    MetadataCatalog.get(name).set(thing_classes=MetadataCatalog.get(TRAIN_SET).thing_classes)
    return copies


@pytest.fixture
def broken_set(tmp_path):
    name = "bad_data_skip_train"
    # Batch size 2 over 6 iterations reads stream positions 0..11; break the images at positions 0 and 7,
    # so one skip happens before the resume point (after iteration 2) and one after.
    stream = [idx for _, idx in itertools.islice(TrainingSampler(8, seed=7, rank=0, world_size=1).positions(), 12)]
    bad = {stream[0], stream[7]}
    copies = _broken_copy(tmp_path, name, bad)
    # Skips, by hand: each stream position holding a bad index is one skip (a bad neighbour adds another).
    skips = 0
    for idx in stream:
        while idx in bad:
            idx, skips = (idx + 1) % 8, skips + 1
    yield name, copies, bad, skips
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_skip_mode_trains_counts_skips_and_resumes_exactly(tmp_path, broken_set):
    name, copies, bad, skips = broken_set
    over = ("DATASETS.TRAIN", f"('{name}',)", "DATALOADER.ON_BAD_IMAGE", "skip")
    seed_all_rng(7)
    full = Trainer(tiny_fcos_cfg(tmp_path / "full", *over))
    full.resume_or_load(resume=False)
    full.train()

    seed_all_rng(7)
    first = Trainer(tiny_fcos_cfg(tmp_path / "split", *over))
    first.resume_or_load(resume=False)
    first.register_hooks([StopAfter(2)])
    with pytest.raises(Interrupt):
        first.train()
    seed_all_rng(123)
    second = Trainer(tiny_fcos_cfg(tmp_path / "split", *over))
    second.resume_or_load(resume=True)
    assert second.start_iter == 3
    second.train()

    a, b = _state(full.model), _state(second.model)
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), rtol=1e-5, atol=1e-6), k
    assert full.data_loader.num_skipped == second.data_loader.num_skipped == skips
    for run in ("full", "split"):
        lines = [json.loads(x) for x in (tmp_path / run / "metrics.json").read_text().splitlines()]
        assert lines[-1]["iteration"] == 5 and lines[-1]["skipped_images"] == skips


def test_raise_mode_stops_naming_file_and_image_id(tmp_path, broken_set):
    name, copies, bad, _ = broken_set
    first_bad = next(c for i, c in enumerate(copies) if i in bad)
    cfg = tiny_fcos_cfg(tmp_path / "out", "DATASETS.TRAIN", f"('{name}',)", "SOLVER.MAX_ITER", "6")
    loader = build_detection_train_loader(cfg)
    with pytest.raises(OSError, match=re.escape(f"Image '{first_bad['file_name']}' (image_id "
                                                f"{first_bad['image_id']}) cannot be read: the file is truncated")):
        for _ in itertools.islice(loader, 6):
            pass


class _KillingMapper(DatasetMapper):
    """Worker 1 kills its own process, as the kernel's OOM killer would, once a checkpoint exists."""

    def __init__(self, cfg, marker):
        super().__init__(cfg, is_train=True)
        self.marker = marker

    def __call__(self, d):
        info = torch.utils.data.get_worker_info()
        if info is not None and info.id == 1 and os.path.exists(self.marker):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(d)


def test_killed_worker_ends_training_naming_the_worker(tmp_path):
    # 12 iterations; the checkpoint after iteration 2 arms the kill, and worker 1 maps a new batch soon after.
    cfg = tiny_fcos_cfg(tmp_path, "DATALOADER.NUM_WORKERS", "2", "SOLVER.MAX_ITER", "12")

    class _Trainer(Trainer):
        @classmethod
        def build_train_loader(cls, cfg):
            return build_detection_train_loader(cfg, mapper=_KillingMapper(cfg, str(tmp_path / "last_checkpoint")))

    seed_all_rng(7)
    trainer = _Trainer(cfg)
    trainer.resume_or_load(resume=False)
    with pytest.raises(DataLoaderWorkerError) as info:
        trainer.train()
    msg = str(info.value)
    assert re.search(r"^Data loader worker 1 \(pid \d+\) was killed by signal SIGKILL\. ", msg), msg
    assert "Run the same command with --resume to continue from the last checkpoint." in msg
    assert "DATALOADER.NUM_WORKERS" in msg
    assert trainer.iter < 11  # it stopped, it did not finish or hang
    # What was saved before stays usable: --resume would continue from it.
    last = (tmp_path / "last_checkpoint").read_text()
    extra = DetectionCheckpointer(Trainer.build_model(cfg), str(tmp_path)).resume_or_load("", resume=True)
    assert last.startswith("model_000") and extra["iteration"] == int(last[6:13])
