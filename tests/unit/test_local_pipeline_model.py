"""Inference pipelines on the local cloud: CreateModel's container rules, and an endpoint that
runs the preprocessor (Scikit-learn script mode) then XGBoost, as SageMaker runs a serial pipeline."""

from __future__ import annotations

import io
import json
import tarfile

import boto3
import numpy as np
import pytest
import xgboost as xgb
from botocore.exceptions import ClientError

from stepml import preprocessor
from tests.unit.sagemaker_helpers import (
    ACCOUNT,
    CONTAINER_STATEMENTS,
    REGION,
    ROLE,
    XGBOOST_IMAGE,
    capture_records,
    endpoint_config,
    make_rows,
    model_tarball,
    wait_for,
)

SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
SKLEARN_REPOSITORY = "arn:aws:ecr:us-east-1:683313688378:repository/sagemaker-scikit-learn"
PLANS = {"__missing__": 0, "basic": 1, "pro": 2}
ENCODING = {
    "features": [
        {"name": "x0", "type": "numeric"},
        {"name": "x1", "type": "numeric"},
        {"name": "x2", "type": "numeric"},
        {"name": "plan", "type": "categorical"},
    ],
    "categories": {"plan": PLANS},
    "missing_category": "__missing__",
    "medians": {"x0": 0.25, "x1": -0.5, "x2": 0.0},
    "number_pattern": r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$",
}


def put_pipeline(s3, bucket: str, name: str) -> tuple[xgb.Booster, list[dict]]:
    """The preprocessor's and XGBoost's model data in S3; the booster and the Containers."""
    features, labels = make_rows(21, 200)
    features[:, 3] = np.arange(200) % 3  # the plan's codes
    tarball, booster = model_tarball(features, labels)
    s3.put_object(Bucket=bucket, Key=f"models/{name}/model.tar.gz", Body=tarball)
    archive = preprocessor.build_archive(json.dumps(ENCODING).encode())
    s3.put_object(Bucket=bucket, Key=f"processed/{name}/preprocessor/model.tar.gz", Body=archive)
    containers = [
        preprocessor.container(SKLEARN_IMAGE, f"s3://{bucket}/processed/{name}/preprocessor/model.tar.gz"),
        {"Image": XGBOOST_IMAGE, "ModelDataUrl": f"s3://{bucket}/models/{name}/model.tar.gz"},
    ]
    return booster, containers


def start(sagemaker, name: str) -> dict:
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return wait_for(lambda: sagemaker.describe_endpoint(EndpointName=name), lambda d: d["EndpointStatus"] != "Creating")


def test_raw_rows_go_through_the_preprocessor_then_xgboost_and_capture_keeps_the_raw_request(
    engine, sagemaker, s3, runtime, bucket
):
    booster, containers = put_pipeline(s3, bucket, "stepml-pipe")
    sagemaker.create_model(
        ModelName="stepml-pipe", ExecutionRoleArn=ROLE, Containers=containers, EnableNetworkIsolation=True
    )
    sagemaker.create_endpoint_config(**endpoint_config("stepml-pipe", capture_uri=f"s3://{bucket}/data-capture/p/"))
    described = start(sagemaker, "stepml-pipe")
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")

    payload = "1.5,-0.2,0.3,pro\n,,0.7,\n0.1,0.2,0.3,enterprise"
    answer = runtime.invoke_endpoint(
        EndpointName="stepml-pipe", Body=payload, ContentType="text/csv", Accept="text/csv"
    )
    body = answer["Body"].read().decode()
    # What the preprocessor made of the rows: a blank number is its median, a blank plan __missing__'s
    # code, an unknown plan no code (XGBoost's missing value).
    encoded = np.array([[1.5, -0.2, 0.3, 2], [0.25, -0.5, 0.7, 0], [0.1, 0.2, 0.3, np.nan]], dtype=np.float32)
    expected = booster.predict(xgb.DMatrix(encoded))
    assert answer["ContentType"] == "text/csv"
    assert [float(v) for v in body.split(",")] == pytest.approx(expected.tolist())

    records = wait_for(lambda: capture_records(s3, bucket, "data-capture/p/"), lambda found: len(found) >= 1)
    _, record = records[0]
    assert record["captureData"]["endpointInput"]["data"] == payload
    assert record["captureData"]["endpointOutput"]["data"] == body


def test_a_row_the_preprocessor_refuses_is_a_client_error_naming_its_container(engine, sagemaker, s3, runtime, bucket):
    _, containers = put_pipeline(s3, bucket, "stepml-pipe-err")
    sagemaker.create_model(ModelName="stepml-pipe-err", ExecutionRoleArn=ROLE, Containers=containers)
    sagemaker.create_endpoint_config(**endpoint_config("stepml-pipe-err"))
    assert start(sagemaker, "stepml-pipe-err")["EndpointStatus"] == "InService"

    with pytest.raises(ClientError) as error:
        runtime.invoke_endpoint(EndpointName="stepml-pipe-err", Body="1.5,-0.2,pro", ContentType="text/csv")
    response = error.value.response
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == ("ModelError", 424)
    assert response["OriginalStatusCode"] == 400
    assert response["Error"]["Message"].startswith(
        'Received client error (400) from container_1 with message "row 1 has 3 column(s), expected 4: '
        "the dataset's features in this order, without the label: x0, x1, x2, plan\""
    )


@pytest.mark.parametrize(
    ("request_members", "message"),
    [
        (
            {"PrimaryContainer": {"Image": XGBOOST_IMAGE}, "Containers": [{"Image": XGBOOST_IMAGE}]},
            "Only one of PrimaryContainer or Containers can be specified.",
        ),
        ({}, "Either PrimaryContainer or Containers must be specified."),
        (
            {"Containers": [{"Image": XGBOOST_IMAGE, "ContainerHostname": "first"}, {"Image": XGBOOST_IMAGE}]},
            "ContainerHostname must be specified for every container of an inference pipeline when it is "
            "specified for one.",
        ),
    ],
)
def test_create_model_refuses_what_sagemaker_refuses(engine, sagemaker, request_members, message):
    with pytest.raises(ClientError) as error:
        sagemaker.create_model(ModelName="stepml-bad", ExecutionRoleArn=ROLE, **request_members)
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert error.value.response["Error"]["Message"] == message


def test_a_pipeline_holds_at_most_fifteen_containers(engine, sagemaker):
    with pytest.raises(ClientError) as error:
        sagemaker.create_model(
            ModelName="stepml-long", ExecutionRoleArn=ROLE, Containers=[{"Image": XGBOOST_IMAGE}] * 16
        )
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "containers" in error.value.response["Error"]["Message"]
    assert "less than or equal to 15" in error.value.response["Error"]["Message"]


def test_code_in_s3_cannot_be_fetched_under_network_isolation(engine, sagemaker, s3, bucket):
    _, containers = put_pipeline(s3, bucket, "stepml-pipe-s3")
    containers[0]["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] = f"s3://{bucket}/code/sourcedir.tar.gz"
    sagemaker.create_model(
        ModelName="stepml-pipe-s3", ExecutionRoleArn=ROLE, Containers=containers, EnableNetworkIsolation=True
    )
    sagemaker.create_endpoint_config(**endpoint_config("stepml-pipe-s3"))
    failed = start(sagemaker, "stepml-pipe-s3")
    assert failed["EndpointStatus"] == "Failed"
    assert failed["FailureReason"] == (
        f"Model stepml-pipe-s3: the container cannot download its code from s3://{bucket}/code/sourcedir.tar.gz: "
        "the model runs with network isolation; pack the code into the model data and set "
        "SAGEMAKER_SUBMIT_DIRECTORY to /opt/ml/model/code"
    )


@pytest.mark.parametrize("missing", ["preprocessor-data", "preprocessor-image"])
def test_the_execution_role_must_read_and_pull_every_container(gated_moto, tmp_path, sagemaker_engines, missing):
    """Under the IAM gate: each container's model data is downloaded and its image pulled with the
    execution role; a role without either for the preprocessor fails the endpoint naming it."""
    s3 = gated_moto.client("s3")
    s3.create_bucket(Bucket="stepml-gated")
    statements = [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::stepml-gated/models/*"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::stepml-gated/processed/*"},
        {
            "Effect": "Allow",
            "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": SKLEARN_REPOSITORY,
        },
        *CONTAINER_STATEMENTS,
    ]
    dropped = {"preprocessor-data": "arn:aws:s3:::stepml-gated/processed/*", "preprocessor-image": SKLEARN_REPOSITORY}
    statements = [s for s in statements if s["Resource"] != dropped[missing]]
    role = gated_moto.role(f"sagemaker-without-{missing}", "sagemaker.amazonaws.com", statements)
    session = boto3.Session(region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local")
    engine = sagemaker_engines(session, endpoint_url=gated_moto.url, work_dir=tmp_path / "sagemaker")
    try:
        sagemaker = gated_moto.client("sagemaker")
        _, containers = put_pipeline(s3, "stepml-gated", "stepml-gated-pipe")
        sagemaker.create_model(
            ModelName="stepml-gated-pipe", ExecutionRoleArn=role, Containers=containers, EnableNetworkIsolation=True
        )
        sagemaker.create_endpoint_config(**endpoint_config("stepml-gated-pipe"))
        failed = start(sagemaker, "stepml-gated-pipe")
    finally:
        engine.shutdown()

    assert failed["EndpointStatus"] == "Failed"
    denied = [(r.action, r.resource) for r in gated_moto.authorizer.recorder.snapshot() if not r.allowed]
    if missing == "preprocessor-data":
        url = "s3://stepml-gated/processed/stepml-gated-pipe/preprocessor/model.tar.gz"
        assert failed["FailureReason"].startswith(
            f'Failed to download model data for container "container_1" from URL: "{url}". Please ensure'
        )
        assert "(An error occurred (AccessDenied) when calling the GetObject operation: " in failed["FailureReason"]
        assert denied == [
            ("s3:GetObject", "arn:aws:s3:::stepml-gated/processed/stepml-gated-pipe/preprocessor/model.tar.gz")
        ]
    else:
        assert failed["FailureReason"].startswith(f"Model stepml-gated-pipe: cannot pull image {SKLEARN_IMAGE}: ")
        assert {resource for _, resource in denied} == {SKLEARN_REPOSITORY}
    assert ACCOUNT in role


def _source_archive() -> bytes:
    """sourcedir.tar.gz as the SageMaker SDK uploads it: the script at the archive's top."""
    buffer = io.BytesIO()
    script = preprocessor.SCRIPT.read_bytes()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("inference.py")
        info.size = len(script)
        tar.addfile(info, io.BytesIO(script))
    return buffer.getvalue()


@pytest.mark.parametrize("readable", [True, False])
def test_code_in_s3_is_fetched_with_the_execution_role(gated_moto, tmp_path, sagemaker_engines, readable):
    """Without network isolation the container fetches an ``s3://`` SAGEMAKER_SUBMIT_DIRECTORY at
    start, with the execution role: served when the role may read it, Failed naming it when not."""
    s3 = gated_moto.client("s3")
    s3.create_bucket(Bucket="stepml-gated")
    s3.put_object(Bucket="stepml-gated", Key="code/sourcedir.tar.gz", Body=_source_archive())
    statements = [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::stepml-gated/models/*"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::stepml-gated/processed/*"},
        {
            "Effect": "Allow",
            "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": SKLEARN_REPOSITORY,
        },
        *CONTAINER_STATEMENTS,
    ]
    if readable:
        statements.append({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::stepml-gated/code/*"})
    role = gated_moto.role(f"sagemaker-code-{readable}".lower(), "sagemaker.amazonaws.com", statements)
    session = boto3.Session(region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local")
    engine = sagemaker_engines(session, endpoint_url=gated_moto.url, work_dir=tmp_path / "sagemaker")
    try:
        sagemaker = gated_moto.client("sagemaker")
        _, containers = put_pipeline(s3, "stepml-gated", "stepml-code")
        containers[0]["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] = "s3://stepml-gated/code/sourcedir.tar.gz"
        sagemaker.create_model(ModelName="stepml-code", ExecutionRoleArn=role, Containers=containers)
        sagemaker.create_endpoint_config(**endpoint_config("stepml-code"))
        described = start(sagemaker, "stepml-code")
        if readable:
            answer = gated_moto.client("sagemaker-runtime").invoke_endpoint(
                EndpointName="stepml-code", Body="1.5,-0.2,0.3,pro", ContentType="text/csv"
            )
            # No Accept: the last container answers its default, JSON.
            [score] = json.loads(answer["Body"].read())
            assert 0.0 <= score <= 1.0
    finally:
        engine.shutdown()

    if readable:
        assert described["EndpointStatus"] == "InService", described.get("FailureReason")
        return
    assert described["EndpointStatus"] == "Failed"
    assert described["FailureReason"].startswith(
        'Failed to download the code from "s3://stepml-gated/code/sourcedir.tar.gz". Please ensure that there is '
        "an object located at the URL and that the role passed to CreateModel has permissions to download the object."
    )
    denied = [(r.action, r.resource) for r in gated_moto.authorizer.recorder.snapshot() if not r.allowed]
    assert denied == [("s3:GetObject", "arn:aws:s3:::stepml-gated/code/sourcedir.tar.gz")]
