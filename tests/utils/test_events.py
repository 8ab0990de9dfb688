"""Tests for detkit.utils.events: EventStorage, JSONWriter, CommonMetricPrinter."""
import json
import logging

import pytest

from detkit.utils.events import CommonMetricPrinter, EventStorage, JSONWriter, get_event_storage


def test_get_event_storage_outside_training():
    with pytest.raises(RuntimeError, match=r"outside of training.*EventStorage"):
        get_event_storage()


def test_storage_scalars_smoothing_and_nesting():
    with EventStorage(start_iter=5) as outer:
        assert get_event_storage() is outer
        for i, v in enumerate([1.0, 9.0, 2.0]):
            outer.put_scalar("loss", v)
            outer.put_scalar("lr", 0.1 * (i + 1), smoothing_hint=False)
            outer.step()
        assert outer.iter == 8
        assert outer.latest()["loss"] == (2.0, 7)
        smooth = outer.latest_with_smoothing_hint(window_size=3)
        assert smooth["loss"] == (2.0, 7)  # median of 1, 9, 2
        assert smooth["lr"] == (pytest.approx(0.3), 7)
        with outer.name_scope("val"):
            outer.put_scalar("AP", 1.5, smoothing_hint=False)
        assert outer.latest()["val/AP"] == (1.5, 8)
        with pytest.raises(ValueError, match="'lr' was put with smoothing_hint=False"):
            outer.put_scalar("lr", 1.0)
        with pytest.raises(KeyError, match="No scalar named 'nope'.*loss"):
            outer.history("nope")
        with EventStorage() as inner:
            assert get_event_storage() is inner
        assert get_event_storage() is outer


def test_json_writer_one_line_per_write_only_new_values(tmp_path):
    path = tmp_path / "metrics.json"
    with EventStorage() as s:
        writer = JSONWriter(str(path), window_size=2)
        s.put_scalar("loss", 4.0)
        s.put_scalar("lr", 0.5, smoothing_hint=False)
        s.step()
        s.put_scalar("loss", 2.0)
        writer.write()
        s.step()
        writer.write()  # nothing new: no line
        s.put_scalar("AP", 50.0, smoothing_hint=False)
        writer.write()
        writer.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines == [{"iteration": 0, "lr": 0.5}, {"iteration": 1, "loss": 3.0}, {"iteration": 2, "AP": 50.0}]


def test_common_metric_printer_line():
    msgs = []

    class _Keep(logging.Handler):
        def emit(self, record):
            msgs.append(record.getMessage())

    log = logging.getLogger("detkit.utils.events")
    handler, old_level = _Keep(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with EventStorage(start_iter=9) as s:
            s.put_scalars(loss_cls=0.5, total_loss=0.75, time=2.0, data_time=0.25)
            s.put_scalar("lr", 0.02, smoothing_hint=False)
            CommonMetricPrinter(max_iter=20).write()
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
    msg = msgs[-1]
    # 10 iterations left at 2 s each.
    assert msg.startswith("eta: 0:00:20  iter: 9  ")
    for part in ("loss_cls: 0.5", "total_loss: 0.75", "time: 2.0000", "data_time: 0.2500", "lr: 0.02", "max_mem: "):
        assert part in msg
