"""The Glue preprocessing script on local PySpark: outputs, determinism, cleaning, encoding, errors."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import statistics as pystats
from collections import Counter
from pathlib import Path
from typing import Any

import pyspark
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from stepml import preprocessor_script
from stepml.config import DatasetConfigError, parse_dataset_config
from tests.helpers import CHURN_CONFIG, REPO_ROOT, load_handler
from tests.unit.test_monitoring_analysis import capture_lines

pp = load_handler("glue_jobs/preprocess.py")

pytestmark = pytest.mark.spark

HEADER = ["id", "age", "income", "plan", "region", "churned"]
FEATURES = [
    {"name": "age", "type": "numeric"},
    {"name": "income", "type": "numeric"},
    {"name": "plan", "type": "categorical"},
    {"name": "region", "type": "categorical"},
]


@pytest.fixture(scope="session")
def spark():
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # One core: on a 2-core CI machine a second task thread only adds scheduling overhead.
    session = (
        SparkSession.builder.master("local[1]")
        .appName("stepml-preprocess-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        # A short-lived JVM: the C1 compiler alone warms up faster, serial GC spares the 2 cores.
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def dataset_config(**overrides: Any) -> dict[str, Any]:
    """A dataset config as the Lambda side passes it: validated by stepml.config, then dumped."""
    raw = {
        "name": "churn",
        "label": "churned",
        "problem_type": "binary",
        "classes": ["no", "yes"],
        "features": FEATURES,
        "row_key": "id",
        "metric": "auc",
        "threshold": 0.7,
        "min_rows": 10,
    }
    raw.update(overrides)
    raw = {key: value for key, value in raw.items() if value is not None}
    return parse_dataset_config(raw, "test").model_dump(mode="json")


def job_config(**overrides: Any):
    return pp.parse_config(json.dumps(dataset_config(**overrides)), "test")


def churn_rows(count: int, seed: int = 3) -> list[list[str]]:
    """Rows with missing ages and plans, and every 15th row unlabeled."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        rows.append(
            [
                f"c{i:04d}",
                str(rng.randint(18, 80)) if rng.random() > 0.1 else "",
                f"{rng.uniform(1000, 9000):.2f}",
                rng.choice(["basic", "pro", "team", ""]),
                rng.choice(["north", "south"]),
                "" if i % 15 == 7 else rng.choice(["no", "yes"]),
            ]
        )
    return rows


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER, delimiter: str = ",") -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def run_main(input_path: Path, output: Path, config: dict[str, Any], **extra: str) -> dict[str, Any]:
    argv = [
        "preprocess.py",
        "--JOB_NAME",
        "stepml-dev-preprocess",
        "--run_id",
        "churn-0123456789ab",
        "--input_uri",
        str(input_path),
        "--output_uri",
        f"{output}/",
        "--dataset_config",
        json.dumps(config),
        "--enable-metrics",
        "true",
    ]
    for name, value in extra.items():
        argv += [f"--{name}", value]
    return pp.main(argv)


def read_split(folder: Path) -> list[str]:
    """The lines of every part file, in part order."""
    parts = sorted(folder.glob("part-*"))
    assert parts, f"no part files in {folder}"
    return [line for part in parts for line in part.read_text().splitlines()]


# --- the happy path through main() ------------------------------------------------------------


@pytest.fixture(scope="module")
def churn_run(spark, tmp_path_factory):
    folder = tmp_path_factory.mktemp("churn")
    rows = churn_rows(150)
    source = write_csv(folder / "data.csv", rows)
    manifest = run_main(source, folder / "out", dataset_config(), input_version_id="v-1", code_version="abc123")
    return {"rows": rows, "source": source, "out": folder / "out", "manifest": manifest}


def test_main_writes_headerless_train_and_validation_with_the_label_first(churn_run):
    out = churn_run["out"]
    for split in ("train", "validation"):
        lines = read_split(out / split)
        assert lines, split
        for line in lines:
            values = [float(value) for value in line.split(",")]  # no header line: every field is a number
            assert len(values) == 1 + len(FEATURES)
            label, age, income, plan, region = values
            assert label in (0.0, 1.0)
            assert 18 <= age <= 80 and 1000 <= income <= 9000
            assert plan in (0, 1, 2, 3) and region in (0, 1)


def test_main_writes_the_test_split_without_a_header_and_no_success_markers(churn_run):
    """Headerless, as Batch Transform needs it (it would send a header line to the model as a row)."""
    out = churn_run["out"]
    lines = read_split(out / "test")
    assert "churned,age,income,plan,region" not in lines
    assert all(float(line.split(",")[0]) in (0.0, 1.0) for line in lines)
    # The features as uploaded (categories as text, blanks as blanks): the endpoint's preprocessor encodes them.
    raw = {tuple(row[1:5]) for row in churn_run["rows"]}
    assert all(tuple(row[1:]) in raw for row in csv.reader(lines))
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert not [name for name in written if "_SUCCESS" in name or name.endswith(".crc")]
    assert {name.split("/")[0] for name in written} == {
        "train",
        "validation",
        "test",
        "manifest.json",
        "statistics.json",
        "constraints.json",
        "encoding.json",
    }


def test_manifest_records_fingerprint_counts_and_encodings(churn_run):
    rows, out, manifest = churn_run["rows"], churn_run["out"], churn_run["manifest"]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["fingerprint"] == "sha256:" + hashlib.sha256(churn_run["source"].read_bytes()).hexdigest()
    assert manifest["input"] == {
        "uri": str(churn_run["source"]),
        "version_id": "v-1",
        "format": "csv",
        "bytes": churn_run["source"].stat().st_size,
    }
    assert manifest["run_id"] == "churn-0123456789ab" and manifest["code_version"] == "abc123"
    assert manifest["pyspark_version"] == pyspark.__version__
    unlabeled = sum(1 for row in rows if not row[-1])
    counts = manifest["row_counts"]
    assert counts["input"] == len(rows) and counts["dropped_unlabeled"] == unlabeled
    assert counts["train"] + counts["validation"] + counts["test"] == len(rows) - unlabeled
    for split in ("train", "validation"):
        assert len(read_split(out / split)) == counts[split]
    assert len(read_split(out / "test")) == counts["test"]
    assert manifest["columns"] == HEADER
    assert manifest["feature_order"] == ["age", "income", "plan", "region"]
    assert manifest["label"]["encoding"] == {"no": 0, "yes": 1}
    assert manifest["categorical_encodings"] == {
        "plan": {"__missing__": 0, "basic": 1, "pro": 2, "team": 3},
        "region": {"north": 0, "south": 1},
    }
    assert manifest["split"]["key"] == "id"


def test_output_rows_carry_the_input_values_in_feature_order(churn_run):
    """Per column sums and the label distribution survive encoding: nothing is shifted or lost."""
    rows, out = churn_run["rows"], churn_run["out"]
    labeled = [row for row in rows if row[-1]]
    written = read_split(out / "train") + read_split(out / "validation") + _encoded_test_split(out)
    columns = list(zip(*[[float(v) for v in line.split(",")] for line in written], strict=True))
    assert Counter(columns[0]) == Counter(1.0 if row[-1] == "yes" else 0.0 for row in labeled)
    assert sum(columns[2]) == pytest.approx(sum(float(row[2]) for row in labeled))
    region_codes = {"north": 0, "south": 1}
    assert Counter(columns[4]) == Counter(region_codes[row[4]] for row in labeled)


def _encoded_test_split(out: Path) -> list[str]:
    """The test split's rows, label first, with the raw features encoded by the endpoint's preprocessor."""
    model = preprocessor_script.model_fn(str(out))
    rows = list(csv.reader(read_split(out / "test")))
    encoded = model.encode_rows([row[1:] for row in rows]).splitlines()
    return [f"{row[0]},{line}" for row, line in zip(rows, encoded, strict=True)]


def test_the_preprocessor_encodes_raw_rows_exactly_as_the_job_encoded_the_training_rows(spark, churn_run):
    """encoding.json and the serving script reproduce the job's imputation and category codes:
    the raw training rows, encoded by the script, are the train split the model learnt from."""
    out = churn_run["out"]
    encoding = json.loads((out / "encoding.json").read_text())
    assert [f["name"] for f in encoding["features"]] == ["age", "income", "plan", "region"]
    assert encoding["categories"] == churn_run["manifest"]["categorical_encodings"]
    model = preprocessor_script.model_fn(str(out))
    train = _train_rows(spark, churn_run["rows"])
    served = [[float(v) for v in line.split(",")] for line in model.encode_rows([r[1:5] for r in train]).splitlines()]
    trained = [[float(v) for v in line.split(",")[1:]] for line in read_split(out / "train")]
    assert sorted(served) == sorted(trained)
    assert any(not row[1] for row in train) and any(not row[3] for row in train), "blanks were imputed"


def _train_rows(spark, rows: list[list[str]]) -> list[list[str]]:
    """The labeled rows the job put in the training split (its hash of the row key)."""
    frame = spark.createDataFrame(rows, HEADER)
    split = dict(pp.assign_split(frame, job_config(), HEADER).select("id", pp.SPLIT).collect())
    return [row for row in rows if row[-1] and split[row[0]] == "train"]


def test_baseline_is_model_monitors_statistics_and_constraints_of_the_raw_training_rows(spark, churn_run):
    out, manifest = churn_run["out"], churn_run["manifest"]
    train = _train_rows(spark, churn_run["rows"])
    stats = json.loads((out / "statistics.json").read_text())
    assert stats["dataset"] == {"item_count": len(train)} == {"item_count": manifest["row_counts"]["train"]}
    assert [f["name"] for f in stats["features"]] == ["age", "income", "plan", "region"]
    age = stats["features"][0]
    ages = [float(row[1]) for row in train if row[1]]
    numbers = age["numerical_statistics"]
    assert age["inferred_type"] == "Integral" and stats["features"][1]["inferred_type"] == "Fractional"
    assert numbers["common"] == {"num_present": len(ages), "num_missing": len(train) - len(ages)}
    assert numbers["mean"] == pytest.approx(pystats.mean(ages)) and numbers["sum"] == pytest.approx(sum(ages))
    assert numbers["std_dev"] == pytest.approx(pystats.pstdev(ages))
    assert (numbers["min"], numbers["max"]) == (min(ages), max(ages))
    buckets = numbers["distribution"]["kll"]["buckets"]
    assert len(buckets) == 10 and sum(b["count"] for b in buckets) == len(ages)
    assert buckets[0]["lower_bound"] == min(ages) and buckets[-1]["upper_bound"] == max(ages)
    percentiles = numbers["distribution"]["kll"]["sketch"]["data"][0]
    assert len(percentiles) == 101 and percentiles[0] == min(ages) and percentiles[-1] == max(ages)
    assert percentiles[50] == pytest.approx(pystats.median_low(ages), abs=1)
    plan = stats["features"][2]
    plans = Counter(row[3] for row in train if row[3])
    assert plan["inferred_type"] == "String"
    assert plan["string_statistics"]["common"] == {
        "num_present": sum(plans.values()),
        "num_missing": len(train) - sum(plans.values()),
    }
    assert plan["string_statistics"]["distinct_count"] == 3
    assert {
        b["value"]: b["count"] for b in plan["string_statistics"]["distribution"]["categorical"]["buckets"]
    } == plans
    constraints = json.loads((out / "constraints.json").read_text())
    by_name = {f["name"]: f for f in constraints["features"]}
    assert by_name["age"]["completeness"] == pytest.approx(len(ages) / len(train))
    assert by_name["age"]["num_constraints"] == {"is_non_negative": True}
    assert by_name["plan"]["string_constraints"] == {"domains": ["basic", "pro", "team"]}
    assert constraints["monitoring_config"]["distribution_constraints"]["comparison_threshold"] == 0.1
    assert manifest["outputs"]["statistics"] == f"{out}/statistics.json"
    assert manifest["outputs"]["constraints"] == f"{out}/constraints.json"
    labeled = [r for r in churn_run["rows"] if r[-1]]
    assert manifest["label"]["distribution"] == {v: sum(r[-1] == v for r in labeled) for v in ("no", "yes")}


def test_baseline_reads_in_the_sagemaker_sdk_and_the_monitoring_analysis(churn_run):
    """The files load with sagemaker-core's Model Monitor classes and the analysis accepts them."""
    from sagemaker.core.model_monitor.monitoring_files import Constraints, Statistics

    from stepml.monitoring import analysis

    out = churn_run["out"]
    stats = Statistics(json.loads((out / "statistics.json").read_text()), f"{out}/statistics.json")
    constraints = Constraints(json.loads((out / "constraints.json").read_text()), f"{out}/constraints.json")
    constraints.set_monitoring(False, "region")
    assert constraints.body_dict["features"][3]["monitoring_config_overrides"] == {"evaluate_constraints": "Disabled"}
    rows = [row[1:] for row in csv.reader(read_split(out / "test"))]
    # The test split holds raw features, as the endpoint receives them and capture records them.
    result = analysis.analyze(stats.body_dict, constraints.body_dict, capture_lines(rows))
    assert result.statistics["dataset"]["item_count"] == len(rows)
    plan = result.statistics["features"][2]["string_statistics"]["distribution"]["categorical"]["buckets"]
    assert {bucket["value"] for bucket in plan} <= {"basic", "pro", "team"}
    checks = {(v["feature_name"], v["constraint_check_type"]) for v in result.violations["violations"]}
    assert not {check for _, check in checks} & {"data_type_check", "categorical_values_check", "missing_column_check"}
    assert "region" not in {name for name, _ in checks}


def test_same_input_gives_identical_splits(churn_run, tmp_path):
    manifest = run_main(churn_run["source"], tmp_path / "again", dataset_config())
    for split in ("train", "validation", "test"):
        assert read_split(tmp_path / "again" / split) == read_split(churn_run["out"] / split)
    assert manifest["row_counts"] == churn_run["manifest"]["row_counts"]
    assert manifest["fingerprint"] == churn_run["manifest"]["fingerprint"]


# --- pure functions ---------------------------------------------------------------------------


def test_split_fractions_follow_the_config_and_hash_the_whole_row(spark):
    frame = spark.range(1000).select(
        F.concat(F.lit("r"), F.col("id").cast("string")).alias("id"),
        (F.col("id") % 7).cast("string").alias("x"),
        F.when(F.col("id") % 3 == 0, "a").otherwise("b").alias("y"),
    )
    config = job_config(row_key=None, split={"train": 0.6, "validation": 0.25, "test": 0.15})
    first = dict(pp.assign_split(frame, config, ["id", "x", "y"]).select("id", pp.SPLIT).collect())
    counts = Counter(first.values())
    assert abs(counts["train"] - 600) < 50 and abs(counts["validation"] - 250) < 40 and abs(counts["test"] - 150) < 35
    assert dict(pp.assign_split(frame, config, ["id", "x", "y"]).select("id", pp.SPLIT).collect()) == first
    # Another column order is another raw row: the hash, and so the split, changes for many rows.
    reordered = dict(pp.assign_split(frame, config, ["x", "id", "y"]).select("id", pp.SPLIT).collect())
    assert sum(first[key] != reordered[key] for key in first) > 100


def test_rows_with_the_same_row_key_share_a_split(spark):
    frame = spark.range(400).select(
        F.concat(F.lit("k"), (F.col("id") % 50).cast("string")).alias("customer"), F.col("id").cast("string").alias("x")
    )
    config = job_config(features=[{"name": "x", "type": "numeric"}], row_key="customer")
    pairs = pp.assign_split(frame, config, ["customer", "x"]).select("customer", pp.SPLIT).distinct().collect()
    assert len(pairs) == 50


IMPUTE_FEATURES = [{"name": "age", "type": "numeric"}, {"name": "plan", "type": "categorical"}]


@pytest.fixture(scope="module")
def imputation_case(spark, tmp_path_factory):
    """Labeled ages 1, 2, 10, 4, 2, 4, 10, 1 and two missing; the unlabeled row's 1000 must not count."""
    values = [
        ("a", "1", "pro", "0"),
        ("b", "", "basic", "1"),
        ("c", "2", "", "0"),
        ("d", "10", "team, large", "1"),
        ("e", "1000", "pro", ""),
        ("f", "4", "  ", "0"),
        ("g", " ", "pro", "1"),
        ("h", "2", "basic", "0"),
        ("i", "4", "team, large", "1"),
        ("j", "10", "pro", "0"),
        ("k", "1", "pro", "1"),
    ]
    folder = tmp_path_factory.mktemp("impute")
    # Windows line endings, a byte order mark and a quoted delimiter, as spreadsheet exports have.
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows([["id", "age", "plan", "churned"], *values])
    path = folder / "small.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8-sig")
    config = job_config(features=IMPUTE_FEATURES, classes=None, split={"train": 0.4, "validation": 0.3, "test": 0.3})
    prepared = pp.prepare(spark, str(path), config)
    try:
        cleaned = pp.clean(prepared.raw.frame, config, prepared.profile.medians)
        encoded = pp.encode(cleaned, config, prepared.labels, prepared.categories, keep=["id"]).collect()
    finally:
        prepared.raw.frame.unpersist()
    return prepared, {row["id"]: row for row in encoded}


def test_missing_numbers_get_the_median_of_the_labeled_rows(imputation_case):
    prepared, encoded = imputation_case
    assert prepared.profile.medians == {"age": 3.0}  # the even count interpolates: (2 + 4) / 2
    assert prepared.profile.rows == 11 and prepared.profile.labeled == 10
    assert prepared.profile.numeric["age"]["missing"] == 2
    assert encoded["b"]["age"] == 3.0 and encoded["g"]["age"] == 3.0 and encoded["d"]["age"] == 10.0
    assert "e" not in encoded


def test_categories_are_indexed_by_sorted_value_and_missing_is_a_category(imputation_case):
    prepared, encoded = imputation_case
    assert prepared.categories == {"plan": {"__missing__": 0, "basic": 1, "pro": 2, "team, large": 3}}
    assert encoded["c"]["plan"] == 0 and encoded["f"]["plan"] == 0
    assert encoded["a"]["plan"] == 2 and encoded["d"]["plan"] == 3
    # Without configured classes a binary label is 0 or 1, and 1 is the positive class.
    assert prepared.labels == {"0": 0, "1": 1}
    assert encoded["d"]["churned"] == 1 and encoded["a"]["churned"] == 0


def test_label_encoding_follows_the_configured_class_order():
    assert pp.label_encoding(job_config(classes=["yes", "no"]), ["no", "yes"]) == {"yes": 0, "no": 1}
    assert pp.label_encoding(job_config(classes=None), ["1", "0"]) == {"0": 0, "1": 1}
    multiclass = job_config(problem_type="multiclass", classes=["gold", "silver", "bronze"], metric="accuracy")
    assert pp.label_encoding(multiclass, ["bronze", "gold"]) == {"gold": 0, "silver": 1, "bronze": 2}
    assert pp.label_encoding(job_config(problem_type="regression", classes=None, metric="rmse"), []) is None


# --- validation errors ------------------------------------------------------------------------


def csv_text(rows: list[list[str]], header: list[str] = HEADER, delimiter: str = ",") -> str:
    return "\n".join(delimiter.join(row) for row in [header, *rows]) + "\n"


def good_rows(count: int = 12) -> list[list[str]]:
    return [[f"c{i}", str(20 + i), f"{1000 + i}.5", "pro", "north", "yes" if i % 2 else "no"] for i in range(count)]


def with_value(rows: list[list[str]], row: int, column: str, value: str) -> list[list[str]]:
    changed = [list(r) for r in rows]
    changed[row][HEADER.index(column)] = value
    return changed


ERROR_CASES = {
    "empty file": ("data.csv", b"", {}, ["the file is empty"]),
    "header only": ("data.csv", csv_text([]).encode(), {}, ["header but no data rows"]),
    "binary garbage": ("data.csv", bytes(range(7, 256)) + bytes(range(256)), {}, ["binary", "line 3 contains NUL"]),
    "a zip archive named .csv": ("data.csv", b"PK\x03\x04\x14\x00\x06\x00", {}, ["binary", "zip archive"]),
    "latin-1 bytes": (
        "data.csv",
        csv_text(with_value(good_rows(), 2, "plan", "caf\u00e9")).encode("latin-1"),
        {},
        ["line 4", "not UTF-8"],
    ),
    "wrong delimiter": (
        "data.csv",
        csv_text(good_rows(), delimiter=";").encode(),
        {},
        ["label column 'churned'", "missing from the header (line 1)", "';'", "csv_delimiter is ','"],
    ),
    "duplicate columns": (
        "data.csv",
        csv_text(good_rows(), header=["id", "age", "income", "plan", "age", "churned"]).encode(),
        {},
        ["line 1", "duplicate column names", "'age'"],
    ),
    "fewer than min_rows": ("data.csv", csv_text(good_rows(5)).encode(), {}, ["5 data rows", "at least 10 (min_rows)"]),
    "one row": ("data.csv", csv_text(good_rows(1)).encode(), {"min_rows": 2}, ["1 data row;", "at least 2"]),
    "missing feature": (
        "data.csv",
        csv_text([r[:3] + r[4:] for r in good_rows()], header=[h for h in HEADER if h != "plan"]).encode(),
        {},
        ["feature column 'plan' missing from the header (line 1)"],
    ),
    "text in a numeric feature after a blank line": (
        "data.csv",
        csv_text(with_value(good_rows(), 5, "age", "forty")).replace("\nc1,", "\n\nc1,").encode(),
        {},
        ["numeric feature 'age'", "line 8", "'forty'"],
    ),
    "wrong field count": (
        "data.csv",
        (csv_text(good_rows()) + "c99,30,1.5,pro\n").encode(),
        {},
        ["line 14 has 4 field(s)", "the header has 6"],
    ),
    "no labels at all": (
        "data.csv",
        csv_text([[*r[:-1], ""] for r in good_rows()]).encode(),
        {},
        ["label column 'churned' is empty on all 12 rows"],
    ),
    "single class": (
        "data.csv",
        csv_text([[*r[:-1], "no"] for r in good_rows()]).encode(),
        {},
        ["label column 'churned'", "single class 'no'"],
    ),
    "label outside the binary classes": (
        "data.csv",
        csv_text(with_value(good_rows(), 8, "churned", "maybe")).encode(),
        {},
        ["label column 'churned'", "line 10", "'maybe'", "['no', 'yes']"],
    ),
    "three values for a binary label": (
        "data.csv",
        csv_text(with_value(good_rows(), 3, "churned", "maybe")).encode(),
        {"classes": None},
        ["label column 'churned'", "3 distinct values", "'maybe'"],
    ),
    # Sorting would make 'yes' positive here by luck, and 'active' over 'churned' by accident.
    "binary labels other than 0/1 without classes": (
        "data.csv",
        csv_text(good_rows()).encode(),
        {"classes": None},
        [
            "label column 'churned' has the labels 'no', 'yes'",
            "without 'classes' a binary label must be 0 or 1",
            "name both in 'classes', negative first",
        ],
    ),
    "binary labels 0.0/1.0 without classes": (
        "data.csv",
        csv_text([[*r[:-1], "1.0" if r[-1] == "yes" else "0.0"] for r in good_rows()]).encode(),
        {"classes": None},
        ["the labels '0.0', '1.0'", "must be 0 or 1"],
    ),
    "label outside the multiclass classes": (
        "data.csv",
        csv_text(with_value(good_rows(), 0, "churned", "platinum")).encode(),
        {"problem_type": "multiclass", "classes": ["no", "yes", "unsure"], "metric": "accuracy"},
        ["label column 'churned'", "line 2", "'platinum'"],
    ),
    "text label for regression": (
        "data.csv",
        csv_text([[*r[:-1], str(i)] for i, r in enumerate(with_value(good_rows(), 6, "churned", "high"))])
        .replace(",6\n", ",high\n")
        .encode(),
        {"problem_type": "regression", "classes": None, "metric": "rmse"},
        ["label column 'churned' must be numeric", "line 8", "'high'"],
    ),
    "missing row key": (
        "data.csv",
        csv_text([r[1:] for r in good_rows()], header=HEADER[1:]).encode(),
        {},
        ["row_key column 'id' missing"],
    ),
    "garbage parquet": ("data.parquet", b"not parquet at all", {}, ["not a Parquet file"]),
}


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
def test_bad_uploads_fail_with_the_problem_the_column_and_the_line(spark, tmp_path, case):
    file_name, content, overrides, fragments = ERROR_CASES[case]
    path = tmp_path / file_name
    path.write_bytes(content)
    with pytest.raises(pp.PreprocessError) as caught:
        pp.prepare(spark, str(path), job_config(**overrides))
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message
    assert "\n" not in message  # one line: the local Glue engine reports the last error line


BAD_CORPUS = REPO_ROOT / "tests/data/bad"
BAD_EXPECTED = json.loads((BAD_CORPUS / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(BAD_EXPECTED))
def test_every_file_of_the_bad_input_corpus_fails_with_its_message(spark, name):
    """The churn config against tests/data/bad: the job refuses every file on its own, even
    those ResolveRun refuses first (an unsupported type, an empty object)."""
    path = BAD_CORPUS / name
    config = dataset_config(**{**CHURN_CONFIG, **BAD_EXPECTED[name].get("config", {})})
    with pytest.raises(pp.PreprocessError) as caught:
        pp.prepare(spark, str(path), pp.parse_config(json.dumps(config), "test"))
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for fragment in BAD_EXPECTED[name]["message"]:
        assert fragment in message


@pytest.mark.parametrize(("encoding", "name"), [("utf-16", "UTF-16"), ("utf-16-be", None), ("utf-32", "UTF-32")])
def test_text_in_another_unicode_encoding_is_named(spark, tmp_path, encoding, name):
    path = tmp_path / "data.csv"
    text = csv_text(good_rows())
    path.write_bytes(("\ufeff" + text).encode(encoding) if name is None else text.encode(encoding))
    with pytest.raises(pp.PreprocessError, match=f"the file is {name or 'UTF-16'} text, not UTF-8"):
        pp.prepare(spark, str(path), job_config())


def test_unsupported_extension_is_named_with_the_file(spark, tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(
        pp.PreprocessError, match=r"data\.xlsx: unsupported file type: 'data\.xlsx' has extension '\.xlsx'"
    ):
        pp.prepare(spark, str(path), job_config())


def test_line_numbers_stay_exact_when_the_file_is_read_in_several_partitions(spark, tmp_path):
    rows = with_value(good_rows(120), 100, "income", "n/a")
    path = write_csv(tmp_path / "data.csv", rows)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "512")
    try:
        raw = pp.read_input(spark, str(path), job_config())
        assert raw.frame.rdd.getNumPartitions() > 3
        with pytest.raises(pp.PreprocessError, match=r"numeric feature 'income' .* on line 102: 'n/a'"):
            pp.profile_input(raw, job_config())
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")


def test_main_fails_the_job_with_the_error_on_stderr(spark, tmp_path, capsys):
    path = tmp_path / "data.csv"
    path.write_text(csv_text([]))
    with pytest.raises(pp.PreprocessError):
        run_main(path, tmp_path / "out", dataset_config())
    assert f"PreprocessError: {path}: the file has a header but no data rows" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_parquet_uploads_are_read_with_their_types_for_a_regression(spark, tmp_path):
    import pandas

    rows = churn_rows(40, seed=5)
    frame = pandas.DataFrame(rows, columns=HEADER).replace("", None)
    frame["age"] = pandas.to_numeric(frame["age"])  # float64 with NaN for the missing ages
    frame["income"] = frame["income"].astype(float)
    frame.to_parquet(tmp_path / "data.parquet")
    features = [{"name": "age", "type": "numeric"}, {"name": "plan", "type": "categorical"}]
    config = job_config(label="income", problem_type="regression", classes=None, metric="rmse", features=features)
    prepared = pp.prepare(spark, str(tmp_path / "data.parquet"), config)
    try:
        encoded = prepared.encoded.collect()
    finally:
        prepared.raw.frame.unpersist()
    ages = [float(row[1]) for row in rows if row[1]]
    assert prepared.raw.file_format == "parquet" and prepared.raw.columns == HEADER
    assert prepared.profile.labeled == len(rows) and prepared.labels is None
    assert prepared.profile.medians["age"] == pytest.approx(pystats.median(ages))
    assert prepared.profile.label_numeric["mean"] == pytest.approx(pystats.mean(float(row[2]) for row in rows))
    assert sorted(row["income"] for row in encoded) == sorted(float(row[2]) for row in rows)
    assert encoded[0].__fields__[:3] == ["income", "age", "plan"]


# --- arguments and config ------------------------------------------------------------------------


def test_arguments_resolve_like_glue_does():
    argv = ["preprocess.py", "--JOB_NAME", "job", "--run_id", "r1", "--input_uri", "s3://u/incoming/churn/a.csv"]
    argv += ["--output_uri", "s3://a/processed/churn/r1/", "--dataset_config", "{}", "--job-bookmark-option", "x"]
    assert pp.resolve_arguments(argv) == {
        "run_id": "r1",
        "input_uri": "s3://u/incoming/churn/a.csv",
        "output_uri": "s3://a/processed/churn/r1/",
        "dataset_config": "{}",
    }
    assert pp.resolve_arguments([*argv, "--input_version_id", "v7"])["input_version_id"] == "v7"
    with pytest.raises(SystemExit):
        pp.resolve_arguments(argv[:5])


def test_the_job_reads_the_models_dump_and_names_what_a_raw_config_lacks():
    config = pp.parse_config(json.dumps(dataset_config()), "s3://u/a.csv")
    assert config.numeric == ["age", "income"] and config.categorical == ["plan", "region"]
    assert config.split == {"train": 0.7, "validation": 0.15, "test": 0.15}
    with pytest.raises(pp.PreprocessError, match=r"^s3://u/a\.csv: dataset config .*not valid JSON"):
        pp.parse_config("{", "s3://u/a.csv")
    with pytest.raises(pp.PreprocessError, match=r"^s3://u/a\.csv: dataset config \(--dataset_config\) must be a JSON"):
        pp.parse_config("[]", "s3://u/a.csv")
    # A hand-written config (no defaults filled) is not what the run passes: the job names the gaps.
    raw = {"name": "churn", "label": "churned", "problem_type": "binary", "features": FEATURES}
    with pytest.raises(pp.PreprocessError) as raised:
        pp.parse_config(json.dumps(raw), "s3://u/a.csv")
    assert str(raised.value) == (
        "s3://u/a.csv: dataset config lacks 'classes', 'row_key', 'split', 'csv_delimiter', 'min_rows': the job "
        "reads the config as stepml.config's model dumps it (ResolveRun validates the dataset's config and "
        "passes that document)"
    )
    broken = dataset_config() | {"features": [{"name": "age"}]}
    with pytest.raises(pp.PreprocessError, match=r"dataset config is not a stepml.config dump: KeyError: 'type'"):
        pp.parse_config(json.dumps(broken), "s3://u/a.csv")


def test_the_job_has_no_rules_or_defaults_of_its_own():
    """The schema lives once, in stepml.config: the job's config class declares no defaults and the
    job module none of the model's choices."""
    import dataclasses

    from stepml.config import DatasetConfig

    fields = {item.name: item for item in dataclasses.fields(pp.JobConfig)}
    assert all(
        item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING for item in fields.values()
    )
    assert set(fields) <= set(DatasetConfig.model_fields)
    assert set(pp._CONFIG_FIELDS) == set(fields)
    assert not hasattr(pp, "PROBLEM_TYPES") and not hasattr(pp, "FEATURE_TYPES")


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"classes": None},
        {"problem_type": "multiclass", "classes": ["a", "b", "c"], "metric": "accuracy"},
        {"problem_type": "regression", "classes": None, "metric": "rmse", "row_key": None},
        {"split": {"train": 0.5, "validation": 0.25, "test": 0.25}, "csv_delimiter": ";", "min_rows": 2},
        {"csv_delimiter": "\t", "features": [{"name": "id", "type": "categorical"}]},
    ],
)
def test_every_config_the_schema_accepts_reads_the_same_in_the_job(overrides):
    document = dataset_config(**overrides)
    model = parse_dataset_config(document, "test")
    job = pp.parse_config(json.dumps(document), "test")
    assert (job.name, job.label, job.problem_type, job.row_key) == (
        model.name,
        model.label,
        model.problem_type,
        model.row_key,
    )
    assert [(f.name, f.type) for f in job.features] == [(f.name, f.type) for f in model.features]
    assert job.classes == (tuple(model.classes) if model.classes is not None else None)
    assert dict(job.split) == model.split.model_dump()
    assert (job.csv_delimiter, job.min_rows) == (model.csv_delimiter, model.min_rows)


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("label", [" ", "x", "age"]),
        ("row_key", ["", " ", None, "region"]),
        ("csv_delimiter", [";", "\t", "|", '"', "\n", "\r"]),
        ("min_rows", [1, 2, 10_000]),
        ("classes", [None, ["a"], ["a", "b"], ["a", "a"], ["a", "b", "c"]]),
        ("split", [{"train": 0.5, "validation": 0.25, "test": 0.25}, {"train": 0.9}]),
        ("features", [[{"name": " ", "type": "numeric"}], [{"name": "churned", "type": "numeric"}]]),
    ],
)
def test_the_job_accepts_every_config_the_schema_accepts(field, values):
    """ResolveRun validates with the schema first: a config it lets through must not fail the job."""
    for value in values:
        document = dataset_config() | {field: value}
        try:
            model = parse_dataset_config(document, "test")
        except DatasetConfigError:
            continue
        pp.parse_config(json.dumps(model.model_dump(mode="json")), "test")


# --- reading the recorded version of the upload --------------------------------------------------


def _two_versions(stack: Any) -> tuple[Any, dict[str, str], bytes]:
    """The upload's v1 (recorded by the run) and a v2 uploaded to the same key before the job runs."""
    import boto3

    s3 = boto3.client("s3")
    upload, artifacts = stack.physical_id("UploadBucket"), stack.physical_id("ArtifactBucket")
    first = csv_text(churn_rows(30, seed=1)).encode()
    v1 = s3.put_object(Bucket=upload, Key="incoming/churn/data.csv", Body=first)["VersionId"]
    s3.put_object(Bucket=upload, Key="incoming/churn/data.csv", Body=csv_text(churn_rows(30, seed=2)).encode())
    arguments = {
        "run_id": "churn-0123456789ab",
        "input_uri": f"s3://{upload}/incoming/churn/data.csv",
        "input_version_id": v1,
        "TempDir": f"s3://{artifacts}/glue-temp/",
    }
    return s3, arguments, first


def test_the_job_reads_the_version_the_run_recorded_not_the_newest(stack):
    s3, arguments, first = _two_versions(stack)
    artifacts = stack.physical_id("ArtifactBucket")
    with pp.pinned_input(arguments, s3_client=s3) as read_uri:
        assert read_uri == f"s3://{artifacts}/glue-temp/stepml-input/churn-0123456789ab/data.csv"
        key = read_uri.removeprefix(f"s3://{artifacts}/")
        assert s3.get_object(Bucket=artifacts, Key=key)["Body"].read() == first
    # The copy is gone, with its version: the versioned artifact bucket keeps nothing of it.
    listed = s3.list_object_versions(Bucket=artifacts, Prefix="glue-temp/")
    assert listed.get("Versions", []) == [] and listed.get("DeleteMarkers", []) == []
    upload = arguments["input_uri"].removeprefix("s3://").split("/", 1)
    assert s3.get_object(Bucket=upload[0], Key=upload[1])["Body"].read() != first, "v2 is still the newest"


def test_a_version_that_cannot_be_read_fails_naming_the_upload_and_version(stack):
    s3, arguments, _ = _two_versions(stack)
    arguments["input_version_id"] = "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY"
    with pytest.raises(pp.PreprocessError) as raised, pp.pinned_input(arguments, s3_client=s3):
        pass
    assert str(raised.value).startswith(
        f"{arguments['input_uri']}: cannot read version 3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY of the upload: "
    )
    del arguments["TempDir"]
    needs_temp_dir = pytest.raises(pp.PreprocessError, match=r"data.csv: --TempDir is needed to read version")
    with needs_temp_dir, pp.pinned_input({**arguments, "input_version_id": "v1"}, s3_client=s3):
        pass


def test_local_paths_and_unversioned_objects_are_read_as_given(tmp_path):
    local = {"run_id": "r1", "input_uri": str(tmp_path / "data.csv"), "input_version_id": "v1"}
    with pp.pinned_input(local, s3_client=None) as read_uri:
        assert read_uri == local["input_uri"], "the local Glue engine stages the version itself"
    unversioned = {"run_id": "r1", "input_uri": "s3://u/incoming/churn/a.csv", "input_version_id": "null"}
    with pp.pinned_input(unversioned, s3_client=None) as read_uri:
        assert read_uri == unversioned["input_uri"]


def test_errors_about_the_pinned_copy_name_the_upload(spark, tmp_path):
    staged = tmp_path / "glue-temp" / "stepml-input" / "r1" / "data.csv"
    staged.parent.mkdir(parents=True)
    staged.write_text(csv_text([]))
    arguments = {
        "run_id": "r1",
        "input_uri": "s3://uploads/incoming/churn/data.csv",
        "output_uri": f"{tmp_path}/out/",
        "dataset_config": json.dumps(dataset_config()),
    }
    with pytest.raises(pp.PreprocessError) as raised:
        pp.run(spark, arguments, read_uri=str(staged))
    assert str(raised.value) == "s3://uploads/incoming/churn/data.csv: the file has a header but no data rows"
