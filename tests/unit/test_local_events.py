"""S3 uploads reach the template's EventBridge rule and start a state machine execution."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from stepml.local import events


@pytest.fixture
def hooks(apply_patch):
    apply_patch(events.S3_NOTIFICATIONS)
    apply_patch(events.PUT_EVENTS)


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


def test_a_multipart_upload_starts_one_execution_as_s3_sends_one_event(stack, hooks):
    """moto notifies a Put and then CompleteMultipartUpload; S3 sends one Object Created event."""
    sfn = boto3.client("stepfunctions")
    arn = _probe_machine(sfn)
    _rule_from_template(stack, arn)
    bucket, s3 = stack.physical_id("UploadBucket"), boto3.client("s3")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="incoming/churn/big.csv")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="incoming/churn/big.csv", UploadId=upload, PartNumber=1, Body=b"a\n1\n")
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="incoming/churn/big.csv",
        UploadId=upload,
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    # A later upload's execution: by then every event of the multipart upload was delivered.
    s3.put_object(Bucket=bucket, Key="incoming/churn/after.csv", Body=b"a\n1\n")
    _wait_for_executions(sfn, arn, 2)
    executions = sfn.list_executions(stateMachineArn=arn)["executions"]
    events = [json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"]) for e in executions]
    multipart = [event for event in events if event["detail"]["object"]["key"] == "incoming/churn/big.csv"]
    assert [event["detail"]["reason"] for event in multipart] == ["CompleteMultipartUpload"]
    assert len(executions) == 2


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


def _probe_machine(sfn, name="probe"):
    return sfn.create_state_machine(
        name=name,
        roleArn="arn:aws:iam::123456789012:role/x",
        definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}),
    )["stateMachineArn"]


def _s3_shaped_entry(bucket, source="aws.s3"):
    detail = {"bucket": {"name": bucket}, "object": {"key": "incoming/churn/forged.csv", "size": 3, "etag": "x"}}
    return {"Source": source, "DetailType": "Object Created", "Detail": json.dumps(detail)}


def test_put_events_with_a_reserved_aws_source_is_a_failed_entry_and_reaches_no_rule(stack, hooks):
    sfn = boto3.client("stepfunctions")
    pipeline = _probe_machine(sfn, "pipeline")
    _rule_from_template(stack, pipeline)
    witness = _probe_machine(sfn, "witness")
    client = boto3.client("events")
    client.put_rule(Name="witness", EventPattern=json.dumps({"detail-type": ["Object Created"]}))
    client.put_targets(
        Rule="witness", Targets=[{"Id": "w", "Arn": witness, "RoleArn": "arn:aws:iam::123456789012:role/x"}]
    )
    bucket = stack.physical_id("UploadBucket")
    answer = client.put_events(Entries=[_s3_shaped_entry(bucket), _s3_shaped_entry(bucket, "aws.events")])
    assert answer["FailedEntryCount"] == 2
    assert (
        answer["Entries"]
        == [{"ErrorCode": "NotAuthorizedForSourceException", "ErrorMessage": "Not authorized for the source."}] * 2
    )
    # A refused entry is never queued for delivery: a later accepted one is the only execution.
    accepted = client.put_events(Entries=[_s3_shaped_entry(bucket, "com.example.uploads")])
    assert accepted["FailedEntryCount"] == 0 and accepted["Entries"][0]["EventId"]
    executions = _wait_for_executions(sfn, witness, 1)
    assert len(executions) == 1
    assert sfn.list_executions(stateMachineArn=pipeline)["executions"] == []


def test_put_events_delivers_a_custom_event_to_a_state_machine_target_in_the_aws_shape(stack, hooks):
    sfn = boto3.client("stepfunctions")
    machine = _probe_machine(sfn)
    client = boto3.client("events")
    client.put_rule(Name="custom", EventPattern=json.dumps({"source": ["com.example.uploads"]}))
    client.put_targets(
        Rule="custom", Targets=[{"Id": "m", "Arn": machine, "RoleArn": "arn:aws:iam::123456789012:role/x"}]
    )
    answer = client.put_events(
        Entries=[
            {**_s3_shaped_entry("b", "com.example.uploads"), "Resources": ["arn:aws:s3:::b"]},
            {"Source": "com.example.other", "DetailType": "Object Created", "Detail": "{}"},
            {"Source": "com.example.uploads", "DetailType": "Object Created", "Detail": "not json"},
        ]
    )
    assert answer["FailedEntryCount"] == 1
    assert answer["Entries"][2] == {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
    execution = _wait_for_executions(sfn, machine, 1)[0]
    event = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert event["id"] == answer["Entries"][0]["EventId"]
    assert event["source"] == "com.example.uploads" and event["detail-type"] == "Object Created"
    assert event["detail"]["object"]["key"] == "incoming/churn/forged.csv"
    assert event["resources"] == ["arn:aws:s3:::b"] and event["account"] == "123456789012"
    assert event["time"].endswith("Z") and event["version"] == "0" and event["region"] == "us-east-1"


def test_a_target_the_local_cloud_cannot_reach_goes_to_its_dead_letter_queue_not_to_the_caller(stack, hooks):
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    client = boto3.client("events")
    client.put_rule(Name="gone", EventPattern=json.dumps({"source": ["com.example.uploads"]}))
    missing = "arn:aws:states:us-east-1:123456789012:stateMachine:deleted"
    client.put_targets(
        Rule="gone",
        Targets=[
            {"Id": "m", "Arn": missing, "RoleArn": "arn:aws:iam::x:role/x", "DeadLetterConfig": {"Arn": queue_arn}}
        ],
    )
    answer = client.put_events(Entries=[_s3_shaped_entry("b", "com.example.uploads")])
    assert answer["FailedEntryCount"] == 0
    messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=10, MessageAttributeNames=["All"])["Messages"]
    attributes = {name: value["StringValue"] for name, value in messages[0]["MessageAttributes"].items()}
    assert json.loads(messages[0]["Body"])["id"] == answer["Entries"][0]["EventId"]
    assert attributes["TARGET_ARN"] == missing and attributes["RULE_ARN"].endswith(":rule/gone")
    assert attributes["ERROR_CODE"] == "StateMachineDoesNotExist" and "deleted" in attributes["ERROR_MESSAGE"]


class _LambdaBackends:
    """The engine's Backends for a rule with one Lambda function target: the function's policy
    text as moto's GetPolicy gives it, and the invocations made."""

    def __init__(self, rule, policy):
        self.rule, self.policy, self.invoked = rule, policy, []

    def rules(self, account_id, region, bus):
        return [self.rule]

    def function_policy(self, function_arn):
        return self.policy

    def invoke_function(self, function_arn, payload):
        self.invoked.append((function_arn, json.loads(payload)))


def _function_rule(pattern_source="aws.cloudwatch"):
    from types import SimpleNamespace

    from moto.events.models import EventPattern

    return SimpleNamespace(
        name="drift",
        state="ENABLED",
        arn="arn:aws:events:us-east-1:123456789012:rule/drift",
        event_pattern=EventPattern.load(json.dumps({"source": [pattern_source]})),
        targets=[{"Id": "f", "Arn": "arn:aws:lambda:us-east-1:123456789012:function:decide"}],
    )


def _invoke_policy(source_arn):
    """A function policy as AddPermission writes it (events.amazonaws.com, for one rule)."""
    statement = {
        "Sid": "DriftRetrainPermission",
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "lambda:InvokeFunction",
        "Resource": "arn:aws:lambda:us-east-1:123456789012:function:decide",
        "Condition": {
            "ArnLike": {"AWS:SourceArn": source_arn},
            "StringEquals": {"AWS:SourceAccount": "123456789012"},
        },
    }
    return json.dumps({"Version": "2012-10-17", "Id": "default", "Statement": [statement]})


@pytest.mark.parametrize(
    ("policy", "invoked"),
    [
        (_invoke_policy("arn:aws:events:us-east-1:123456789012:rule/drift"), True),
        (_invoke_policy("arn:aws:events:us-east-1:123456789012:rule/another"), False),
        (None, False),
    ],
)
def test_a_function_target_is_invoked_only_when_its_policy_lets_eventbridge_invoke_it_for_the_rule(policy, invoked):
    from stepml.local.events import engine

    rule = _function_rule()
    backends = _LambdaBackends(rule, policy)
    event = {"id": "e-1", "source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm State Change", "detail": {}}
    reached = engine.deliver_to_rules(backends, "123456789012", "us-east-1", event)
    assert reached == ["arn:aws:lambda:us-east-1:123456789012:function:decide"]
    assert backends.invoked == ([(reached[0], event)] if invoked else [])
    [record] = [r for r in engine.DELIVERY_LOG if r["event_id"] == "e-1" and r["rule"] == "drift"][-1:]
    if not invoked:
        assert record["error"] == (
            "AccessDeniedException: events.amazonaws.com is not authorized to perform: lambda:InvokeFunction on "
            f"resource: {reached[0]} because no resource-based policy allows the lambda:InvokeFunction action "
            "from rule arn:aws:events:us-east-1:123456789012:rule/drift"
        )
    else:
        assert "error" not in record


def test_a_functions_add_permission_statement_is_the_policy_delivery_and_the_iam_gate_read(stack):
    """moto's GetPolicy wraps the policy in {"Policy": "<JSON>", "RevisionId"}: both readers unwrap it."""
    import io
    import zipfile

    from stepml.local.events.adapter import BACKENDS
    from stepml.local.iam.moto_policies import MotoPolicies

    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "*"}]}
    role = boto3.client("iam").create_role(RoleName="fn", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as bundle:
        bundle.writestr("app.py", "def handler(event, context):\n    return event\n")
    lambdas = boto3.client("lambda")
    arn = lambdas.create_function(
        FunctionName="decide", Runtime="python3.11", Role=role, Handler="app.handler", Code={"ZipFile": code.getvalue()}
    )["FunctionArn"]
    assert BACKENDS.function_policy(arn) is None
    assert MotoPolicies().resource_policy(arn) == (None, False)
    rule = "arn:aws:events:us-east-1:123456789012:rule/drift"
    lambdas.add_permission(
        FunctionName="decide",
        StatementId="DriftRetrainPermission",
        Action="lambda:InvokeFunction",
        Principal="events.amazonaws.com",
        SourceArn=rule,
    )
    [statement] = json.loads(BACKENDS.function_policy(arn))["Statement"]
    assert statement["Condition"] == {"ArnLike": {"AWS:SourceArn": rule}}
    document, key_policy = MotoPolicies().resource_policy(arn)
    assert document.source == "function policy of decide" and not key_policy
    assert document.document["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}
