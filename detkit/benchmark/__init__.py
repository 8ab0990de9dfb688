"""Measuring models: speed of one config, FLOPs and parameters, and the side-by-side comparison
with torchvision's own detectors (the twins, the interleaved timer and accuracy parity).

This package sits on the top floor beside ``engine``: both sides train through the engine's loop.
"""
from .compare import compare_speed, describe_mode, format_table, scaling
from .speed import TASKS, Result, report
from .twins import TorchvisionDetector, build_torchvision_twin, comparison_cfg

__all__ = ["compare_speed", "describe_mode", "format_table", "scaling", "TASKS", "Result", "report",
           "TorchvisionDetector", "build_torchvision_twin", "comparison_cfg"]
