"""Learning-rate schedules: linear / constant warmup, then multistep or cosine decay."""
import bisect
import logging
import math
from typing import Any, Dict, List, Sequence

import torch

logger = logging.getLogger(__name__)

__all__ = ["WarmupMultiStepLR", "WarmupCosineLR", "warmup_factor_at_iter"]


def warmup_factor_at_iter(method: str, iter: int, warmup_iters: int, warmup_factor: float) -> float:
    """The LR multiplier from warmup at iteration ``iter`` (1.0 once warmup is over).

    Args:
        method: "linear" (ramp from ``warmup_factor`` to 1) or "constant" (``warmup_factor`` throughout).
        iter: the iteration.
        warmup_iters: warmup length; 0 turns warmup off.
        warmup_factor: the multiplier at iteration 0.
    """
    if iter >= warmup_iters:
        return 1.0
    if method == "constant":
        return warmup_factor
    if method == "linear":
        alpha = iter / warmup_iters
        return warmup_factor * (1 - alpha) + alpha
    raise ValueError(f"Unknown warmup method '{method}' (SOLVER.WARMUP_METHOD); use 'linear' or 'constant'.")


class _WarmupLR(torch.optim.lr_scheduler.LRScheduler):
    """Base: LR of group g at iteration t is ``base_lr_g * multiplier(t)``; stepped once per iteration.

    Its state is plain numbers, so checkpoints holding it load with ``weights_only=True``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_iter: int, warmup_factor: float = 0.001,
                 warmup_iters: int = 1000, warmup_method: str = "linear", last_epoch: int = -1):
        self.max_iter = int(max_iter)
        self.warmup_factor = float(warmup_factor)
        self.warmup_iters = int(warmup_iters)
        self.warmup_method = warmup_method
        warmup_factor_at_iter(warmup_method, 0, 1, 1.0)  # validate the method name early
        super().__init__(optimizer, last_epoch)

    def _decay(self, iter: int, base_lr: float) -> float:
        raise NotImplementedError

    def get_lr(self) -> List[float]:
        t = self.last_epoch
        warm = warmup_factor_at_iter(self.warmup_method, t, self.warmup_iters, self.warmup_factor)
        return [self._decay(t, base_lr) * warm for base_lr in self.base_lrs]

    def _get_closed_form_lr(self) -> List[float]:
        return self.get_lr()

    def state_dict(self) -> Dict[str, Any]:
        return {"last_epoch": int(self.last_epoch), "base_lrs": [float(x) for x in self.base_lrs]}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.last_epoch = int(state_dict["last_epoch"])
        self.base_lrs = [float(x) for x in state_dict["base_lrs"]]
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs


class WarmupMultiStepLR(_WarmupLR):
    """Warmup, then multiply the LR by ``gamma`` at each iteration in ``milestones``."""

    def __init__(self, optimizer: torch.optim.Optimizer, milestones: Sequence[int], gamma: float = 0.1,
                 warmup_factor: float = 0.001, warmup_iters: int = 1000, warmup_method: str = "linear",
                 last_epoch: int = -1, max_iter: int = 0):
        if list(milestones) != sorted(milestones):
            raise ValueError(f"SOLVER.STEPS must be increasing, got {list(milestones)}.")
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)
        super().__init__(optimizer, max_iter, warmup_factor, warmup_iters, warmup_method, last_epoch)

    def _decay(self, iter: int, base_lr: float) -> float:
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, iter)


class WarmupCosineLR(_WarmupLR):
    """Warmup, then a half-cosine from each group's base LR down to ``end_factor`` times it at ``max_iter``.

    ``end_factor`` is ``SOLVER.BASE_LR_END / SOLVER.BASE_LR``, so groups keep their LR ratios.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_iter: int, warmup_factor: float = 0.001,
                 warmup_iters: int = 1000, warmup_method: str = "linear", last_epoch: int = -1,
                 end_factor: float = 0.0):
        self.end_factor = float(end_factor)
        super().__init__(optimizer, max_iter, warmup_factor, warmup_iters, warmup_method, last_epoch)

    def _decay(self, iter: int, base_lr: float) -> float:
        end = self.end_factor * base_lr
        progress = min(iter, self.max_iter) / max(self.max_iter, 1)
        return end + 0.5 * (base_lr - end) * (1.0 + math.cos(math.pi * progress))
