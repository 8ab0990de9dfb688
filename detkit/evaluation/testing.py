"""Reporting evaluation results: small tables, per-category tables, and "copypaste:" lines."""
import itertools
import logging
import math
from collections.abc import Mapping
from typing import Dict

from tabulate import tabulate

__all__ = ["create_small_table", "create_per_category_table", "print_csv_format"]

logger = logging.getLogger(__name__)


def create_small_table(values: Dict[str, float]) -> str:
    """A one-row pipe table, headed by the keys of ``values``, numbers with 3 decimals (NaN as ``nan``)."""
    keys, row = zip(*values.items()) if values else ((), ())
    return tabulate([list(row)], headers=list(keys), tablefmt="pipe", floatfmt=".3f",
                    stralign="center", numalign="center")


def create_per_category_table(per_category: Dict[str, float], metric: str = "AP", max_pairs: int = 3) -> str:
    """A pipe table of (category, value) pairs, ``max_pairs`` pairs per row.

    Args:
        per_category: category name -> value.
        metric: the column header of the values.
        max_pairs: (category, value) pairs per table row.
    """
    items = list(per_category.items())
    pairs = max(1, min(max_pairs, len(items)))
    flat = list(itertools.chain(*items))
    rows = itertools.zip_longest(*[flat[i::pairs * 2] for i in range(pairs * 2)])
    return tabulate(list(rows), headers=["category", metric] * pairs, tablefmt="pipe", floatfmt=".3f",
                    numalign="left")


def print_csv_format(results: Dict[str, Dict[str, float]]) -> None:
    """Log each task's main metrics (those without "-" in the name) as comma-separated "copypaste:" lines.

    Args:
        results: ``{task: {metric: value}}`` as returned by an evaluator.
    """
    for task, metrics in results.items():
        if not isinstance(metrics, Mapping):
            logger.info("copypaste: %s=%s", task, metrics)
            continue
        main = [(k, v) for k, v in metrics.items() if "-" not in k]
        logger.info("copypaste: Task: %s", task)
        logger.info("copypaste: %s", ",".join(k for k, _ in main))
        logger.info("copypaste: %s", ",".join("nan" if isinstance(v, float) and math.isnan(v) else f"{v:.4f}"
                                              for _, v in main))
