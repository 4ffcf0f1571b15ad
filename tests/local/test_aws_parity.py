"""The local cloud answers as AWS where users and attackers poke at it by hand: PutEvents,
CloudFormation's view of the stack, and approval requests with bodies nobody here wrote."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from stepml import config
from stepml.approval_records import PENDING
from stepml.approvals import ApprovalRequests
from stepml.cli.main import main
from tests.helpers import local_cloud
from tests.unit.test_approvals import make_evaluation, make_run, request_payload

RESERVED = {"ErrorCode": "NotAuthorizedForSourceException", "ErrorMessage": "Not authorized for the source."}
CUSTOM_SOURCE = "com.example.uploads"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """The module's local cloud, without the Glue warm-up (nothing here runs Glue)."""
    local = local_cloud(tmp_path_factory.mktemp("cloud"))
    local.glue_warm_workers = 0
    local.start()
    yield local
    local.stop()


def _client(cloud, service):
    return cloud.client_factory(service)()


def _aws(cloud, *args: str) -> subprocess.CompletedProcess:
    """The AWS CLI that `make install` puts beside this interpreter, against the local cloud."""
    beside = Path(sys.executable).with_name("aws")
    aws = str(beside) if beside.exists() else shutil.which("aws")
    assert aws, "the AWS CLI is needed for this test: make install puts it into .venv/bin"
    environment = {**os.environ, **cloud.environment_for_clients(), "AWS_PAGER": ""}
    environment.pop("AWS_PROFILE", None)
    return subprocess.run(
        [aws, "--output", "json", *args], capture_output=True, text=True, env=environment, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def witness(cloud):
    """A rule on the default bus matching every "Object Created" event, delivering to a state
    machine that only succeeds: what reaches it was delivered."""
    sfn = _client(cloud, "stepfunctions")
    machine = sfn.create_state_machine(
        name="witness",
        roleArn="arn:aws:iam::123456789012:role/witness",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
    )["stateMachineArn"]
    # EventBridge starts the execution under the target's role, which must allow it.
    iam = _client(cloud, "iam")
    trust = {"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sts:AssumeRole"}
    role = iam.create_role(
        RoleName="witness-events",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [trust]}),
    )["Role"]["Arn"]
    allow = {"Effect": "Allow", "Action": "states:StartExecution", "Resource": machine}
    iam.put_role_policy(
        RoleName="witness-events",
        PolicyName="start",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [allow]}),
    )
    events = _client(cloud, "events")
    events.put_rule(Name="witness", EventPattern=json.dumps({"detail-type": ["Object Created"]}))
    events.put_targets(Rule="witness", Targets=[{"Id": "w", "Arn": machine, "RoleArn": role}])
    return machine


def _s3_shaped(cloud, source: str = "aws.s3") -> dict[str, str]:
    """An entry shaped like S3's "Object Created" for an upload the pipeline's rule would match."""
    detail = {
        "version": "0",
        "bucket": {"name": cloud.outputs()["UploadBucketName"]},
        "object": {"key": "incoming/churn/forged.csv", "size": 10, "etag": "0" * 32},
        "reason": "PutObject",
    }
    return {"Source": source, "DetailType": "Object Created", "Detail": json.dumps(detail)}


def _executions(cloud, machine: str) -> list[dict[str, Any]]:
    return _client(cloud, "stepfunctions").list_executions(stateMachineArn=machine)["executions"]


def _wait_for_executions(cloud, machine: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _executions(cloud, machine)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"expected {count} execution(s) of {machine}, found {len(_executions(cloud, machine))}")


def _inputs(cloud, executions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sfn = _client(cloud, "stepfunctions")
    return [json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"]) for e in executions]


# --- PutEvents ---------------------------------------------------------------------------------


def test_put_events_with_s3s_source_is_a_failed_entry_and_starts_no_run(cloud, witness):
    pipeline = cloud.outputs()["StateMachineArn"]
    runs_before = len(_executions(cloud, pipeline))
    seen_before = len(_executions(cloud, witness))
    answer = _client(cloud, "events").put_events(Entries=[_s3_shaped(cloud), _s3_shaped(cloud, CUSTOM_SOURCE)])
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert answer["FailedEntryCount"] == 1
    assert answer["Entries"][0] == RESERVED
    event_id = answer["Entries"][1]["EventId"]
    # The events of one call are delivered in order: once the custom one arrived, the refused
    # one would have been delivered before it.
    delivered = _inputs(cloud, _wait_for_executions(cloud, witness, seen_before + 1))
    assert [event["id"] for event in delivered if event["source"] == CUSTOM_SOURCE].count(event_id) == 1
    assert all(event["source"] != "aws.s3" for event in delivered)
    assert len(_executions(cloud, pipeline)) == runs_before


def test_put_events_through_the_aws_cli_answers_as_aws(cloud, witness):
    pipeline = cloud.outputs()["StateMachineArn"]
    runs_before = len(_executions(cloud, pipeline))
    seen_before = len(_executions(cloud, witness))
    entries = json.dumps([_s3_shaped(cloud), _s3_shaped(cloud, CUSTOM_SOURCE)])
    put = _aws(cloud, "events", "put-events", "--entries", entries)
    assert put.returncode == 0, put.stderr
    answer = json.loads(put.stdout)
    assert answer["FailedEntryCount"] == 1 and answer["Entries"][0] == RESERVED
    event_id = answer["Entries"][1]["EventId"]
    delivered = _inputs(cloud, _wait_for_executions(cloud, witness, seen_before + 1))
    assert event_id in [event["id"] for event in delivered]
    assert len(_executions(cloud, pipeline)) == runs_before


# --- CloudFormation --------------------------------------------------------------------------


def test_describe_stacks_lists_the_local_stack_with_its_outputs(cloud):
    outputs = cloud.outputs()
    (stack,) = _client(cloud, "cloudformation").describe_stacks(StackName="stepml-local")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]} == outputs
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert parameters["ProductionEndpointName"] == "stepml-dev-production" and parameters["EndpointPollSeconds"] == "1"
    assert {"Key": "environment", "Value": "dev"} in stack["Tags"]
    resources = _client(cloud, "cloudformation").list_stack_resources(StackName="stepml-local")
    by_logical = {r["LogicalResourceId"]: r for r in resources["StackResourceSummaries"]}
    assert by_logical["UploadBucket"]["PhysicalResourceId"] == outputs["UploadBucketName"]
    assert by_logical["PipelineStateMachine"]["PhysicalResourceId"] == outputs["StateMachineArn"]
    assert by_logical["PipelineStateMachine"]["ResourceType"] == "AWS::StepFunctions::StateMachine"
    assert by_logical["ResolveRunFunction"]["ResourceType"] == "AWS::Lambda::Function"


def test_describe_stacks_through_the_aws_cli(cloud):
    described = _aws(cloud, "cloudformation", "describe-stacks")
    assert described.returncode == 0, described.stderr
    (stack,) = json.loads(described.stdout)["Stacks"]
    assert stack["StackName"] == "stepml-local" and stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["UploadBucketName"] == cloud.outputs()["UploadBucketName"]
    assert outputs["ArtifactBucketName"] == cloud.outputs()["ArtifactBucketName"]


def test_the_cli_finds_the_local_stack_by_name_as_a_deployed_one(cloud, capsys, monkeypatch):
    for name, value in cloud.environment_for_clients().items():
        monkeypatch.setenv(name, value)
    assert main(["runs", "--stack-name", "stepml-local", "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)
    assert main(["runs", "--stack-name", "no-such-stack"]) == 1
    assert "cannot read stack no-such-stack" in capsys.readouterr().err


# --- the approval API over real HTTP -------------------------------------------------------------


@pytest.fixture(scope="module")
def pending(cloud):
    """A PENDING approval of an execution that waits, created as RequestApproval creates one."""
    sfn = _client(cloud, "stepfunctions")
    machine = sfn.create_state_machine(
        name="waits",
        roleArn="arn:aws:iam::123456789012:role/waits",
        definition=json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "End": True}}}),
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, name="waiting")["executionArn"]
    settings = config.load_settings(
        [
            config.APPROVAL_TABLE,
            config.APPROVAL_SIGNING_KEY_ID,
            config.APPROVAL_BASE_URL,
            config.APPROVAL_SENDER,
            config.APPROVER_EMAIL,
        ],
        cloud.stack.function_environment("RequestApprovalFunction"),
    )
    table = boto3.resource(
        "dynamodb",
        endpoint_url=cloud.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    ).Table(settings.approval_table)
    kms = _client(cloud, "kms")
    # (The function's role may describe only the pipeline's executions, so this approval's review
    # page would answer 503 here; the POSTs below are refused before anything is looked up.)
    requests = ApprovalRequests(table=table, kms_client=kms, ses_client=_client(cloud, "sesv2"), settings=settings)
    created = requests.request(
        request_payload(
            make_run(execution_arn=execution), make_evaluation(), task_token="local-task-token", execution_arn=execution
        )
    )
    approval_id = created["approval_id"]
    return {"id": approval_id, "table": table, "execution": execution}


def _post(cloud, path: str, body: bytes, content_type: str) -> tuple[int, str]:
    host, port = cloud.api_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Content-Type": content_type, "Origin": cloud.api_url, "Sec-Fetch-Site": "same-origin"}
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read().decode("utf-8")


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (os.urandom(1024 * 1024), FORM, 413, "The form is too large"),
        (b"decision=approve&approver=ana\xff\xfe&comment=", FORM, 400, "not valid UTF-8"),
        ("decision=approve&approver=ana".encode("utf-16"), f"{FORM}; charset=utf-16", 415, "charset=utf-16"),
    ],
    ids=["1MiB-random", "bad-utf8", "utf16"],
)
def test_an_unreadable_body_is_a_4xx_page_and_decides_nothing(cloud, pending, body, content_type, status, says):
    before = pending["table"].get_item(Key={"approval_id": pending["id"]})["Item"]
    answered, page = _post(cloud, f"/approvals/{pending['id']}", body, content_type)
    assert answered == status and says in page.replace("&#x27;", "'") and "Nothing was decided" in page
    assert pending["table"].get_item(Key={"approval_id": pending["id"]})["Item"] == before
    assert before["status"] == PENDING
    execution = _client(cloud, "stepfunctions").describe_execution(executionArn=pending["execution"])
    assert execution["status"] == "RUNNING"
