"""DetectionCheckpointer: fvcore's Checkpointer with atomic writes and weights-only (safe) loading."""
import logging
import os
import pickle
import tempfile
from typing import Any, Dict, Optional

import torch
from fvcore.common.checkpoint import Checkpointer
from iopath.common.file_io import g_pathmgr

import detkit.utils.comm as comm

logger = logging.getLogger(__name__)

__all__ = ["DetectionCheckpointer", "UnsafeCheckpointError", "atomic_write_bytes"]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint file needs arbitrary code to load (a pickle payload); it was not loaded."""


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.

    Local paths: write a temp file in the same folder, fsync, then ``os.replace``. Other iopath
    paths (no rename there) are written directly.
    """
    local = g_pathmgr.get_local_path(path) if "://" in path else path
    if "://" in path and local == path:
        with g_pathmgr.open(path, "wb") as f:
            f.write(data)
        return
    folder = os.path.dirname(os.path.abspath(local))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(local) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, local)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _save_atomic(obj: Any, path: str) -> None:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


class DetectionCheckpointer(Checkpointer):
    """Save and load detkit checkpoints: ``{"model", "optimizer", "scheduler", "iteration", ...}``.

    Compared with fvcore's ``Checkpointer``:

    * writes (checkpoint and ``last_checkpoint``) are atomic: temp file, fsync, ``os.replace``;
      a crash mid-write leaves the previous checkpoint intact and still named;
    * only the main process writes (``save_to_disk`` defaults to ``comm.is_main_process()``);
    * files load with ``torch.load(weights_only=True)``: a file needing arbitrary code to
      unpickle is refused with ``UnsafeCheckpointError`` naming it, and its payload never runs;
    * a file holding a bare state dict (no ``"model"`` key) is accepted as the model's weights.

    Parameters whose shapes differ from the model's are skipped with a warning naming each one
    (fine-tuning with another class count).
    """

    def __init__(self, model: torch.nn.Module, save_dir: str = "", *, save_to_disk: Optional[bool] = None,
                 **checkpointables: Any):
        if save_to_disk is None:
            save_to_disk = comm.is_main_process()
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.logger = logging.getLogger(__name__)

    def save(self, name: str, *, tag_last_checkpoint: bool = True, **kwargs: Any) -> None:
        """Write ``<save_dir>/<name>.pth`` atomically (main process only).

        Args:
            name: file name without ``.pth``.
            tag_last_checkpoint: point ``last_checkpoint`` (what ``--resume`` reads) at the new file.
            kwargs: extra data stored in the file (e.g. ``iteration``).
        """
        if not self.save_dir or not self.save_to_disk:
            return
        data: Dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        _save_atomic(data, save_file)
        if tag_last_checkpoint:
            self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write_bytes(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename.encode())

    def load(self, path: str, checkpointables=None) -> Dict[str, Any]:
        """Load ``path`` (local path or iopath URL) into the model and the named checkpointables.

        Raises:
            FileNotFoundError: naming ``path`` when it does not exist.
            UnsafeCheckpointError: naming ``path`` when it holds a pickle payload.
        """
        if path and not os.path.isfile(path):
            local = self.path_manager.get_local_path(path) if "://" in path else path
            if not os.path.isfile(local):
                raise FileNotFoundError(f"Checkpoint '{path}' does not exist. Check MODEL.WEIGHTS or the "
                                        "last_checkpoint file in OUTPUT_DIR.")
            path = local
        return super().load(path, checkpointables)

    def _load_file(self, filename: str) -> Dict[str, Any]:
        try:
            loaded = torch.load(filename, map_location=torch.device("cpu"), weights_only=True)
        except pickle.UnpicklingError as e:
            raise UnsafeCheckpointError(
                f"Refusing to load checkpoint '{filename}': it holds objects that need arbitrary code to "
                f"unpickle, which detkit never runs (torch.load weights_only=True said: "
                f"{str(e).splitlines()[0]}). Only load files you trust, re-saved as plain tensors / dicts."
            ) from None
        except (RuntimeError, EOFError) as e:
            raise RuntimeError(f"Checkpoint '{filename}' is corrupt or truncated and could not be read: {e}") from e
        if not isinstance(loaded, dict):
            raise ValueError(f"Checkpoint '{filename}' holds a {type(loaded).__name__}, expected a dict.")
        if "model" not in loaded:
            loaded = {"model": loaded}
        return loaded
