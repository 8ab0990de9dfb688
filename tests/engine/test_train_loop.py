"""Tests for detkit.engine.train_loop: hook order, the non-finite loss check, AMP on CPU."""
import math

import pytest
import torch

from detkit.engine import AMPTrainer, HookBase, SimpleTrainer, get_event_storage


class _Toy(torch.nn.Module):
    """loss_a = (w - x)^2, loss_b = |w|; the batch is a float x (or nan)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return {"loss_a": (self.w - x) ** 2, "loss_b": self.w.abs()}


def _loader(values):
    def gen():
        for v in values:
            yield torch.tensor(v)
    return gen()


class _Recorder(HookBase):
    def __init__(self, log):
        self.log = log

    def before_train(self):
        self.log.append("before_train")

    def before_step(self):
        self.log.append(f"before_step {self.trainer.iter}")

    def after_backward(self):
        self.log.append(f"after_backward {self.trainer.iter} grad={self.trainer.model.w.grad.item():.1f}")

    def after_step(self):
        self.log.append(f"after_step {self.trainer.iter} storage_iter={get_event_storage().iter}")

    def after_train(self):
        self.log.append(f"after_train completed={self.trainer.completed} iter={self.trainer.iter}")


def test_hook_order_and_sgd_step():
    model = _Toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SimpleTrainer(model, _loader([3.0, 3.0]), opt)
    log = []
    trainer.register_hooks([_Recorder(log), None])
    trainer.train(0, 2)
    # iter 0: grad = 2(w-x) + sign(w) = 2(1-3) + 1 = -3 -> w = 1.3; iter 1: grad = 2(1.3-3)+1 = -2.4 -> w = 1.54
    assert log == ["before_train", "before_step 0", "after_backward 0 grad=-3.0", "after_step 0 storage_iter=0",
                   "before_step 1", "after_backward 1 grad=-2.4", "after_step 1 storage_iter=1",
                   "after_train completed=True iter=2"]
    assert model.w.item() == pytest.approx(1.54)
    hist = trainer.storage.history("total_loss").values()
    assert [v for v, _ in hist] == pytest.approx([4.0 + 1.0, 1.7 ** 2 + 1.3])
    assert trainer.storage.history("loss_a").latest() == pytest.approx(1.7 ** 2)


def test_non_finite_loss_raises_before_any_step():
    model = _Toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SimpleTrainer(model, _loader([3.0, float("nan"), 3.0]), opt)
    log = []
    trainer.register_hooks([_Recorder(log)])
    with pytest.raises(FloatingPointError) as info:
        trainer.train(0, 3)
    msg = str(info.value)
    assert "non-finite at iteration 1" in msg and "loss_a=nan" in msg and "loss_b=1.3" in msg
    assert model.w.item() == pytest.approx(1.3)  # iteration 1 took no step
    assert "after_step 1 storage_iter=1" not in log
    assert log[-1] == "after_train completed=False iter=1"


def test_amp_trainer_on_cpu_uses_bf16_and_stays_finite():
    seen = []

    class _Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 1)

        def forward(self, x):
            y = self.lin(x)
            seen.append(y.dtype)
            return {"loss": (y.float() ** 2).mean()}

    torch.manual_seed(0)
    model = _Probe()
    batches = [torch.randn(8, 4) for _ in range(5)]
    trainer = AMPTrainer(model, iter(batches), torch.optim.SGD(model.parameters(), lr=0.1), device_type="cpu")
    assert trainer.precision == torch.bfloat16 and not trainer.grad_scaler.is_enabled()
    trainer.train(0, 5)
    assert seen == [torch.bfloat16] * 5
    losses = [v for v, _ in trainer.storage.history("total_loss").values()]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
