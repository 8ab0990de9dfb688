"""Tests for detkit.utils.collect_env: the environment table names Python, torch, torchvision, CPU/GPU."""
import sys

import torch
import torchvision

from detkit.utils.collect_env import collect_env_info


def test_table_has_versions_and_hardware():
    text = collect_env_info()
    rows = {line.split("  ")[0].strip(): line for line in text.splitlines() if line and not line.startswith("-")}
    assert sys.version.split()[0] in rows["Python"]
    assert torch.__version__ in rows["PyTorch"]
    assert torchvision.__version__ in rows["torchvision"]
    assert "logical cores" in rows["CPU"]
    assert rows["GPU available"].split()[-1] == str(torch.cuda.is_available())


def test_cpu_flags_and_mixed_precision_rows(monkeypatch, tmp_path):
    from detkit.utils import env

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n")
    assert env.cpu_flags(str(info)) == ["AVX2", "AVX-512", "AVX512-BF16", "AMX"]
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert env.cpu_flags(str(info)) == ["AVX2"]
    assert env.cpu_flags(str(tmp_path / "missing")) == []
    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: True)
    import detkit.utils.collect_env as ce

    monkeypatch.setattr(ce, "cpu_has_native_bf16", env.cpu_has_native_bf16)
    rows = {line.split("  ")[0].strip(): line for line in collect_env_info().splitlines() if line}
    assert rows["CPU mixed precision"].split()[-1] == "bfloat16" and "CPU flags" in rows


def test_describe_cpu_flags_names_the_isa_caps(monkeypatch):
    from detkit.utils import env

    monkeypatch.setattr(env, "cpu_flags", lambda: ["AVX2", "AVX512-BF16"])
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert env.describe_cpu_flags() == "AVX2, AVX512-BF16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert env.describe_cpu_flags() == "AVX2, AVX512-BF16 (capped: ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2)"
    monkeypatch.setattr(env, "cpu_flags", lambda: [])
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    assert env.describe_cpu_flags() == "unknown (capped: ONEDNN_MAX_CPU_ISA=AVX2)"


def test_no_bf16_switch_runs_float32(monkeypatch):
    """DETKIT_CPU_BF16=0 takes the no-bf16 path on any CPU: autocast_dtype gives None (float32), and an
    AMP training step of the engine really computes in float32."""
    from detkit.engine.trainer import create_train_loop
    from detkit.config import get_cfg
    from detkit.utils import env
    from detkit.utils.events import EventStorage

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert env.cpu_has_native_bf16() is True
    monkeypatch.setenv("DETKIT_CPU_BF16", "0")
    assert env.cpu_has_native_bf16() is False and env.autocast_dtype("cpu") is None
    seen = []

    class _Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 1)

        def forward(self, x):
            y = self.lin(x)
            seen.append(y.dtype)
            return {"loss": (y ** 2).mean()}

    cfg = get_cfg()
    cfg.SOLVER.AMP.ENABLED = True
    model = _Probe()
    loop = create_train_loop(cfg, model, iter([torch.randn(8, 4)] * 2), torch.optim.SGD(model.parameters(), lr=0.1))
    with EventStorage():
        loop.run_step()
    assert type(loop).__name__ == "SimpleTrainer" and seen == [torch.float32]
    monkeypatch.setenv("DETKIT_CPU_BF16", "1")
    assert env.autocast_dtype("cpu") == torch.bfloat16
