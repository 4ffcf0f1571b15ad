"""Helpers the local SageMaker engine's unit tests share: the role and image they name, rows and
models to serve, deploying a model, waiting for a described state. Their fixtures (the template's
buckets, the engines, the clients) are in ``tests/unit/conftest.py``."""

from __future__ import annotations

import io
import json
import tarfile
import time

import numpy as np
import xgboost as xgb

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/stepml-sagemaker"
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
XGBOOST_REPOSITORY = "arn:aws:ecr:us-east-1:683313688378:repository/sagemaker-xgboost"
FEATURES = 4

#: What an execution role needs to run the built-in container at all: pull its image, write its logs.
CONTAINER_STATEMENTS = (
    {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
    {
        "Effect": "Allow",
        "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
        "Resource": XGBOOST_REPOSITORY,
    },
    {
        "Effect": "Allow",
        "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
        "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/*",
    },
)


def make_rows(seed: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, FEATURES))
    score = features[:, 0] + 0.5 * features[:, 1] + rng.normal(scale=0.3, size=rows)
    labels = (score > 0).astype(int)
    return features, labels


def to_csv(features: np.ndarray, labels: np.ndarray | None = None) -> str:
    lines = []
    for index, row in enumerate(features):
        cells = [f"{value:.6f}" for value in row]
        if labels is not None:
            cells.insert(0, str(int(labels[index])))
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def wait_for(describe, done, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        answer = describe()
        if done(answer):
            return answer
        assert time.monotonic() < deadline, f"timed out; last answer: {answer}"
        time.sleep(0.05)


def model_tarball(features: np.ndarray, labels: np.ndarray, params: dict | None = None) -> tuple[bytes, xgb.Booster]:
    params = params or {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3}
    booster = xgb.train(params, xgb.DMatrix(features, label=labels), num_boost_round=8)
    raw = booster.save_raw()  # the same bytes save_model writes for a file without extension
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("xgboost-model")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(bytes(raw)))
    return buffer.getvalue(), booster


def endpoint_config(name: str, *, capture_uri: str | None = None) -> dict:
    """A CreateEndpointConfig request: one variant serving model ``name``, capturing to ``capture_uri`` if given."""
    config = {
        "EndpointConfigName": name,
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
        ],
    }
    if capture_uri:
        config["DataCaptureConfig"] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": capture_uri,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
        }
    return config


def deploy(sagemaker, s3, bucket: str, name: str, tarball: bytes, *, capture: bool = False, config: str | None = None):
    """CreateModel + CreateEndpointConfig, both named ``name``; the test creates the endpoint."""
    s3.put_object(Bucket=bucket, Key=f"models/{name}/model.tar.gz", Body=tarball)
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": XGBOOST_IMAGE, "ModelDataUrl": f"s3://{bucket}/models/{name}/model.tar.gz"},
    )
    capture_uri = f"s3://{bucket}/data-capture/test/" if capture else None
    sagemaker.create_endpoint_config(**endpoint_config(name, capture_uri=capture_uri))


def capture_records(s3, bucket: str, prefix: str) -> list[tuple[str, dict]]:
    records = []
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        text = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
        records += [(item["Key"], json.loads(line)) for line in text.splitlines()]
    return records


def expected_csv(booster: xgb.Booster, features: np.ndarray) -> str:
    predictions = booster.predict(xgb.DMatrix(features.astype(np.float32)))
    return ",".join(map(str, predictions.tolist()))
