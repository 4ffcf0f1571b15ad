"""The data-quality analysis of SageMaker Model Monitor's built-in analyzer, on captured data.

``analyze(baseline_statistics, constraints, capture_lines)`` takes the baseline the Glue job
wrote (statistics.json and constraints.json in Model Monitor's formats) and the JSON Lines of
SageMaker data capture (``captureData.endpointInput``, CSV) and returns what a monitoring
execution writes: the captured data's ``statistics.json`` and ``constraint_violations.json``,
with the analyzer's checks and its ``constraint_check_type`` names:

- ``missing_column_check`` / ``extra_column_check``: fewer / more CSV columns than baseline features;
- ``data_type_check``: more than ``datatype_check_threshold`` of a column's values are not of
  the baseline's ``inferred_type`` (an Integral feature takes integers, a Fractional one any
  number, a String one any value in its domain or any non-number);
- ``completeness_check``: the share of present values is below the feature's ``completeness``;
- ``categorical_values_check``: more than ``domain_content_threshold`` of a String feature's
  values are outside its ``string_constraints.domains``;
- ``baseline_drift_check``: the distribution distance exceeds ``comparison_threshold``
  (numeric) or ``categorical_comparison_threshold`` (String, else ``comparison_threshold``).

Columns are matched to the baseline's features by position: the endpoint receives headerless
CSV in the dataset's feature order, as AWS's analyzer matches captured CSV. Extra columns are
named ``_c<index>`` as AWS names headerless columns. The production endpoint takes raw rows (its
inference pipeline's preprocessor encodes them) and data capture records the request as sent, so
the captured values are the dataset's own, as the baseline counted them.

What is AWS's and what is ours: the file formats, check names and thresholds are AWS's; the
numeric distance is the L-infinity distance between the cumulative distributions (the
baseline's read from its percentiles, linearly between them; the batch's exact), and
``comparison_method`` ``Robust`` (the default) subtracts the two-sample Kolmogorov-Smirnov
critical value at 95% so that a small batch does not drift by chance (AWS documents Robust as
based on that test without its formula). Categorical distance is L-infinity between the
category frequencies (corrected the same way under ``Robust``: ours, AWS documents no
correction), or with ``ChiSquared`` one minus the chi-squared test's p-value, against one
minus the threshold (drift when the p-value is below the threshold). The
descriptions follow the analyzer's wording style, not its exact text. A baseline suggested by
AWS's own analyzer is read the same way, its sketch's items all weighing the same (KLL weighs
higher levels more, so its distribution is then approximate).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stepml.monitoring.distance import categorical_distance, numeric_distance

#: AWS's defaults for what a constraints file leaves out.
DEFAULTS = {
    "datatype_check_threshold": 0.1,
    "domain_content_threshold": 0.1,
    "comparison_threshold": 0.1,
    "comparison_method": "Robust",
    "categorical_drift_method": "LInfinity",
}
_INTEGRAL = re.compile(r"^[+-]?[0-9]+$")
_NUMBER = re.compile(r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$")
_PERCENTILES = 101


class MonitoringError(Exception):
    """The baseline or the captured data cannot be analyzed; the message says why."""


@dataclass(frozen=True)
class Analysis:
    """A monitoring execution's outputs: the batch's statistics and the constraint violations."""

    statistics: dict[str, Any]
    violations: dict[str, Any]
    #: Per compared feature, the drift distance the baseline_drift_check measured (what the
    #: analyzer publishes as ``feature_baseline_drift_<feature>``).
    distances: dict[str, float] = field(default_factory=dict)
    #: Per compared feature, the threshold its distance is held to.
    thresholds: dict[str, float] = field(default_factory=dict)


# --- reading captured data ---------------------------------------------------------------------


def read_capture(lines: Iterable[str | bytes]) -> list[list[str]]:
    """The CSV rows of the endpoint inputs in SageMaker data capture JSON Lines (one request
    may carry several rows). Blank lines are skipped; a record without a CSV input is refused."""
    rows: list[list[str]] = []
    for number, line in enumerate(lines, 1):
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        if not text.strip():
            continue
        try:
            captured = json.loads(text)["captureData"]["endpointInput"]
            data, encoding = captured["data"], captured.get("encoding", "CSV")
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise MonitoringError(f"capture line {number} is not a data capture record with an endpointInput") from exc
        if encoding == "BASE64":
            data = base64.b64decode(data).decode("utf-8", errors="replace")
        elif encoding != "CSV":
            kind = captured.get("observedContentType")
            raise MonitoringError(f"capture line {number}: the input is {encoding} ({kind}); the analysis reads CSV")
        rows.extend(row for row in csv.reader(io.StringIO(data)) if row)
    return rows


def _number(value: str) -> float | None:
    return float(value) if _NUMBER.match(value) else None


def _kind(value: str) -> str:
    if _INTEGRAL.match(value):
        return "Integral"
    return "Fractional" if _NUMBER.match(value) else "String"


# --- the baseline ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Feature:
    """One baseline feature: its statistics and its constraints."""

    name: str
    kind: str
    statistics: Mapping[str, Any]
    constraint: Mapping[str, Any]

    @property
    def domain(self) -> list[str] | None:
        domains = (self.constraint.get("string_constraints") or {}).get("domains")
        return [str(v) for v in domains] if domains is not None else None

    def evaluated(self) -> bool:
        overrides = self.constraint.get("monitoring_config_overrides") or self.constraint.get(
            "monitoringConfigOverrides"
        )
        return (overrides or {}).get("evaluate_constraints", "Enabled") != "Disabled"


def _features(statistics: Mapping[str, Any], constraints: Mapping[str, Any]) -> list[_Feature]:
    try:
        by_name = {c["name"]: c for c in constraints.get("features") or []}
        return [
            _Feature(f["name"], f.get("inferred_type", "Unknown"), f, by_name.get(f["name"], {}))
            for f in statistics["features"]
        ]
    except (KeyError, TypeError) as exc:
        problem = f"the baseline is not Model Monitor's statistics.json and constraints.json: {exc}"
        raise MonitoringError(problem) from exc


def _settings(constraints: Mapping[str, Any]) -> dict[str, Any]:
    config = constraints.get("monitoring_config") or {}
    distribution = config.get("distribution_constraints") or {}
    settings = {key: config.get(key, DEFAULTS[key]) for key in ("datatype_check_threshold", "domain_content_threshold")}
    for key in ("comparison_threshold", "comparison_method", "categorical_drift_method"):
        settings[key] = distribution.get(key, DEFAULTS[key])
    settings["categorical_comparison_threshold"] = distribution.get(
        "categorical_comparison_threshold", settings["comparison_threshold"]
    )
    settings["evaluate"] = config.get("evaluate_constraints", "Enabled") != "Disabled"
    settings["compare"] = distribution.get("perform_comparison", "Enabled") != "Disabled"
    return settings


# --- the batch's columns -----------------------------------------------------------------------


def _columns(rows: Sequence[Sequence[str]], width: int) -> list[list[str | None]]:
    """Column ``i`` of every row, stripped, None where blank or where a short row ends."""
    columns: list[list[str | None]] = [[] for _ in range(width)]
    for row in rows:
        for i in range(width):
            value = row[i].strip() if i < len(row) else ""
            columns[i].append(value or None)
    return columns


def _inferred(values: Sequence[str]) -> str:
    kinds = {_kind(v) for v in values}
    if not kinds:
        return "Unknown"
    if kinds == {"Integral"}:
        return "Integral"
    return "Fractional" if "String" not in kinds else "String"


def _numeric_statistics(name: str, kind: str, present: list[float], missing: int) -> dict[str, Any]:
    ordered = sorted(present)
    count = len(ordered)
    mean = sum(ordered) / count if count else None
    low, high = (ordered[0], ordered[-1]) if count else (None, None)
    buckets = []
    if count:
        step = (high - low) / 10
        edges = [low + step * b for b in range(10)] + [high]
        counts = Counter(min(int((v - low) / step), 9) if step else 0 for v in ordered)
        buckets = [{"lower_bound": edges[b], "upper_bound": edges[b + 1], "count": counts.get(b, 0)} for b in range(10)]
    percentiles = [ordered[round(p * (count - 1) / (_PERCENTILES - 1))] for p in range(_PERCENTILES)] if count else []
    return {
        "name": name,
        "inferred_type": kind,
        "numerical_statistics": {
            "common": {"num_present": count, "num_missing": missing},
            "mean": mean,
            "sum": sum(ordered),
            "std_dev": math.sqrt(sum((v - mean) ** 2 for v in ordered) / count) if count else None,
            "min": low,
            "max": high,
            "distribution": {
                "kll": {"buckets": buckets, "sketch": {"parameters": {"c": 0.64, "k": 2048.0}, "data": [percentiles]}}
            },
        },
    }


def _string_statistics(name: str, present: list[str], missing: int) -> dict[str, Any]:
    counts = sorted(Counter(present).items(), key=lambda item: (-item[1], item[0]))
    return {
        "name": name,
        "inferred_type": "String",
        "string_statistics": {
            "common": {"num_present": len(present), "num_missing": missing},
            "distinct_count": len(counts),
            "distribution": {"categorical": {"buckets": [{"value": v, "count": c} for v, c in counts]}},
        },
    }


def _column_statistics(name: str, values: Sequence[str | None]) -> dict[str, Any]:
    present = [v for v in values if v is not None]
    kind = _inferred(present)
    missing = len(values) - len(present)
    if kind in ("Integral", "Fractional"):
        return _numeric_statistics(name, kind, [float(v) for v in present], missing)
    return _string_statistics(name, present, missing)


def _batch_statistics(feature: _Feature | None, name: str, values: Sequence[str | None]) -> dict[str, Any]:
    """A column's statistics; a String feature's column stays String whatever its values look like."""
    if feature is not None and feature.kind == "String":
        present = [v for v in values if v is not None]
        return _string_statistics(name, present, len(values) - len(present))
    return _column_statistics(name, values)


# --- the checks --------------------------------------------------------------------------------


def _violation(name: str, check: str, description: str) -> dict[str, str]:
    return {"feature_name": name, "constraint_check_type": check, "description": description}


def _percent(share: float) -> str:
    return f"{share * 100:.1f}%"


def _matches(feature: _Feature, value: str) -> bool:
    kind = _kind(value)
    if feature.kind == "Integral":
        return kind == "Integral"
    if feature.kind == "Fractional":
        return kind != "String"
    if feature.kind == "String":
        return kind == "String" or value in set(feature.domain or ())
    return True


def _data_type(feature: _Feature, present: Sequence[str], settings: Mapping[str, Any]) -> list[dict[str, str]]:
    if not present:
        return []
    matching = sum(1 for value in present if _matches(feature, value)) / len(present)
    tolerated = float(settings["datatype_check_threshold"])
    if 1 - matching <= tolerated:
        return []
    return [
        _violation(
            feature.name,
            "data_type_check",
            f"Data type match requirement is not met. Expected data type: {feature.kind}, Expected match: "
            f"{_percent(1 - tolerated)}. Observed: Only {_percent(matching)} of data is {feature.kind}.",
        )
    ]


def _completeness(feature: _Feature, values: Sequence[str | None]) -> list[dict[str, str]]:
    expected = feature.constraint.get("completeness")
    if expected is None or not values:
        return []
    observed = sum(1 for value in values if value is not None) / len(values)
    if observed >= float(expected):
        return []
    return [
        _violation(
            feature.name,
            "completeness_check",
            f"Data completeness requirement is not met. Expected completeness: {_percent(float(expected))}. "
            f"Observed: Only {_percent(observed)} of data is complete.",
        )
    ]


def _categorical_values(feature: _Feature, present: Sequence[str], settings: Mapping[str, Any]) -> list[dict]:
    domain = feature.domain
    if feature.kind != "String" or domain is None or not present:
        return []
    known = set(domain)
    unknown = [value for value in present if value not in known]
    share = len(unknown) / len(present)
    tolerated = float(settings["domain_content_threshold"])
    if share <= tolerated:
        return []
    examples = ", ".join(repr(v) for v, _ in Counter(unknown).most_common(5))
    return [
        _violation(
            feature.name,
            "categorical_values_check",
            f"Categorical values requirement is not met. Expected: at most {_percent(tolerated)} of values "
            f"outside the baseline domain. Observed: {_percent(share)} of values are not in it (e.g. {examples}).",
        )
    ]


def _baseline_counts(feature: _Feature) -> dict[str, int]:
    buckets = feature.statistics.get("string_statistics", {}).get("distribution", {}).get("categorical", {})
    return {str(b["value"]): int(b["count"]) for b in buckets.get("buckets") or []}


def _drift_distance(
    feature: _Feature, present: Sequence[str], settings: Mapping[str, Any]
) -> tuple[float, float] | None:
    """The feature's distribution distance from the baseline and the threshold it is held to
    (for ``ChiSquared``, one minus the p-value against one minus the threshold); None when the
    feature is not compared (no values, comparison off, a type without a distribution)."""
    if not settings["compare"] or not present:
        return None
    if feature.kind == "String":
        threshold = float(settings["categorical_comparison_threshold"])
        method = settings["categorical_drift_method"]
        if method == "ChiSquared":
            # The threshold is the test's significance: drift when the p-value falls below it.
            threshold = 1.0 - threshold
        counts = Counter(present)
        return categorical_distance(_baseline_counts(feature), counts, method, settings["comparison_method"]), threshold
    if feature.kind in ("Integral", "Fractional"):
        numbers = [n for n in (_number(v) for v in present) if n is not None]
        numeric = feature.statistics.get("numerical_statistics") or {}
        data = (numeric.get("distribution", {}).get("kll", {}).get("sketch", {}).get("data")) or []
        percentiles = sorted(float(v) for level in data for v in level)
        count = int((numeric.get("common") or {}).get("num_present") or 0)
        threshold = float(settings["comparison_threshold"])
        return numeric_distance(percentiles, count, numbers, settings["comparison_method"]), threshold
    return None


def _drift(feature: _Feature, present: Sequence[str], settings: Mapping[str, Any]) -> list[dict[str, str]]:
    measured = _drift_distance(feature, present, settings)
    if measured is None or measured[0] <= measured[1]:
        return []
    distance, threshold = measured
    return [
        _violation(
            feature.name,
            "baseline_drift_check",
            f"Baseline drift distance: {distance:.4g} exceeds threshold: {threshold}",
        )
    ]


def _column_count(features: Sequence[_Feature], width: int) -> list[dict[str, str]]:
    expected = len(features)
    if width == expected:
        return []
    check, which = ("missing_column_check", "missing") if width < expected else ("extra_column_check", "extra")
    names = [f.name for f in features[width:]] if width < expected else [f"_c{i}" for i in range(expected, width)]
    return [
        _violation(
            name,
            check,
            f"There are {which} columns in current dataset. Number of columns in current dataset: {width}, "
            f"Number of columns in baseline constraints: {expected}",
        )
        for name in names
    ]


# --- the analysis ------------------------------------------------------------------------------


def analyze(
    baseline_statistics: Mapping[str, Any],
    constraints: Mapping[str, Any],
    capture_lines: Iterable[str | bytes],
) -> Analysis:
    """The batch's statistics.json and constraint_violations.json against the baseline.

    ``MonitoringError`` when the baseline is not in Model Monitor's formats, a record is not a
    CSV capture, or the batch holds no rows (AWS's execution fails without data as well).
    """
    return analyze_rows(baseline_statistics, constraints, read_capture(capture_lines))


def analyze_rows(
    baseline_statistics: Mapping[str, Any],
    constraints: Mapping[str, Any],
    rows: Sequence[Sequence[str]],
) -> Analysis:
    """``analyze`` on rows of CSV cells already read (the Evaluate Lambda's test split)."""
    features = _features(baseline_statistics, constraints)
    settings = _settings(constraints)
    if not rows:
        raise MonitoringError("the captured data holds no rows to analyze")
    width = max(len(row) for row in rows)
    columns = _columns(rows, width)
    statistics: list[dict[str, Any]] = []
    violations: list[dict[str, str]] = []
    distances: dict[str, float] = {}
    thresholds: dict[str, float] = {}
    for index, values in enumerate(columns):
        feature = features[index] if index < len(features) else None
        statistics.append(_batch_statistics(feature, feature.name if feature else f"_c{index}", values))
        if feature is not None and settings["evaluate"] and feature.evaluated():
            violations += _feature_violations(feature, values, settings)
            measured = _measured_drift(feature, values, settings)
            if measured is not None:
                distances[feature.name], thresholds[feature.name] = measured
    if settings["evaluate"]:
        violations += _column_count(features, width)
    return Analysis(
        statistics={"version": 0.0, "dataset": {"item_count": len(rows)}, "features": statistics},
        violations={"violations": violations},
        distances=distances,
        thresholds=thresholds,
    )


def _feature_violations(feature: _Feature, values: Sequence[str | None], settings: Mapping[str, Any]) -> list[dict]:
    present = [v for v in values if v is not None]
    found = _data_type(feature, present, settings)
    found += _completeness(feature, values)
    found += _categorical_values(feature, present, settings)
    if not any(v["constraint_check_type"] == "data_type_check" for v in found):
        # Distances between values of another type would mean nothing.
        found += _drift(feature, present, settings)
    return found


def _measured_drift(
    feature: _Feature, values: Sequence[str | None], settings: Mapping[str, Any]
) -> tuple[float, float] | None:
    present = [v for v in values if v is not None]
    if _data_type(feature, present, settings):
        return None
    return _drift_distance(feature, present, settings)
