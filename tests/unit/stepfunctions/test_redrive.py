"""RedriveExecution as AWS documents it: a failed Standard execution continues from the state that failed.

Each run counts its side effects in a DynamoDB item (an ``updateItem`` Task adds one per run), and
fails on an S3 object the test creates before it redrives, so a state that is not run again is
seen not to run again. Sources: the API reference (RedriveExecution, DescribeExecution,
ListExecutions, ExecutionRedrivenEventDetails) and the developer guide's "Redriving executions".
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.unit.stepfunctions.support import REGION, ROLE_ARN, Execution, wait_for

BUCKET = "redrive-inputs"
TABLE = "redrive-counts"


@pytest.fixture
def aws(sfn_moto: None) -> Any:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "step", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "step", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return boto3.client("stepfunctions", region_name=REGION)


def count_run(step: str, **fields: Any) -> dict[str, Any]:
    """A Task that adds one to ``step``'s run count (the state's own output is its input); a ``{}`` in
    ``step`` is the input's ``index`` (one count per Map item)."""
    key = {"S.$": f"States.Format('{step}', $.index)"} if "{}" in step else {"S": step}
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::dynamodb:updateItem",
        "Parameters": {
            "TableName": TABLE,
            "Key": {"step": key},
            "UpdateExpression": "ADD runs :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        },
        "ResultPath": None,
        **fields,
    }


def read_object(key: str, **fields: Any) -> dict[str, Any]:
    """A Task that fails (S3.NoSuchKeyException) until the test puts ``key``."""
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
        "Parameters": {"Bucket": BUCKET, "Key": key},
        "ResultSelector": {"size.$": "$.ContentLength"},
        **fields,
    }


def runs(step: str) -> int:
    item = boto3.client("dynamodb", region_name=REGION).get_item(TableName=TABLE, Key={"step": {"S": step}})
    return int(item.get("Item", {}).get("runs", {}).get("N", "0"))


def put(key: str, body: str) -> None:
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key=key, Body=body.encode())


def start(sfn: Any, definition: dict[str, Any], execution_input: Any = None, **machine: Any) -> str:
    arn = sfn.create_state_machine(
        name=f"redrive-{datetime.datetime.now().timestamp():.6f}".replace(".", "-"),
        definition=json.dumps(definition),
        roleArn=ROLE_ARN,
        **machine,
    )["stateMachineArn"]
    return sfn.start_execution(stateMachineArn=arn, input=json.dumps(execution_input or {}))["executionArn"]


def refused(sfn: Any, execution_arn: str) -> tuple[str, str]:
    with pytest.raises(ClientError) as raised:
        sfn.redrive_execution(executionArn=execution_arn)
    error = raised.value.response["Error"]
    return error["Code"], error["Message"]


TWO_STEPS = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": count_run("prepare", Next="Read"),
        "Read": read_object(
            "data.txt",
            ResultPath="$.read",
            Next="Report",
        ),
        "Report": {
            "Type": "Pass",
            "Parameters": {
                "read.$": "$.read.size",
                "run.$": "$.run",
                "redrive_count.$": "$$.Execution.RedriveCount",
                "redrive_time.$": "$$.Execution.RedriveTime",
            },
            "End": True,
        },
    },
}


def _failed_then_redriven(sfn: Any) -> tuple[str, Execution, dict[str, Any], Execution]:
    arn = start(sfn, TWO_STEPS, {"run": 7})
    failed = wait_for(sfn, arn)
    put("data.txt", "ready")
    answer = sfn.redrive_execution(executionArn=arn)
    return arn, failed, answer, wait_for(sfn, arn)


def test_a_failed_execution_is_redriven_from_the_state_that_failed(aws: Any) -> None:
    arn, failed, answer, redriven = _failed_then_redriven(aws)

    assert (failed.status, failed.describe["error"]) == ("FAILED", "S3.NoSuchKeyException")
    assert failed.describe["redriveCount"] == 0
    assert failed.describe["redriveStatus"] == "REDRIVABLE"
    assert "redriveStatusReason" not in failed.describe
    assert redriven.status == "SUCCEEDED", redriven.describe.get("cause")
    assert redriven.describe["executionArn"] == arn
    assert runs("prepare") == 1  # the state that succeeded is not run again
    output = redriven.output
    assert (output["read"], output["run"], output["redrive_count"]) == (5, 7, 1)
    assert output["redrive_time"].endswith("Z")
    describe = redriven.describe
    assert describe["redriveCount"] == 1
    assert describe["redriveDate"] == answer["redriveDate"]
    assert (describe["redriveStatus"], describe["redriveStatusReason"]) == (
        "NOT_REDRIVABLE",
        "Execution is SUCCEEDED and cannot be redriven",
    )
    assert "error" not in describe and "cause" not in describe


def test_the_history_continues_with_an_execution_redriven_event(aws: Any) -> None:
    _, failed, _, redriven = _failed_then_redriven(aws)

    events = redriven.events
    assert events[: len(failed.events)] == failed.events  # the first attempt's history is kept
    redriven_event = events[len(failed.events)]
    assert redriven_event["type"] == "ExecutionRedriven"
    assert redriven_event["executionRedrivenEventDetails"] == {"redriveCount": 1}
    assert redriven_event["id"] == failed.events[-1]["id"] + 1
    assert [event["id"] for event in events] == list(range(1, len(events) + 1))
    after = Execution(redriven.describe, events[len(failed.events) :]).entered_states
    assert after == ["Read", "Report"]
    assert events[-1]["type"] == "ExecutionSucceeded"


def test_variables_and_input_are_those_the_failed_state_was_entered_with(aws: Any) -> None:
    definition = {
        "StartAt": "Keep",
        "States": {
            "Keep": {
                "Type": "Pass",
                "Assign": {"kept.$": "$$.Execution.Input.value"},
                "Result": {"replaced": True},
                "Next": "Read",
            },
            "Read": read_object("vars.txt", ResultPath="$.read", Next="Show"),
            "Show": {"Type": "Pass", "Parameters": {"kept.$": "$kept", "input.$": "$"}, "End": True},
        },
    }
    arn = start(aws, definition, {"value": "from the first run"})
    assert wait_for(aws, arn).status == "FAILED"
    put("vars.txt", "x")
    aws.redrive_execution(executionArn=arn)

    assert wait_for(aws, arn).output == {
        "kept": "from the first run",
        "input": {"replaced": True, "read": {"size": 1}},
    }


def test_a_caught_failure_redrives_the_state_the_catch_led_to(aws: Any) -> None:
    definition = {
        "StartAt": "Prepare",
        "States": {
            "Prepare": count_run("prepare", Next="Try"),
            "Try": {
                **read_object("first.txt"),
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Read"}],
                "End": True,
            },
            "Read": read_object("caught.txt", End=True),
        },
    }
    arn = start(aws, definition)
    failed = wait_for(aws, arn)
    put("first.txt", "would succeed now")
    put("caught.txt", "handled")
    aws.redrive_execution(executionArn=arn)
    redriven = wait_for(aws, arn)

    assert failed.entered_states == ["Prepare", "Try", "Read"]
    assert redriven.status == "SUCCEEDED"
    assert redriven.output == {"size": 7}
    assert Execution(redriven.describe, redriven.events[len(failed.events) :]).entered_states == ["Read"]
    assert runs("prepare") == 1


def test_a_redriven_map_reruns_only_the_iterations_that_failed(aws: Any) -> None:
    put("item-0.txt", "zero")
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 1,  # item 0 has succeeded when item 1 fails
                "ItemProcessor": {
                    "StartAt": "Count",
                    "States": {
                        "Count": count_run("item-{}", Next="Read"),
                        "Read": {**read_object(""), "Parameters": {"Bucket": BUCKET, "Key.$": "$.key"}, "End": True},
                    },
                },
                "End": True,
            }
        },
    }
    items = [{"index": 0, "key": "item-0.txt"}, {"index": 1, "key": "item-1.txt"}]
    arn = start(aws, definition, {"items": items})
    assert wait_for(aws, arn).status == "FAILED"
    put("item-1.txt", "one")
    aws.redrive_execution(executionArn=arn)
    redriven = wait_for(aws, arn)

    assert redriven.status == "SUCCEEDED", redriven.describe.get("cause")
    assert redriven.output == [{"size": 4}, {"size": 3}]
    assert (runs("item-0"), runs("item-1")) == (1, 2)


def test_a_redriven_parallel_reruns_only_the_branch_that_failed(aws: Any) -> None:
    definition = {
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "CountLeft", "States": {"CountLeft": count_run("left", End=True)}},
                    {
                        # The right branch fails once the left one has counted its run (no race).
                        "StartAt": "CountRight",
                        "States": {
                            "CountRight": count_run("right", Next="LeftDone"),
                            "LeftDone": {
                                "Type": "Task",
                                "Resource": "arn:aws:states:::dynamodb:getItem",
                                "Parameters": {"TableName": TABLE, "Key": {"step": {"S": "left"}}},
                                "ResultPath": "$.left",
                                "Next": "Counted",
                            },
                            "Counted": {
                                "Type": "Choice",
                                "Choices": [{"Variable": "$.left.Item", "IsPresent": True, "Next": "ReadRight"}],
                                "Default": "LeftDone",
                            },
                            "ReadRight": read_object("right.txt", End=True),
                        },
                    },
                ],
                "End": True,
            }
        },
    }
    arn = start(aws, definition, {"side": "in"})
    assert wait_for(aws, arn).status == "FAILED"
    put("right.txt", "right")
    aws.redrive_execution(executionArn=arn)
    redriven = wait_for(aws, arn)

    assert redriven.status == "SUCCEEDED", redriven.describe.get("cause")
    assert redriven.output == [{"side": "in"}, {"size": 5}]
    assert (runs("left"), runs("right")) == (1, 2)


def test_an_aborted_execution_is_redriven(aws: Any) -> None:
    definition = {
        "StartAt": "Prepare",
        "States": {
            "Prepare": count_run("prepare", Next="Hold"),
            "Hold": {"Type": "Wait", "Seconds": 600, "Next": "Done"},
            "Done": {"Type": "Pass", "Result": "done", "End": True},
        },
    }
    arn = start(aws, definition)
    while "Hold" not in wait_entered(aws, arn):
        pass
    aws.stop_execution(executionArn=arn)
    assert wait_for(aws, arn).status == "ABORTED"
    assert aws.describe_execution(executionArn=arn)["redriveStatus"] == "REDRIVABLE"
    aws.redrive_execution(executionArn=arn)
    assert aws.describe_execution(executionArn=arn)["status"] == "RUNNING"
    while wait_entered(aws, arn).count("Hold") < 2:
        pass
    aws.stop_execution(executionArn=arn)
    stopped = wait_for(aws, arn)

    assert stopped.status == "ABORTED"
    assert stopped.describe["redriveCount"] == 1
    assert runs("prepare") == 1
    assert [event["type"] for event in stopped.events].count("ExecutionRedriven") == 1


def test_a_timed_out_execution_is_redriven_and_its_timeout_counts_again(aws: Any) -> None:
    definition = {
        "TimeoutSeconds": 1,
        "StartAt": "Prepare",
        "States": {
            "Prepare": count_run("prepare", Next="Hold"),
            "Hold": {"Type": "Wait", "Seconds": 600, "End": True},
        },
    }
    arn = start(aws, definition)
    first = wait_for(aws, arn)
    aws.redrive_execution(executionArn=arn)
    second = wait_for(aws, arn)

    assert (first.status, second.status) == ("TIMED_OUT", "TIMED_OUT")
    assert runs("prepare") == 1
    types = [event["type"] for event in second.events]
    assert types.count("ExecutionTimedOut") == 2 and types.count("ExecutionRedriven") == 1
    assert second.describe["redriveStatus"] == "REDRIVABLE"


def wait_entered(sfn: Any, arn: str) -> list[str]:
    """The states the execution has entered so far (a poll: the callers loop until theirs is there)."""
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return Execution({}, events).entered_states


def test_list_executions_filters_on_redrives(aws: Any) -> None:
    arn, _, answer, _ = _failed_then_redriven(aws)
    machine = aws.describe_execution(executionArn=arn)["stateMachineArn"]
    other = aws.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
    wait_for(aws, other)

    redriven = aws.list_executions(stateMachineArn=machine, redriveFilter="REDRIVEN")["executions"]
    assert [(item["executionArn"], item["redriveCount"], item["redriveDate"]) for item in redriven] == [
        (arn, 1, answer["redriveDate"])
    ]
    not_redriven = aws.list_executions(stateMachineArn=machine, redriveFilter="NOT_REDRIVEN")["executions"]
    assert [(item["executionArn"], item["redriveCount"]) for item in not_redriven] == [(other, 0)]
    assert "redriveDate" not in not_redriven[0]
    assert len(aws.list_executions(stateMachineArn=machine)["executions"]) == 2
    with pytest.raises(ClientError) as raised:
        aws.list_executions(stateMachineArn=machine, redriveFilter="SOMETIMES")
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert "'redriveFilter'" in raised.value.response["Error"]["Message"]


def test_a_client_token_answers_the_same_redrive_again(aws: Any) -> None:
    arn = start(aws, {"StartAt": "Read", "States": {"Read": read_object("token.txt", End=True)}})
    wait_for(aws, arn)
    first = aws.redrive_execution(executionArn=arn, clientToken="redrive-once")
    again = aws.redrive_execution(executionArn=arn, clientToken="redrive-once")
    wait_for(aws, arn)

    assert again["redriveDate"] == first["redriveDate"]
    assert aws.describe_execution(executionArn=arn)["redriveCount"] == 1


# -- what AWS refuses ------------------------------------------------------------------------------


def test_a_succeeded_or_running_execution_is_not_redrivable(aws: Any) -> None:
    done = start(aws, {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    wait_for(aws, done)
    assert refused(aws, done) == ("ExecutionNotRedrivable", "Execution is SUCCEEDED and cannot be redriven")

    running = start(aws, {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}})
    assert refused(aws, running) == ("ExecutionNotRedrivable", "Execution is RUNNING and cannot be redriven")
    describe = aws.describe_execution(executionArn=running)
    assert (describe["redriveStatus"], describe["redriveStatusReason"]) == (
        "NOT_REDRIVABLE",
        "Execution is RUNNING and cannot be redriven",
    )
    aws.stop_execution(executionArn=running)


def test_an_execution_that_does_not_exist_is_refused(aws: Any) -> None:
    arn = start(aws, {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    missing = arn.rsplit(":", 1)[0] + ":no-such-run"

    assert refused(aws, missing) == ("ExecutionDoesNotExist", f"Execution Does Not Exist: '{missing}'")
    assert refused(aws, "not-an-arn")[0] == "InvalidArn"


def _backend_execution(arn: str) -> Any:
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    backend = stepfunctions_parser_backends["123456789012"][REGION]
    return backend.describe_execution(arn)


def test_an_execution_stopped_over_14_days_ago_is_not_redrivable(aws: Any) -> None:
    arn = start(aws, {"StartAt": "Read", "States": {"Read": read_object("late.txt", End=True)}})
    wait_for(aws, arn)
    execution = _backend_execution(arn)
    execution.stop_date = datetime.datetime.now(tz=datetime.UTC) - datetime.timedelta(days=15)

    assert refused(aws, arn) == ("ExecutionNotRedrivable", "Execution redrivable period exceeded")


def test_an_execution_redriven_1000_times_is_not_redrivable(aws: Any) -> None:
    from stepml.local.stepfunctions.redrive import record_of

    arn = start(aws, {"StartAt": "Read", "States": {"Read": read_object("limit.txt", End=True)}})
    wait_for(aws, arn)
    record_of(_backend_execution(arn).exec_worker.env.event_manager).count = 1000

    assert refused(aws, arn) == (
        "ExecutionNotRedrivable",
        "Execution has been redriven the maximum number of times (1000)",
    )


def test_an_express_execution_is_not_redrivable(aws: Any) -> None:
    arn = start(aws, {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E"}}}, type="EXPRESS")
    wait_for(aws, arn)

    assert refused(aws, arn) == ("ExecutionNotRedrivable", "Execution of an EXPRESS state machine cannot be redriven")


# -- behind the local cloud's IAM gate and request checks --------------------------------------------


def test_the_gate_authorizes_redrive_execution_on_the_execution(gated_moto: Any, monkeypatch: Any) -> None:
    from moto.core.config import default_user_config

    monkeypatch.setitem(default_user_config["stepfunctions"], "execute_state_machine", True)
    sfn = gated_moto.client("stepfunctions")
    machine = sfn.create_state_machine(
        name="gated",
        definition=json.dumps({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Broken"}}}),
        roleArn=ROLE_ARN,
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, name="run-1")["executionArn"]
    assert wait_for(sfn, arn).status == "FAILED"
    reader = gated_moto.role("reader", "lambda.amazonaws.com", [_allow("states:DescribeExecution", arn)])
    operator = gated_moto.role("operator", "lambda.amazonaws.com", [_allow("states:RedriveExecution", arn)])

    def as_role(role: str) -> Any:
        return gated_moto.client(
            "stepfunctions", **gated_moto.authorizer.principals.credentials(role, "s").client_kwargs()
        )

    with pytest.raises(ClientError) as denied:
        as_role(reader).redrive_execution(executionArn=arn)
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "states:RedriveExecution" in denied.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as invalid:
        as_role(operator).redrive_execution(executionArn=arn, clientToken="x" * 65)
    assert invalid.value.response["Error"]["Code"] == "ValidationException"
    assert "clientToken" in invalid.value.response["Error"]["Message"]

    assert "redriveDate" in as_role(operator).redrive_execution(executionArn=arn)
    assert wait_for(sfn, arn).describe["redriveCount"] == 1


def _allow(action: str, resource: str) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}
