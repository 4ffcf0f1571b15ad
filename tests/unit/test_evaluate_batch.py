"""Evaluate in batch mode: labels from the test split, predictions from Batch Transform's .out
files, matched file by file and line by line, against moto's S3 in process."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from stepml import metrics
from stepml.config import parse_dataset_config
from stepml.evaluation import EvaluationError
from stepml.evaluation_batch import evaluate_batch
from stepml.lineage_runs import artifact_paths, resource_names
from tests.helpers import CHURN_CONFIG

BUCKET = "stepml-artifacts"
RUN_ID = "churn-0123456789ab"


def make_run(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": RUN_ID,
        "dataset": "churn",
        "attempt": 1,
        "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:pipeline:exec-1",
        "input": {
            "bucket": "u",
            "key": "incoming/churn/a.csv",
            "version_id": "v1",
            "etag": "",
            "size": 1,
            "uri": "s3://u/incoming/churn/a.csv",
        },
        "config": config,
        "hyperparameters": {},
        "names": resource_names(RUN_ID, 1, "stepml-production"),
        "paths": artifact_paths(BUCKET, "churn", RUN_ID),
        "endpoint_poll_seconds": 5,
        "approval_timeout_seconds": 60,
        "code_version": "abc",
    }


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _key(uri: str) -> str:
    return uri.removeprefix(f"s3://{BUCKET}/")


def put(s3: Any, uri: str, text: str) -> None:
    s3.put_object(Bucket=BUCKET, Key=_key(uri), Body=text.encode())


ROW = "12,70.5,846.0,2,month-to-month,card,fiber"


def write_split(s3: Any, run: dict[str, Any], files: dict[str, list[int]]) -> None:
    for name, labels in files.items():
        put(s3, run["paths"]["test"] + name, "".join(f"{label},{ROW}\n" for label in labels))
    put(s3, run["paths"]["test"] + "_SUCCESS", "")


def write_outputs(s3: Any, prefix: str, files: dict[str, list[float]]) -> None:
    for name, predictions in files.items():
        put(s3, prefix + name + ".out", "".join(f"{p}\n" for p in predictions))


def scoring(run: dict[str, Any], champion: bool = False) -> dict[str, Any]:
    names, transform = run["names"], run["paths"]["transform"]
    job = lambda name: {"job_name": names[name], "output": f"{transform}{names[name]}/"}  # noqa: E731
    return {
        "mode": "batch",
        "challenger": job("challenger_transform_job"),
        "champion": job("champion_transform_job") if champion else None,
    }


LABELS = {"part-00000-a.csv": [1, 0, 1, 0, 1], "part-00001-a.csv": [0, 0, 1]}
GOOD = {"part-00000-a.csv": [0.9, 0.2, 0.8, 0.3, 0.6], "part-00001-a.csv": [0.1, 0.4, 0.7]}
WEAK = {"part-00000-a.csv": [0.6, 0.5, 0.4, 0.3, 0.2], "part-00001-a.csv": [0.9, 0.1, 0.5]}
CHAMPION = {"in_service": True, "endpoint": "stepml-production", "endpoint_config": "c-1", "model": "m-1"}


def test_batch_metrics_equal_what_the_endpoint_path_computes_on_the_same_rows(s3: Any) -> None:
    run = make_run(parse_dataset_config({**CHURN_CONFIG, "threshold": 0.7}, "c").model_dump(mode="json"))
    write_split(s3, run, LABELS)
    jobs = scoring(run, champion=True)
    write_outputs(s3, jobs["challenger"]["output"], GOOD)
    write_outputs(s3, jobs["champion"]["output"], WEAK)

    result = evaluate_batch(run, jobs, s3_client=s3, champion=CHAMPION)

    labels = np.array(LABELS["part-00000-a.csv"] + LABELS["part-00001-a.csv"], dtype=float)
    good = np.array(GOOD["part-00000-a.csv"] + GOOD["part-00001-a.csv"])
    assert result["metrics"] == metrics.compute_metrics("binary", labels, good)
    assert result["rows"] == 8 and result["passed"] is True and result["value"] == 1.0
    assert result["production"]["transform_job"] == jobs["champion"]["job_name"]
    assert result["production"]["challenger_better"] is True
    assert result["scoring"]["challenger"]["job_name"] == run["names"]["challenger_transform_job"]
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=_key(result["report_uri"]))["Body"].read())
    assert report["preprocessing"] == "transform" and report["endpoint_name"] is None
    assert report["transform_jobs"] == [jobs["challenger"]["job_name"], jobs["champion"]["job_name"]]
    assert report["feature_sample_rows"] == 8
    assert sum(map(sum, report["confusion_matrix"]["matrix"])) == 8


def test_a_line_count_mismatch_is_an_error_naming_both_files(s3: Any) -> None:
    run = make_run(parse_dataset_config(CHURN_CONFIG, "c").model_dump(mode="json"))
    write_split(s3, run, LABELS)
    jobs = scoring(run)
    write_outputs(s3, jobs["challenger"]["output"], {**GOOD, "part-00001-a.csv": [0.1, 0.4]})
    output = jobs["challenger"]["output"] + "part-00001-a.csv.out"
    test_file = run["paths"]["test"] + "part-00001-a.csv"
    with pytest.raises(EvaluationError) as raised:
        evaluate_batch(run, jobs, s3_client=s3, champion={"in_service": False})
    assert str(raised.value) == (
        f"transform output {output}: row count mismatch: 2 prediction line(s) for the 3 row(s) of test file {test_file}"
    )


def test_a_missing_output_and_a_bad_prediction_are_errors_naming_the_file(s3: Any) -> None:
    run = make_run(parse_dataset_config(CHURN_CONFIG, "c").model_dump(mode="json"))
    write_split(s3, run, LABELS)
    jobs = scoring(run)
    write_outputs(s3, jobs["challenger"]["output"], {"part-00000-a.csv": GOOD["part-00000-a.csv"]})
    with pytest.raises(EvaluationError, match=re.escape("part-00001-a.csv.out: missing; the challenger's job wrote")):
        evaluate_batch(run, jobs, s3_client=s3, champion={"in_service": False})
    put(s3, jobs["challenger"]["output"] + "part-00001-a.csv.out", "0.1\nnope\n0.3\n")
    with pytest.raises(
        EvaluationError, match=r"part-00001-a.csv.out: prediction 2 holds 'nope', which is not a number"
    ):
        evaluate_batch(run, jobs, s3_client=s3, champion={"in_service": False})


def test_multiclass_outputs_are_read_bracketed_or_plain(s3: Any) -> None:
    config = parse_dataset_config(
        {
            **CHURN_CONFIG,
            "problem_type": "multiclass",
            "classes": ["a", "b", "c"],
            "metric": "accuracy",
            "threshold": 0.5,
        },
        "c",
    ).model_dump(mode="json")
    run = make_run(config)
    write_split(s3, run, {"part-0.csv": [0, 1, 2], "part-1.csv": [2]})
    jobs = scoring(run)
    put(s3, jobs["challenger"]["output"] + "part-0.csv.out", "[0.8, 0.1, 0.1]\n[0.1,0.8,0.1]\n[0.1,0.1,0.8]\n")
    put(s3, jobs["challenger"]["output"] + "part-1.csv.out", "0.2,0.2,0.6\n")
    result = evaluate_batch(run, jobs, s3_client=s3, champion={"in_service": False})
    assert result["metrics"]["accuracy"] == 1.0 and result["rows"] == 4


# --- the endpoint path reads the same headerless split ---------------------------------------------


def test_the_endpoint_path_reads_a_headerless_split_with_the_configs_column_names(s3: Any) -> None:
    from stepml.evaluation_split import SplitError, read_test_split

    config = parse_dataset_config(CHURN_CONFIG, "c").model_dump(mode="json")
    run = make_run(config)
    write_split(s3, run, LABELS)
    split = read_test_split(run["paths"]["test"], config, boto3_session=boto3.Session(region_name="us-east-1"))
    assert split.label_column == "churned" and split.rows == 8
    assert split.labels.tolist() == [float(v) for v in LABELS["part-00000-a.csv"] + LABELS["part-00001-a.csv"]]
    assert set(split.endpoint_rows) == {ROW}
    # A split written before, with a header in each file, still reads: the header names the columns.
    header = "churned," + ",".join(f["name"] for f in config["features"])
    put(s3, run["paths"]["test"] + "part-00000-a.csv", f"{header}\n1,{ROW}\n")
    assert read_test_split(run["paths"]["test"], config, boto3_session=boto3.Session(region_name="us-east-1")).rows == 4
    put(s3, run["paths"]["test"] + "part-00000-a.csv", "1,12,70.5\n")
    put(s3, run["paths"]["test"] + "part-00001-a.csv", "0,13,71.5\n")
    with pytest.raises(SplitError, match=r"rows have 3 column\(s\), expected 8: the label then the features"):
        read_test_split(run["paths"]["test"], config, boto3_session=boto3.Session(region_name="us-east-1"))
