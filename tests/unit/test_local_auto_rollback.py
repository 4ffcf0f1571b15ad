"""A blue/green update to a model that answers too slowly, or with errors, rolls back by itself.

Nothing sets an alarm by hand: the endpoint publishes its invocation metrics
(``local/sagemaker/endpoint_metrics.py``), CloudWatch evaluates the alarms on them (the
``cloudwatch.alarm-evaluation`` patch; this module is skipped on a tree without it), and the
update's AutoRollbackConfiguration moves the traffic back during the baking period. Each update
uses the pipeline's own DeploymentConfig (statemachine/pipeline.asl.json, "Update production
endpoint", its substitutions filled from template.yaml as the stack fills them: the baking period
``DeploymentBakingSeconds``, 600 s, and the production alarms' names); the engine cuts the baking
period to its ``baking_period_seconds``, as the local cloud does. The first two tests swap in
alarms of their own; the last uses template.yaml's 4XX alarm as it is. A client sends requests
through each update and records every answer.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time

import boto3
import pytest
import xgboost as xgb
from botocore.exceptions import ClientError

from stepml.local.template import ResolvedTemplate, load_template
from stepml.rollback import deployment_config
from tests.helpers import REPO_ROOT
from tests.unit.sagemaker_helpers import (
    ACCOUNT,
    REGION,
    deploy,
    expected_csv,
    make_rows,
    model_tarball,
    to_csv,
    wait_for,
)

alarm_evaluation = pytest.importorskip("stepml.local.services.cloudwatch", reason="needs the alarm evaluation patch")

#: The engine's baking period (the local cloud's ``--baking-period``): the definition's 600 s, cut.
BAKING_SECONDS = 30
#: Average model latency (microseconds) above which the slow model's alarm fires: the small model
#: answers the probe in a few milliseconds, the large one in tens.
LATENCY_THRESHOLD = 20_000


def stack_template(endpoint: str) -> ResolvedTemplate:
    """template.yaml bound as a stack serving ``endpoint`` as its production endpoint."""
    return ResolvedTemplate(
        load_template(REPO_ROOT / "template.yaml"),
        stack_name="stepml-bake",
        region=REGION,
        account_id=ACCOUNT,
        parameter_overrides={"ProductionEndpointName": endpoint},
    )


def pipeline_deployment_config(endpoint: str, alarms: list[str] | None = None) -> dict:
    """The DeploymentConfig "Update production endpoint" sends, as deployed (substitutions filled
    from the template); ``alarms`` replaces its alarms."""
    text = (REPO_ROOT / "statemachine" / "pipeline.asl.json").read_text()
    substitutions = stack_template(endpoint).resolved_properties("PipelineStateMachine")["DefinitionSubstitutions"]
    for name, value in substitutions.items():
        text = text.replace("${" + name + "}", str(value))
    config = deployment_config(text)
    assert config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    if alarms is not None:
        config["AutoRollbackConfiguration"]["Alarms"] = [{"AlarmName": name} for name in alarms]
    return config


def put_alarm(name: str, endpoint: str, metric: str, statistic: str, threshold: float) -> None:
    """An alarm shaped as template.yaml's production alarms, over one 60-second period."""
    boto3.client("cloudwatch", region_name=REGION).put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/SageMaker",
        MetricName=metric,
        Dimensions=[{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}],
        Statistic=statistic,
        Period=60,
        EvaluationPeriods=1,
        Threshold=threshold,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
    )


def _tarball(booster: xgb.Booster) -> bytes:
    """model.tar.gz with the booster as the built-in container's ``xgboost-model``."""
    raw = bytes(booster.save_raw())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("xgboost-model")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    return buffer.getvalue()


def _repeated(booster: xgb.Booster, times: int) -> xgb.Booster:
    """The booster with each tree ``times`` times over and its leaves divided by ``times``: the
    same answers for ``times`` the work per row, without training ``times`` as many trees (which
    took minutes on a busy machine)."""
    document = json.loads(booster.save_raw("json"))
    model = document["learner"]["gradient_booster"]["model"]
    trees = []
    for tree in model["trees"]:
        pairs = zip(tree["split_conditions"], tree["left_children"], strict=True)
        leaves = [value / times if left == -1 else value for value, left in pairs]  # a leaf holds its value there
        trees += [dict(tree, split_conditions=leaves, id=len(trees) + copy) for copy in range(times)]
    model["trees"], model["tree_info"] = trees, [0] * len(trees)
    model["gbtree_model_param"]["num_trees"] = str(len(trees))
    repeated = xgb.Booster(model_file=bytearray(json.dumps(document).encode()))
    assert repeated.num_boosted_rounds() == booster.num_boosted_rounds() * times
    return repeated


class Client:
    """Two threads sending the probe rows at a steady pace; every answer and failure, by the
    time its request was sent."""

    def __init__(self, runtime, endpoint: str, body: str):
        self.answers: list[tuple[float, str]] = []
        self.failures: list[tuple[float, ClientError]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(runtime, endpoint, body)) for _ in range(2)]

    def _loop(self, runtime, endpoint: str, body: str) -> None:
        for _ in range(20000):  # bounded even if the test fails to stop it
            if self._stop.wait(0.02):
                return
            sent = time.monotonic()
            try:
                answer = runtime.invoke_endpoint(
                    EndpointName=endpoint, Body=body, ContentType="text/csv", Accept="text/csv"
                )
                self.answers.append((sent, answer["Body"].read().decode()))
            except ClientError as exc:  # what the test counts
                self.failures.append((sent, exc))

    def __enter__(self) -> Client:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def _update_and_wait(sagemaker, runtime, endpoint: str, green: str, alarm: str | None, client: Client) -> dict:
    wait_for(lambda: len(client.answers), lambda count: count >= 10)
    config = pipeline_deployment_config(endpoint, None if alarm is None else [alarm])
    sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=green, DeploymentConfig=config)
    return wait_for(
        lambda: sagemaker.describe_endpoint(EndpointName=endpoint),
        lambda d: d["EndpointStatus"] != "Updating",
        timeout=BAKING_SECONDS + 60,
    )


def test_a_model_that_answers_too_slowly_rolls_back_with_no_failed_request(
    make_engine,
    apply_patch,
    sagemaker,
    s3,
    runtime,
    bucket,
):
    make_engine(capture_flush_seconds=0.5, alarm_poll_seconds=0.2, baking_period_seconds=BAKING_SECONDS)
    apply_patch(alarm_evaluation.ALARM_EVALUATION)
    features, labels = make_rows(31, 1000)
    small, small_booster = model_tarball(features, labels)
    # The same task, as 6,000 trees: right answers, each 500-row request about 50 ms late on an idle core
    # (1,500 trees gave 13 ms, under the alarm's 20 ms, so the alarm never fired on an idle machine).
    deep = xgb.train(
        {"objective": "binary:logistic", "max_depth": 12, "eta": 0.01, "min_child_weight": 0},
        xgb.DMatrix(features, label=labels),
        num_boost_round=150,
    )
    large = _tarball(_repeated(deep, 40))
    deploy(sagemaker, s3, bucket, "stepml-slow-blue", small)
    deploy(sagemaker, s3, bucket, "stepml-slow-green", large)
    sagemaker.create_endpoint(EndpointName="stepml-slow", EndpointConfigName="stepml-slow-blue")
    wait_for(lambda: sagemaker.describe_endpoint(EndpointName="stepml-slow")["EndpointStatus"], "InService".__eq__)
    put_alarm("stepml-slow-latency", "stepml-slow", "ModelLatency", "Average", LATENCY_THRESHOLD)
    probe = features[:500]

    with Client(runtime, "stepml-slow", to_csv(probe)) as client:
        # The alarm averages the last minute, the old model's requests included: on a busy machine a
        # slow first request can hold that average above the threshold, and the update would roll
        # back before the slow model served. Start it once the old model's own traffic reads OK. That
        # can take the whole minute a slow first request stays in the average, and more on a busy
        # machine: the bound is three minutes, past which the old model's traffic never reads OK.
        cloudwatch = boto3.client("cloudwatch", region_name=REGION)
        wait_for(
            lambda: cloudwatch.describe_alarms(AlarmNames=["stepml-slow-latency"])["MetricAlarms"][0]["StateValue"],
            "OK".__eq__,
            timeout=180,
        )
        ended = _update_and_wait(sagemaker, runtime, "stepml-slow", "stepml-slow-green", "stepml-slow-latency", client)
        rolled_back_at = time.monotonic()
        wait_for(lambda: len([t for t, _ in client.answers if t > rolled_back_at]), lambda count: count >= 10)

    assert (ended["EndpointStatus"], ended["EndpointConfigName"]) == ("InService", "stepml-slow-blue")
    assert "stepml-slow-latency went into ALARM state" in ended["FailureReason"]
    assert client.failures == [], [str(exc) for _, exc in client.failures[:3]]
    blue = expected_csv(small_booster, probe)
    assert any(body != blue for at, body in client.answers if at <= rolled_back_at), "the slow model served"
    assert all(body == blue for at, body in client.answers if at > rolled_back_at), "the old model serves again"


def test_a_model_that_answers_with_errors_rolls_back_and_only_its_own_answers_failed(
    make_engine,
    apply_patch,
    sagemaker,
    s3,
    runtime,
    bucket,
):
    make_engine(capture_flush_seconds=0.5, alarm_poll_seconds=0.2, baking_period_seconds=BAKING_SECONDS)
    apply_patch(alarm_evaluation.ALARM_EVALUATION)
    features, labels = make_rows(32, 300)
    good, good_booster = model_tarball(features, labels)
    # Trained on two of the four features: every production row is refused (a feature mismatch).
    broken, _ = model_tarball(features[:, :2], labels)
    deploy(sagemaker, s3, bucket, "stepml-err-blue", good)
    deploy(sagemaker, s3, bucket, "stepml-err-green", broken)
    sagemaker.create_endpoint(EndpointName="stepml-err", EndpointConfigName="stepml-err-blue")
    wait_for(lambda: sagemaker.describe_endpoint(EndpointName="stepml-err")["EndpointStatus"], "InService".__eq__)
    put_alarm("stepml-err-4xx", "stepml-err", "Invocation4XXErrors", "Sum", 1)
    probe = features[:5]

    with Client(runtime, "stepml-err", to_csv(probe)) as client:
        started = time.monotonic()
        ended = _update_and_wait(sagemaker, runtime, "stepml-err", "stepml-err-green", "stepml-err-4xx", client)
        rolled_back_at = time.monotonic()
        wait_for(lambda: len([t for t, _ in client.answers if t > rolled_back_at]), lambda count: count >= 10)

    assert (ended["EndpointStatus"], ended["EndpointConfigName"]) == ("InService", "stepml-err-blue")
    assert "stepml-err-4xx went into ALARM state" in ended["FailureReason"]
    # With all-at-once traffic the new fleet answered every request between the switch and the
    # rollback, as in AWS: those are the only failures, each the broken model's own refusal.
    assert client.failures, "the broken model answered some requests before the rollback"
    assert all(started < at <= rolled_back_at for at, _ in client.failures)
    assert {exc.response["Error"]["Code"] for _, exc in client.failures} <= {"ModelError"}
    assert {exc.response.get("OriginalStatusCode") for _, exc in client.failures} <= {400}
    blue = expected_csv(good_booster, probe)
    assert all(body == blue for at, body in client.answers if at > rolled_back_at)


def test_a_pipeline_deploy_of_a_model_that_answers_4xx_rolls_back_during_baking(
    make_engine,
    apply_patch,
    sagemaker,
    s3,
    runtime,
    bucket,
):
    """The definition's DeploymentConfig and template.yaml's 4XX alarm, both unchanged: the update
    bakes (600 s in AWS, BAKING_SECONDS here) and the alarm sends it back long before the end."""
    make_engine(capture_flush_seconds=0.5, alarm_poll_seconds=0.2, baking_period_seconds=BAKING_SECONDS)
    apply_patch(alarm_evaluation.ALARM_EVALUATION)
    features, labels = make_rows(33, 300)
    good, good_booster = model_tarball(features, labels)
    broken, _ = model_tarball(features[:, :2], labels)  # refuses production's four-feature rows (4XX)
    deploy(sagemaker, s3, bucket, "stepml-bake-blue", good)
    deploy(sagemaker, s3, bucket, "stepml-bake-green", broken)
    sagemaker.create_endpoint(EndpointName="stepml-bake", EndpointConfigName="stepml-bake-blue")
    wait_for(lambda: sagemaker.describe_endpoint(EndpointName="stepml-bake")["EndpointStatus"], "InService".__eq__)
    alarm = stack_template("stepml-bake").resolved_properties("ProductionInvocation4xxAlarm")
    alarm.pop("AlarmActions")  # the stack's AlertTopic does not exist here
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    cloudwatch.put_metric_alarm(**alarm)
    config = pipeline_deployment_config("stepml-bake")
    assert config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["WaitIntervalInSeconds"] == 600
    assert {"AlarmName": alarm["AlarmName"]} in config["AutoRollbackConfiguration"]["Alarms"]
    probe = features[:5]

    with Client(runtime, "stepml-bake", to_csv(probe)) as client:
        started = time.monotonic()
        ended = _update_and_wait(sagemaker, runtime, "stepml-bake", "stepml-bake-green", None, client)
        rolled_back_at = time.monotonic()
        wait_for(lambda: len([t for t, _ in client.answers if t > rolled_back_at]), lambda count: count >= 10)

    assert (ended["EndpointStatus"], ended["EndpointConfigName"]) == ("InService", "stepml-bake-blue")
    assert f"{alarm['AlarmName']} went into ALARM state" in ended["FailureReason"]
    assert rolled_back_at - started < BAKING_SECONDS, "rolled back during the baking period, not after it"
    (described,) = cloudwatch.describe_alarms(AlarmNames=[alarm["AlarmName"]])["MetricAlarms"]
    assert described["StateValue"] == "ALARM"
    assert {exc.response.get("OriginalStatusCode") for _, exc in client.failures} == {400}
    assert all(body == expected_csv(good_booster, probe) for at, body in client.answers if at > rolled_back_at)
