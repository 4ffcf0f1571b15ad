"""Nothing in the Glue job brings the data to the driver: every action's result is bounded.

The job runs through ``main()`` on N and on 4N rows with every way PySpark hands rows to the
driver wrapped (DataFrame and RDD ``collect``, ``toPandas``, ``toLocalIterator``, ``take``,
``head``, ``first``, ``tail``). Each call's row count must stay under a small constant, and the
sequence of calls and their row counts must be the same on both inputs: what reaches the driver
are aggregates (counts, statistics, percentiles, a count per category value), never input-sized.
A row count cannot see an input-sized array inside one aggregate row, so the results' printed
size is bounded too: it may grow by the digits of larger counts, not with the input.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pyspark import RDD
from pyspark.sql import DataFrame

from tests.unit.test_glue_preprocess import churn_rows, dataset_config, run_main, spark, write_csv

pytestmark = pytest.mark.spark

__all__ = ["spark"]  # the session fixture, shared with the job's other tests

ROWS = 400
#: The most rows one action may bring to the driver: a count per category value or per partition.
MAX_ROWS_PER_ACTION = 64
#: DataFrame and RDD methods that return rows to the Python driver.
DRIVER_ACTIONS = {
    DataFrame: ("collect", "toPandas", "toLocalIterator", "take", "head", "first", "tail"),
    RDD: ("collect", "toLocalIterator", "take", "first"),
}


def _size(result: Any) -> tuple[int, int]:
    """Rows and printed characters of what an action returned."""
    if result is None:
        return 0, 0
    if hasattr(result, "shape") and hasattr(result, "to_csv"):  # a pandas DataFrame
        return len(result), len(result.to_csv())
    if isinstance(result, list):
        return len(result), len(repr(result))
    return 1, len(repr(result))  # one Row (first, head without n)


class DriverRows:
    """Records each driver-bound action as (name, rows, characters) while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, int, int]] = []
        for owner, names in DRIVER_ACTIONS.items():
            for name in names:
                monkeypatch.setattr(owner, name, self._wrap(owner, name, getattr(owner, name)))

    def _wrap(self, owner: type, name: str, original: Any) -> Any:
        label = f"{owner.__name__}.{name}"

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            if isinstance(result, Iterator):
                # An iterator's rows cross to the driver as it is consumed: count them then.
                rows = list(result)
                self.calls.append((label, len(rows), len(repr(rows))))
                return iter(rows)
            self.calls.append((label, *_size(result)))
            return result

        return wrapped


def _run(tmp_path, monkeypatch: pytest.MonkeyPatch, rows: int) -> list[tuple[str, int, int]]:
    folder = tmp_path / f"n{rows}"
    folder.mkdir()
    source = write_csv(folder / "data.csv", churn_rows(rows, seed=11))
    with monkeypatch.context() as patch:
        recorder = DriverRows(patch)
        manifest = run_main(source, folder / "out", dataset_config())
    assert manifest["row_counts"]["input"] == rows, "the job read every row"
    return recorder.calls


def test_no_action_brings_input_sized_data_to_the_driver(spark, tmp_path, monkeypatch):
    small = _run(tmp_path, monkeypatch, ROWS)
    large = _run(tmp_path, monkeypatch, 4 * ROWS)

    assert small, "the job made no driver-bound action: the wrapping missed them"
    assert [(name, rows) for name, rows, _ in large] == [(name, rows) for name, rows, _ in small], (
        "the driver-side row counts changed with the input's size"
    )
    for name, rows, _ in large:
        assert rows <= MAX_ROWS_PER_ACTION, f"{name} brought {rows} rows to the driver"
    small_chars, large_chars = (sum(chars for *_, chars in calls) for calls in (small, large))
    # 4x the rows; counts gain at most a digit each, so the printed results stay nearly the same.
    assert large_chars < 1.25 * small_chars, (small_chars, large_chars)
