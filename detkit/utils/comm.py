"""Helpers for multi-process (DDP) runs: rank, world size, gather and synchronize."""
import functools
from typing import Any, List

import torch
import torch.distributed as dist

__all__ = ["get_world_size", "get_rank", "get_local_rank", "is_main_process", "synchronize",
           "all_gather", "gather", "reduce_dict", "shared_random_seed", "create_local_process_group"]

_LOCAL_PROCESS_GROUP = None


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    return dist.get_world_size() if _initialized() else 1


def get_rank() -> int:
    return dist.get_rank() if _initialized() else 0


def get_local_rank() -> int:
    if not _initialized() or _LOCAL_PROCESS_GROUP is None:
        return 0
    return dist.get_rank(group=_LOCAL_PROCESS_GROUP)


def is_main_process() -> bool:
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all processes; a no-op in a single process."""
    if get_world_size() > 1:
        dist.barrier()


@functools.lru_cache()
def _cpu_group():
    # Gathering arbitrary Python objects goes through a gloo group, whatever the main backend.
    return dist.new_group(backend="gloo") if dist.get_backend() == "nccl" else dist.group.WORLD


def all_gather(data: Any) -> List[Any]:
    """Gather a picklable object from every process; every process gets the whole list."""
    if get_world_size() == 1:
        return [data]
    out = [None] * get_world_size()
    dist.all_gather_object(out, data, group=_cpu_group())
    return out


def gather(data: Any, dst: int = 0) -> List[Any]:
    """Gather a picklable object on rank ``dst``; other ranks get an empty list."""
    if get_world_size() == 1:
        return [data]
    out = [None] * get_world_size() if get_rank() == dst else None
    dist.gather_object(data, out, dst=dst, group=_cpu_group())
    return out if get_rank() == dst else []


def reduce_dict(values: dict, average: bool = True) -> dict:
    """All-reduce a dict of scalar tensors (same keys on every process)."""
    if get_world_size() == 1:
        return values
    with torch.no_grad():
        names = sorted(values)
        stacked = torch.stack([values[k] for k in names])
        dist.all_reduce(stacked)
        if average:
            stacked /= get_world_size()
    return dict(zip(names, stacked))


def shared_random_seed() -> int:
    """A random int that is the same on every process."""
    seed = int(torch.randint(2**31, (1,)).item())
    return all_gather(seed)[0]


def create_local_process_group(num_workers_per_machine: int) -> None:
    """Create the group of processes on this machine (used by ``get_local_rank``); call once per process
    right after ``init_process_group``, on every process (``detkit.engine.launch`` does)."""
    global _LOCAL_PROCESS_GROUP
    world_size = get_world_size()
    if world_size % num_workers_per_machine != 0:
        raise ValueError(f"World size {world_size} is not a multiple of {num_workers_per_machine} processes per machine.")
    machine_rank = get_rank() // num_workers_per_machine
    for i in range(world_size // num_workers_per_machine):
        ranks = list(range(i * num_workers_per_machine, (i + 1) * num_workers_per_machine))
        group = dist.new_group(ranks)  # every process must create every group
        if i == machine_rank:
            _LOCAL_PROCESS_GROUP = group
