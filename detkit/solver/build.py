"""build_optimizer / build_lr_scheduler: SGD or AdamW with per-kind weight decay, clipping, warmup."""
import logging
from typing import Any, Dict, List, Optional, Type

import torch

from .lr_scheduler import WarmupCosineLR, WarmupMultiStepLR

logger = logging.getLogger(__name__)

__all__ = ["build_optimizer", "build_lr_scheduler", "get_default_optimizer_params", "maybe_add_gradient_clipping"]

# Module types whose weights and biases get SOLVER.WEIGHT_DECAY_NORM.
_NORM_TYPES = (
    torch.nn.modules.batchnorm._NormBase,  # BatchNorm*d, SyncBatchNorm
    torch.nn.GroupNorm,
    torch.nn.LayerNorm,
    torch.nn.LocalResponseNorm,
)


def _is_norm(module: torch.nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()


def get_default_optimizer_params(model: torch.nn.Module, base_lr: float, weight_decay: float,
                                 weight_decay_norm: Optional[float] = None, bias_lr_factor: float = 1.0,
                                 weight_decay_bias: Optional[float] = None) -> List[Dict[str, Any]]:
    """Param groups with separate LR / weight decay for norm-layer parameters and biases.

    Each trainable parameter is counted once (shared parameters too). Parameters with the same
    (lr, weight_decay) share one group, in order of first appearance.

    Args:
        base_lr: LR of ordinary weights.
        weight_decay: weight decay of ordinary weights.
        weight_decay_norm: weight decay of normalisation-layer weights and biases; None uses ``weight_decay``.
        bias_lr_factor: LR multiplier for biases (not of norm layers).
        weight_decay_bias: weight decay of biases (not of norm layers); None uses ``weight_decay``.

    Returns:
        A list of ``{"params": [...], "lr": float, "weight_decay": float}``.
    """
    wd_norm = weight_decay if weight_decay_norm is None else weight_decay_norm
    wd_bias = weight_decay if weight_decay_bias is None else weight_decay_bias
    groups: Dict[tuple, List[torch.nn.Parameter]] = {}
    seen = set()
    for module in model.modules():
        norm = _is_norm(module)
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            lr, wd = base_lr, weight_decay
            if norm:
                wd = wd_norm
            elif name == "bias":
                lr, wd = base_lr * bias_lr_factor, wd_bias
            groups.setdefault((lr, wd), []).append(param)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def maybe_add_gradient_clipping(cfg, optimizer_type: Type[torch.optim.Optimizer]) -> Type[torch.optim.Optimizer]:
    """Return ``optimizer_type`` itself, or a subclass whose ``step`` first clips the gradients
    as ``SOLVER.CLIP_GRADIENTS`` says ("value": clamp each element; "norm": scale the whole
    gradient of all parameters to at most CLIP_VALUE in the NORM_TYPE-norm)."""
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not clip.ENABLED:
        return optimizer_type
    clip_type, value, norm_type = clip.CLIP_TYPE, float(clip.CLIP_VALUE), float(clip.NORM_TYPE)
    if clip_type not in ("value", "norm"):
        raise ValueError(f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE is '{clip_type}'; use 'value' or 'norm'.")

    def step(self, closure=None):
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if clip_type == "value":
            torch.nn.utils.clip_grad_value_(params, value)
        else:
            torch.nn.utils.clip_grad_norm_(params, value, norm_type)
        return optimizer_type.step(self, closure)

    return type(f"{optimizer_type.__name__}WithGradientClip", (optimizer_type,), {"step": step})


def _implementation(cfg, param_groups: List[Dict[str, Any]]) -> Dict[str, bool]:
    """torch's fused kernel (one vectorised pass over all parameters) where it applies, else its
    multi-tensor ``foreach`` one: same update, a fraction of the per-tensor loop's time on CPU, where
    torch otherwise picks the loop. Gradient clipping keeps ``foreach``: the fused step takes the
    GradScaler's scale itself, so clipping would see scaled gradients."""
    params = [p for g in param_groups for p in g["params"]]
    fusable = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    if fusable and not cfg.SOLVER.CLIP_GRADIENTS.ENABLED:
        return {"fused": True}
    return {"foreach": True}


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer named by ``SOLVER.OPTIMIZER`` ("SGD" or "AdamW") over ``model``'s trainable
    parameters, with norm / bias weight decay and gradient clipping from ``SOLVER.*``."""
    s = cfg.SOLVER
    params = get_default_optimizer_params(
        model, base_lr=s.BASE_LR, weight_decay=s.WEIGHT_DECAY, weight_decay_norm=s.WEIGHT_DECAY_NORM,
        bias_lr_factor=s.BIAS_LR_FACTOR, weight_decay_bias=s.WEIGHT_DECAY_BIAS,
    )
    if not params:
        raise ValueError("The model has no trainable parameters (all have requires_grad=False); nothing to optimize.")
    name = s.OPTIMIZER
    speed = _implementation(cfg, params)
    if name == "SGD":
        cls = maybe_add_gradient_clipping(cfg, torch.optim.SGD)
        return cls(params, lr=s.BASE_LR, momentum=s.MOMENTUM, nesterov=s.NESTEROV, **speed)
    if name == "AdamW":
        cls = maybe_add_gradient_clipping(cfg, torch.optim.AdamW)
        return cls(params, lr=s.BASE_LR, betas=tuple(s.BETAS), **speed)
    raise ValueError(f"Unknown optimizer '{name}' (SOLVER.OPTIMIZER); use 'SGD' or 'AdamW'.")


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule named by ``SOLVER.LR_SCHEDULER_NAME``, stepped once per iteration."""
    s = cfg.SOLVER
    name = s.LR_SCHEDULER_NAME
    warmup = dict(warmup_factor=s.WARMUP_FACTOR, warmup_iters=s.WARMUP_ITERS, warmup_method=s.WARMUP_METHOD)
    if name == "WarmupMultiStepLR":
        steps = [x for x in s.STEPS if x <= s.MAX_ITER]
        if len(steps) != len(s.STEPS):
            logger.warning("SOLVER.STEPS=%s has steps past SOLVER.MAX_ITER=%d; they are ignored.",
                           list(s.STEPS), s.MAX_ITER)
        return WarmupMultiStepLR(optimizer, steps, s.GAMMA, max_iter=s.MAX_ITER, **warmup)
    if name == "WarmupCosineLR":
        end_factor = s.BASE_LR_END / s.BASE_LR if s.BASE_LR else 0.0
        return WarmupCosineLR(optimizer, s.MAX_ITER, end_factor=end_factor, **warmup)
    raise ValueError(f"Unknown LR scheduler '{name}' (SOLVER.LR_SCHEDULER_NAME); "
                     "use 'WarmupMultiStepLR' or 'WarmupCosineLR'.")
