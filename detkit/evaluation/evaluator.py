"""The evaluator interface, a combinator of evaluators, and the loop that runs a model over a dataset."""
import datetime
import logging
import time
from collections import OrderedDict
from contextlib import ExitStack, contextmanager
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import torch
from torch import nn

from detkit.utils import comm

__all__ = ["DatasetEvaluator", "DatasetEvaluators", "inference_on_dataset", "inference_context"]

logger = logging.getLogger(__name__)


class DatasetEvaluator:
    """Base class of evaluators: accumulate (input, output) pairs, then compute metrics.

    The loop calls ``reset()`` once, ``process(inputs, outputs)`` for every batch, then
    ``evaluate()``. In a multi-process run every process sees its own share of the images; an
    evaluator gathers them inside ``evaluate()``, computes on the main process, and returns ``{}``
    on the others.
    """

    def reset(self) -> None:
        """Forget everything processed so far; called before a new evaluation."""

    def process(self, inputs: List[Dict], outputs: List[Dict]) -> None:
        """Record one batch.

        Args:
            inputs: the model's input dicts (``image_id``, ``height``, ``width``, ``file_name``...).
            outputs: the model's output dicts, one per input.
        """

    def evaluate(self) -> Optional[Dict[str, Any]]:
        """Compute the metrics over everything processed.

        Returns:
            ``{task: {metric: value}}`` on the main process; ``{}`` (or None) elsewhere.
        """
        return {}


class DatasetEvaluators(DatasetEvaluator):
    """Runs several evaluators as one; their result dicts are merged (task names must not clash)."""

    def __init__(self, evaluators: Sequence[DatasetEvaluator]):
        super().__init__()
        self._evaluators = list(evaluators)

    def reset(self) -> None:
        for evaluator in self._evaluators:
            evaluator.reset()

    def process(self, inputs: List[Dict], outputs: List[Dict]) -> None:
        for evaluator in self._evaluators:
            evaluator.process(inputs, outputs)

    def evaluate(self) -> Dict[str, Any]:
        results: Dict[str, Any] = OrderedDict()
        for evaluator in self._evaluators:
            result = evaluator.evaluate()
            if not comm.is_main_process() or not result:
                continue
            for task, value in result.items():
                if task in results:
                    raise KeyError(
                        f"Two evaluators ({type(evaluator).__name__} and an earlier one) both returned "
                        f"results for '{task}'. Give them different tasks or evaluate them separately."
                    )
                results[task] = value
        return results


@contextmanager
def inference_context(model: nn.Module):
    """Put ``model`` in eval mode for the duration of the block, then restore its training mode."""
    training_mode = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training_mode)


def _as_evaluator(evaluator: Union[None, DatasetEvaluator, Iterable[DatasetEvaluator]]) -> DatasetEvaluator:
    if evaluator is None:
        return DatasetEvaluators([])  # runs the model and returns {}
    if isinstance(evaluator, DatasetEvaluator):
        return evaluator
    return DatasetEvaluators(list(evaluator))


def _fmt_seconds(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(round(seconds))))


def inference_on_dataset(model, data_loader: Iterable,
                         evaluator: Union[None, DatasetEvaluator, Sequence[DatasetEvaluator]],
                         log_period_s: float = 5.0) -> Dict[str, Any]:
    """Run ``model`` over every batch of ``data_loader`` and evaluate its outputs.

    The model runs under ``torch.inference_mode()`` and, when it is an ``nn.Module``, in eval
    mode; its previous training mode is restored afterwards. Progress (with an ETA) is logged
    every ``log_period_s`` seconds; at the end, the total time and the pure inference time per
    image, counted after a warm-up of up to 5 batches, are logged. In a multi-process run each
    process feeds its own share of the data and the evaluator gathers them on the main process.

    Args:
        model: a callable taking a list of input dicts and returning a list of output dicts.
        data_loader: an iterable of batches (lists of input dicts); ``len()`` is used for the ETA
            when available.
        evaluator: a ``DatasetEvaluator``, a list of them (run together), or None to run only.
        log_period_s: seconds between progress lines.

    Returns:
        The evaluator's results on the main process, ``{}`` on the others (or with no evaluator).
    """
    evaluator = _as_evaluator(evaluator)
    num_devices = comm.get_world_size()
    try:
        total = len(data_loader)
    except TypeError:
        total = None
    logger.info("Start inference on %s batches", total if total is not None else "an unknown number of")
    num_warmup = min(5, total - 1) if total else 5
    evaluator.reset()

    start_time = time.perf_counter()
    last_log = start_time
    compute_time = 0.0
    timed_images = 0
    num_images = 0
    num_batches = 0
    with ExitStack() as stack:
        if isinstance(model, nn.Module):
            stack.enter_context(inference_context(model))
        stack.enter_context(torch.inference_mode())
        for idx, inputs in enumerate(data_loader):
            if idx == num_warmup:  # the first batches pay for allocation, cudnn autotuning, ...
                compute_time, timed_images = 0.0, 0
            tic = time.perf_counter()
            outputs = model(inputs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            compute_time += time.perf_counter() - tic
            timed_images += len(inputs)
            evaluator.process(inputs, outputs)
            num_images += len(inputs)
            num_batches = idx + 1

            now = time.perf_counter()
            if now - last_log >= log_period_s:
                last_log = now
                per_batch = (now - start_time) / num_batches
                if total is not None:
                    eta = _fmt_seconds(per_batch * (total - num_batches))
                    logger.info("Inference done %d/%d. %.4f s / batch. ETA=%s", num_batches, total, per_batch, eta)
                else:
                    logger.info("Inference done %d batches. %.4f s / batch.", num_batches, per_batch)

    total_time = time.perf_counter() - start_time
    logger.info("Total inference time: %s (%.6f s / image per device, on %d devices; %d images here)",
                _fmt_seconds(total_time), total_time / max(num_images, 1), num_devices, num_images)
    if num_batches > num_warmup:
        logger.info("Total inference pure compute time: %s (%.6f s / image per device, on %d devices; "
                    "after %d warm-up batches)", _fmt_seconds(compute_time), compute_time / max(timed_images, 1),
                    num_devices, num_warmup)
    else:
        logger.info("Too few batches (%d) to time inference after %d warm-up batches.", num_batches, num_warmup)

    results = evaluator.evaluate()
    # Non-main processes may return None; an empty dict is easier downstream.
    return results if results is not None else {}
