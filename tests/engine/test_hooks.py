"""Tests for detkit.engine.hooks on a toy trainer: checkpoint pruning, eval/best hooks, writer periods."""
import json
import random

import pytest
import torch

from detkit.checkpoint import DetectionCheckpointer
from detkit.engine import SimpleTrainer, hooks
from detkit.utils.events import EventWriter, JSONWriter


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return {"loss": (self.w - x) ** 2}


def _trainer(n=100):
    model = _Toy()
    return SimpleTrainer(model, iter([torch.tensor(2.0)] * n), torch.optim.SGD(model.parameters(), lr=0.1))


def test_periodic_checkpointer_keeps_last_n_across_restarts(tmp_path):
    (tmp_path / "model_0000001.pth").write_bytes(b"from an earlier run")
    (tmp_path / ".model_0000003.pth.abc.tmp").write_bytes(b"left by a crash")
    t = _trainer()
    ck = DetectionCheckpointer(t.model, str(tmp_path))
    t.register_hooks([hooks.PeriodicCheckpointer(ck, period=2, max_iter=7, max_to_keep=2)])
    t.train(0, 7)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["last_checkpoint", "model_0000003.pth", "model_0000005.pth", "model_final.pth"]
    assert torch.load(tmp_path / "model_0000005.pth", weights_only=True)["iteration"] == 5
    assert torch.load(tmp_path / "model_final.pth", weights_only=True)["iteration"] == 6


def test_eval_hook_period_results_and_rng_untouched():
    calls = []

    def evaluate():
        calls.append(t.iter)
        random.random()
        torch.rand(3)  # evaluation drawing random numbers must not change training's stream
        return {"bbox": {"AP": float(len(calls))}}

    t = _trainer()
    t.register_hooks([hooks.EvalHook(3, evaluate)])
    torch.manual_seed(0)
    random.seed(0)
    t.train(0, 7)
    after = (random.random(), torch.rand(1).item())
    torch.manual_seed(0)
    random.seed(0)
    assert after == (random.random(), torch.rand(1).item())
    assert calls == [2, 5, 7]  # after iterations 2 and 5, then once training completed
    latest = t.storage.latest()
    assert latest["bbox/AP"] == (3.0, 7)


def test_eval_hook_rejects_non_numbers():
    t = _trainer()
    t.register_hooks([hooks.EvalHook(0, lambda: {"bbox": {"AP": "high"}})])
    with pytest.raises(ValueError, match="'bbox/AP' is 'high', not a number"):
        t.train(0, 1)


def test_best_checkpointer_min_mode_and_missing_metric(tmp_path, detkit_records):
    values = iter([5.0, 3.0, 4.0])
    t = _trainer()
    ck = DetectionCheckpointer(t.model, str(tmp_path))
    t.register_hooks([hooks.EvalHook(2, lambda: {"loss_val": next(values)}),
                      hooks.BestCheckpointer(2, ck, "loss_val", mode="min")])
    t.train(0, 5)
    best = t._hooks[1]
    assert (best.best_metric, best.best_iter) == (3.0, 3)
    assert torch.load(tmp_path / "model_best.pth", weights_only=True)["iteration"] == 3
    assert not (tmp_path / "last_checkpoint").exists()

    t2 = _trainer()
    t2.register_hooks([hooks.EvalHook(0, lambda: {"bbox": {"AP": 1.0}}),
                       hooks.BestCheckpointer(0, DetectionCheckpointer(t2.model, str(tmp_path / "b")), "bbox/AP50")])
    t2.train(0, 2)
    warn = [r.getMessage() for r in detkit_records if r.levelname == "WARNING"]
    assert any("metric 'bbox/AP50'" in w and "bbox/AP" in w for w in warn)
    with pytest.raises(ValueError, match="BEST_CHECKPOINT_MODE is 'up'"):
        hooks.BestCheckpointer(0, ck, "x", mode="up")


def test_periodic_writer_period_and_close(tmp_path):
    class _Count(EventWriter):
        writes, closed = [], False

        def write(self):
            self.writes.append(t.iter)

        def close(self):
            _Count.closed = True

    t = _trainer()
    t.register_hooks([hooks.IterationTimer(), hooks.PeriodicWriter([_Count(), JSONWriter(str(tmp_path / "m.json"))],
                                                                   period=3)])
    t.train(0, 7)
    assert _Count.writes == [2, 5, 6, 7] and _Count.closed  # every 3, the last iteration, after training
    lines = [json.loads(x) for x in (tmp_path / "m.json").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [2, 5, 6]
    assert all("time" in x and "total_loss" in x for x in lines)


def test_lr_scheduler_hook_records_lr_then_steps():
    t = _trainer()
    sched = torch.optim.lr_scheduler.StepLR(t.optimizer, step_size=2, gamma=0.5)
    t.register_hooks([hooks.LRScheduler(t.optimizer, sched)])
    t.train(0, 5)
    assert [v for v, _ in t.storage.history("lr").values()] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
