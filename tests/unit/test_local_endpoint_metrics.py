"""The local SageMaker engine publishes each endpoint's invocation metrics (AWS/SageMaker), the
metrics the production alarms of template.yaml watch (Invocation5XXErrors, ModelLatency)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError

from stepml.local.sagemaker.endpoint_metrics import InvocationMetrics
from tests.unit.sagemaker_helpers import (
    ACCOUNT,
    REGION,
    deploy,
    make_rows,
    model_tarball,
    to_csv,
    wait_for,
)


def _statistics(name: str, endpoint: str, statistic: str) -> float | None:
    now = datetime.now(UTC)
    points = boto3.client("cloudwatch", region_name=REGION).get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName=name,
        Dimensions=[{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}],
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=1),
        Period=60,
        Statistics=[statistic],
    )["Datapoints"]
    return sum(point[statistic] for point in points) if points else None


def test_invocations_errors_and_latency_reach_cloudwatch(engine, sagemaker, s3, runtime, bucket):
    features, labels = make_rows(3, 100)
    tarball, _ = model_tarball(features, labels)
    deploy(sagemaker, s3, bucket, "stepml-metrics", tarball)
    sagemaker.create_endpoint(EndpointName="stepml-metrics", EndpointConfigName="stepml-metrics")
    engine.wait_for_endpoint("stepml-metrics", account_id=ACCOUNT, region=REGION)

    for _ in range(3):
        runtime.invoke_endpoint(EndpointName="stepml-metrics", Body=to_csv(features[:2]), ContentType="text/csv")
    with pytest.raises(ClientError, match="Received client error"):
        runtime.invoke_endpoint(EndpointName="stepml-metrics", Body="1.0,abc,3.0,4.0\n", ContentType="text/csv")

    assert wait_for(lambda: _statistics("Invocations", "stepml-metrics", "Sum"), lambda total: total == 4) == 4
    assert _statistics("Invocation4XXErrors", "stepml-metrics", "Sum") == 1
    assert _statistics("Invocation5XXErrors", "stepml-metrics", "Sum") == 0
    assert _statistics("ModelLatency", "stepml-metrics", "SampleCount") == 4
    assert _statistics("ModelLatency", "stepml-metrics", "Maximum") > 0
    assert _statistics("OverheadLatency", "stepml-metrics", "SampleCount") == 4


def test_a_tally_is_one_statistic_set_per_metric_and_drains_once():
    metrics = InvocationMetrics()
    metrics.record("prod", "AllTraffic", 200, 0.002, 0.003)
    metrics.record("prod", "AllTraffic", 503, 0.001, 0.001)
    metrics.record("prod", "AllTraffic", 0, 60.0, 60.0)  # the container timed out: a 5xx
    items = {item["MetricName"]: item for item in metrics.drain()}
    assert items["Invocations"]["StatisticValues"]["Sum"] == 3
    assert items["Invocation5XXErrors"]["StatisticValues"] == {
        "SampleCount": 3.0,
        "Sum": 2.0,
        "Minimum": 0.0,
        "Maximum": 1.0,
    }
    assert items["Invocation4XXErrors"]["StatisticValues"]["Sum"] == 0
    assert items["ModelLatency"]["Unit"] == "Microseconds"
    assert items["ModelLatency"]["StatisticValues"]["Maximum"] == 60_000_000
    assert items["OverheadLatency"]["StatisticValues"]["Minimum"] == 0
    assert items["Invocations"]["Dimensions"] == [
        {"Name": "EndpointName", "Value": "prod"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    assert metrics.drain() == []
