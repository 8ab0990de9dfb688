"""The environment table logged at the top of every run: Python, torch, torchvision, CPU/GPU."""
import importlib
import os
import platform
import sys
from typing import List, Tuple

import numpy as np
import torch
from tabulate import tabulate

from .env import BF16_ENV_VAR, cpu_has_native_bf16, describe_cpu_flags

__all__ = ["collect_env_info"]


def _version(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception:
        return "not installed"
    return str(getattr(mod, "__version__", "unknown"))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect_env_info() -> str:
    """A two-column table (tabulate) describing the software and hardware of this run."""
    import detkit

    rows: List[Tuple[str, str]] = [
        ("sys.platform", sys.platform),
        ("Python", sys.version.replace("\n", "")),
        ("numpy", np.__version__),
        ("detkit", f"{getattr(detkit, '__version__', 'unknown')} @ {os.path.dirname(detkit.__file__)}"),
        ("PyTorch", f"{torch.__version__} @ {os.path.dirname(torch.__file__)}"),
        ("PyTorch debug build", str(torch.version.debug)),
        ("torchvision", _version("torchvision")),
        ("fvcore", _version("fvcore")),
        ("iopath", _version("iopath")),
        ("pycocotools", _version("pycocotools")),
        ("CPU", f"{_cpu_name()} ({os.cpu_count()} logical cores)"),
        ("CPU flags", describe_cpu_flags()),
        ("CPU mixed precision", "bfloat16" if cpu_has_native_bf16() else
         f"float32 (no native bf16{', ' + BF16_ENV_VAR + '=0' if os.environ.get(BF16_ENV_VAR) == '0' else ''})"),
        ("torch threads", str(torch.get_num_threads())),
    ]
    has_cuda = torch.cuda.is_available()
    rows.append(("GPU available", str(has_cuda)))
    if has_cuda:
        rows.append(("CUDA", str(torch.version.cuda)))
        names = {}
        for i in range(torch.cuda.device_count()):
            names.setdefault(torch.cuda.get_device_name(i), []).append(str(i))
        for name, ids in names.items():
            rows.append((f"GPU {','.join(ids)}", name))
        rows.append(("cuDNN", str(torch.backends.cudnn.version())))
    rows.append(("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES", "<not set>")))
    return tabulate(rows)

