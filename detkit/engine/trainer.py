"""Trainer: detectron2-style DefaultTrainer that builds everything from a config and runs the hooks."""
import logging
import os
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch.nn.parallel import DistributedDataParallel

import detkit.utils.comm as comm
from detkit.checkpoint import DetectionCheckpointer
from detkit.solver import build_lr_scheduler as _build_lr_scheduler
from detkit.solver import build_optimizer as _build_optimizer
from detkit.utils.env import autocast_dtype, get_rng_state, set_rng_state
from detkit.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter, tensorboard_available

from . import hooks
from .train_loop import AMPTrainer, SimpleTrainer, TrainerBase

logger = logging.getLogger(__name__)

__all__ = ["Trainer", "create_ddp_model", "create_train_loop", "default_writers"]


def create_ddp_model(model: torch.nn.Module, **kwargs) -> torch.nn.Module:
    """Wrap ``model`` in DistributedDataParallel when more than one process runs; else return it."""
    if comm.get_world_size() == 1:
        return model
    if next(model.parameters()).device.type == "cuda":
        kwargs.setdefault("device_ids", [comm.get_local_rank()])
    return DistributedDataParallel(model, **kwargs)


def default_writers(output_dir: str, max_iter: Optional[int] = None, window_size: int = 20) -> list:
    """Console printer, ``metrics.json`` and (when tensorboard is installed) TensorBoard event files."""
    os.makedirs(output_dir, exist_ok=True)
    writers = [CommonMetricPrinter(max_iter, window_size), JSONWriter(os.path.join(output_dir, "metrics.json"),
                                                                      window_size)]
    if tensorboard_available():
        writers.append(TensorboardXWriter(output_dir, window_size))
    return writers


def create_train_loop(cfg, model: torch.nn.Module, data_loader, optimizer: torch.optim.Optimizer) -> SimpleTrainer:
    """The per-iteration loop for ``cfg``: ``SimpleTrainer``, or ``AMPTrainer`` when SOLVER.AMP.ENABLED
    (float16 autocast + GradScaler on CUDA, bfloat16 autocast on a CPU with native bf16; other
    CPUs train in float32 with a warning, see ``detkit.utils.env.autocast_dtype``).
    """
    device_type = torch.device(cfg.MODEL.DEVICE).type
    dtype = autocast_dtype(device_type, "SOLVER.AMP.ENABLED") if cfg.SOLVER.AMP.ENABLED else None
    if dtype is None:
        return SimpleTrainer(model, data_loader, optimizer)
    return AMPTrainer(model, data_loader, optimizer, device_type=device_type, precision=dtype)


class Trainer(TrainerBase):
    """Train a detector from a config, like detectron2's ``DefaultTrainer``.

    It builds the model, optimizer, LR scheduler, train loader and ``DetectionCheckpointer`` from
    ``cfg``, wraps the model in DDP when several processes run, and registers the default hooks.
    Override the ``build_*`` classmethods (or ``build_hooks``) to change a part.

    Usage::

        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        trainer.train()

    Checkpoints hold the model, optimizer, scheduler, iteration, the train loader's state and the
    RNG states, so ``resume_or_load(resume=True)`` continues with the same iteration, LR and data.
    """

    def __init__(self, cfg):
        super().__init__()
        cfg = cfg.clone()
        self.cfg = cfg
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = create_train_loop(cfg, model, data_loader, optimizer)
        self._trainer.after_backward = self.after_backward  # our hooks see the inner loop's backward
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = DetectionCheckpointer(
            model, cfg.OUTPUT_DIR, optimizer=optimizer, scheduler=self.scheduler, trainer=self)
        self._pending_rng_state = None
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.register_hooks(self.build_hooks())

    # ---- the wrapped loop's parts ------------------------------------------------------------
    @property
    def model(self) -> torch.nn.Module:
        return self._trainer.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._trainer.optimizer

    @property
    def data_loader(self):
        return self._trainer.data_loader

    def run_step(self) -> None:
        self._trainer.iter = self.iter
        self._trainer.run_step()

    def train(self) -> Optional[Dict]:
        """Train from ``start_iter`` to ``SOLVER.MAX_ITER``.

        Returns:
            The results of the last evaluation (``OrderedDict`` per dataset), or None.
        """
        # Start the data iterator first, then restore the checkpoint's RNG state: starting an
        # iterator draws from torch's RNG, and an uninterrupted run drew that at its own start.
        try:
            if self.start_iter < self.max_iter:
                self._trainer.prefetch()
            if self._pending_rng_state is not None:
                set_rng_state(self._pending_rng_state)
                self._pending_rng_state = None
            super().train(self.start_iter, self.max_iter)
        except RuntimeError as e:
            # torch reports a dead loader worker wherever the main thread happens to be; name the worker.
            err = getattr(self.data_loader, "worker_error", lambda _: None)(e)
            if err is None or err is e:
                raise
            raise err from e
        return getattr(self, "_last_eval_results", None)

    # ---- checkpoint state -------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        ret = super().state_dict()
        ret.update({k: v for k, v in self._trainer.state_dict().items() if k not in ("iteration", "hooks")})
        loader = self.data_loader
        if hasattr(loader, "state_dict"):
            ret["train_loader"] = loader.state_dict()
        ret["rng"] = get_rng_state()
        return ret

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._trainer.load_state_dict({k: v for k, v in state.items() if k != "hooks"})
        if "train_loader" in state:
            if hasattr(self.data_loader, "load_state_dict"):
                self.data_loader.load_state_dict(state["train_loader"])
                self._trainer.reset_data_loader_iter()
            else:
                logger.warning("The checkpoint has a train loader state but the loader has no load_state_dict(); "
                               "the data order will not continue where it stopped.")
        if "rng" in state:
            self._pending_rng_state = state["rng"]

    def resume_or_load(self, resume: bool = True) -> None:
        """Resume from ``OUTPUT_DIR/last_checkpoint`` if ``resume`` and it exists (model, optimizer,
        scheduler, iteration, loader and RNG state); otherwise load only the model's weights from
        ``MODEL.WEIGHTS`` (if set) and start at iteration 0."""
        extra = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if resume and self.checkpointer.has_checkpoint():
            # The checkpoint's "iteration" is the last one finished.
            self.start_iter = int(extra.get("iteration", self.iter)) + 1
            loaded = getattr(self.checkpointer, "loaded_checkpoint", None) or self.checkpointer.get_checkpoint_file()
            logger.info("Resuming at iteration %d from %s", self.start_iter, loaded)
        else:
            self.start_iter = 0
            self.iter = 0
            self._pending_rng_state = None

    # ---- hooks -------------------------------------------------------------------------------
    def build_hooks(self) -> List[hooks.HookBase]:
        """IterationTimer, LRScheduler, PeriodicCheckpointer (main process), EvalHook,
        BestCheckpointer (if TEST.BEST_CHECKPOINT_METRIC), PeriodicWriter (main process)."""
        cfg = self.cfg
        ret = [hooks.IterationTimer(), hooks.LRScheduler()]
        if comm.is_main_process():
            ret.append(hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, self.max_iter,
                                                  cfg.SOLVER.CHECKPOINT_MAX_TO_KEEP))

        def test_and_save_results():
            self._last_eval_results = self.test(self.cfg, self.model)
            return _single_or_prefixed(self._last_eval_results)

        if cfg.DATASETS.TEST:
            ret.append(hooks.EvalHook(cfg.TEST.EVAL_PERIOD, test_and_save_results))
            if cfg.TEST.BEST_CHECKPOINT_METRIC and comm.is_main_process():
                ret.append(hooks.BestCheckpointer(cfg.TEST.EVAL_PERIOD, self.checkpointer,
                                                  cfg.TEST.BEST_CHECKPOINT_METRIC, cfg.TEST.BEST_CHECKPOINT_MODE))
        if comm.is_main_process():
            ret.append(hooks.PeriodicWriter(self.build_writers(), period=cfg.LOG_PERIOD))
        return ret

    def build_writers(self) -> list:
        return default_writers(self.cfg.OUTPUT_DIR, self.max_iter)

    # ---- overridable builders ----------------------------------------------------------------
    @classmethod
    def build_model(cls, cfg) -> torch.nn.Module:
        from detkit.modeling import build_model

        model = build_model(cfg)
        logger.info("Model:\n%s", model)
        return model

    @classmethod
    def build_optimizer(cls, cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
        return _build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer: torch.optim.Optimizer):
        return _build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg):
        from detkit.data import build_detection_train_loader

        return build_detection_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        from detkit.data import build_detection_test_loader

        return build_detection_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_folder: Optional[str] = None):
        """The evaluator named by ``MetadataCatalog.get(dataset_name).evaluator_type`` ("coco" or "pascal_voc")."""
        from detkit.data import MetadataCatalog
        from detkit import evaluation

        meta = MetadataCatalog.get(dataset_name)
        evaluator_type = getattr(meta, "evaluator_type", None)
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        if evaluator_type == "coco":
            return evaluation.COCOEvaluator(dataset_name, tasks=("bbox",), distributed=True, output_dir=output_folder,
                                            max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
                                            backend=cfg.TEST.COCO_EVAL_BACKEND)
        if evaluator_type == "pascal_voc":
            return evaluation.PascalVOCDetectionEvaluator(dataset_name)
        raise ValueError(
            f"DATASETS.TEST names '{dataset_name}', which has no evaluator: its metadata evaluator_type is "
            f"{evaluator_type!r}. Set MetadataCatalog.get('{dataset_name}').evaluator_type to 'coco' or "
            "'pascal_voc', remove the dataset from DATASETS.TEST, or override Trainer.build_evaluator.")

    @classmethod
    def test(cls, cfg, model: torch.nn.Module, evaluators=None) -> "OrderedDict[str, Dict]":
        """Evaluate ``model`` on every dataset in ``cfg.DATASETS.TEST``.

        Args:
            evaluators: one evaluator per dataset (or a single one for a single dataset); None builds
                them with ``build_evaluator``.

        Returns:
            ``OrderedDict(dataset_name -> results)``; results are ``{"bbox": {"AP": ..., ...}}``.
        """
        from detkit.evaluation import inference_on_dataset, print_csv_format

        names = list(cfg.DATASETS.TEST)
        if evaluators is not None and not isinstance(evaluators, (list, tuple)):
            evaluators = [evaluators]
        if evaluators is not None and len(evaluators) != len(names):
            raise ValueError(f"Trainer.test got {len(evaluators)} evaluators for {len(names)} datasets "
                             f"(DATASETS.TEST={names}); give one per dataset.")
        results = OrderedDict()
        for idx, name in enumerate(names):
            loader = cls.build_test_loader(cfg, name)
            evaluator = evaluators[idx] if evaluators is not None else cls.build_evaluator(cfg, name)
            res = inference_on_dataset(model, loader, evaluator)
            results[name] = res
            if comm.is_main_process() and res:
                logger.info("Evaluation results for %s in csv format:", name)
                print_csv_format(res)
        return results


def _single_or_prefixed(results: "OrderedDict[str, Dict]") -> Dict:
    """One dataset: its results as they are (``bbox/AP``); several: keyed by dataset name."""
    if len(results) == 1:
        return next(iter(results.values())) or {}
    return dict(results)
