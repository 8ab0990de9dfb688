"""Engine test fixtures: a capture of detkit's log records, one torch thread."""
import logging

import pytest


@pytest.fixture
def detkit_records():
    """Every record logged under the ``detkit`` logger during the test."""
    records = []

    class _Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = _Keep(level=logging.DEBUG)
    log = logging.getLogger("detkit")
    old_level = log.level
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    yield records
    log.removeHandler(handler)
    log.setLevel(old_level)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a loaded 2-core machine, 2 threads made these runs ~7x slower."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
