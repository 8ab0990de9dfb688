"""Tests for detkit.engine.launch: 2-process gloo DDP of FCOS matches 1 process at the same total batch."""
import json
import os

import torch

from detkit.engine import HookBase, Trainer, launch

from engine_testing import tiny_fcos_cfg

TOTAL_BATCH = 4


class _FixedBatches:
    """Iteration k hands this process its slice of global batch k (the same images whatever the world size)."""

    def __init__(self, mapped, rank, world_size):
        self.mapped, self.rank, self.world = mapped, rank, world_size

    def __iter__(self):
        per = TOTAL_BATCH // self.world
        k = 0
        while True:
            start = (k * TOTAL_BATCH) % len(self.mapped)
            batch = self.mapped[start:start + TOTAL_BATCH]
            yield batch[self.rank * per:(self.rank + 1) * per]
            k += 1


class _DDPTestTrainer(Trainer):
    @classmethod
    def build_train_loader(cls, cfg):
        import detkit.utils.comm as comm
        from detkit.data import DatasetCatalog, DatasetMapper

        mapper = DatasetMapper(cfg, is_train=True)
        mapped = [mapper(d) for d in DatasetCatalog.get(cfg.DATASETS.TRAIN[0])]
        return _FixedBatches(mapped, comm.get_rank(), comm.get_world_size())


class _FirstLosses(HookBase):
    def __init__(self, path):
        self.path = path

    def after_step(self):
        import detkit.utils.comm as comm

        if self.trainer.iter == 0 and comm.is_main_process():
            latest = self.trainer.storage.latest()
            losses = {k: v for k, (v, _) in latest.items() if "loss" in k}
            with open(self.path, "w") as f:
                json.dump(losses, f)


def _worker(output_dir, datasets_root):
    os.environ["DETKIT_DATASETS"] = datasets_root
    torch.set_num_threads(1)
    from detkit.utils.env import seed_all_rng

    cfg = tiny_fcos_cfg(output_dir, "MODEL.BACKBONE.NORM", "FrozenBN", "MODEL.FCOS.HEAD_NORM", "GN",
                        "INPUT.RANDOM_FLIP", "none", "SOLVER.IMS_PER_BATCH", str(TOTAL_BATCH), "SOLVER.MAX_ITER", "3",
                        "SOLVER.CHECKPOINT_PERIOD", "100", "SOLVER.BASE_LR", "0.02",
                        # fp32: bf16 rounding differs between one batch of 4 and two of 2.
                        "SOLVER.AMP.ENABLED", "False")
    seed_all_rng(5)
    trainer = _DDPTestTrainer(cfg)
    trainer.register_hooks([_FirstLosses(os.path.join(output_dir, "first_losses.json"))])
    trainer.resume_or_load(resume=False)
    trainer.train()


def test_two_process_gloo_matches_one_process(tmp_path):
    root = os.environ["DETKIT_DATASETS"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    launch(_worker, 1, args=(one, root))
    launch(_worker, 2, args=(two, root))
    l1 = json.loads(open(os.path.join(one, "first_losses.json")).read())
    l2 = json.loads(open(os.path.join(two, "first_losses.json")).read())
    assert set(l1) == set(l2) and {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"} <= set(l1)
    for k in l1:
        assert abs(l1[k] - l2[k]) <= 1e-5 * max(1.0, abs(l1[k])), (k, l1[k], l2[k])
    w1 = torch.load(os.path.join(one, "model_final.pth"), weights_only=True)
    w2 = torch.load(os.path.join(two, "model_final.pth"), weights_only=True)
    assert w1["iteration"] == w2["iteration"] == 2
    for k, v in w1["model"].items():
        assert torch.allclose(v.float(), w2["model"][k].float(), rtol=1e-4, atol=1e-5), k
    # Only the main process wrote files.
    assert sorted(os.listdir(two)) == sorted(["first_losses.json", "last_checkpoint", "metrics.json",
                                              "model_final.pth", "plots"])
    assert os.listdir(os.path.join(two, "plots")) == ["losses.png"]  # drawn once, by the main process
