"""Checkpointing: DetectionCheckpointer (atomic writes, weights-only loading)."""
from .detection_checkpoint import DetectionCheckpointer, UnsafeCheckpointError, atomic_write_bytes

__all__ = ["DetectionCheckpointer", "UnsafeCheckpointError", "atomic_write_bytes"]
