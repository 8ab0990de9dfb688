"""launch: run a function in N processes per machine with torch.distributed (NCCL on CUDA, gloo on CPU)."""
import logging
import socket
from datetime import timedelta
from typing import Callable, Optional, Tuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import detkit.utils.comm as comm

logger = logging.getLogger(__name__)

__all__ = ["launch", "find_free_port"]

DEFAULT_TIMEOUT = timedelta(minutes=30)


def find_free_port() -> int:
    """A TCP port that is free on this machine right now (for a single-machine ``dist_url``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def _backend(num_processes: int) -> str:
    if torch.cuda.is_available() and torch.cuda.device_count() >= num_processes:
        return "nccl"
    return "gloo"


def launch(main_func: Callable, num_processes: int, num_machines: int = 1, machine_rank: int = 0,
           dist_url: Optional[str] = None, args: Tuple = (), timeout: timedelta = DEFAULT_TIMEOUT) -> None:
    """Run ``main_func(*args)`` in ``num_processes`` processes on each of ``num_machines`` machines.

    With one process in total, ``main_func`` runs in this process without torch.distributed.
    Otherwise processes are spawned (``torch.multiprocessing``), one per GPU when CUDA has enough
    devices (NCCL), else on CPU (gloo); the code path is the same for both.

    Args:
        main_func: a picklable (module-level) function.
        num_processes: processes per machine (``--num-gpus``; on CPU it counts processes).
        num_machines: machines taking part.
        machine_rank: this machine's rank, 0 .. num_machines - 1.
        dist_url: ``tcp://host:port`` of machine 0; None or "auto" picks a free local port
            (single machine only).
        args: arguments for ``main_func``.
        timeout: timeout of collective operations.
    """
    world_size = num_machines * num_processes
    if world_size <= 1:
        main_func(*args)
        return
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError("dist_url='auto' only works on one machine; pass --dist-url tcp://<machine-0>:<port> "
                             f"when num_machines={num_machines}.")
        dist_url = f"tcp://127.0.0.1:{find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("file:// init on several machines needs a shared file system.")
    mp.start_processes(
        _distributed_worker, nprocs=num_processes,
        args=(main_func, world_size, num_processes, machine_rank, dist_url, args, timeout),
        daemon=False, start_method="spawn",
    )


def _distributed_worker(local_rank: int, main_func: Callable, world_size: int, num_processes: int,
                        machine_rank: int, dist_url: str, args: Tuple, timeout: timedelta) -> None:
    backend = _backend(num_processes)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    global_rank = machine_rank * num_processes + local_rank
    try:
        dist.init_process_group(backend=backend, init_method=dist_url, world_size=world_size, rank=global_rank,
                                timeout=timeout)
    except Exception as e:
        raise RuntimeError(f"Process group initialisation failed (backend {backend}, url {dist_url}, rank "
                           f"{global_rank}/{world_size}): {e}. Check --dist-url and that the port is free.") from e
    comm.create_local_process_group(num_processes)
    comm.synchronize()
    try:
        main_func(*args)
    finally:
        comm.synchronize()
        dist.destroy_process_group()
