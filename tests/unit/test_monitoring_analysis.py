"""The Model Monitor analysis: captured data against a baseline, each check of the built-in analyzer."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from stepml.monitoring import analysis, distance
from stepml.monitoring.analysis import MonitoringError, analyze


def capture_lines(rows: Sequence[Sequence[str]], *, per_request: int = 1) -> list[str]:
    """Data capture JSON Lines as the local endpoint writes them (``local/sagemaker/capture.py``)."""
    from stepml.local.sagemaker.capture import CaptureBuffer, CaptureSettings, record

    settings = CaptureSettings.from_config(
        {
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": "s3://bucket/capture",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
        }
    )
    buffer = CaptureBuffer("prod", "AllTraffic", settings)
    for start in range(0, len(rows), per_request):
        body = "\n".join(",".join(row) for row in rows[start : start + per_request]).encode()
        record(buffer, datetime.now(UTC), body, "text/csv", b"0.5", "text/csv", None)
    return [json.dumps(event) for _, event in buffer.drain()]


def sample(count: int, seed: int = 7, shift: float = 0.0) -> list[list[str]]:
    rng = random.Random(seed)
    return [
        [
            str(int(rng.gauss(45 + shift, 10))),
            f"{rng.uniform(1000, 9000):.2f}",
            rng.choices(["basic", "pro", "team"], weights=[5, 3, 2])[0],
        ]
        for _ in range(count)
    ]


def _baseline(rows: list[list[str]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A baseline as the Glue job writes it (its statistics as the batch's, its constraints suggested)."""
    result = analyze({"features": []}, {}, capture_lines(rows, per_request=50))
    statistics = result.statistics
    for feature, name in zip(statistics["features"], ("age", "income", "plan"), strict=True):
        feature["name"] = name
    statistics["features"][2] = analysis._string_statistics("plan", [row[2] for row in rows], 0)
    constraints = {
        "version": 0.0,
        "features": [
            {
                "name": "age",
                "inferred_type": "Integral",
                "completeness": 1.0,
                "num_constraints": {"is_non_negative": True},
            },
            {"name": "income", "inferred_type": "Fractional", "completeness": 1.0},
            {
                "name": "plan",
                "inferred_type": "String",
                "completeness": 1.0,
                "string_constraints": {"domains": ["basic", "pro", "team"]},
            },
        ],
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "datatype_check_threshold": 0.1,
            "domain_content_threshold": 0.1,
            "distribution_constraints": {"perform_comparison": "Enabled", "comparison_threshold": 0.1},
        },
    }
    return statistics, constraints


@pytest.fixture(scope="module")
def baseline() -> tuple[dict[str, Any], dict[str, Any]]:
    return _baseline(sample(3000))


def checks(result: analysis.Analysis) -> set[tuple[str, str]]:
    return {(v["feature_name"], v["constraint_check_type"]) for v in result.violations["violations"]}


def test_a_batch_like_the_baseline_has_no_violations_and_its_statistics_are_model_monitors(baseline):
    from sagemaker.core.model_monitor.monitoring_files import ConstraintViolations, Statistics

    result = analyze(*baseline, capture_lines(sample(300, seed=11), per_request=3))
    assert result.violations == {"violations": []}
    assert ConstraintViolations(result.violations, "s3://b/constraint_violations.json").body_dict == result.violations
    stats = Statistics(result.statistics, "s3://b/statistics.json").body_dict
    assert stats["dataset"] == {"item_count": 300}
    age, income, plan = stats["features"]
    assert (age["name"], age["inferred_type"], income["inferred_type"]) == ("age", "Integral", "Fractional")
    kll = age["numerical_statistics"]["distribution"]["kll"]
    assert len(kll["buckets"]) == 10 and sum(b["count"] for b in kll["buckets"]) == 300
    assert len(kll["sketch"]["data"][0]) == 101
    assert plan["string_statistics"]["distinct_count"] == 3


def test_drifted_numbers_violate_baseline_drift_with_awss_description(baseline):
    result = analyze(*baseline, capture_lines(sample(200, seed=3, shift=25)))
    assert checks(result) == {("age", "baseline_drift_check")}
    [violation] = result.violations["violations"]
    assert violation["description"].startswith("Baseline drift distance: ")
    assert violation["description"].endswith(" exceeds threshold: 0.1")
    assert float(violation["description"].split()[3]) > 0.5


def test_a_raised_threshold_or_a_disabled_feature_or_comparison_silences_drift(baseline):
    from sagemaker.core.model_monitor.monitoring_files import Constraints

    statistics, constraints = baseline
    drifted = capture_lines(sample(200, seed=3, shift=25))
    raised = json.loads(json.dumps(constraints))
    raised["monitoring_config"]["distribution_constraints"]["comparison_threshold"] = 0.95
    assert checks(analyze(statistics, raised, drifted)) == set()
    sdk = Constraints(json.loads(json.dumps(constraints)), "s3://b/constraints.json")
    sdk.set_monitoring(False, "age")
    assert checks(analyze(statistics, sdk.body_dict, drifted)) == set()
    sdk.set_monitoring(True, "age")
    sdk.set_monitoring(False)
    assert checks(analyze(statistics, sdk.body_dict, drifted)) == set()
    off = json.loads(json.dumps(constraints))
    off["monitoring_config"]["distribution_constraints"]["perform_comparison"] = "Disabled"
    assert checks(analyze(statistics, off, drifted)) == set()


def test_robust_comparison_tolerates_a_small_batch_that_simple_flags(baseline):
    statistics, constraints = baseline
    small = capture_lines(sample(12, seed=5))
    simple = json.loads(json.dumps(constraints))
    simple["monitoring_config"]["distribution_constraints"]["comparison_method"] = "Simple"
    assert {check for _, check in checks(analyze(statistics, simple, small))} == {"baseline_drift_check"}
    assert checks(analyze(statistics, constraints, small)) == set()


def test_missing_and_extra_columns_are_named_by_position(baseline):
    short = analyze(*baseline, capture_lines([row[:2] for row in sample(50)]))
    assert ("plan", "missing_column_check") in checks(short)
    [missing] = [v for v in short.violations["violations"] if v["constraint_check_type"] == "missing_column_check"]
    assert missing["description"] == (
        "There are missing columns in current dataset. Number of columns in current dataset: 2, "
        "Number of columns in baseline constraints: 3"
    )
    wide = analyze(*baseline, capture_lines([[*row, "x", "y"] for row in sample(50)]))
    assert checks(wide) == {("_c3", "extra_column_check"), ("_c4", "extra_column_check")}
    assert [f["name"] for f in wide.statistics["features"]] == ["age", "income", "plan", "_c3", "_c4"]


def test_values_of_another_type_violate_the_data_type_check(baseline):
    rows = sample(100)
    for row in rows[:30]:
        row[0] = "forty"
    for row in rows[30:50]:
        row[0] = "41.5"
    result = analyze(*baseline, capture_lines(rows))
    assert checks(result) == {("age", "data_type_check")}
    assert result.violations["violations"][0]["description"] == (
        "Data type match requirement is not met. Expected data type: Integral, Expected match: 90.0%. "
        "Observed: Only 50.0% of data is Integral."
    )
    assert result.statistics["features"][0]["inferred_type"] == "String"
    tolerated = sample(100)
    tolerated[0][0] = "forty"
    assert checks(analyze(*baseline, capture_lines(tolerated))) == set()


def test_missing_values_below_the_baseline_completeness_violate_completeness(baseline):
    rows = sample(100)
    for row in rows[:5]:
        row[1] = ""
    result = analyze(*baseline, capture_lines(rows))
    assert checks(result) == {("income", "completeness_check")}
    assert result.violations["violations"][0]["description"] == (
        "Data completeness requirement is not met. Expected completeness: 100.0%. "
        "Observed: Only 95.0% of data is complete."
    )
    assert result.statistics["features"][1]["numerical_statistics"]["common"] == {"num_present": 95, "num_missing": 5}


def test_unknown_categories_violate_categorical_values_and_a_shifted_mix_drifts(baseline):
    rows = sample(100)
    for row in rows[:20]:
        row[2] = "enterprise"
    result = analyze(*baseline, capture_lines(rows))
    assert ("plan", "categorical_values_check") in checks(result)
    [unknown] = [v for v in result.violations["violations"] if v["constraint_check_type"] == "categorical_values_check"]
    assert "20.0% of values are not in it (e.g. 'enterprise')" in unknown["description"]
    mix = sample(200)
    for row in mix:
        row[2] = "team"
    assert checks(analyze(*baseline, capture_lines(mix))) == {("plan", "baseline_drift_check")}
    statistics, constraints = baseline
    chi = json.loads(json.dumps(constraints))
    chi["monitoring_config"]["distribution_constraints"]["categorical_drift_method"] = "ChiSquared"
    assert checks(analyze(statistics, chi, capture_lines(mix))) == {("plan", "baseline_drift_check")}
    assert checks(analyze(statistics, chi, capture_lines(sample(200, seed=9)))) == set()


def test_encoded_rows_are_read_as_aws_reads_them_with_no_decoding(baseline):
    """Capture holds the raw rows the endpoint's preprocessor takes; rows in the Glue job's
    encoding (what the endpoint took before its inference pipeline) are not read back."""
    codes = {"plan": {"__missing__": 0, "basic": 1, "pro": 2, "team": 3}}
    rows = [[f"{float(age)}", income, str(codes["plan"][plan])] for age, income, plan in sample(100)]
    # 45.0 is Fractional, the codes are numbers outside the plan's domain.
    assert checks(analyze(*baseline, capture_lines(rows))) == {
        ("age", "data_type_check"),
        ("plan", "data_type_check"),
        ("plan", "categorical_values_check"),
    }
    raw = [[str(age), income, plan] for age, income, plan in sample(100)]
    assert checks(analyze(*baseline, capture_lines(raw))) == set()


def test_base64_inputs_are_read_and_other_inputs_refused(baseline):
    line = json.loads(capture_lines([["40", "1000.5", "pro"]])[0])
    line["captureData"]["endpointInput"].update(encoding="BASE64", data=base64.b64encode(b"40,1000.5,pro").decode())
    assert analysis.read_capture([json.dumps(line)]) == [["40", "1000.5", "pro"]]
    line["captureData"]["endpointInput"].update(encoding="JSON", observedContentType="application/json")
    with pytest.raises(MonitoringError, match=r"capture line 1: the input is JSON \(application/json\); the analysis"):
        analysis.read_capture([json.dumps(line)])
    with pytest.raises(MonitoringError, match="capture line 2 is not a data capture record with an endpointInput"):
        analysis.read_capture(["", "{}"])
    with pytest.raises(MonitoringError, match="the captured data holds no rows to analyze"):
        analyze(*baseline, [])
    with pytest.raises(MonitoringError, match=r"the baseline is not Model Monitor's statistics\.json"):
        analyze({"features": [{}]}, {}, capture_lines([["1"]]))


def test_numeric_distance_is_the_kolmogorov_smirnov_statistic():
    rng = random.Random(2)
    base = sorted(rng.gauss(0, 1) for _ in range(20000))
    percentiles = [base[round(i * (len(base) - 1) / 100)] for i in range(101)]
    shifted = [rng.gauss(0.5, 1) for _ in range(5000)]
    # Phi(0.25) - Phi(-0.25): the largest gap between N(0, 1) and N(0.5, 1).
    assert distance.numeric_distance(percentiles, len(base), shifted, "Simple") == pytest.approx(0.197, abs=0.02)
    assert distance.categorical_distance({"a": 50, "b": 50}, {"a": 80, "b": 20}, comparison="Simple") == pytest.approx(
        0.3
    )
    assert distance._upper_regularized_gamma(1.5, 2.0) == pytest.approx(0.2614, abs=1e-4)  # chi2.sf(4, 3)
