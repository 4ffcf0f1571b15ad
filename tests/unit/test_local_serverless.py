"""Serverless endpoints on the local cloud: CreateEndpointConfig takes ``ServerlessConfig`` only as
SageMaker does (memory in 1 GB steps from 1024 to 6144 MB, concurrency 1 to 200, one production
variant, no data capture, no inference pipeline), and an endpoint on such a config serves as an
instance-backed one does, describing its serverless config instead of instance counts."""

from __future__ import annotations

import copy
import re

import pytest
from botocore.exceptions import ClientError

from stepml.config import DatasetConfigError, parse_dataset_config
from tests.helpers import CHURN_CONFIG
from tests.unit.sagemaker_helpers import (
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
