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
