"""Tests for detkit.utils.env: seeding and RNG state that survives a weights-only checkpoint."""
import io
import random

import numpy as np
import torch

from detkit.utils.env import get_rng_state, seed_all_rng, set_rng_state


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_seed_all_rng_is_reproducible():
    assert seed_all_rng(3) == 3
    a = _draw()
    seed_all_rng(3)
    assert _draw() == a
    generated = seed_all_rng(-1)
    assert 0 <= generated < 2**31


def test_rng_state_roundtrip_through_weights_only_load():
    seed_all_rng(1)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    np.random.randn()
    buf = io.BytesIO()
    torch.save({"rng": get_rng_state()}, buf)
    expected = _draw()
    _draw()
    buf.seek(0)
    set_rng_state(torch.load(buf, weights_only=True)["rng"])
    assert _draw() == expected


def test_autocast_dtype_per_device_and_cpu(monkeypatch):
    import logging

    import detkit.utils.env as env

    messages = []

    class _Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = _Keep()
    env.logger.addHandler(handler)
    monkeypatch.setattr(env, "_warned_float32_fallback", set())
    try:
        assert env.autocast_dtype("cuda") == torch.float16
        monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: True)
        assert env.autocast_dtype("cpu") == torch.bfloat16
        assert messages == []
        monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: False)
        for _ in range(2):
            assert env.autocast_dtype("cpu", "SOLVER.AMP.ENABLED") is None
        assert env.autocast_dtype("cpu", "TEST.AMP.ENABLED") is None
        assert env.autocast_dtype("mps", "TEST.AMP.ENABLED") is None  # warned once per key already
    finally:
        env.logger.removeHandler(handler)
    assert len(messages) == 2
    assert messages[0].startswith("SOLVER.AMP.ENABLED is ignored on device 'cpu'") and "float32" in messages[0]
    assert messages[1].startswith("TEST.AMP.ENABLED is ignored")


def test_cpu_has_native_bf16_reads_torch_cpu_probes(monkeypatch):
    import detkit.utils.env as env

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert env.cpu_has_native_bf16() is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert env.cpu_has_native_bf16() is True
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert env.cpu_has_native_bf16() is False  # an older torch without the probes: float32
