"""A broken last checkpoint on --resume, and a full disk while saving."""
import errno
import logging
import os
import re

import pytest
import torch

import detkit.checkpoint.detection_checkpoint as dc
from detkit.checkpoint import DetectionCheckpointer, NoLoadableCheckpointError


def _net(fill):
    net = torch.nn.Linear(3, 2)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(fill)
    return net


def _save(folder, name, fill, iteration):
    DetectionCheckpointer(_net(fill), str(folder)).save(name, iteration=iteration)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_last_checkpoint_falls_back_to_the_newest_older_one_that_loads(tmp_path, caplog):
    _save(tmp_path, "model_0000001", 1.0, 1)
    _save(tmp_path, "model_0000003", 3.0, 3)
    _save(tmp_path, "model_0000005", 5.0, 5)
    _save(tmp_path, "model_0000007", 7.0, 7)  # newer than the one last_checkpoint names: never used
    (tmp_path / "last_checkpoint").write_text("model_0000005.pth")
    _truncate(tmp_path / "model_0000005.pth")
    (tmp_path / "model_0000003.pth").write_bytes(b"")  # the next older one is broken too
    net = _net(0.0)
    ck = DetectionCheckpointer(net, str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="detkit.checkpoint.detection_checkpoint"):
        extra = ck.resume_or_load("", resume=True)
    assert extra["iteration"] == 1 and ck.loaded_checkpoint == str(tmp_path / "model_0000001.pth")
    assert all(torch.equal(p, torch.full_like(p, 1.0)) for p in net.parameters())
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings[0].startswith(f"Cannot resume from checkpoint '{tmp_path / 'model_0000005.pth'}': Checkpoint "
                                  f"'{tmp_path / 'model_0000005.pth'}' is corrupt or truncated")
    assert warnings[1].startswith(f"Cannot resume from checkpoint '{tmp_path / 'model_0000003.pth'}': ")
    assert warnings[2] == (f"Resuming from '{tmp_path / 'model_0000001.pth'}', the newest older checkpoint that "
                           f"loads, instead of '{tmp_path / 'model_0000005.pth'}'.")
    assert len(warnings) == 3
    # Nothing was deleted or rewritten: the user can still inspect the broken files.
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000005.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth", "model_0000003.pth",
                                            "model_0000005.pth", "model_0000007.pth"]


def test_last_checkpoint_naming_a_missing_file_falls_back(tmp_path):
    _save(tmp_path, "model_0000002", 2.0, 2)
    (tmp_path / "last_checkpoint").write_text("model_0000004.pth")
    net = _net(0.0)
    ck = DetectionCheckpointer(net, str(tmp_path))
    assert ck.resume_or_load("", resume=True)["iteration"] == 2
    assert ck.loaded_checkpoint == str(tmp_path / "model_0000002.pth")


def test_no_checkpoint_loads_says_how_to_start_over(tmp_path):
    _save(tmp_path, "model_0000002", 2.0, 2)
    _truncate(tmp_path / "model_0000002.pth")
    (tmp_path / "last_checkpoint").write_text("model_0000002.pth")
    net = _net(0.5)
    with pytest.raises(NoLoadableCheckpointError, match=re.escape(
            f"--resume found no checkpoint in '{tmp_path}' that loads ('{tmp_path / 'model_0000002.pth'}': "
            f"Checkpoint '{tmp_path / 'model_0000002.pth'}' is corrupt or truncated")) as info:
        DetectionCheckpointer(net, str(tmp_path)).resume_or_load("", resume=True)
    assert "To start over, run without --resume" in str(info.value)
    assert all(torch.equal(p, torch.full_like(p, 0.5)) for p in net.parameters())  # the model was left alone


class _FullDisk:
    """A file object whose writes stop after ``room`` bytes with ENOSPC, as a full disk does."""

    def __init__(self, f, room):
        self._f, self._room = f, room

    def write(self, data):
        if len(data) > self._room:
            self._f.write(data[: self._room])
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def test_enospc_while_saving_names_the_path_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    _save(tmp_path, "model_0000001", 1.0, 1)
    _save(tmp_path, "model_final", 1.0, 1)
    before = {f: (tmp_path / f).read_bytes() for f in os.listdir(tmp_path)}
    real_fdopen = os.fdopen
    monkeypatch.setattr(dc.os, "fdopen", lambda fd, mode: _FullDisk(real_fdopen(fd, mode), room=100))
    ck = DetectionCheckpointer(_net(2.0), str(tmp_path))
    with pytest.raises(OSError, match=re.escape(
            f"No space left on the device (or quota) while writing '{tmp_path / 'model_0000002.pth'}'")) as info:
        ck.save("model_0000002", iteration=2)
    assert info.value.errno == errno.ENOSPC and "was not written" in str(info.value)
    with pytest.raises(OSError, match=re.escape(
            f"while writing '{tmp_path / 'model_final.pth'}'")) as info:
        ck.save("model_final", iteration=2)
    assert f"the previous '{tmp_path / 'model_final.pth'}' is unchanged" in str(info.value)
    # Every file is byte for byte what it was (no partial file, no temp file, last_checkpoint not moved).
    assert {f: (tmp_path / f).read_bytes() for f in os.listdir(tmp_path)} == before
    monkeypatch.undo()
    assert DetectionCheckpointer(_net(0.0), str(tmp_path)).resume_or_load("", resume=True)["iteration"] == 1
