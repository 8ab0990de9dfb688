"""Logging setup: coloured console output (termcolor) and a plain log file."""
import functools
import logging
import os
import sys
from typing import Optional

from iopath.common.file_io import g_pathmgr
from termcolor import colored

__all__ = ["setup_logger"]


class _ColorfulFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        msg = super().formatMessage(record)
        if record.levelno == logging.WARNING:
            return colored("WARNING ", "red", attrs=["blink"]) + msg
        if record.levelno >= logging.ERROR:
            return colored("ERROR ", "red", attrs=["blink", "underline"]) + msg
        return msg


@functools.lru_cache()  # so that calling setup_logger multiple times won't add many handlers
def setup_logger(output: Optional[str] = None, distributed_rank: int = 0, name: str = "detkit",
                 color: bool = True) -> logging.Logger:
    """Configure the ``name`` logger: console on rank 0, and a file when ``output`` is given.

    Args:
        output: a file name, or a folder (then ``log.txt`` inside it; ``log.txt.rankN`` for rank N > 0).
        distributed_rank: this process's rank; only rank 0 logs to the console.
        name: the logger to configure.
        color: colour warnings and errors on the console.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    plain = logging.Formatter("[%(asctime)s] %(name)s %(levelname)s: %(message)s", datefmt="%m/%d %H:%M:%S")
    if distributed_rank == 0:
        ch = logging.StreamHandler(stream=sys.stdout)
        ch.setLevel(logging.INFO)
        fmt = colored("[%(asctime)s %(name)s]: ", "green") + "%(message)s" if color else plain._fmt
        ch.setFormatter(_ColorfulFormatter(fmt, datefmt="%m/%d %H:%M:%S") if color else plain)
        logger.addHandler(ch)
    if output is not None:
        filename = output if output.endswith((".txt", ".log")) else os.path.join(output, "log.txt")
        if distributed_rank > 0:
            filename = f"{filename}.rank{distributed_rank}"
        g_pathmgr.mkdirs(os.path.dirname(os.path.abspath(filename)))
        fh = logging.StreamHandler(_cached_log_stream(filename))
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(plain)
        logger.addHandler(fh)
    return logger


@functools.lru_cache(maxsize=None)
def _cached_log_stream(filename: str):
    return g_pathmgr.open(filename, "a")
