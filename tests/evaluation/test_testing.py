"""Result tables and copypaste lines."""
import logging

from detkit.evaluation import print_csv_format
from detkit.evaluation.testing import create_per_category_table, create_small_table


def test_small_table_and_per_category_table():
    assert create_small_table({"AP": 12.34567, "APs": float("nan")}).splitlines() == [
        "|   AP   |  APs  |", "|:------:|:-----:|", "| 12.346 |  nan  |"]
    table = create_per_category_table({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.5}).splitlines()
    assert table[0].split("|")[1:-1] == [" category   ", " AP    "] * 3
    assert table[2].split() == ["|", "a", "|", "1.000", "|", "b", "|", "2.000", "|", "c", "|", "3.000", "|"]
    assert table[3].split() == ["|", "d", "|", "4.500", "|", "|", "|", "|", "|"]  # padded row


def test_print_csv_format(caplog):
    with caplog.at_level(logging.INFO, logger="detkit"):
        print_csv_format({"bbox": {"AP": 50.0, "AP50": float("nan"), "AP-cat": 1.0}, "box_proposals": {"AR@100": 1.5}})
    assert [r.getMessage() for r in caplog.records] == [
        "copypaste: Task: bbox", "copypaste: AP,AP50", "copypaste: 50.0000,nan",
        "copypaste: Task: box_proposals", "copypaste: AR@100", "copypaste: 1.5000"]
