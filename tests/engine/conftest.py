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
def _one_thread(one_torch_thread):
    yield
