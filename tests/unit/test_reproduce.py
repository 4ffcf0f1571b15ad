"""``stepml.reproduce``: the model file's hash ignores the archive's times; the report names what differs."""

from __future__ import annotations

import io
import tarfile

import boto3
import pytest
from moto import mock_aws

from stepml.reproduce import ReproduceError, compare, model_hash

BUCKET = "stepml-artifacts"


@pytest.fixture
def s3(aws_credentials):
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _put_model(s3, key: str, model: bytes, mtime: int, name: str = "xgboost-model") -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(model), mtime
        tar.addfile(info, io.BytesIO(model))
    s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())
    return f"s3://{BUCKET}/{key}"


def _run(run_id: str, model_data: str, *, version: str = "v1", seed: str | None = None, auc: float = 0.9) -> tuple:
    hyperparameters = {"max_depth": "4", **({"seed": seed} if seed else {})}
    run = {
        "run_id": run_id,
        "input": {"uri": "s3://up/incoming/churn/a.csv", "version_id": version, "etag": "e1"},
        "config": {"label": "churned"},
        "hyperparameters": hyperparameters,
        "code_version": "c1",
    }
    steps = {
        "preprocess": {"outputs": {"fingerprint": "sha256:f", "row_counts": {"train": 70}}},
        "train": {"outputs": {"model_data": model_data}, "parameters": {"training_image": "xgboost:1.7-1"}},
        "evaluate": {"outputs": {"metrics": {"auc": auc}}},
    }
    return run, steps


def test_the_same_model_file_in_archives_of_different_times_is_identical(s3):
    first = _put_model(s3, "a/model.tar.gz", b"trees", mtime=1_000)
    second = _put_model(s3, "b/model.tar.gz", b"trees", mtime=2_000)
    assert s3.get_object(Bucket=BUCKET, Key="a/model.tar.gz")["Body"].read() != (
        s3.get_object(Bucket=BUCKET, Key="b/model.tar.gz")["Body"].read()
    )
    report = compare(_run("churn-a", first), _run("churn-b", second), s3)
    assert report["model_identical"] and report["metrics_equal"] and report["differences"] == []
    assert report["explanation"] == "reproduced: the same model file, byte for byte, and the same metrics"


def test_a_different_model_names_the_lineage_fields_that_differ(s3):
    first = _put_model(s3, "a/model.tar.gz", b"trees", mtime=1_000)
    second = _put_model(s3, "b/model.tar.gz", b"other trees", mtime=1_000)
    report = compare(_run("churn-a", first), _run("churn-b", second, version="v2", seed="7", auc=0.8), s3)
    assert not report["model_identical"] and not report["metrics_equal"]
    assert [d["field"] for d in report["differences"]] == ["data version", "hyperparameters", "seed"]
    assert report["differences"][2] == {"field": "seed", "original": "0 (the algorithm's default)", "reproduction": "7"}
    assert report["explanation"] == "not reproduced; what differs between the runs: data version, hyperparameters, seed"

    same_inputs = compare(_run("churn-a", first), _run("churn-b", second), s3)
    assert same_inputs["explanation"].startswith("not reproduced although every recorded input is equal")


def test_an_archive_without_the_model_file_is_an_error_naming_it(s3):
    uri = _put_model(s3, "c/model.tar.gz", b"x", mtime=0, name="something-else")
    with pytest.raises(ReproduceError, match=f"^{uri} holds no xgboost-model$"):
        model_hash(s3, uri)
    with pytest.raises(ReproduceError, match="recorded no model data"):
        model_hash(s3, None)
