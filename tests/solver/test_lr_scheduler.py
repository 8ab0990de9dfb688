"""Tests for detkit.solver.lr_scheduler: exact warmup / multistep / cosine values and resume state."""
import io
import math

import pytest
import torch

from detkit.solver.lr_scheduler import WarmupCosineLR, WarmupMultiStepLR, warmup_factor_at_iter


def _opt(lrs=(1.0,)):
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs], lr=lrs[0])


def _run(sched, opt, n):
    out = []
    for _ in range(n):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def test_warmup_factor():
    assert warmup_factor_at_iter("linear", 0, 10, 0.1) == pytest.approx(0.1)
    assert warmup_factor_at_iter("linear", 5, 10, 0.1) == pytest.approx(0.55)
    assert warmup_factor_at_iter("linear", 10, 10, 0.1) == 1.0
    assert warmup_factor_at_iter("constant", 9, 10, 0.1) == 0.1
    with pytest.raises(ValueError, match="Unknown warmup method 'cubic'.*SOLVER.WARMUP_METHOD"):
        warmup_factor_at_iter("cubic", 0, 10, 0.1)


def test_linear_warmup_then_multistep():
    opt = _opt((1.0, 2.0))
    sched = WarmupMultiStepLR(opt, milestones=[4, 6], gamma=0.1, warmup_factor=0.5, warmup_iters=2)
    lrs = [x[0] for x in _run(sched, opt, 8)]
    assert lrs == pytest.approx([0.5, 0.75, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    assert opt.param_groups[1]["lr"] == pytest.approx(2 * 0.01)


def test_constant_warmup():
    opt = _opt()
    sched = WarmupMultiStepLR(opt, milestones=[], warmup_factor=0.25, warmup_iters=3, warmup_method="constant")
    assert [x[0] for x in _run(sched, opt, 5)] == pytest.approx([0.25, 0.25, 0.25, 1.0, 1.0])


def test_cosine():
    opt = _opt((1.0, 0.5))
    sched = WarmupCosineLR(opt, max_iter=4, warmup_iters=0, end_factor=0.2)
    lrs = _run(sched, opt, 6)
    expect = [0.2 + 0.4 * (1 + math.cos(math.pi * t / 4)) for t in (0, 1, 2, 3, 4, 4)]
    assert [x[0] for x in lrs] == pytest.approx(expect)
    assert lrs[2][1] == pytest.approx(0.5 * expect[2])  # groups keep their ratio
    assert lrs[5][0] == pytest.approx(0.2)


def test_state_dict_resumes_exactly_and_loads_weights_only():
    opt = _opt()
    sched = WarmupMultiStepLR(opt, milestones=[5], warmup_factor=0.1, warmup_iters=4)
    full = _run(sched, opt, 8)
    opt2 = _opt()
    s2 = WarmupMultiStepLR(opt2, milestones=[5], warmup_factor=0.1, warmup_iters=4)
    _run(s2, opt2, 3)
    buf = io.BytesIO()
    torch.save(s2.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt3 = _opt()
    s3 = WarmupMultiStepLR(opt3, milestones=[5], warmup_factor=0.1, warmup_iters=4)
    s3.load_state_dict(state)
    assert [x[0] for x in _run(s3, opt3, 5)] == pytest.approx([x[0] for x in full[3:]])


def test_steps_must_increase():
    with pytest.raises(ValueError, match="SOLVER.STEPS must be increasing"):
        WarmupMultiStepLR(_opt(), milestones=[5, 3])
