"""DetectionCheckpointer: fvcore's Checkpointer with atomic writes and weights-only (safe) loading."""
import errno
import logging
import os
import pickle
import re
import tempfile
from typing import Any, Dict, List, Optional, Tuple

import torch
from fvcore.common.checkpoint import Checkpointer
from iopath.common.file_io import g_pathmgr

import detkit.utils.comm as comm

logger = logging.getLogger(__name__)

__all__ = ["DetectionCheckpointer", "UnsafeCheckpointError", "CorruptCheckpointError", "NoLoadableCheckpointError",
           "atomic_write_bytes"]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint file needs arbitrary code to load (a pickle payload); it was not loaded."""


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is truncated or corrupt."""


class NoLoadableCheckpointError(RuntimeError):
    """``--resume`` found checkpoints, but none of them loads."""


_PERIODIC = re.compile(r"^.+_(?P<iter>\d{7})\.pth$")


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
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(local) + ".", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, local)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            kept = f"the previous '{local}' is unchanged" if os.path.exists(local) else f"'{local}' was not written"
            raise OSError(e.errno, f"No space left on the device (or quota) while writing '{local}' "
                                   f"({len(data) / 2**20:.1f} MiB); {kept}. Free some space or point OUTPUT_DIR at "
                                   "another disk, then run again with --resume.", local) from e
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

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """Like fvcore's: with ``resume`` and a ``last_checkpoint``, load that file (all
        checkpointables); otherwise load only the model from ``path``.

        If the file ``last_checkpoint`` names is missing, truncated or fails to load, the warning
        names it and the reason, and the newest older periodic checkpoint (``*_<iter:07d>.pth``)
        that loads is used instead. ``self.loaded_checkpoint`` is the file actually loaded.

        Raises:
            NoLoadableCheckpointError: no candidate loads; the message lists each file and reason
                and says how to start over.
        """
        self.loaded_checkpoint = None
        if not (resume and self.has_checkpoint()):
            self.loaded_checkpoint = path or None
            return self.load(path, checkpointables=[])
        last = self.get_checkpoint_file()
        failures: List[Tuple[str, str]] = []
        for candidate in [last] + self._older_checkpoints(last):
            try:
                data = self._load_file(self._local(candidate))
            except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, AssertionError) as e:
                failures.append((candidate, str(e).splitlines()[0] if str(e) else type(e).__name__))
                logger.warning("Cannot resume from checkpoint '%s': %s", candidate, failures[-1][1])
                continue
            if failures:
                logger.warning("Resuming from '%s', the newest older checkpoint that loads, instead of '%s'.",
                               candidate, last)
            self._preloaded = (self._local(candidate), data)
            try:
                out = self.load(candidate)
            finally:
                self._preloaded = None
            self.loaded_checkpoint = candidate
            return out
        tried = "; ".join(f"'{f}': {why}" for f, why in failures)
        raise NoLoadableCheckpointError(
            f"--resume found no checkpoint in '{self.save_dir}' that loads ({tried}). To start over, run without "
            f"--resume (or delete '{os.path.join(self.save_dir, 'last_checkpoint')}'); to continue from other "
            "weights, set MODEL.WEIGHTS.")

    def _local(self, path: str) -> str:
        if os.path.isfile(path) or "://" not in path:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"Checkpoint '{path}' does not exist.")
            return path
        return self.path_manager.get_local_path(path)

    def _older_checkpoints(self, last: str) -> List[str]:
        """Periodic checkpoints in save_dir older than ``last`` (all if ``last`` is not periodic), newest first."""
        m = _PERIODIC.match(os.path.basename(last))
        limit = int(m.group("iter")) if m else None
        found = []
        for f in os.listdir(self.save_dir) if os.path.isdir(self.save_dir) else []:
            mf = _PERIODIC.match(f)
            if mf and f != os.path.basename(last) and (limit is None or int(mf.group("iter")) < limit):
                found.append((int(mf.group("iter")), os.path.join(self.save_dir, f)))
        return [p for _, p in sorted(found, reverse=True)]

    def _load_file(self, filename: str) -> Dict[str, Any]:
        preloaded = getattr(self, "_preloaded", None)
        if preloaded is not None and preloaded[0] == filename:
            return preloaded[1]
        try:
            loaded = torch.load(filename, map_location=torch.device("cpu"), weights_only=True)
        except pickle.UnpicklingError as e:
            raise UnsafeCheckpointError(
                f"Refusing to load checkpoint '{filename}': it holds objects that need arbitrary code to "
                f"unpickle, which detkit never runs (torch.load weights_only=True said: "
                f"{str(e).splitlines()[0]}). Only load files you trust, re-saved as plain tensors / dicts."
            ) from None
        except (RuntimeError, EOFError) as e:
            raise CorruptCheckpointError(
                f"Checkpoint '{filename}' is corrupt or truncated and could not be read: {e}") from e
        if not isinstance(loaded, dict):
            raise ValueError(f"Checkpoint '{filename}' holds a {type(loaded).__name__}, expected a dict.")
        if "model" not in loaded:
            loaded = {"model": loaded}
        return loaded
