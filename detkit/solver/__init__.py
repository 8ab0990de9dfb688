"""Solver: optimizers (SGD / AdamW with per-kind weight decay and clipping) and LR schedules."""
from .build import build_lr_scheduler, build_optimizer, get_default_optimizer_params, maybe_add_gradient_clipping
from .lr_scheduler import WarmupCosineLR, WarmupMultiStepLR, warmup_factor_at_iter

__all__ = [k for k in globals() if not k.startswith("_")]
