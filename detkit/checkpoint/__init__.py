"""Checkpointing: DetectionCheckpointer (atomic writes, weights-only loading)."""
from .detection_checkpoint import (CorruptCheckpointError, DetectionCheckpointer, NoLoadableCheckpointError,
                                  UnsafeCheckpointError, atomic_write_bytes)

__all__ = ["DetectionCheckpointer", "UnsafeCheckpointError", "CorruptCheckpointError", "NoLoadableCheckpointError",
           "atomic_write_bytes"]
