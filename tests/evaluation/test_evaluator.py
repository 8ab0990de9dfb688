"""The evaluator interface, DatasetEvaluators, and inference_on_dataset (single process and 2-process gloo)."""
import json
import logging
import os
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from evaluation_testdata import CLASS_NAMES, DATASET_IDS, coco_to_dataset_dicts, make_coco_dataset, model_outputs
from detkit.data import DatasetCatalog, MetadataCatalog
from detkit.evaluation import COCOEvaluator, DatasetEvaluator, DatasetEvaluators, inference_on_dataset


class _Recorder(DatasetEvaluator):
    def __init__(self, task="count"):
        self.task, self.calls = task, []

    def reset(self):
        self.calls = ["reset"]

    def process(self, inputs, outputs):
        self.calls.append(len(inputs))

    def evaluate(self):
        return {self.task: {"images": float(sum(c for c in self.calls if c != "reset"))}}


class _ReplayModel(nn.Module):
    """Returns stored outputs by image id; records the mode it was called in."""

    def __init__(self, outputs_by_id):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.outputs_by_id = outputs_by_id
        self.seen = []

    def forward(self, inputs):
        self.seen.append((self.training, torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
        return [self.outputs_by_id[x["image_id"]] for x in inputs]


def _batches(inputs, size):
    return [inputs[i:i + size] for i in range(0, len(inputs), size)]


def test_dataset_evaluators_merge_and_clash():
    a, b = _Recorder("a"), _Recorder("b")
    both = DatasetEvaluators([a, b])
    both.reset()
    both.process([{}, {}], [{}, {}])
    assert both.evaluate() == {"a": {"images": 2.0}, "b": {"images": 2.0}}
    clash = DatasetEvaluators([_Recorder("a"), _Recorder("a")])
    clash.reset()
    with pytest.raises(KeyError, match="both returned results for 'a'"):
        clash.evaluate()
    assert DatasetEvaluator().evaluate() == {}


@pytest.mark.parametrize("training", [True, False])
def test_inference_modes_restored_and_logged(training, caplog):
    model = _ReplayModel({i: {} for i in range(8)})
    model.train(training)
    recorder = _Recorder()
    loader = _batches([{"image_id": i} for i in range(8)], 2)
    with caplog.at_level(logging.INFO, logger="detkit"):
        results = inference_on_dataset(model, loader, recorder, log_period_s=0.0)
    assert results == {"count": {"images": 8.0}}
    assert recorder.calls == ["reset", 2, 2, 2, 2]
    assert model.seen == [(False, True, False)] * 4  # eval mode, inference mode, no grad
    assert model.training is training
    assert "Start inference on 4 batches" in caplog.text
    assert "Inference done 1/4." in caplog.text and "ETA=" in caplog.text
    # 4 batches: 3 warm-up batches, then pure compute time over the last batch's 2 images.
    assert "Total inference pure compute time" in caplog.text and "s / image per device, on 1 devices" in caplog.text


def test_inference_without_evaluator_or_len_and_with_a_list(caplog):
    model = _ReplayModel({i: {} for i in range(3)})

    def loader():  # a generator has no len(): no ETA, still runs
        yield from _batches([{"image_id": i} for i in range(3)], 1)

    with caplog.at_level(logging.INFO, logger="detkit"):
        assert inference_on_dataset(model, loader(), None, log_period_s=0.0) == {}
    assert len(model.seen) == 3
    assert "Start inference on an unknown number of batches" in caplog.text
    assert "Inference done 1 batches" in caplog.text
    results = inference_on_dataset(model, _batches([{"image_id": i} for i in range(3)], 2),
                                   [_Recorder("x"), _Recorder("y")])
    assert results == {"x": {"images": 3.0}, "y": {"images": 3.0}}


def _register_coco(name, gt, path):
    DatasetCatalog.register(name, lambda: coco_to_dataset_dicts(gt))
    MetadataCatalog.get(name).set(json_file=str(path), thing_classes=list(CLASS_NAMES),
                                  thing_dataset_id_to_contiguous_id={d: i for i, d in enumerate(DATASET_IDS)})


def _ddp_worker(rank, world_size, init_file, gt_path, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        with open(gt_path) as f:
            gt = json.load(f)
        _, dets = make_coco_dataset()
        _register_coco("ddp_eval", gt, gt_path)
        inputs, outputs = model_outputs(gt, dets)
        model = _ReplayModel({x["image_id"]: o for x, o in zip(inputs, outputs)})
        shard = inputs[rank::world_size]  # as an inference sampler would split the images
        results = inference_on_dataset(model, _batches(shard, 2), COCOEvaluator("ddp_eval", distributed=True))
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_match_one(tmp_path):
    gt, dets = make_coco_dataset()
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    # fork: the children need not re-import torch (0.5 s instead of ~18 s on a busy 2-core machine).
    ctx = mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "init"), str(gt_path), str(tmp_path)), nprocs=2,
                             join=False, start_method="fork")
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1):  # raises if a worker failed
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail("the 2-process gloo evaluation did not finish within 120 s")
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert rank1 == {}

    name = "single_eval"
    _register_coco(name, gt, gt_path)
    try:
        inputs, outputs = model_outputs(gt, dets)
        model = _ReplayModel({x["image_id"]: o for x, o in zip(inputs, outputs)})
        single = inference_on_dataset(model, _batches(inputs, 3), COCOEvaluator(name, distributed=True))
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert set(rank0["bbox"]) == set(single["bbox"]) and len(single["bbox"]) == 9
    for key, value in single["bbox"].items():
        assert rank0["bbox"][key] == pytest.approx(value, abs=1e-9), key
