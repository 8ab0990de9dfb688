"""Tests for detkit.checkpoint: atomic saves, weights-only loading, shape-mismatch skipping."""
import logging
import os
import pickle

import pytest
import torch

import detkit.checkpoint.detection_checkpoint as dc
from detkit.checkpoint import DetectionCheckpointer, UnsafeCheckpointError


def _net(out=3):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, out))


def test_save_load_roundtrip_weights_only(tmp_path):
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.ones(2, 4)).sum().backward()
    opt.step()
    ck = DetectionCheckpointer(net, str(tmp_path), optimizer=opt)
    ck.save("model_0000009", iteration=9, extra={"rng": torch.arange(3)})
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    # Loadable with plain weights-only torch.load.
    raw = torch.load(tmp_path / "model_0000009.pth", weights_only=True)
    assert raw["iteration"] == 9 and set(raw) == {"model", "optimizer", "iteration", "extra"}
    net2 = _net(3)
    with torch.no_grad():
        for p in net2.parameters():
            p.zero_()
    opt2 = torch.optim.SGD(net2.parameters(), lr=0.1, momentum=0.9)
    rest = DetectionCheckpointer(net2, str(tmp_path), optimizer=opt2).resume_or_load("", resume=True)
    assert rest["iteration"] == 9 and torch.equal(rest["extra"]["rng"], torch.arange(3))
    for a, b in zip(net.state_dict().values(), net2.state_dict().values()):
        assert torch.equal(a, b)
    assert opt2.state_dict()["state"][0]["momentum_buffer"].equal(opt.state_dict()["state"][0]["momentum_buffer"])
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_bare_state_dict_is_loaded_as_model(tmp_path):
    net = _net()
    torch.save(net.state_dict(), tmp_path / "bare.pth")
    net2 = _net()
    with torch.no_grad():
        net2[0].weight.zero_()
    DetectionCheckpointer(net2).load(str(tmp_path / "bare.pth"))
    assert torch.equal(net2[0].weight, net[0].weight)


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    net = _net()
    ck = DetectionCheckpointer(net, str(tmp_path))
    ck.save("model_0000001", iteration=1)
    good = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net[0].weight.add_(1.0)

    real_replace = os.replace

    def crash_before_rename(src, dst):
        # The new data are fully in the temp file, but the process "dies" before the rename.
        raise KeyboardInterrupt("simulated crash during checkpoint write")

    monkeypatch.setattr(dc.os, "replace", crash_before_rename)
    with pytest.raises(KeyboardInterrupt):
        ck.save("model_0000002", iteration=2)
    monkeypatch.setattr(dc.os, "replace", real_replace)
    assert not (tmp_path / "model_0000002.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    fresh = _net()
    out = DetectionCheckpointer(fresh, str(tmp_path)).resume_or_load("", resume=True)
    assert out["iteration"] == 1
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in good.items())


def test_truncated_file_is_reported_by_name(tmp_path):
    net = _net()
    DetectionCheckpointer(net, str(tmp_path)).save("m")
    data = (tmp_path / "m.pth").read_bytes()
    (tmp_path / "m.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match=r"m\.pth' is corrupt or truncated"):
        DetectionCheckpointer(_net()).load(str(tmp_path / "m.pth"))


class _Payload:
    """Unpickling this would create a marker file (what a malicious checkpoint would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "evil.pth"
    torch.save({"model": _net().state_dict(), "x": _Payload(str(marker))}, evil)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError, match=r"Refusing to load checkpoint '.*evil\.pth'") as info:
        DetectionCheckpointer(_net()).load(str(evil))
    assert isinstance(info.value, pickle.UnpicklingError)
    assert not marker.exists()


def test_shape_mismatch_skipped_and_named(tmp_path, caplog):
    src = _net(out=5)
    torch.save({"model": src.state_dict(), "iteration": 3}, tmp_path / "five.pth")
    dst = _net(out=3)
    before = dst[2].weight.clone()
    with caplog.at_level(logging.WARNING):
        DetectionCheckpointer(dst).load(str(tmp_path / "five.pth"))
    text = caplog.text
    assert "'2.weight'" in text and "'2.bias'" in text
    assert "(5, 8)" in text and "(3, 8)" in text
    assert torch.equal(dst[0].weight, src[0].weight)  # matching layers loaded
    assert torch.equal(dst[2].weight, before)  # mismatched head kept


def test_missing_file_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pth' does not exist.*MODEL.WEIGHTS"):
        DetectionCheckpointer(_net()).load(str(tmp_path / "nope.pth"))


def test_save_only_on_main_process_by_default(tmp_path, monkeypatch):
    monkeypatch.setattr(dc.comm, "is_main_process", lambda: False)
    DetectionCheckpointer(_net(), str(tmp_path)).save("m")
    assert os.listdir(tmp_path) == []


def test_save_without_moving_last_checkpoint(tmp_path):
    ck = DetectionCheckpointer(_net(), str(tmp_path))
    ck.save("model_0000004")
    ck.save("model_best", tag_last_checkpoint=False)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    assert (tmp_path / "model_best.pth").exists()
