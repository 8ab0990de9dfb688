"""Benchmark test fixtures: one torch thread (the comparison builds and trains two models)."""
import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield
