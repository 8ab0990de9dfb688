"""Shared pytest setup: datasets go to one temp folder per test session; torch stays on 2 threads."""
import atexit
import os
import shutil
import tempfile

# Idle torch threads sleep instead of spinning: on a busy 2-core machine spinning threads starve each other.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

# Builtin datasets (e.g. the synthetic shapes) are generated under $DETKIT_DATASETS; keep tests away from ./datasets.
# A user-set DETKIT_DATASETS_TEST_CACHE lets repeated local runs reuse the generated images.
if os.environ.get("DETKIT_DATASETS_TEST_CACHE"):
    os.environ["DETKIT_DATASETS"] = os.environ["DETKIT_DATASETS_TEST_CACHE"]
else:
    os.environ["DETKIT_DATASETS"] = tempfile.mkdtemp(prefix="detkit-datasets-")
    atexit.register(shutil.rmtree, os.environ["DETKIT_DATASETS"], ignore_errors=True)
# check_dataset's cache goes to $DETKIT_CACHE (default ~/.cache/detkit): keep tests out of the user's.
os.environ["DETKIT_CACHE"] = tempfile.mkdtemp(prefix="detkit-cache-")
atexit.register(shutil.rmtree, os.environ["DETKIT_CACHE"], ignore_errors=True)


@pytest.fixture(autouse=True)
def _quiet_threads():
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for the test (engine and tool runs: on a loaded 2-core machine, 2 threads
    made them several times slower); the previous count is restored after."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
