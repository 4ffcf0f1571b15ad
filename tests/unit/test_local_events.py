"""S3 uploads reach the template's EventBridge rule and start a state machine execution."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from stepml.local import events


@pytest.fixture
def hooks():
    restore = events.install_moto_hooks()
    yield
    restore()


def _wait_for_executions(sfn, arn, count, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sfn.list_executions(stateMachineArn=arn)["executions"]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"expected {count} executions, found {len(found)}")


def _rule_from_template(stack, state_machine_arn):
    """Create the template's upload rule (its pattern and target) pointing at a stand-in state machine."""
    props = stack.resolved.resolved_properties("UploadRule")
    client = boto3.client("events")
    client.put_rule(Name="upload", EventPattern=json.dumps(props["EventPattern"]))
    target = props["Targets"][0]
    client.put_targets(
        Rule="upload",
        Targets=[{"Id": target["Id"], "Arn": state_machine_arn, "RoleArn": "arn:aws:iam::123456789012:role/x"}],
    )


def test_an_upload_under_incoming_starts_one_execution_with_the_aws_event(stack, hooks):
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(
        name="p",
        roleArn="arn:aws:iam::123456789012:role/x",
        definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}),
    )["stateMachineArn"]
    _rule_from_template(stack, arn)
    bucket = stack.physical_id("UploadBucket")
    put = boto3.client("s3").put_object(Bucket=bucket, Key="incoming/churn/data.csv", Body=b"a,b\n1,2\n")
    execution = _wait_for_executions(sfn, arn, 1)[0]
    event = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert event["detail-type"] == "Object Created" and event["source"] == "aws.s3"
    assert event["detail"]["bucket"]["name"] == bucket
    assert event["detail"]["object"]["key"] == "incoming/churn/data.csv"
    assert event["detail"]["object"]["etag"] == put["ETag"].strip('"')
    assert event["detail"]["object"]["version-id"] == put["VersionId"]
    assert event["time"].endswith("Z") and event["detail"]["reason"] == "PutObject"


def test_uploads_elsewhere_and_artifact_writes_start_nothing(stack, hooks):
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(
        name="p",
        roleArn="arn:aws:iam::123456789012:role/x",
        definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}),
    )["stateMachineArn"]
    _rule_from_template(stack, arn)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=stack.physical_id("UploadBucket"), Key="outgoing/churn/data.csv", Body=b"x")
    s3.put_object(Bucket=stack.physical_id("ArtifactBucket"), Key="incoming/churn/data.csv", Body=b"x")
    s3.put_object(Bucket=stack.physical_id("UploadBucket"), Key="incoming/churn/real.csv", Body=b"x")
    executions = _wait_for_executions(sfn, arn, 1)
    time.sleep(0.3)
    assert len(sfn.list_executions(stateMachineArn=arn)["executions"]) == len(executions) == 1
