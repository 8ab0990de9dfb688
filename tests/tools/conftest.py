"""Tools test fixtures: one train_net.py run shared by the session, one torch thread."""
import pytest

from tools_testing import run_tool, write_tiny_config


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """train_net.py run once per test session: (config path, output dir, stdout)."""
    folder = tmp_path_factory.mktemp("train_net")
    out = folder / "out"
    cfg = write_tiny_config(str(folder), str(out))
    proc = run_tool("train_net.py", "--config", cfg)
    return cfg, out, proc.stdout


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield
