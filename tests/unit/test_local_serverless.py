"""Serverless endpoints on the local cloud: CreateEndpointConfig takes ``ServerlessConfig`` only as
SageMaker does (memory in 1 GB steps from 1024 to 6144 MB, concurrency 1 to 200, one production
variant, no data capture, no inference pipeline), and an endpoint on such a config serves as an
instance-backed one does, describing its serverless config instead of instance counts, within
serverless limits: 4 MB of request and response body (6 MB for an instance-backed one),
MaxConcurrency invocations at once (one more is throttled at once). Evaluate's requests fit both:
bodies cut by bytes, throttles retried."""

from __future__ import annotations

import copy
import re
import threading

import boto3
import numpy as np
import pytest
import xgboost as xgb
from botocore.config import Config
from botocore.exceptions import ClientError

from stepml.config import DatasetConfigError, parse_dataset_config
from stepml.evaluation import MAX_REQUEST_BYTES, RUNTIME_CLIENT_CONFIG, EvaluationError, request_batches, score_endpoint
from stepml.local.sagemaker import hosting
from tests.helpers import CHURN_CONFIG
from tests.unit.sagemaker_helpers import (
    REGION,
    ROLE,
    XGBOOST_IMAGE,
    expected_csv,
    make_rows,
    model_tarball,
    to_csv,
    wait_for,
)


def _model(sagemaker, s3, bucket: str, name: str, tarball: bytes) -> None:
    s3.put_object(Bucket=bucket, Key=f"models/{name}/model.tar.gz", Body=tarball)
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": XGBOOST_IMAGE, "ModelDataUrl": f"s3://{bucket}/models/{name}/model.tar.gz"},
    )


def _serverless(name: str = "m", memory: int = 2048, concurrency: int = 5, **extra) -> dict:
    return {"VariantName": "Challenger", "ModelName": name, "ServerlessConfig": {
        "MemorySizeInMB": memory, "MaxConcurrency": concurrency, **extra}}  # fmt: skip


def _refusal(sagemaker, **request) -> str:
    with pytest.raises(ClientError) as error:
        sagemaker.create_endpoint_config(EndpointConfigName="refused", **request)
    assert error.value.response["Error"]["Code"] == "ValidationException"
    return error.value.response["Error"]["Message"]


def test_a_serverless_config_is_refused_where_sagemaker_refuses_it(make_engine, sagemaker, s3, bucket):
    make_engine()
    features, labels = make_rows(41, 200)
    tarball, _ = model_tarball(features, labels)
    _model(sagemaker, s3, bucket, "m", tarball)
    _model(sagemaker, s3, bucket, "champion", tarball)

    assert _refusal(sagemaker, ProductionVariants=[_serverless(memory=1536)]) == (
        "Invalid MemorySizeInMB 1536 for production variant Challenger: valid values are in 1 GB increments: "
        "1024, 2048, 3072, 4096, 5120, 6144."
    )
    # Outside the range, botocore's model says it, as AWS's request validation does.
    assert _refusal(sagemaker, ProductionVariants=[_serverless(memory=8192)]) == (
        "1 validation error detected in CreateEndpointConfig: Value '8192' at "
        "'productionVariants.1.member.serverlessConfig.memorySizeInMB' failed to satisfy constraint: Member must "
        "have value less than or equal to 6144"
    )
    assert "Member must have value less than or equal to 200" in _refusal(
        sagemaker, ProductionVariants=[_serverless(concurrency=201)]
    )
    assert _refusal(sagemaker, ProductionVariants=[_serverless(concurrency=2, ProvisionedConcurrency=3)]) == (
        "ProvisionedConcurrency 3 of production variant Challenger must be less than or equal to its MaxConcurrency 2."
    )
    both = {**_serverless(), "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    assert _refusal(sagemaker, ProductionVariants=[both]) == (
        "Production variant Challenger specifies both InstanceType and ServerlessConfig; an endpoint variant is "
        "either instance-based or serverless."
    )
    champion = {**_serverless("champion"), "VariantName": "Champion"}
    assert _refusal(sagemaker, ProductionVariants=[_serverless(), champion]) == (
        "Serverless endpoints support one production variant only; the endpoint configuration has 2."
    )
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": f"s3://{bucket}/capture/",
        "CaptureOptions": [{"CaptureMode": "Input"}],
    }
    assert _refusal(sagemaker, ProductionVariants=[_serverless()], DataCaptureConfig=capture) == (
        "Data capture is not supported for serverless endpoints."
    )
    sagemaker.create_model(
        ModelName="pipeline",
        ExecutionRoleArn=ROLE,
        Containers=[{"Image": XGBOOST_IMAGE}, {"Image": XGBOOST_IMAGE}],
    )
    assert _refusal(sagemaker, ProductionVariants=[_serverless("pipeline")]) == (
        "Model pipeline of production variant Challenger is an inference pipeline (several containers), which "
        "serverless endpoints do not support."
    )


def test_a_serverless_endpoint_serves_and_describes_its_serverless_config(make_engine, sagemaker, s3, bucket, runtime):
    make_engine()
    features, labels = make_rows(42, 200)
    tarball, booster = model_tarball(features, labels)
    _model(sagemaker, s3, bucket, "m", tarball)
    sagemaker.create_endpoint_config(EndpointConfigName="serverless", ProductionVariants=[_serverless(memory=3072)])
    config = sagemaker.describe_endpoint_config(EndpointConfigName="serverless")
    assert config["ProductionVariants"][0]["ServerlessConfig"] == {"MemorySizeInMB": 3072, "MaxConcurrency": 5}
    sagemaker.create_endpoint(EndpointName="serverless-test", EndpointConfigName="serverless")
    described = wait_for(
        lambda: sagemaker.describe_endpoint(EndpointName="serverless-test"),
        lambda d: d["EndpointStatus"] in ("InService", "Failed"),
    )
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    (variant,) = described["ProductionVariants"]
    assert (
        variant["CurrentServerlessConfig"]
        == variant["DesiredServerlessConfig"]
        == {
            "MemorySizeInMB": 3072,
            "MaxConcurrency": 5,
        }
    )
    assert "CurrentInstanceCount" not in variant
    probe = features[:20]
    answer = runtime.invoke_endpoint(
        EndpointName="serverless-test",
        Body=to_csv(probe),
        ContentType="text/csv",
        Accept="text/csv",
        TargetVariant="Challenger",
    )
    assert answer["InvokedProductionVariant"] == "Challenger"
    assert answer["Body"].read().decode() == expected_csv(booster, probe)


def test_the_dataset_config_asks_for_a_serverless_test_endpoint_only_within_serverless_limits():
    config = copy.deepcopy(CHURN_CONFIG)
    config["hosting"]["test_endpoint_serverless"] = {"memory_mb": 4096, "max_concurrency": 10}
    assert parse_dataset_config(config, "churn").hosting.test_endpoint_serverless.memory_mb == 4096
    config["hosting"]["test_endpoint_serverless"] = {}  # the defaults: 2 GB, five at a time
    serverless = parse_dataset_config(config, "churn").hosting.test_endpoint_serverless
    assert (serverless.memory_mb, serverless.max_concurrency) == (2048, 5)
    for wrong, message in (
        ({"memory_mb": 1536}, "serverless memory must be one of 1024, 2048, 3072, 4096, 5120, 6144 MB, got 1536"),
        ({"memory_mb": 8192}, "got 8192"),
        ({"max_concurrency": 201}, "less than or equal to 200"),
        ({"max_concurrency": 0}, "greater than or equal to 1"),
    ):
        config["hosting"]["test_endpoint_serverless"] = wrong
        with pytest.raises(DatasetConfigError, match=re.escape(message)):
            parse_dataset_config(config, "churn")


def _serve(sagemaker, name: str, variant: dict) -> None:
    """An endpoint ``name`` on a config of one ``variant``, waited InService."""
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    described = wait_for(
        lambda: sagemaker.describe_endpoint(EndpointName=name),
        lambda d: d["EndpointStatus"] in ("InService", "Failed"),
    )
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")


def _no_retries():
    return boto3.client("sagemaker-runtime", region_name=REGION, config=Config(retries={"total_max_attempts": 1}))


def test_a_serverless_endpoint_refuses_a_body_over_4_mb_that_an_instance_endpoint_takes(
    make_engine, sagemaker, s3, bucket, runtime
):
    make_engine()
    features, labels = make_rows(43, 200)
    tarball, _ = model_tarball(features, labels)
    _model(sagemaker, s3, bucket, "m", tarball)
    _serve(sagemaker, "serverless", _serverless(concurrency=2))
    instance = {"VariantName": "AllTraffic", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    _serve(sagemaker, "instances", instance)
    block = to_csv(features[:20]).encode()
    body = block * (4 * 1024 * 1024 // len(block) + 1)  # just over 4 MB, well under 6 MB
    assert 4 * 1024 * 1024 < len(body) < 6 * 1024 * 1024

    with pytest.raises(ClientError) as refused:
        _no_retries().invoke_endpoint(EndpointName="serverless", Body=body, ContentType="text/csv")
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert refused.value.response["Error"]["Message"] == (
        f"Request payload of {len(body)} bytes exceeds the maximum of 4194304 bytes (4 MB) for serverless "
        "endpoint serverless."
    )
    answer = runtime.invoke_endpoint(EndpointName="instances", Body=body, ContentType="text/csv", Accept="text/csv")
    assert len(answer["Body"].read().decode().split(",")) == body.count(b"\n")
    over_6_mb = block * (6 * 1024 * 1024 // len(block) + 1)
    with pytest.raises(ClientError) as refused:
        _no_retries().invoke_endpoint(EndpointName="instances", Body=over_6_mb, ContentType="text/csv")
    assert refused.value.response["Error"] == {
        "Code": "ValidationError",
        "Message": "Value at 'body' failed to satisfy constraint: Member must have length less than or equal to "
        "6291456",
    }


def test_answers_over_the_payload_limit_are_refused_4_mb_serverless_6_mb_real_time(
    make_engine, sagemaker, s3, bucket, runtime, monkeypatch
):
    make_engine()
    features, labels = make_rows(45, 200)
    tarball, _ = model_tarball(features, labels)
    _model(sagemaker, s3, bucket, "m", tarball)
    _serve(sagemaker, "serverless", _serverless(concurrency=2))
    instance = {"VariantName": "AllTraffic", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    _serve(sagemaker, "instances", instance)
    # The container's real answer, padded to the size under test: no model answers more than it is sent.
    forward, answer_bytes = hosting.invoke_pipeline, [0]

    def padded(*args, **kwargs):
        status, body, content_type, container = forward(*args, **kwargs)
        return status, body + b"\n" * (answer_bytes[0] - len(body)), content_type, container

    monkeypatch.setattr(hosting, "invoke_pipeline", padded)
    probe = to_csv(features[:5])

    def invoke(endpoint: str, size: int) -> dict:
        answer_bytes[0] = size
        return _no_retries().invoke_endpoint(EndpointName=endpoint, Body=probe, ContentType="text/csv")

    four_mb, six_mb = 4 * 1024 * 1024, 6 * 1024 * 1024
    assert len(invoke("serverless", four_mb)["Body"].read()) == four_mb
    assert len(invoke("instances", six_mb)["Body"].read()) == six_mb
    for endpoint, size, limit, kind in (
        ("serverless", four_mb + 1, four_mb, "serverless"),
        ("instances", six_mb + 1, six_mb, "real-time"),
    ):
        with pytest.raises(ClientError) as refused:
            invoke(endpoint, size)
        error = refused.value.response
        detail = (
            f"Response payload of {size} bytes exceeds the maximum of {limit} bytes ({limit // 1024 // 1024} MB) "
            f"for {kind} endpoint {endpoint}."
        )
        assert error["Error"]["Code"] == "ModelError"
        assert error["Error"]["Message"].startswith(
            f"Received a response from primary that could not be returned: {detail} See https://"
        )
        assert (error["OriginalStatusCode"], error["OriginalMessage"]) == (200, detail)


def test_a_serverless_endpoint_throttles_invocations_beyond_max_concurrency_and_evaluate_retries(
    make_engine, sagemaker, s3, bucket, runtime, monkeypatch
):
    make_engine()
    features, labels = make_rows(44, 200)
    tarball, booster = model_tarball(features, labels)
    _model(sagemaker, s3, bucket, "m", tarball)
    _serve(sagemaker, "one-at-a-time", _serverless(concurrency=1))
    # A barrier in the serving path: the first invocation holds the endpoint's only slot until released.
    entered, release, calls = threading.Event(), threading.Event(), []
    forward = hosting.invoke_pipeline

    def held(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            entered.set()
            assert release.wait(30), "the slow invocation was never released"
        return forward(*args, **kwargs)

    monkeypatch.setattr(hosting, "invoke_pipeline", held)
    probe = to_csv(features[:10])
    answers: list[str] = []
    slow = threading.Thread(
        target=lambda: answers.append(
            runtime.invoke_endpoint(
                EndpointName="one-at-a-time", Body=probe, ContentType="text/csv", Accept="text/csv"
            )["Body"]
            .read()
            .decode()
        )
    )
    slow.start()
    try:
        assert entered.wait(30)
        with pytest.raises(ClientError) as throttled:
            _no_retries().invoke_endpoint(EndpointName="one-at-a-time", Body=probe, ContentType="text/csv")
        assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert throttled.value.response["Error"] == {
            "Code": "ThrottlingException",
            "Message": "Rate exceeded: serverless endpoint one-at-a-time variant Challenger is already serving its "
            "MaxConcurrency of 1 concurrent invocations.",
        }
        assert len(calls) == 1  # refused before reaching the model

        # Evaluate's client: its first attempt is throttled (which releases the slow one), a retry scores.
        retrying = boto3.client("sagemaker-runtime", region_name=REGION, config=RUNTIME_CLIENT_CONFIG)
        statuses: list[int] = []

        def on_attempt(response=None, **_):
            if response is not None:
                statuses.append(response[0].status_code)
                release.set()

        retrying.meta.events.register("needs-retry.sagemaker-runtime.InvokeEndpoint", on_attempt)
        scored = score_endpoint(retrying, "one-at-a-time", probe.splitlines(), width=1, batch_size=500)
    finally:
        release.set()
        slow.join(30)
    assert statuses[0] == 429 and statuses[-1] == 200
    assert answers == [expected_csv(booster, features[:10])]
    assert np.allclose(scored, booster.predict(xgb.DMatrix(features[:10].astype(np.float32))))


class _Recording:
    """A sagemaker-runtime client that records each request's body size."""

    def __init__(self, client):
        self.client, self.sizes = client, []

    def invoke_endpoint(self, **request):
        self.sizes.append(len(request["Body"]))
        return self.client.invoke_endpoint(**request)


def test_evaluate_sends_wide_rows_to_a_serverless_endpoint_in_requests_under_4_mb(
    make_engine, sagemaker, s3, bucket, runtime
):
    make_engine()
    features, labels = make_rows(45, 600)
    tarball, booster = model_tarball(features, labels)
    _model(sagemaker, s3, bucket, "m", tarball)
    _serve(sagemaker, "wide", _serverless())
    # Each value written with 2,500 trailing zeros: 10 KB a row, 500 rows (one fixed-size batch) 5 MB.
    rows = [",".join(f"{value:.6f}" + "0" * 2500 for value in row) for row in features]
    assert sum(len(row) + 1 for row in rows[:500]) > MAX_REQUEST_BYTES
    recording = _Recording(runtime)
    scored = score_endpoint(recording, "wide", rows, width=1, batch_size=500)
    assert len(recording.sizes) > 1 and max(recording.sizes) <= MAX_REQUEST_BYTES
    assert np.allclose(scored, booster.predict(xgb.DMatrix(features.astype(np.float32))))


def test_request_batches_cut_by_rows_and_bytes_and_refuse_a_row_over_the_limit():
    rows = ["a" * 4, "b" * 4, "c" * 4, "d" * 4, "e" * 4]
    assert [list(batch) for _, batch in request_batches(rows, 10, "endpoint e", max_bytes=9)] == [
        ["aaaa", "bbbb"],
        ["cccc", "dddd"],
        ["eeee"],
    ]
    assert [start for start, _ in request_batches(rows, 2, "endpoint e")] == [0, 2, 4]
    with pytest.raises(EvaluationError, match=re.escape("endpoint e: test row 2 alone is over the 5-byte")):
        list(request_batches(["a", "b" * 6], 10, "endpoint e", max_bytes=2, limit_bytes=5))
