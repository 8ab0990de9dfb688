"""Tests for detkit.solver.build: param groups, optimizers, gradient clipping, scheduler choice."""
import pytest
import torch

from detkit.config import get_cfg
from detkit.solver import build_lr_scheduler, build_optimizer, get_default_optimizer_params
from detkit.solver.lr_scheduler import WarmupCosineLR, WarmupMultiStepLR


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 1)  # weight + bias
        self.bn = torch.nn.BatchNorm2d(2)
        self.gn = torch.nn.GroupNorm(1, 2)
        self.fc = torch.nn.Linear(2, 1, bias=False)
        self.frozen = torch.nn.Linear(1, 1)
        self.frozen.requires_grad_(False)


def _groups_by_param(groups):
    return {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}


def test_param_groups_separate_norm_and_bias():
    net = _Net()
    groups = get_default_optimizer_params(net, base_lr=0.1, weight_decay=1e-4, weight_decay_norm=0.0,
                                          bias_lr_factor=2.0, weight_decay_bias=0.5)
    by = _groups_by_param(groups)
    assert by[id(net.conv.weight)] == (0.1, 1e-4)
    assert by[id(net.fc.weight)] == (0.1, 1e-4)
    assert by[id(net.conv.bias)] == (0.2, 0.5)
    for p in (net.bn.weight, net.bn.bias, net.gn.weight, net.gn.bias):
        assert by[id(p)] == (0.1, 0.0)
    assert id(net.frozen.weight) not in by and id(net.frozen.bias) not in by
    # Same (lr, wd) share one group: plain weights, biases, norm params -> 3 groups.
    assert len(groups) == 3
    assert sum(len(g["params"]) for g in groups) == 7


def test_param_groups_none_means_weight_decay():
    net = _Net()
    by = _groups_by_param(get_default_optimizer_params(net, 0.1, 1e-4, None, 1.0, None))
    assert by[id(net.bn.weight)] == (0.1, 1e-4) and by[id(net.conv.bias)] == (0.1, 1e-4)


def test_shared_parameter_counted_once():
    lin = torch.nn.Linear(2, 2)
    net = torch.nn.Sequential(lin, lin)
    groups = get_default_optimizer_params(net, 0.1, 0.0)
    assert sum(len(g["params"]) for g in groups) == 2


def _cfg(**kv):
    cfg = get_cfg()
    for k, v in kv.items():
        node = cfg
        *parts, last = k.split("__")
        for p in parts:
            node = node[p]
        node[last] = v
    return cfg


def test_sgd_options_and_adamw():
    net = _Net()
    opt = build_optimizer(_cfg(SOLVER__NESTEROV=True, SOLVER__MOMENTUM=0.8, SOLVER__BASE_LR=0.5), net)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["nesterov"] is True and opt.defaults["momentum"] == 0.8 and opt.defaults["lr"] == 0.5
    opt = build_optimizer(_cfg(SOLVER__OPTIMIZER="AdamW", SOLVER__BETAS=(0.8, 0.9)), net)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.8, 0.9)


def test_unknown_optimizer_names_key():
    with pytest.raises(ValueError, match=r"Unknown optimizer 'Adam'.*SOLVER.OPTIMIZER"):
        build_optimizer(_cfg(SOLVER__OPTIMIZER="Adam"), _Net())


def _one_step_with_grad(cfg, grad):
    p = torch.nn.Parameter(torch.zeros(2))
    net = torch.nn.Module()
    net.p = p
    opt = build_optimizer(cfg, net)
    p.grad = grad.clone()
    opt.step()
    return p.detach()


def test_clip_by_value():
    cfg = _cfg(SOLVER__BASE_LR=1.0, SOLVER__MOMENTUM=0.0, SOLVER__WEIGHT_DECAY=0.0)
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.5
    # grad (3, -0.25) clamped to (0.5, -0.25); SGD lr 1: p = -grad.
    assert torch.allclose(_one_step_with_grad(cfg, torch.tensor([3.0, -0.25])), torch.tensor([-0.5, 0.25]))


def test_clip_by_norm():
    cfg = _cfg(SOLVER__BASE_LR=1.0, SOLVER__MOMENTUM=0.0, SOLVER__WEIGHT_DECAY=0.0)
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "norm"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
    # grad (3, 4) has norm 5 -> scaled to (0.6, 0.8).
    out = _one_step_with_grad(cfg, torch.tensor([3.0, 4.0]))
    assert torch.allclose(out, torch.tensor([-0.6, -0.8]), atol=1e-6)


def test_bad_clip_type():
    cfg = _cfg()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full"
    with pytest.raises(ValueError, match="CLIP_TYPE is 'full'"):
        build_optimizer(cfg, _Net())


def test_build_lr_scheduler_choice():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cfg = _cfg(SOLVER__MAX_ITER=100, SOLVER__STEPS=(50, 200))
    sched = build_lr_scheduler(cfg, opt)
    assert isinstance(sched, WarmupMultiStepLR) and sched.milestones == [50]
    cfg = _cfg(SOLVER__LR_SCHEDULER_NAME="WarmupCosineLR", SOLVER__BASE_LR=0.1, SOLVER__BASE_LR_END=0.01)
    sched = build_lr_scheduler(cfg, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    assert isinstance(sched, WarmupCosineLR) and sched.end_factor == pytest.approx(0.1)
    with pytest.raises(ValueError, match="Unknown LR scheduler 'Step'"):
        build_lr_scheduler(_cfg(SOLVER__LR_SCHEDULER_NAME="Step"), opt)


@pytest.mark.parametrize("name", ["SGD", "AdamW"])
def test_fused_update_equals_the_per_tensor_loop(name):
    """build_optimizer picks torch's fused kernel on CPU; its steps match the plain per-tensor loop."""
    def net():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4), torch.nn.Conv2d(4, 1, 1))

    fast_net, loop_net, start = net(), net(), net()
    cfg = _cfg(SOLVER__OPTIMIZER=name, SOLVER__BASE_LR=0.1, SOLVER__WEIGHT_DECAY=0.01)
    fast = build_optimizer(cfg, fast_net)
    assert fast.defaults["fused"] is True
    loop = type(fast)(get_default_optimizer_params(loop_net, 0.1, 0.01, cfg.SOLVER.WEIGHT_DECAY_NORM),
                      lr=0.1, **({"momentum": cfg.SOLVER.MOMENTUM} if name == "SGD" else {}),
                      foreach=False)
    for step in range(3):
        x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(step))
        for model, opt in ((fast_net, fast), (loop_net, loop)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for a, b in zip(fast_net.parameters(), loop_net.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert all(not torch.equal(a, b) for a, b in zip(fast_net.parameters(), start.parameters()))


def test_gradient_clipping_keeps_the_multi_tensor_step():
    cfg = _cfg(SOLVER__OPTIMIZER="AdamW", SOLVER__CLIP_GRADIENTS__ENABLED=True)
    opt = build_optimizer(cfg, _Net())
    assert opt.defaults["fused"] is None and opt.defaults["foreach"] is True
