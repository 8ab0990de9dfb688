"""Engine: Trainer and hooks, the training loop, run setup, DefaultPredictor and launch (DDP)."""
from detkit.utils.events import get_event_storage

from . import hooks
from .defaults import (DefaultPredictor, DefaultTrainer, config_argument_parser, default_argument_parser, default_setup,
                       setup_cfg)
from .hooks import HookBase
from .launch import launch
from .train_loop import AMPTrainer, SimpleTrainer, TrainerBase
from .trainer import Trainer, create_ddp_model, default_writers

__all__ = ["Trainer", "DefaultTrainer", "HookBase", "hooks", "config_argument_parser", "default_argument_parser",
           "default_setup", "setup_cfg", "DefaultPredictor", "launch", "get_event_storage", "SimpleTrainer",
           "AMPTrainer", "TrainerBase", "create_ddp_model", "default_writers"]
