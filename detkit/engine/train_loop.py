"""The training loop: HookBase, TrainerBase, and the per-iteration SimpleTrainer / AMPTrainer."""
import logging
import math
import time
import weakref
from typing import Any, Dict, List, Mapping, Optional

import torch

import detkit.utils.comm as comm
from detkit.utils.events import EventStorage, get_event_storage

logger = logging.getLogger(__name__)

__all__ = ["HookBase", "TrainerBase", "SimpleTrainer", "AMPTrainer"]


class HookBase:
    """Base of the hooks a trainer calls around training and each iteration.

    Override any of ``before_train``, ``after_train``, ``before_step``, ``after_backward``,
    ``after_step``. ``self.trainer`` is set (a weak proxy) when the hook is registered, and
    ``self.trainer.iter`` is the iteration being run. Hooks that must survive ``--resume``
    return their state from ``state_dict`` (plain tensors / numbers / strings only).
    """

    trainer: "TrainerBase" = None

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_step(self) -> None:
        pass

    def after_backward(self) -> None:
        pass

    def after_step(self) -> None:
        pass

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


class TrainerBase:
    """Runs ``run_step`` from ``start_iter`` to ``max_iter`` inside an ``EventStorage``, calling hooks.

    Attributes:
        iter: the current iteration; after a completed ``train`` it equals ``max_iter``.
        completed: True once every iteration ran (hooks check it in ``after_train``).
        storage: the run's ``EventStorage``.
    """

    def __init__(self) -> None:
        self._hooks: List[HookBase] = []
        self.iter = 0
        self.start_iter = 0
        self.max_iter = 0
        self.completed = False
        self.storage: Optional[EventStorage] = None

    def register_hooks(self, hooks: List[Optional[HookBase]]) -> None:
        """Append hooks (None entries are skipped); they run in registration order."""
        for h in hooks:
            if h is None:
                continue
            assert isinstance(h, HookBase), f"{type(h).__name__} is not a HookBase"
            # A weak proxy avoids a reference cycle trainer <-> hook.
            h.trainer = weakref.proxy(self)
            self._hooks.append(h)

    def train(self, start_iter: int, max_iter: int) -> None:
        """Run iterations ``start_iter .. max_iter - 1``; exceptions propagate after ``after_train``."""
        logger.info("Starting training from iteration %d", start_iter)
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        self.completed = False
        with EventStorage(start_iter) as self.storage:
            try:
                self.before_train()
                for self.iter in range(start_iter, max_iter):
                    self.before_step()
                    self.run_step()
                    self.after_step()
                self.iter = max_iter
                self.completed = True
            except Exception:
                logger.exception("Exception during training at iteration %d:", self.iter)
                raise
            finally:
                self.after_train()

    def before_train(self) -> None:
        for h in self._hooks:
            h.before_train()

    def after_train(self) -> None:
        self.storage.iter = self.iter
        for h in self._hooks:
            h.after_train()

    def before_step(self) -> None:
        self.storage.iter = self.iter
        for h in self._hooks:
            h.before_step()

    def after_backward(self) -> None:
        for h in self._hooks:
            h.after_backward()

    def after_step(self) -> None:
        for h in self._hooks:
            h.after_step()

    def run_step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        hooks = {}
        for h in self._hooks:
            sd = h.state_dict()
            if sd:
                name = type(h).__qualname__
                if name in hooks:
                    logger.warning("Two hooks of type %s have state; only the first one's is saved.", name)
                    continue
                hooks[name] = sd
        return {"iteration": self.iter, "hooks": hooks}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.iter = int(state["iteration"])
        for name, sd in state.get("hooks", {}).items():
            for h in self._hooks:
                if type(h).__qualname__ == name:
                    h.load_state_dict(sd)
                    break
            else:
                logger.warning("Checkpoint has state for hook %s, which is not registered; ignored.", name)


def _check_finite_and_log(loss_dict: Dict[str, torch.Tensor], data_time: float, iteration: int) -> None:
    """Average the losses over processes, record them, and raise on a non-finite value.

    Every process sees the same averaged values, so all raise together (no process is left
    waiting in a collective).
    """
    detached = {k: v.detach().float() for k, v in loss_dict.items()}
    reduced = comm.reduce_dict(detached, average=True)
    values = {k: float(v.item()) for k, v in reduced.items()}
    total = sum(values.values())
    if not math.isfinite(total):
        terms = ", ".join(f"{k}={v:.6g}" for k, v in sorted(values.items()))
        raise FloatingPointError(
            f"Loss became non-finite at iteration {iteration}: {terms}. No optimizer step was taken and no "
            "checkpoint of these weights is written; the last good checkpoint stays in OUTPUT_DIR. "
            "Try a lower SOLVER.BASE_LR, a longer SOLVER.WARMUP_ITERS or SOLVER.CLIP_GRADIENTS, and check the data."
        )
    storage = get_event_storage()
    storage.put_scalar("data_time", data_time)
    storage.put_scalar("total_loss", total)
    if len(values) > 1:
        storage.put_scalars(**values)


class SimpleTrainer(TrainerBase):
    """One iteration = next batch, forward (a dict of losses), finiteness check, backward, step.

    Args:
        model: returns a dict of scalar losses in training mode (may be DDP-wrapped).
        data_loader: an iterable of batches; ``iter`` is taken once, when training starts.
        optimizer: a torch optimizer.
    """

    def __init__(self, model: torch.nn.Module, data_loader, optimizer: torch.optim.Optimizer):
        super().__init__()
        model.train()
        self.model = model
        self.data_loader = data_loader
        self.optimizer = optimizer
        self._data_loader_iter_obj = None
        self._prefetched = None

    @property
    def _data_loader_iter(self):
        if self._data_loader_iter_obj is None:
            self._data_loader_iter_obj = iter(self.data_loader)
        return self._data_loader_iter_obj

    def reset_data_loader_iter(self) -> None:
        """Drop the current iterator; the next step starts a new one (after ``load_state_dict``)."""
        self._data_loader_iter_obj = None
        self._prefetched = None

    def prefetch(self) -> None:
        """Fetch the first batch now (starting the loader and its workers), for the next ``run_step``.

        Starting a loader draws from torch's RNG; doing it before training starts (and before a
        resumed run restores the checkpoint's RNG state) keeps the training RNG stream identical
        between an uninterrupted run and a resumed one.
        """
        if self._prefetched is None:
            start = time.perf_counter()
            self._prefetched = (next(self._data_loader_iter), time.perf_counter() - start)

    def _next_batch(self):
        if self._prefetched is not None:
            batch, data_time = self._prefetched
            self._prefetched = None
            return batch, data_time
        start = time.perf_counter()
        batch = next(self._data_loader_iter)
        return batch, time.perf_counter() - start

    def _forward(self, data) -> Dict[str, torch.Tensor]:
        loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        return loss_dict

    def run_step(self) -> None:
        assert self.model.training, "SimpleTrainer: the model was switched to eval mode during training"
        data, data_time = self._next_batch()
        loss_dict = self._forward(data)
        losses = sum(loss_dict.values())
        _check_finite_and_log(loss_dict, data_time, self.iter)
        self.optimizer.zero_grad(set_to_none=True)
        losses.backward()
        self.after_backward()
        self.optimizer.step()

class AMPTrainer(SimpleTrainer):
    """SimpleTrainer under ``torch.autocast``: fp16 + GradScaler on CUDA, bf16 (no scaler) on CPU.

    Args:
        precision: the autocast dtype; None picks float16 on CUDA and bfloat16 on CPU.
        device_type: "cuda" or "cpu".
        grad_scaler: a ``torch.amp.GradScaler``; None builds one (enabled for float16 only).
    """

    def __init__(self, model: torch.nn.Module, data_loader, optimizer: torch.optim.Optimizer,
                 device_type: str = "cuda", precision: Optional[torch.dtype] = None, grad_scaler=None):
        super().__init__(model, data_loader, optimizer)
        self.device_type = device_type
        self.precision = precision or (torch.float16 if device_type == "cuda" else torch.bfloat16)
        if grad_scaler is None:
            grad_scaler = torch.amp.GradScaler(device_type, enabled=self.precision == torch.float16)
        self.grad_scaler = grad_scaler

    def run_step(self) -> None:
        assert self.model.training, "AMPTrainer: the model was switched to eval mode during training"
        data, data_time = self._next_batch()
        with torch.autocast(self.device_type, dtype=self.precision):
            loss_dict = self._forward(data)
            losses = sum(v.float() for v in loss_dict.values())
        _check_finite_and_log(loss_dict, data_time, self.iter)
        self.optimizer.zero_grad(set_to_none=True)
        self.grad_scaler.scale(losses).backward()
        self.after_backward()
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def state_dict(self) -> Dict[str, Any]:
        ret = super().state_dict()
        if self.grad_scaler.is_enabled():
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        if "grad_scaler" in state and self.grad_scaler.is_enabled():
            self.grad_scaler.load_state_dict(state["grad_scaler"])
