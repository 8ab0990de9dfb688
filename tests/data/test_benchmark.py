"""Process-tree RSS measurement used for the loader memory check."""
import multiprocessing as mp

import numpy as np

from detkit.data.benchmark import measure_loader_memory, process_tree_rss


def _hold(ready, done):
    block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, touched
    ready.set()
    done.wait(30)
    return int(block[0])


def test_process_tree_rss_counts_children():
    alone = process_tree_rss()
    ctx = mp.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold, args=(ready, done))
    child.start()
    try:
        assert ready.wait(30)
        assert process_tree_rss() - alone > 64 * 2**20
        assert process_tree_rss(child.pid) > 64 * 2**20
    finally:
        done.set()
        child.join(30)


def test_measure_loader_memory_records_the_marks():
    out = measure_loader_memory(iter(range(10)), num_iters=10, record_at=(2, 10, 11))
    assert set(out) == {"rss_mib@2", "rss_mib@10", "seconds", "growth_pct"}
    assert out["rss_mib@2"] > 0
    assert out["growth_pct"] == (out["rss_mib@10"] - out["rss_mib@2"]) / out["rss_mib@2"] * 100
