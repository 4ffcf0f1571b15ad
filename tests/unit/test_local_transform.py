"""Batch transform jobs on the local cloud: CreateTransformJob's checks, real runs through the
model's containers (XGBoost alone or behind the Scikit-learn preprocessor), outputs in S3,
DescribeTransformJob, StopTransformJob and the Step Functions ``.sync`` integration."""

from __future__ import annotations

import gzip
import json

import boto3
import numpy as np
import pytest
import xgboost as xgb
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from stepml.local.sagemaker.transform_validation import parse_filter
from stepml.local.stepfunctions.sagemaker_integration import error_name
from stepml.local.stepfunctions.tasks import SYNC_POLL_SECONDS_ENV
from tests.unit.sagemaker_helpers import (
    ACCOUNT,
    CONTAINER_STATEMENTS,
    REGION,
    ROLE,
    XGBOOST_IMAGE,
    make_rows,
    model_tarball,
    to_csv,
    wait_for,
)
from tests.unit.stepfunctions.support import EXECUTE_STATE_MACHINES, one_task, run
from tests.unit.test_local_pipeline_model import put_pipeline


def put_model(sagemaker, s3, bucket: str, name: str, role: str = ROLE) -> xgb.Booster:
    features, labels = make_rows(11, 200)
    tarball, booster = model_tarball(features, labels)
    s3.put_object(Bucket=bucket, Key=f"models/{name}/model.tar.gz", Body=tarball)
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=role,
        PrimaryContainer={"Image": XGBOOST_IMAGE, "ModelDataUrl": f"s3://{bucket}/models/{name}/model.tar.gz"},
    )
    return booster


def transform_request(name: str, model: str, bucket: str, prefix: str = "processed/run/test/", **overrides) -> dict:
    """The request the pipeline's batch transform step sends."""
    request = {
        "TransformJobName": name,
        "ModelName": model,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/{prefix}"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "DataProcessing": {"InputFilter": "$[1:]", "JoinSource": "None"},
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 6,
        "TransformOutput": {
            "S3OutputPath": f"s3://{bucket}/transform/{name}/",
            "Accept": "text/csv",
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    request.update(overrides)
    return request


def put_test_split(s3, bucket: str, prefix: str = "processed/run/test/") -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Two part files of labelled rows (label first), as the Glue job writes the test split."""
    parts = []
    for index, seed in enumerate((31, 32)):
        features, labels = make_rows(seed, 40 + index * 15)
        key = f"{prefix}part-0000{index}.csv"
        s3.put_object(Bucket=bucket, Key=key, Body=to_csv(features, labels))
        parts.append((key, features, labels))
    s3.put_object(Bucket=bucket, Key=f"{prefix}_SUCCESS", Body=b"")
    return parts


def wait_for_transform(sagemaker, name: str, timeout: float = 30.0) -> dict:
    return wait_for(
        lambda: sagemaker.describe_transform_job(TransformJobName=name),
        lambda d: d["TransformJobStatus"] in ("Completed", "Failed", "Stopped"),
        timeout,
    )


def read_predictions(s3, bucket: str, key: str) -> list[float]:
    text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert text.endswith("\n") and "\n\n" not in text
    return [float(line) for line in text.splitlines()]


def xgboost_predictions(booster: xgb.Booster, features: np.ndarray) -> list[float]:
    # The same text the rows travel as: six decimals, parsed as float32 by the container.
    rounded = np.array([[float(f"{v:.6f}") for v in row] for row in features], dtype=np.float32)
    return booster.predict(xgb.DMatrix(rounded)).tolist()


# ----------------------------------------------------------------------------- runs


def test_a_transform_job_writes_one_out_object_per_input_with_xgboosts_predictions(engine, sagemaker, s3, bucket):
    booster = put_model(sagemaker, s3, bucket, "stepml-tx")
    parts = put_test_split(s3, bucket)

    sagemaker.create_transform_job(**transform_request("stepml-tx-1", "stepml-tx", bucket))
    described = wait_for_transform(sagemaker, "stepml-tx-1")

    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert "FailureReason" not in described
    assert described["CreationTime"] <= described["TransformStartTime"] <= described["TransformEndTime"]
    assert described["DataProcessing"]["InputFilter"] == "$[1:]"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="transform/stepml-tx-1/")["Contents"]
    assert sorted(item["Key"] for item in listed) == [
        "transform/stepml-tx-1/_SUCCESS.out",
        "transform/stepml-tx-1/part-00000.csv.out",
        "transform/stepml-tx-1/part-00001.csv.out",
    ]
    # An object without records (Spark's marker) gives an empty output (the docs are silent: INFERRED).
    assert s3.get_object(Bucket=bucket, Key="transform/stepml-tx-1/_SUCCESS.out")["Body"].read() == b""
    for key, features, _ in parts:
        name = key.rsplit("/", 1)[1]
        predictions = read_predictions(s3, bucket, f"transform/stepml-tx-1/{name}.out")
        # The label column was dropped by the InputFilter: 4 features reached the model, one answer per row.
        assert predictions == pytest.approx(xgboost_predictions(booster, features), abs=1e-6)
    summaries = sagemaker.list_transform_jobs()["TransformJobSummaries"]
    assert [(s["TransformJobName"], s["TransformJobStatus"]) for s in summaries] == [("stepml-tx-1", "Completed")]
    streams = boto3.client("logs", region_name=REGION).describe_log_streams(logGroupName="/aws/sagemaker/TransformJobs")
    assert [s["logStreamName"].split("/")[0] for s in streams["logStreams"]] == ["stepml-tx-1"]


def test_single_records_joined_to_their_input_and_filtered(engine, sagemaker, s3, bucket):
    booster = put_model(sagemaker, s3, bucket, "stepml-tx")
    parts = put_test_split(s3, bucket)
    request = transform_request(
        "stepml-tx-join",
        "stepml-tx",
        bucket,
        BatchStrategy="SingleRecord",
        MaxConcurrentTransforms=4,  # answers come back in the input's order all the same
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,5]"},
    )
    sagemaker.create_transform_job(**request)
    described = wait_for_transform(sagemaker, "stepml-tx-join")

    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    _, features, labels = parts[0]
    text = s3.get_object(Bucket=bucket, Key="transform/stepml-tx-join/part-00000.csv.out")["Body"].read().decode()
    rows = [line.split(",") for line in text.splitlines()]
    assert [int(row[0]) for row in rows] == labels.tolist()  # the input's label, then the model's answer
    assert [float(row[1]) for row in rows] == pytest.approx(xgboost_predictions(booster, features), abs=1e-6)


def test_an_inference_pipeline_model_transforms_raw_rows(engine, sagemaker, s3, bucket):
    booster, containers = put_pipeline(s3, bucket, "stepml-tx-pipe")
    sagemaker.create_model(ModelName="stepml-tx-pipe", ExecutionRoleArn=ROLE, Containers=containers)
    s3.put_object(
        Bucket=bucket, Key="raw/test/rows.csv", Body="1,1.5,-0.2,0.3,pro\n0,,,0.7,\n1,0.1,0.2,0.3,enterprise\n"
    )
    sagemaker.create_transform_job(
        **transform_request("stepml-tx-pipe-1", "stepml-tx-pipe", bucket, prefix="raw/test/")
    )
    described = wait_for_transform(sagemaker, "stepml-tx-pipe-1")

    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    encoded = np.array([[1.5, -0.2, 0.3, 2], [0.25, -0.5, 0.7, 0], [0.1, 0.2, 0.3, np.nan]], dtype=np.float32)
    predictions = read_predictions(s3, bucket, "transform/stepml-tx-pipe-1/rows.csv.out")
    assert predictions == pytest.approx(booster.predict(xgb.DMatrix(encoded)).tolist(), abs=1e-6)


def test_a_manifest_names_the_inputs_and_gzip_objects_are_decompressed(engine, sagemaker, s3, bucket):
    booster = put_model(sagemaker, s3, bucket, "stepml-tx")
    features, labels = make_rows(41, 30)
    s3.put_object(Bucket=bucket, Key="gz/day1/rows.csv.gz", Body=gzip.compress(to_csv(features, labels).encode()))
    s3.put_object(Bucket=bucket, Key="gz/day2/ignored.csv.gz", Body=b"not listed in the manifest")
    manifest = [{"prefix": f"s3://{bucket}/gz/"}, "day1/rows.csv.gz"]
    s3.put_object(Bucket=bucket, Key="manifests/test.json", Body=json.dumps(manifest))
    source = {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": f"s3://{bucket}/manifests/test.json"}}
    request = transform_request("stepml-tx-manifest", "stepml-tx", bucket)
    request["TransformInput"] = {**request["TransformInput"], "DataSource": source, "CompressionType": "Gzip"}
    sagemaker.create_transform_job(**request)
    described = wait_for_transform(sagemaker, "stepml-tx-manifest")

    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    keys = [
        item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix="transform/stepml-tx-manifest/")["Contents"]
    ]
    assert keys == ["transform/stepml-tx-manifest/day1/rows.csv.gz.out"]
    predictions = read_predictions(s3, bucket, keys[0])
    assert predictions == pytest.approx(xgboost_predictions(booster, features), abs=1e-6)


# ----------------------------------------------------------------------------- failures


def test_a_model_error_fails_the_job_naming_the_input_object_after_the_other_objects(engine, sagemaker, s3, bucket):
    put_model(sagemaker, s3, bucket, "stepml-tx")
    put_test_split(s3, bucket)
    # Listed between part-00000.csv and part-00001.csv: the job goes on past it, as AWS's does.
    s3.put_object(Bucket=bucket, Key="processed/run/test/part-00000a.csv", Body="1,a,b,c,d\n")
    sagemaker.create_transform_job(**transform_request("stepml-tx-bad", "stepml-tx", bucket))
    described = wait_for_transform(sagemaker, "stepml-tx-bad")

    assert described["TransformJobStatus"] == "Failed"
    assert described["FailureReason"].startswith(
        "ClientError: Bad HTTP status received from algorithm: 415 (container primary) for a mini-batch of "
        f"s3://{bucket}/processed/run/test/part-00000a.csv: "
    )
    assert "'a' is not a number" in described["FailureReason"]
    # Every other object was written, the one after the failing one too; nothing of the failing one.
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix="transform/stepml-tx-bad/")["Contents"]]
    assert sorted(keys) == ["transform/stepml-tx-bad/_SUCCESS.out"] + [
        f"transform/stepml-tx-bad/part-0000{i}.csv.out" for i in (0, 1)
    ]


def test_an_empty_prefix_fails_the_job_as_sagemaker_words_it(engine, sagemaker, s3, bucket):
    put_model(sagemaker, s3, bucket, "stepml-tx")
    sagemaker.create_transform_job(**transform_request("stepml-tx-none", "stepml-tx", bucket, prefix="nothing/"))
    described = wait_for_transform(sagemaker, "stepml-tx-none")

    assert described["TransformJobStatus"] == "Failed"
    assert described["FailureReason"].startswith(
        f'ClientError: No S3 objects found under S3 URL "s3://{bucket}/nothing/" given in input data source.'
    )


def test_transform_faults_throttle_create_then_fail_the_job_with_a_reason(engine, s3, bucket, fault_switch):
    # One attempt per call, as the state machine's client makes (the SDK would retry throttling itself).
    sagemaker = boto3.client(
        "sagemaker", region_name=REGION, config=Config(parameter_validation=False, retries={"total_max_attempts": 1})
    )
    put_model(sagemaker, s3, bucket, "stepml-tx")
    put_test_split(s3, bucket)
    fault_switch.load("sagemaker:CreateTransformJob@stepml-tx-fault=1,sagemaker:TransformJob@stepml-tx-fault=1")
    request = transform_request("stepml-tx-fault", "stepml-tx", bucket)
    with pytest.raises(ClientError) as throttled:
        sagemaker.create_transform_job(**request)
    assert throttled.value.response["Error"] == {
        "Code": "ThrottlingException",
        "Message": "Rate exceeded (local fault sagemaker:CreateTransformJob)",
    }
    assert error_name("ThrottlingException") == "SageMaker.AmazonSageMakerException", "what the ASL retries"
    assert sagemaker.list_transform_jobs()["TransformJobSummaries"] == [], "a throttled create makes no job"

    sagemaker.create_transform_job(**request)
    described = wait_for_transform(sagemaker, "stepml-tx-fault")
    assert described["TransformJobStatus"] == "Failed"
    assert described["FailureReason"] == (
        "InternalServerError: We encountered an internal error. Please try again. (local fault sagemaker:TransformJob)"
    )
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="transform/stepml-tx-fault/")
    assert fault_switch.hit_count("sagemaker:TransformJob", "stepml-tx-fault") == 1


def test_stop_transform_job_stops_a_running_job(engine, sagemaker, s3, bucket):
    put_model(sagemaker, s3, bucket, "stepml-tx")
    put_test_split(s3, bucket)
    sagemaker.create_transform_job(**transform_request("stepml-tx-stop", "stepml-tx", bucket))
    running = sagemaker.list_transform_jobs(StatusEquals="InProgress")["TransformJobSummaries"]
    assert [(s["TransformJobName"], "TransformEndTime" in s) for s in running] == [("stepml-tx-stop", False)]
    sagemaker.stop_transform_job(TransformJobName="stepml-tx-stop")
    assert sagemaker.describe_transform_job(TransformJobName="stepml-tx-stop")["TransformJobStatus"] in (
        "Stopping",
        "Stopped",
    )
    described = wait_for_transform(sagemaker, "stepml-tx-stop")

    assert described["TransformJobStatus"] == "Stopped"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="transform/stepml-tx-stop/")
    with pytest.raises(ClientError) as stopped:
        sagemaker.stop_transform_job(TransformJobName="stepml-tx-stop")
    assert stopped.value.response["Error"] == {
        "Code": "ValidationException",
        "Message": "The request was rejected because the transform job is in status Stopped.",
    }
    with pytest.raises(ClientError) as unknown:
        sagemaker.stop_transform_job(TransformJobName="stepml-tx-unknown")
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFound"
    assert unknown.value.response["Error"]["Message"] == (
        f"Could not find transform job 'arn:aws:sagemaker:{REGION}:{ACCOUNT}:transform-job/stepml-tx-unknown'."
    )


def refused(sagemaker, request: dict) -> dict:
    with pytest.raises(ClientError) as raised:
        sagemaker.create_transform_job(**request)
    return raised.value.response["Error"]


def test_create_transform_job_refuses_a_missing_model_and_a_taken_name(engine, sagemaker, s3, bucket):
    put_model(sagemaker, s3, bucket, "stepml-tx")
    put_test_split(s3, bucket)
    assert refused(sagemaker, transform_request("stepml-tx-a", "stepml-nomodel", bucket)) == {
        "Code": "ValidationException",
        "Message": f'Could not find model "arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/stepml-nomodel".',
    }
    sagemaker.create_transform_job(**transform_request("stepml-tx-a", "stepml-tx", bucket))
    error = refused(sagemaker, transform_request("stepml-tx-a", "stepml-tx", bucket))
    assert error["Code"] == "ResourceInUse"
    assert error["Message"] == (
        "Job name must be unique within an AWS account and region, and a job with this name already exists "
        f"(arn:aws:sagemaker:{REGION}:{ACCOUNT}:transform-job/stepml-tx-a)"
    )
    assert wait_for_transform(sagemaker, "stepml-tx-a")["TransformJobStatus"] == "Completed"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"MaxPayloadInMB": 101}, "MaxPayloadInMB 101 is greater than the maximum payload size of 100 MB."),
        (
            {"MaxPayloadInMB": 50, "MaxConcurrentTransforms": 3},
            "MaxConcurrentTransforms * MaxPayloadInMB (3 * 50 = 150 MB) must not exceed 100 MB.",
        ),
        ({"MaxPayloadInMB": 0}, "MaxPayloadInMB 0 asks for HTTP chunked encoding"),
        ({"DataProcessing": {"InputFilter": "$.features"}}, "Invalid DataProcessing.InputFilter '$.features'"),
        ({"DataProcessing": {"OutputFilter": "$[a]"}}, "Invalid DataProcessing.OutputFilter '$[a]': 'a' is neither"),
        ({"DataProcessing": {"InputFilter": "$[1:4:2]"}}, "Invalid DataProcessing.InputFilter '$[1:4:2]'"),
        (
            {"BatchStrategy": "Bulk"},
            "Value 'Bulk' at 'batchStrategy' failed to satisfy constraint: Member must satisfy enum value set: "
            "[MultiRecord, SingleRecord]",
        ),
        (
            {"TransformResources": {"InstanceType": "ml.t2.medium", "InstanceCount": 1}},
            "Value 'ml.t2.medium' at 'transformResources.instanceType' failed to satisfy constraint",
        ),
        (
            {"TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 0}},
            "TransformResources.InstanceCount, value: 0, valid min value: 1",
        ),
    ],
)
def test_create_transform_job_refuses_bad_requests(engine, sagemaker, s3, bucket, overrides, message):
    put_model(sagemaker, s3, bucket, "stepml-tx")
    error = refused(sagemaker, transform_request("stepml-tx-bad", "stepml-tx", bucket, **overrides))
    assert error["Code"] == "ValidationException"
    assert message in error["Message"]
    assert sagemaker.list_transform_jobs()["TransformJobSummaries"] == []


def test_what_the_local_cloud_cannot_run_is_refused_by_name(engine, sagemaker, s3, bucket):
    put_model(sagemaker, s3, bucket, "stepml-tx")
    base = transform_request("stepml-tx-local", "stepml-tx", bucket)
    json_input = {**base["TransformInput"], "ContentType": "application/json"}
    record_io = {**base["TransformInput"], "SplitType": "RecordIO"}
    for overrides, message in [
        ({"TransformInput": json_input}, "the local cloud does not support input filters"),
        ({"TransformInput": record_io}, "TransformInput.SplitType RecordIO: the local cloud does not support it"),
        ({"DataCaptureConfig": {"DestinationS3Uri": f"s3://{bucket}/c/"}}, "data capture of batch transform"),
    ]:
        error = refused(sagemaker, {**base, **overrides})
        assert (error["Code"], message in error["Message"]) == ("ValidationException", True), error


def test_csv_filters_select_columns_as_jsonpath_does():
    cells = ["a", "b", "c", "d", "e", "f"]
    assert parse_filter("$", "InputFilter").apply(cells) == cells
    assert parse_filter(None, "InputFilter").apply(cells) == cells
    assert parse_filter("$[1:]", "InputFilter").apply(cells) == cells[1:]
    assert parse_filter("$[0,5:]", "OutputFilter").apply(cells) == ["a", "f"]
    assert parse_filter("$[:2]", "OutputFilter").apply(cells) == ["a", "b"]
    assert parse_filter("$[2, 4]", "OutputFilter").apply(cells) == ["c", "e"]
    with pytest.raises(ValueError, match=r"selects index 9 of a record with 6 columns"):
        parse_filter("$[9]", "OutputFilter").apply(cells)
    # Negative indexes count from the end, as SageMaker documents ("A -1 index refers to the last element").
    assert parse_filter("$[-1]", "OutputFilter").apply(cells) == ["f"]
    assert parse_filter("$[0,-2]", "OutputFilter").apply(cells) == ["a", "e"]
    assert parse_filter("$[-2:]", "OutputFilter").apply(cells) == ["e", "f"]
    assert parse_filter("$[1:-1]", "InputFilter").apply(cells) == ["b", "c", "d", "e"]
    with pytest.raises(ValueError, match=r"selects index -7 of a record with 6 columns"):
        parse_filter("$[-7]", "OutputFilter").apply(cells)


# ----------------------------------------------------------------------------- Step Functions .sync


@pytest.fixture
def sfn_stack(aws_credentials, monkeypatch, sagemaker_engines):
    monkeypatch.setenv(SYNC_POLL_SECONDS_ENV, "0.02")
    with mock_aws(config=EXECUTE_STATE_MACHINES):
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="stepml-sfn")
        sagemaker_engines(boto3.Session(region_name=REGION))
        yield "stepml-sfn"


def test_the_sync_integration_polls_a_transform_job_to_completed(sfn_stack, s3, sagemaker):
    put_model(sagemaker, s3, sfn_stack, "stepml-tx")
    put_test_split(s3, sfn_stack)
    task = {
        "Resource": "arn:aws:states:::sagemaker:createTransformJob.sync",
        "Parameters": transform_request("stepml-tx-sfn", "stepml-tx", sfn_stack),
        "ResultSelector": {"status.$": "$.TransformJobStatus", "output.$": "$.TransformOutput.S3OutputPath"},
    }
    execution = run(one_task(task))

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert execution.output == {"status": "Completed", "output": f"s3://{sfn_stack}/transform/stepml-tx-sfn/"}
    assert "Contents" in s3.list_objects_v2(Bucket=sfn_stack, Prefix="transform/stepml-tx-sfn/part-00000.csv.out")


def test_the_sync_integration_fails_the_task_when_the_job_fails(sfn_stack, s3, sagemaker):
    put_model(sagemaker, s3, sfn_stack, "stepml-tx")
    task = {
        "Resource": "arn:aws:states:::sagemaker:createTransformJob.sync",
        "Parameters": transform_request("stepml-tx-sfn-empty", "stepml-tx", sfn_stack, prefix="nothing/"),
    }
    execution = run(one_task(task))

    assert execution.status == "FAILED"
    assert execution.describe["error"] == "States.TaskFailed"
    cause = json.loads(execution.describe["cause"])
    assert cause["TransformJobStatus"] == "Failed"
    assert cause["FailureReason"].startswith("ClientError: No S3 objects found under S3 URL")


# ----------------------------------------------------------------------------- the execution role


@pytest.mark.parametrize("missing", ["list", "write"])
def test_a_role_that_may_not_read_the_input_or_write_the_output_fails_the_job(
    gated_moto, tmp_path, sagemaker_engines, missing
):
    """Under the IAM gate: the job reads its input and writes its output as the model's execution
    role; a role without the right fails the job (Failed, ClientError) naming AWS's denial."""
    s3 = gated_moto.client("s3")
    s3.create_bucket(Bucket="stepml-gated")
    statements = [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::stepml-gated/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::stepml-gated"},
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::stepml-gated/transform/*"},
        *CONTAINER_STATEMENTS,
    ]
    dropped = {"list": "s3:ListBucket", "write": "s3:PutObject"}[missing]
    role = gated_moto.role(
        f"sagemaker-tx-without-{missing}", "sagemaker.amazonaws.com", [s for s in statements if s["Action"] != dropped]
    )
    session = boto3.Session(region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local")
    engine = sagemaker_engines(session, endpoint_url=gated_moto.url, work_dir=tmp_path / "sagemaker")
    try:
        sagemaker = gated_moto.client("sagemaker")
        put_model(sagemaker, s3, "stepml-gated", "stepml-tx", role=role)
        put_test_split(s3, "stepml-gated")
        sagemaker.create_transform_job(**transform_request("stepml-tx-gated", "stepml-tx", "stepml-gated"))
        failed = wait_for_transform(sagemaker, "stepml-tx-gated")
    finally:
        engine.shutdown()  # before the checks: no engine thread may record more

    assert failed["TransformJobStatus"] == "Failed"
    session_arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/sagemaker-tx-without-{missing}/"
    denied = [(r.action, r.resource) for r in gated_moto.authorizer.recorder.snapshot() if not r.allowed]
    if missing == "list":
        assert failed["FailureReason"].startswith(
            "ClientError: Failed to list the input objects under s3://stepml-gated/processed/run/test/: "
            f"AccessDenied: User: {session_arn}"
        )
        assert denied == [("s3:ListBucket", "arn:aws:s3:::stepml-gated")]
    else:
        assert failed["FailureReason"].startswith(
            "ClientError: Failed to upload the output s3://stepml-gated/transform/stepml-tx-gated/_SUCCESS.out: "
            f"AccessDenied: User: {session_arn}"
        )
        output = "arn:aws:s3:::stepml-gated/transform/stepml-tx-gated/_SUCCESS.out"
        assert denied == [("s3:PutObject", output)]
    assert "Contents" not in s3.list_objects_v2(Bucket="stepml-gated", Prefix="transform/")
