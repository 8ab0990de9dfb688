"""Tests for detkit.engine.trainer: exact resume, NaN handling, fine-tuning, evaluation hooks, outputs."""
import json
import math
import os
import textwrap

import pytest
import torch

from detkit.engine import HookBase, Trainer, get_event_storage
from detkit.utils.env import seed_all_rng

from engine_testing import Interrupt, StopAfter, tiny_fcos_cfg


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resume_2n_equals_n_plus_n(tmp_path):
    # N = 3 iterations; warmup (2 iters) and the LR step (at 4) straddle the resume point.
    seed_all_rng(7)  # as default_setup does: the same initial weights in both runs
    full = Trainer(tiny_fcos_cfg(tmp_path / "full"))
    full.resume_or_load(resume=False)
    full.train()

    seed_all_rng(7)
    first = Trainer(tiny_fcos_cfg(tmp_path / "split"))
    first.resume_or_load(resume=False)
    first.register_hooks([StopAfter(2)])
    with pytest.raises(Interrupt):
        first.train()
    assert (tmp_path / "split" / "last_checkpoint").read_text() == "model_0000002.pth"
    assert not (tmp_path / "split" / "model_final.pth").exists()

    seed_all_rng(123)  # a resumed run's weights and RNG come from the checkpoint, whatever the seed
    second = Trainer(tiny_fcos_cfg(tmp_path / "split"))
    second.resume_or_load(resume=True)
    assert second.start_iter == 3
    second.train()

    a, b = _state(full.model), _state(second.model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), rtol=1e-5, atol=1e-6), k
    assert second.scheduler.last_epoch == full.scheduler.last_epoch == 6
    assert second.optimizer.param_groups[0]["lr"] == pytest.approx(full.optimizer.param_groups[0]["lr"])
    assert second.data_loader.state_dict() == full.data_loader.state_dict()
    # The finished run's final checkpoint loads with plain weights-only torch.load.
    ck = torch.load(tmp_path / "split" / "model_final.pth", weights_only=True)
    assert ck["iteration"] == 5 and {"model", "optimizer", "scheduler", "trainer"} <= set(ck)
    assert ck["trainer"]["train_loader"]["batches"] == 6 and "rng" in ck["trainer"]


def test_outputs_metrics_and_kept_checkpoints(tmp_path, detkit_records):
    cfg = tiny_fcos_cfg(tmp_path, "SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.CHECKPOINT_MAX_TO_KEEP", "2")
    seen = []

    class _Probe(HookBase):
        def after_step(self):
            storage = get_event_storage()
            seen.append((self.trainer.iter, storage.iter, storage.history("total_loss").latest()))

    trainer = Trainer(cfg)
    trainer.register_hooks([_Probe()])
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert [s[:2] for s in seen] == [(i, i) for i in range(6)]
    files = sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth"))
    assert files == ["model_0000004.pth", "model_0000005.pth", "model_final.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    lines = [json.loads(x) for x in (tmp_path / "metrics.json").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [1, 3, 5]
    for x in lines:
        assert {"total_loss", "loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "lr", "time", "data_time"} <= set(x)
    assert lines[0]["lr"] == pytest.approx(0.01 * 0.5005)  # linear warmup from 0.001 over 2 iters, at iter 1
    assert lines[2]["lr"] == pytest.approx(0.001)  # after the step at 4
    console = [r.getMessage() for r in detkit_records if r.name == "detkit.utils.events"]
    assert len(console) == 3
    for key in ("eta: ", "iter: 5", "loss_fcos_cls: ", "time: ", "data_time: ", "lr: ", "max_mem: "):
        assert key in console[-1], (key, console[-1])


NAN_PLUGIN = textwrap.dedent('''
    """Test plugin: FCOS whose classification loss becomes NaN at iteration 3."""
    import torch

    from detkit.engine import get_event_storage
    from detkit.modeling import META_ARCH_REGISTRY
    from detkit.modeling.meta_arch.fcos import FCOS


    @META_ARCH_REGISTRY.register()
    class NaNAtIter3FCOS(FCOS):
        def forward(self, batched_inputs):
            out = super().forward(batched_inputs)
            if self.training and get_event_storage().iter == 3:
                out["loss_fcos_cls"] = out["loss_fcos_cls"] * torch.tensor(float("nan"))
            return out
''')


def test_nan_loss_raises_and_keeps_last_good_checkpoint(tmp_path):
    from detkit.config.plugins import load_plugins

    plugin = tmp_path / "nan_plugin.py"
    plugin.write_text(NAN_PLUGIN)
    cfg = tiny_fcos_cfg(tmp_path / "out", "SOLVER.CHECKPOINT_PERIOD", "2")
    load_plugins([str(plugin)], cfg)
    cfg.MODEL.META_ARCHITECTURE = "NaNAtIter3FCOS"
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    with pytest.raises(FloatingPointError, match=r"iteration 3: .*loss_fcos_cls=nan.*loss_fcos_ctr=") as info:
        trainer.train()
    assert "loss_fcos_loc=" in str(info.value)
    out = tmp_path / "out"
    assert sorted(f for f in os.listdir(out) if f.endswith(".pth")) == ["model_0000001.pth"]
    assert (out / "last_checkpoint").read_text() == "model_0000001.pth"
    ck = torch.load(out / "model_0000001.pth", weights_only=True)
    assert ck["iteration"] == 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    # No optimizer step was taken with the bad loss: weights are finite too.
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_finetune_with_other_class_count(tmp_path, detkit_records):
    src = Trainer(tiny_fcos_cfg(tmp_path / "src", "SOLVER.MAX_ITER", "1"))
    src.resume_or_load(resume=False)
    src.train()
    weights = tmp_path / "src" / "model_final.pth"
    cfg = tiny_fcos_cfg(tmp_path / "ft", "MODEL.FCOS.NUM_CLASSES", "5", "MODEL.WEIGHTS", str(weights),
                        "SOLVER.MAX_ITER", "2")
    ft = Trainer(cfg)
    ft.resume_or_load(resume=False)
    assert ft.start_iter == 0
    loaded = torch.load(weights, weights_only=True)["model"]
    mine = ft.model.state_dict()
    skipped = sorted(k for k in loaded if loaded[k].shape != mine[k].shape)
    assert skipped, "the class-count change must change some parameter shapes"
    warnings = "\n".join(r.getMessage() for r in detkit_records if r.levelname == "WARNING")
    for k in skipped:
        assert f"'{k}'" in warnings
    same = [k for k in loaded if k not in skipped and loaded[k].is_floating_point()]
    assert all(torch.equal(mine[k], loaded[k]) for k in same)
    ft.train()
    assert (tmp_path / "ft" / "model_final.pth").exists()


class _ScriptedEvalTrainer(Trainer):
    """Trainer whose evaluation returns scripted results (no dataset needed)."""

    scripted = []

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        from collections import OrderedDict

        return OrderedDict([("fake_val", {"bbox": {"AP": cls.scripted.pop(0), "AP50": 50.0}})])


def test_eval_hook_and_best_checkpointer(tmp_path):
    cfg = tiny_fcos_cfg(tmp_path, "DATASETS.TEST", "('fake_val',)", "TEST.EVAL_PERIOD", "2",
                        "TEST.BEST_CHECKPOINT_METRIC", "bbox/AP", "SOLVER.CHECKPOINT_PERIOD", "100")
    _ScriptedEvalTrainer.scripted = [10.0, 30.0, 20.0]  # evaluations after iterations 1, 3 and the end
    trainer = _ScriptedEvalTrainer(cfg)
    trainer.resume_or_load(resume=False)
    torch.manual_seed(0)
    results = trainer.train()
    assert results == {"fake_val": {"bbox": {"AP": 20.0, "AP50": 50.0}}}
    assert _ScriptedEvalTrainer.scripted == []
    best = torch.load(tmp_path / "model_best.pth", weights_only=True)
    assert best["iteration"] == 3
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    lines = [json.loads(x) for x in (tmp_path / "metrics.json").read_text().splitlines()]
    evals = [(x["iteration"], x["bbox/AP"]) for x in lines if "bbox/AP" in x]
    assert evals == [(1, 10.0), (3, 30.0), (6, 20.0)]
    state = torch.load(tmp_path / "model_final.pth", weights_only=True)["trainer"]["hooks"]
    assert state["BestCheckpointer"] == {"best_metric": 30.0, "best_iter": 3}


def test_amp_on_cpu_trains_under_bfloat16_autocast(tmp_path, monkeypatch):
    """SOLVER.AMP.ENABLED on a CPU with native bf16: the loop is an AMPTrainer in bfloat16 without a
    grad scaler, and training runs with finite losses."""
    import detkit.utils.env as env
    from detkit.engine import AMPTrainer

    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: True)
    t = Trainer(tiny_fcos_cfg(tmp_path, "SOLVER.AMP.ENABLED", "True"))
    assert isinstance(t._trainer, AMPTrainer)
    assert t._trainer.precision == torch.bfloat16 and not t._trainer.grad_scaler.is_enabled()
    t.train()
    last = json.loads((tmp_path / "metrics.json").read_text().splitlines()[-1])
    assert math.isfinite(last["total_loss"]), last


def test_amp_on_cpu_without_native_bf16_trains_in_float32_with_a_warning(tmp_path, detkit_records, monkeypatch):
    import detkit.utils.env as env
    from detkit.engine import AMPTrainer

    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(env, "_warned_float32_fallback", set())
    t = Trainer(tiny_fcos_cfg(tmp_path, "SOLVER.AMP.ENABLED", "True"))
    assert not isinstance(t._trainer, AMPTrainer)
    warnings = [r.getMessage() for r in detkit_records if "SOLVER.AMP.ENABLED is ignored" in r.getMessage()]
    assert len(warnings) == 1 and "'cpu'" in warnings[0] and "float32" in warnings[0]


def test_build_evaluator_names_the_dataset_and_key_when_none_fits():
    from detkit.config import get_cfg
    from detkit.data import MetadataCatalog

    MetadataCatalog.get("no_evaluator_set").set(thing_classes=["a"])
    try:
        with pytest.raises(ValueError, match=r"DATASETS.TEST names 'no_evaluator_set', which has no evaluator: "
                                             r"its metadata evaluator_type is None\. Set MetadataCatalog"):
            Trainer.build_evaluator(get_cfg(), "no_evaluator_set")
    finally:
        MetadataCatalog.remove("no_evaluator_set")
