"""Helpers shared by the engine tests (a module of its own: test modules cannot import conftest)."""
import os

from detkit.config import get_cfg
from detkit.engine import HookBase

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_SET = "shapes_engine_train_8"


def tiny_fcos_cfg(output_dir: str, *overrides):
    """FCOS (RegNetX-400MF, 32-channel FPN, one conv per tower) on 8 shapes images of 64 px, 6 iterations."""
    from detkit.data.datasets import register_shapes

    register_shapes(TRAIN_SET, 8, 64, 11)
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "Base-FCOS.yaml"))
    cfg.merge_from_list([
        "MODEL.FCOS.NUM_CLASSES", "3", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.FCOS.NUM_CONVS", "1",
        "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
        "INPUT.MAX_SIZE_TEST", "64", "DATASETS.TRAIN", f"('{TRAIN_SET}',)", "DATASETS.TEST", "()",
        "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.01",
        "SOLVER.MAX_ITER", "6", "SOLVER.STEPS", "(4,)", "SOLVER.WARMUP_ITERS", "2", "SOLVER.CHECKPOINT_PERIOD", "3",
        "LOG_PERIOD", "2", "SEED", "7", "OUTPUT_DIR", str(output_dir),
    ])
    cfg.merge_from_list(list(overrides))
    return cfg


class Interrupt(Exception):
    """Raised by StopAfter: a run that dies."""


class StopAfter(HookBase):
    """Simulate a run that dies right after iteration ``last`` (its checkpoint was written)."""

    def __init__(self, last):
        self.last = last

    def after_step(self):
        if self.trainer.iter == self.last:
            raise Interrupt()
