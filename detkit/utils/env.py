"""Process environment: seeding every RNG, and RNG state as plain tensors for checkpoints."""
import logging
import os
import random
from datetime import datetime
from typing import Any, Dict, List, Optional

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["seed_all_rng", "get_rng_state", "set_rng_state", "worker_init_reset_seed", "autocast_dtype",
           "cpu_has_native_bf16", "cpu_flags", "describe_cpu_flags", "BF16_ENV_VAR"]

#: Set to 0 to take the no-bf16 path (float32 instead of bf16 autocast) on any CPU, e.g. to measure it.
BF16_ENV_VAR = "DETKIT_CPU_BF16"

# /proc/cpuinfo flag -> the name detkit reports, in that order.
_REPORTED_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI",
                   "avx512_bf16": "AVX512-BF16", "amx_tile": "AMX"}


def seed_all_rng(seed: Optional[int] = None) -> int:
    """Seed Python's, NumPy's and torch's RNGs.

    Args:
        seed: the seed; ``None`` or a negative value picks one from the pid and the clock.

    Returns:
        The seed used (log it to reproduce a run).
    """
    if seed is None or seed < 0:
        seed = (os.getpid() + int(datetime.now().strftime("%S%f")) + int.from_bytes(os.urandom(2), "big")) % 2**31
        logger.info("Using a generated random seed %d", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def worker_init_reset_seed(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed each worker's Python/NumPy RNG from torch's worker seed."""
    seed = torch.initial_seed() % 2**31
    random.seed(seed)
    np.random.seed(seed)


def get_rng_state() -> Dict[str, Any]:
    """The state of Python's, NumPy's and torch's (CPU and CUDA) RNGs.

    Everything is a tensor, int, float, str or None, so a checkpoint holding it loads with
    ``torch.load(..., weights_only=True)``.
    """
    py_version, py_keys, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": int(py_version), "state": torch.tensor(py_keys, dtype=torch.int64),
                   "gauss_next": py_gauss},
        "numpy": {"name": str(np_name), "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore RNG states produced by ``get_rng_state`` (missing parts are left alone)."""
    if "python" in state:
        py = state["python"]
        random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    if "numpy" in state:
        st = state["numpy"]
        np.random.set_state((st["name"], st["keys"].numpy().astype(np.uint32), st["pos"], st["has_gauss"],
                             st["cached_gaussian"]))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            logger.warning("Checkpoint has CUDA RNG states for %d devices but %d are visible; not restoring them.",
                           len(cuda_states), torch.cuda.device_count())


_warned_float32_fallback = set()  # the config keys already warned about in this process


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> List[str]:
    """The vector-unit features of this CPU that decide detkit's speed (AVX2, AVX-512, VNNI,
    AVX512-BF16, AMX), read from ``cpuinfo``; empty where it can't be read."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [name for flag, name in _REPORTED_FLAGS.items() if flag in flags]


_ISA_CAP_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")  # torch's and oneDNN's instruction-set caps


def describe_cpu_flags() -> str:
    """The CPU's flags for a report line, with the instruction-set caps set in the environment,
    e.g. ``"AVX2, AVX-512, AVX512-BF16 (capped: ONEDNN_MAX_CPU_ISA=AVX2)"``: a run emulating an
    older CPU says so beside its figures."""
    text = ", ".join(cpu_flags()) or "unknown"
    caps = [f"{v}={os.environ[v]}" for v in _ISA_CAP_VARS if os.environ.get(v)]
    return text + (f" (capped: {', '.join(caps)})" if caps else "")


def cpu_has_native_bf16() -> bool:
    """Whether detkit runs bf16 on this CPU: it computes bf16 natively (AVX512-BF16 or AMX), and
    ``DETKIT_CPU_BF16`` is not ``0``. Without native bf16 oneDNN emulates it and autocast runs
    slower than float32; ``DETKIT_CPU_BF16=0`` takes that no-bf16 path on any CPU."""
    if os.environ.get(BF16_ENV_VAR, "").strip() == "0":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def autocast_dtype(device_type: str, key: str = "AMP") -> Optional[torch.dtype]:
    """The dtype detkit's mixed precision (SOLVER.AMP, TEST.AMP) uses on ``device_type``, or None for float32.

    float16 on CUDA; bfloat16 on a CPU with native bf16 (:func:`cpu_has_native_bf16`); None, with
    one warning per process naming ``key``, on other CPUs and devices.
    """
    if device_type == "cuda":
        return torch.float16
    if device_type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    if key not in _warned_float32_fallback:
        logger.warning(
            "%s is ignored on device '%s': mixed precision needs CUDA or a CPU with native bf16 (AVX512-BF16 or "
            "AMX), where it is faster than float32. Running in float32.", key, device_type)
        _warned_float32_fallback.add(key)
    return None
