"""The sample dataset generator: deterministic, realistic, matching the example config."""

from __future__ import annotations

import csv
import io

import pytest

from stepml.sample_data import COLUMNS, SampleDataError, churn_csv, generate_churn_rows
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
