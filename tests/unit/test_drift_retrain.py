"""Retrain on drift: the decision on a drift alarm's event, the run it starts, and the event itself.

The template's lineage table, buckets and DriftRetrain environment in moto; Step Functions and
SageMaker are fakes that answer what the decision asks (running executions, the served model).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from stepml import config
from stepml.drift_retrain import (
    IN_FLIGHT,
    NO_DATA,
    NOT_OURS,
    OPTED_OUT,
    STARTED,
    AlarmEventError,
    DriftRetrainer,
    alarm_trigger,
    execution_arn_of,
)
from stepml.lineage import LineageStore, drift_run_id, from_dynamo, make_run_id
from tests.helpers import CHURN_CONFIG, load_handler, set_function_environment

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
STATE_MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:stepml-local-pipeline"
SERVED = "arn:aws:states:us-east-1:123456789012:execution:stepml-local-pipeline:served"


class FakeStepFunctions:
    """Executions by ARN: (status, input). StartExecution adds a RUNNING one, as AWS does."""

    def __init__(self) -> None:
        self.executions: dict[str, tuple[str, dict[str, Any]]] = {}
        self.started: list[dict[str, str]] = []

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        if executionArn not in self.executions:
            raise ClientError({"Error": {"Code": "ExecutionDoesNotExist", "Message": "no"}}, "DescribeExecution")
        status, execution_input = self.executions[executionArn]
        return {"executionArn": executionArn, "status": status, "input": json.dumps(execution_input)}

    def get_paginator(self, name: str) -> Any:
        assert name == "list_executions"
        fake = self

        class Pages:
            def paginate(self, stateMachineArn: str, statusFilter: str) -> list[dict[str, Any]]:
                assert stateMachineArn == STATE_MACHINE
                found = [{"executionArn": a} for a, (s, _) in fake.executions.items() if s == statusFilter]
                return [{"executions": found}]

        return Pages()

    def start_execution(self, stateMachineArn: str, name: str, input: str) -> dict[str, str]:
        arn = execution_arn_of(stateMachineArn, name)
        self.started.append({"name": name, "input": input})
        self.executions[arn] = ("RUNNING", json.loads(input))
        return {"executionArn": arn}


class FakeSageMaker:
    """Production serves the model of run ``run_id``."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def describe_endpoint(self, EndpointName: str) -> dict[str, str]:
        return {"EndpointName": EndpointName, "EndpointConfigName": f"stepml-{self.run_id}-prod-a1"}

    def describe_endpoint_config(self, EndpointConfigName: str) -> dict[str, Any]:
        return {"ProductionVariants": [{"ModelName": f"stepml-{self.run_id}-a1"}]}


@pytest.fixture
def drift(resolve_run_env, stack, monkeypatch):
    """The DriftRetrain service over the template's resources; production serves a churn run."""
    env = resolve_run_env
    store = LineageStore(env["settings"], env["table"], env["s3"], None, FakeStepFunctions(), now=lambda: NOW)
    served = store.resolve_run(env.upload("incoming/churn/first.csv", b"a,b\n1,2\n"), SERVED)["run"]
    set_function_environment(monkeypatch, stack, "DriftRetrainFunction")
    settings = config.load_settings(load_handler("lambdas/drift_retrain/app.py").REQUIRED_SETTINGS)
    sfn = FakeStepFunctions()
    retrainer = DriftRetrainer(
        LineageStore(settings, env["table"], env["s3"], FakeSageMaker(served["run_id"]), sfn, now=lambda: NOW)
    )
    found = type(env)(env)  # keeps env.upload
    found.update(retrainer=retrainer, sfn=sfn, served=served, store=store, settings=settings)
    return found


def _opt_in(drift, value: Any = True) -> None:
    drift["s3"].put_object(
        Bucket=drift["settings"].artifact_bucket,
        Key=config.dataset_config_key("churn"),
        Body=json.dumps({**CHURN_CONFIG, "retrain_on_drift": value}).encode(),
    )


def alarm_event(endpoint: str, feature: str = "tenure_months", event_id: str = "e-1", value: str = "ALARM") -> dict:
    """A drift alarm's state change as CloudWatch sends it to EventBridge."""
    name = f"stepml-local-data-drift-{feature}"
    metric = {
        "dimensions": {"Endpoint": endpoint, "MonitoringSchedule": f"{endpoint}-data-quality"},
        "name": f"feature_baseline_drift_{feature}",
        "namespace": "aws/sagemaker/Endpoints/data-metrics",
    }
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": "2026-12-06T12:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"],
        "detail": {
            "alarmName": name,
            "configuration": {"metrics": [{"id": "m", "metricStat": {"metric": metric}, "returnData": True}]},
            "previousState": {
                "value": "OK",
                "reason": "",
                "reasonData": "",
                "timestamp": "2026-12-06T11:00:00.000+0000",
            },
            "state": {"value": value, "reason": "Threshold Crossed", "reasonData": "{}", "timestamp": "x"},
        },
    }


def _retrain_item(drift) -> dict[str, Any]:
    return from_dynamo(drift["table"].get_item(Key={"pk": "RETRAIN#churn", "sk": "RETRAIN"})["Item"])


def _decide(drift, **event: Any) -> dict[str, Any]:
    return drift["retrainer"].decide(alarm_event(drift["settings"].production_endpoint_name, **event))


def test_a_dataset_that_does_not_opt_in_is_not_retrained(drift):
    decision = _decide(drift)
    assert decision["decision"] == OPTED_OUT and decision["dataset"] == "churn"
    assert decision["reason"] == "dataset churn does not set retrain_on_drift"
    assert drift["sfn"].started == []


def test_the_option_must_be_a_json_boolean():
    with pytest.raises(config.DatasetConfigError, match=r"field 'retrain_on_drift': Input should be a valid boolean"):
        config.parse_dataset_config({**CHURN_CONFIG, "retrain_on_drift": "yes"}, "churn.json")
    assert config.parse_dataset_config(CHURN_CONFIG, "churn.json").retrain_on_drift is False


def test_an_alarm_on_another_endpoint_is_not_ours(drift):
    _opt_in(drift)
    decision = drift["retrainer"].decide(alarm_event("someone-elses-endpoint"))
    assert decision["decision"] == NOT_OURS and "someone-elses-endpoint" in decision["reason"]
    assert drift["sfn"].started == []


def test_an_upload_run_in_flight_takes_the_alarm_and_no_second_run_starts(drift):
    _opt_in(drift)
    upload = drift.upload("incoming/churn/second.csv", b"a,b\n3,4\n")
    running = SERVED + "-upload"
    drift["sfn"].executions[running] = ("RUNNING", upload)
    run_id = drift["store"].resolve_run(upload, running)["run"]["run_id"]
    decision = _decide(drift)
    assert decision["decision"] == IN_FLIGHT and decision["execution_arn"] == running
    assert decision["reason"] == f"dataset churn has a run in flight ({run_id}); no second run starts"
    assert drift["sfn"].started == []
    noted = _retrain_item(drift)["alarms_ignored"]
    assert [(a["alarm_name"], a["in_flight"]) for a in noted] == [("stepml-local-data-drift-tenure_months", run_id)]
    # The note left no claim: once the upload's run ends, a drift alarm retrains.
    drift["sfn"].executions[running] = ("SUCCEEDED", upload)
    assert _decide(drift, event_id="e-2")["decision"] == STARTED


def test_a_dataset_without_a_readable_upload_has_no_data_to_retrain_on(drift):
    _opt_in(drift)
    drift["s3"].delete_object(Bucket=drift["upload_bucket"], Key="incoming/churn/first.csv")
    drift["s3"].put_object(Bucket=drift["upload_bucket"], Key="incoming/churn/notes.txt", Body=b"not data")
    decision = _decide(drift)
    assert decision["decision"] == NO_DATA
    assert (
        decision["reason"]
        == f"dataset churn has no readable upload under s3://{drift['upload_bucket']}/incoming/churn/"
    )
    assert drift["sfn"].started == []


def test_an_opted_in_alarm_starts_a_run_of_its_own_on_the_newest_upload_with_the_trigger_in_lineage(drift):
    _opt_in(drift)
    newest = drift.upload("incoming/churn/newest.csv", b"a,b\n5,6\n")["detail"]["object"]
    decision = _decide(drift, event_id="event-7")
    run_id = drift_run_id("churn", "event-7")
    assert decision["decision"] == STARTED and decision["run_id"] == run_id
    [started] = drift["sfn"].started
    assert started["name"] == f"drift-{run_id}"
    execution_input = json.loads(started["input"])
    request = execution_input["drift_retrain"]
    assert request["upload"]["key"] == "incoming/churn/newest.csv"
    assert request["upload"]["version_id"] == newest["version-id"]

    resolved = drift["store"].resolve_run(execution_input, decision["execution_arn"])
    assert resolved["action"] == "start" and resolved["run"]["run_id"] == run_id
    assert run_id != make_run_id(drift["upload_bucket"], "incoming/churn/newest.csv", newest["version-id"])
    item = from_dynamo(drift["table"].get_item(Key={"pk": f"RUN#{run_id}", "sk": "RUN"})["Item"])
    assert item["input"]["uri"] == f"s3://{drift['upload_bucket']}/incoming/churn/newest.csv"
    assert item["trigger"] == {
        "kind": "drift",
        "alarm_name": "stepml-local-data-drift-tenure_months",
        "alarm_arn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:stepml-local-data-drift-tenure_months",
        "endpoint": drift["settings"].production_endpoint_name,
        "reason": "Threshold Crossed",
        "changed_at": "x",
        "event_id": "event-7",
    }


def test_alarms_while_a_retrain_is_in_flight_start_nothing_more(drift):
    _opt_in(drift)
    first = _decide(drift, event_id="event-1")
    assert first["decision"] == STARTED
    drift["store"].resolve_run(json.loads(drift["sfn"].started[0]["input"]), first["execution_arn"])
    second = _decide(drift, feature="monthly_charges", event_id="event-2")
    assert second["decision"] == IN_FLIGHT and second["run_id"] == first["run_id"]
    assert len(drift["sfn"].started) == 1
    noted = _retrain_item(drift)["alarms_ignored"]
    assert [(a["event_id"], a["in_flight"]) for a in noted] == [("event-2", first["run_id"])]

    # The same event delivered again starts (idempotently) the same execution, no other.
    again = _decide(drift, event_id="event-1")
    assert again["decision"] == STARTED and again["execution_arn"] == first["execution_arn"]
    assert {s["name"] for s in drift["sfn"].started} == {f"drift-{first['run_id']}"}

    # Once the retrain ended, the next drift alarm retrains again.
    drift["sfn"].executions[first["execution_arn"]] = ("SUCCEEDED", {})
    third = _decide(drift, event_id="event-3")
    assert third["decision"] == STARTED and third["run_id"] == drift_run_id("churn", "event-3")


def test_a_claim_whose_execution_has_not_started_yet_still_holds(drift):
    _opt_in(drift)
    held = execution_arn_of(STATE_MACHINE, "drift-churn-000000000000")
    drift["table"].put_item(
        Item={"pk": "RETRAIN#churn", "sk": "RETRAIN", "execution_arn": held, "claimed_at": "2026-12-06T11:59:00.000Z"}
    )
    assert _decide(drift, event_id="event-4")["decision"] == IN_FLIGHT
    stale = (NOW - timedelta(minutes=10)).isoformat()
    drift["table"].update_item(
        Key={"pk": "RETRAIN#churn", "sk": "RETRAIN"},
        UpdateExpression="SET claimed_at = :at",
        ExpressionAttributeValues={":at": stale},
    )
    assert _decide(drift, event_id="event-5")["decision"] == STARTED


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"source": "aws.s3"}, "not a CloudWatch Alarm State Change event: source 'aws.s3'"),
        ({"detail-type": "CloudWatch Alarm Configuration Change"}, "detail-type 'CloudWatch Alarm Configuration"),
    ],
)
def test_only_an_alarm_state_change_is_decided(change, message):
    with pytest.raises(AlarmEventError, match=message):
        alarm_trigger({**alarm_event("prod"), **change})
    with pytest.raises(AlarmEventError, match="entered 'OK', not ALARM"):
        alarm_trigger(alarm_event("prod", value="OK"))


def test_the_local_cloudwatch_sends_awss_alarm_event_which_the_templates_rule_matches(aws_credentials, stack):
    """The event the local alarm evaluation sends has AWS's shape, DriftRetrainRule's pattern
    matches it (and not the same alarm going to OK), and the decision reads it."""
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.events.models import EventPattern

    from stepml.local.services.cloudwatch import alarm_state_change_event

    name = f"{stack.resolved.stack_name}-data-drift-tenure_months"
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        AlarmDescription="drifted",
        Namespace="aws/sagemaker/Endpoints/data-metrics",
        MetricName="feature_baseline_drift_tenure_months",
        Dimensions=[{"Name": "Endpoint", "Value": "prod"}, {"Name": "MonitoringSchedule", "Value": "prod-dq"}],
        Statistic="Maximum",
        Period=3600,
        EvaluationPeriods=1,
        Threshold=0.1,
        ComparisonOperator="GreaterThanThreshold",
    )
    alarm = cloudwatch_backends["123456789012"]["us-east-1"].alarms[name]
    previous = {"value": alarm.state_value, "reason": "Unchecked", "reason_data": None, "timestamp": NOW}
    alarm.update_state("Threshold Crossed: 1 out of the last 1 datapoints [0.9]", "{}", "ALARM")
    event = alarm_state_change_event(alarm, previous, "123456789012", "us-east-1")
    assert event["source"] == "aws.cloudwatch" and event["detail-type"] == "CloudWatch Alarm State Change"
    assert event["resources"] == [alarm.alarm_arn] and event["time"].endswith("Z")
    detail = event["detail"]
    assert detail["alarmName"] == name and detail["configuration"]["description"] == "drifted"
    assert detail["previousState"] == {
        "reason": "Unchecked",
        "reasonData": "",
        "timestamp": "2026-12-06T12:00:00.000+0000",
        "value": "OK",
    }
    assert detail["state"]["value"] == "ALARM" and detail["state"]["timestamp"].endswith("+0000")
    [metric] = detail["configuration"]["metrics"]
    assert metric["returnData"] is True and metric["metricStat"] == {
        "metric": {
            "dimensions": {"Endpoint": "prod", "MonitoringSchedule": "prod-dq"},
            "name": "feature_baseline_drift_tenure_months",
            "namespace": "aws/sagemaker/Endpoints/data-metrics",
        },
        "period": 3600,
        "stat": "Maximum",
    }
    pattern = EventPattern.load(json.dumps(stack.resolved.resolved_properties("DriftRetrainRule")["EventPattern"]))
    assert pattern.matches_event(event)
    assert not pattern.matches_event({**event, "detail": {**detail, "state": {**detail["state"], "value": "OK"}}})
    assert alarm_trigger(event)["endpoint"] == "prod"
