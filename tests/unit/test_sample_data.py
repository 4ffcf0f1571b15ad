"""The sample dataset generator: deterministic, realistic, matching the example config."""

from __future__ import annotations

import csv
import io

import pytest

from stepml.sample_data import (
    COLUMNS,
    SampleDataError,
    churn_csv,
    extra_feature_names,
    generate_churn_rows,
    stream_churn_csv,
)
from tests.helpers import CHURN_CONFIG


def test_same_arguments_give_the_same_bytes_and_other_seeds_differ():
    assert churn_csv(500) == churn_csv(500)
    assert churn_csv(500) != churn_csv(500, seed=8)


def test_columns_match_the_example_dataset_config():
    header = churn_csv(3).decode().splitlines()[0].split(",")
    configured = {f["name"] for f in CHURN_CONFIG["features"]} | {CHURN_CONFIG["label"], CHURN_CONFIG["row_key"]}
    assert set(header) == configured and tuple(header) == COLUMNS


def test_realistic_mix_of_classes_categories_and_missing_values():
    rows = list(csv.DictReader(io.StringIO(churn_csv(5000).decode())))
    churn_rate = sum(r["churned"] == "yes" for r in rows) / len(rows)
    assert 0.15 < churn_rate < 0.5
    assert {r["contract"] for r in rows} == {"month-to-month", "one-year", "two-year"}
    missing = sum(r["monthly_charges"] == "" for r in rows) / len(rows)
    assert 0.002 < missing < 0.03
    month_to_month = [r for r in rows if r["contract"] == "month-to-month"]
    two_year = [r for r in rows if r["contract"] == "two-year"]
    rate = lambda group: sum(r["churned"] == "yes" for r in group) / len(group)  # noqa: E731
    assert rate(month_to_month) > 2 * rate(two_year), "the label must depend on the features"


def test_drifted_variant_shifts_the_population():
    base = generate_churn_rows(4000)
    drifted = generate_churn_rows(4000, drift=True)
    mean = lambda rows: sum(float(r["monthly_charges"] or 0) for r in rows) / len(rows)  # noqa: E731
    assert mean(drifted) > mean(base) + 4


def test_rows_must_be_positive():
    with pytest.raises(SampleDataError, match="rows must be at least 1, got 0"):
        churn_csv(0)


def test_streamed_file_is_deterministic_with_unique_ids_across_chunks(tmp_path):
    first = stream_churn_csv(tmp_path / "a.csv", 2500, seed=5, chunk_rows=1000)
    again = stream_churn_csv(tmp_path / "b.csv", 2500, seed=5, chunk_rows=1000)
    assert first.read_bytes() == again.read_bytes()
    rows = list(csv.DictReader(io.StringIO(first.read_text())))
    assert len(rows) == 2500 and len({r["customer_id"] for r in rows}) == 2500
    assert tuple(rows[0]) == COLUMNS
    assert {r["contract"] for r in rows} == {"month-to-month", "one-year", "two-year"}


def test_streamed_wide_file_appends_numeric_columns(tmp_path):
    path = stream_churn_csv(tmp_path / "wide.csv", 30, extra_numeric=193, chunk_rows=7)
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert rows[0] == [*COLUMNS, *extra_feature_names(193)] and extra_feature_names(2) == ["x000", "x001"]
    assert len(rows) == 31 and all(len(row) == len(COLUMNS) + 193 for row in rows)
    assert all(float(value) == round(float(value), 3) for value in rows[5][len(COLUMNS) :])


def test_streamed_rows_must_be_in_range(tmp_path):
    with pytest.raises(SampleDataError, match="rows must be at least 1, got 0"):
        stream_churn_csv(tmp_path / "x.csv", 0)
    with pytest.raises(SampleDataError, match="rows must be at most 10,000,000"):
        stream_churn_csv(tmp_path / "x.csv", 10_000_001)
