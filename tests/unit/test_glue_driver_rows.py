"""Nothing in the Glue job brings the data to the driver: every action's result is bounded.

The job runs through ``main()`` on N and on 4N rows with every way PySpark hands rows to the
driver wrapped (DataFrame and RDD ``collect``, ``toPandas``, ``toLocalIterator``, ``take``,
``head``, ``first``, ``tail``). Each call's row count must stay under a small constant, and the
sequence of calls and their row counts must be the same on both inputs: what reaches the driver
are aggregates (counts, statistics, percentiles, a count per category value), never input-sized.
A row count cannot see an input-sized array inside one aggregate row, so the results' printed
size is bounded too: it may grow by the digits of larger counts, not with the input.

The plan is bounded in the features' direction as well: a 200-feature upload runs as the same
Spark jobs as a 2-feature one, and no aggregation has an expression per feature and statistic
(one had 1,600 and took minutes to compile): the profile and the baseline aggregate in long form.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from pyspark import RDD
from pyspark.sql import DataFrame

from tests.unit.test_glue_preprocess import churn_rows, dataset_config, pp, run_main, spark, write_csv

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


#: The most columns one collected aggregation may have, whatever the number of features.
MAX_AGGREGATE_COLUMNS = 24


def _wide_run(spark, tmp_path, monkeypatch: pytest.MonkeyPatch, features: int) -> tuple[list[int], int, dict]:
    """The job on 40 rows of ``features`` numeric features: the column count of each collected
    frame, the Spark jobs it ran and its manifest."""
    rng = random.Random(features)
    names = [f"x{i:03d}" for i in range(features)]
    rows = [[f"c{r}", *(f"{rng.gauss(0, 1):.3f}" for _ in names), rng.choice(["no", "yes"])] for r in range(40)]
    folder = tmp_path / f"f{features}"
    folder.mkdir()
    source = write_csv(folder / "data.csv", rows, header=["id", *names, "churned"])
    config = dataset_config(features=[{"name": name, "type": "numeric"} for name in names])
    collected: list[int] = []
    original = DataFrame.collect

    def collect(frame: DataFrame) -> Any:
        collected.append(len(frame.columns))
        return original(frame)

    group = f"wide-{features}-{tmp_path.name}"
    spark.sparkContext.setJobGroup(group, "the wide-input test")
    try:
        with monkeypatch.context() as patch:
            patch.setattr(DataFrame, "collect", collect)
            manifest = run_main(source, folder / "out", config)
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    return collected, len(spark.sparkContext.statusTracker().getJobIdsForGroup(group)), manifest


def test_a_wide_upload_runs_as_few_jobs_and_aggregate_expressions_as_a_narrow_one(spark, tmp_path, monkeypatch):
    narrow, narrow_jobs, _ = _wide_run(spark, tmp_path, monkeypatch, 2)
    wide, wide_jobs, manifest = _wide_run(spark, tmp_path, monkeypatch, 200)

    assert manifest["feature_order"] == [f"x{i:03d}" for i in range(200)], "the job ran on every feature"
    assert len(manifest["imputation"]["medians"]) == 200
    assert wide == narrow, "the collected aggregations changed with the number of features"
    assert max(wide) <= MAX_AGGREGATE_COLUMNS, f"an aggregation has {max(wide)} columns with 200 features"
    assert wide_jobs == narrow_jobs, (narrow_jobs, wide_jobs)
    profile_columns = len(pp._long_aggregations()) + 1
    assert profile_columns in wide, "the profile's long-form aggregation was not collected"
