"""Conformance of local executions with Step Functions as AWS documents it (issue 10).

Each case is a definition, an input and the outcome AWS documents or records: the status, the
error name and cause, the output. ``CASES`` is data so the README can count it; the cases that
need more than one execution (unnamed starts, DescribeExecution of an S3 listing) are the
tests after it. Sources: the Step Functions developer guide ("Handling errors", "Parallel
workflow state", "Map state", "Passing data with variables", "Transforming data with JSONata",
"Context object") and the API reference (StartExecution, DescribeExecution).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.unit.stepfunctions.support import REGION, ROLE_ARN, run, wait_for

_UNSET: Any = object()
_ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/conformance"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class Case:
    """One definition run with one input, and the outcome AWS documents or records for it."""

    id: str
    definition: dict[str, Any]
    input: Any = field(default_factory=dict)
    status: str = "SUCCEEDED"
    output: Any = _UNSET
    error: str | None = None
    cause: str | None = None  # the whole cause, or with ``cause_contains`` a part of it
    cause_contains: bool = False
    gap: str | None = None  # why the local cloud does not behave so yet (the case is expected to fail)


def _fail_task(error: str, cause: str = "it broke") -> dict[str, Any]:
    """A state that fails with ``error`` (any name, States.* included, as a Fail state may)."""
    return {"Type": "Fail", "Error": error, "Cause": cause}


def _timing_out_task() -> dict[str, Any]:
    """A Task that fails with States.Timeout: it sends its task token to a queue no one reads."""
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {"QueueUrl": _QUEUE_URL, "MessageBody.$": "$$.Task.Token"},
        "TimeoutSeconds": 1,
        "End": True,
    }


def _parallel(branch_states: dict[str, Any], start: str, **fields: Any) -> dict[str, Any]:
    return {"Type": "Parallel", "Branches": [{"StartAt": start, "States": branch_states}], **fields}


def _map(item_states: dict[str, Any], start: str, **fields: Any) -> dict[str, Any]:
    return {"Type": "Map", "ItemProcessor": {"StartAt": start, "States": item_states}, **fields}


def _catch_all(error: str = "States.ALL") -> list[dict[str, Any]]:
    return [{"ErrorEquals": [error], "ResultPath": "$.caught", "Next": "Handled"}]


def _caught_by(state: dict[str, Any], error: str) -> dict[str, Any]:
    """A machine whose first state is ``state`` with a Catch on ``error`` to a Pass state."""
    return {
        "StartAt": "Outer",
        "States": {
            "Outer": {**state, "Catch": _catch_all(error), "End": True},
            "Handled": {"Type": "Pass", "End": True},
        },
    }


# -- States.* errors inside Parallel branches and Map iterations --------------------------------

_STATES_ERROR_CASES = [
    Case(
        id=f"{kind}-catches-{error}",
        definition=_caught_by(
            wrap({"Fail": _fail_task(error, "inner cause")}, "Fail"),
            error,
        ),
        input={"items": [1]},
        output={"items": [1], "caught": {"Error": error, "Cause": "inner cause"}},
    )
    for kind, wrap in (
        ("parallel", lambda states, start: _parallel(states, start)),
        ("map", lambda states, start: _map(states, start, ItemsPath="$.items")),
    )
    for error in ("States.TaskFailed", "States.Timeout", "custom.Error")
]

_TASK_CATCH_IN_BRANCH_CASES = [
    Case(
        id="parallel-task-timeout-caught-inside-branch",
        definition={
            "StartAt": "P",
            "States": {
                "P": _parallel(
                    {
                        "Wait": {**_timing_out_task(), "Catch": _catch_all("States.Timeout")},
                        "Handled": {"Type": "Pass", "Result": "handled", "End": True},
                    },
                    "Wait",
                    End=True,
                )
            },
        },
        output=["handled"],
    ),
    Case(
        id="parallel-task-timeout-caught-by-the-parallel",
        definition=_caught_by(_parallel({"Wait": _timing_out_task()}, "Wait"), "States.Timeout"),
        input={"n": 1},
        output={"n": 1, "caught": {"Error": "States.Timeout", "Cause": _UNSET}},
    ),
    Case(
        id="map-task-timeout-caught-by-the-map",
        definition=_caught_by(_map({"Wait": _timing_out_task()}, "Wait", ItemsPath="$.items"), "States.Timeout"),
        input={"items": [1]},
        output={"items": [1], "caught": {"Error": "States.Timeout", "Cause": _UNSET}},
    ),
    Case(
        id="map-task-retried-then-caught-inside-iteration",
        definition={
            "StartAt": "M",
            "States": {
                "M": _map(
                    {
                        "Wait": {
                            **_timing_out_task(),
                            "Retry": [{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 1, "IntervalSeconds": 1}],
                            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Handled"}],
                        },
                        "Handled": {"Type": "Pass", "OutputPath": "$.error.Error", "End": True},
                    },
                    "Wait",
                    End=True,
                )
            },
        },
        input=[{"n": 1}, {"n": 2}],
        output=["States.Timeout", "States.Timeout"],
    ),
    Case(
        id="parallel-jsonata-evaluation-error-keeps-its-name",
        definition={
            "QueryLanguage": "JSONata",
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Parallel",
                    "Branches": [
                        {"StartAt": "Bad", "States": {"Bad": {"Type": "Pass", "Output": "{% $nope() %}", "End": True}}}
                    ],
                    "Catch": [
                        {
                            "ErrorEquals": ["States.QueryEvaluationError"],
                            "Next": "Handled",
                            "Output": "{% $states.errorOutput.Error %}",
                        }
                    ],
                    "End": True,
                },
                "Handled": {"Type": "Pass", "End": True},
            },
        },
        output="States.QueryEvaluationError",
    ),
    Case(
        id="parallel-task-failed-matches-a-custom-branch-error",
        definition=_caught_by(_parallel({"Fail": _fail_task("custom.Error", "c")}, "Fail"), "States.TaskFailed"),
        output={"caught": {"Error": "custom.Error", "Cause": "c"}},
    ),
    Case(
        id="parallel-task-failed-does-not-match-a-branch-timeout",
        definition=_caught_by(_parallel({"Wait": _timing_out_task()}, "Wait"), "States.TaskFailed"),
        status="FAILED",
        error="States.Timeout",
    ),
    Case(
        id="map-item-index-and-value-in-the-context-object",
        definition={
            "StartAt": "M",
            "States": {
                "M": _map(
                    {"P": {"Type": "Pass", "End": True}},
                    "P",
                    ItemSelector={"index.$": "$$.Map.Item.Index", "value.$": "$$.Map.Item.Value"},
                    End=True,
                )
            },
        },
        input=["a", "b"],
        output=[{"index": 0, "value": "a"}, {"index": 1, "value": "b"}],
    ),
    Case(
        id="map-jsonata-evaluation-error-keeps-its-name",
        definition={
            "QueryLanguage": "JSONata",
            "StartAt": "M",
            "States": {
                "M": {
                    "Type": "Map",
                    "Items": [1],
                    "ItemProcessor": {
                        "StartAt": "Bad",
                        "States": {"Bad": {"Type": "Pass", "Output": "{% $nope() %}", "End": True}},
                    },
                    "Catch": [
                        {
                            "ErrorEquals": ["States.QueryEvaluationError"],
                            "Next": "Handled",
                            "Output": "{% $states.errorOutput.Error %}",
                        }
                    ],
                    "End": True,
                },
                "Handled": {"Type": "Pass", "End": True},
            },
        },
        output="States.QueryEvaluationError",
    ),
    Case(
        id="parallel-uncaught-states-error-fails-the-execution-with-its-name",
        definition={
            "StartAt": "P",
            "States": {"P": _parallel({"Fail": _fail_task("States.TaskFailed", "c")}, "Fail", End=True)},
        },
        status="FAILED",
        error="States.TaskFailed",
        cause="c",
    ),
    Case(
        id="map-uncaught-states-error-fails-the-execution-with-its-name",
        definition={
            "StartAt": "M",
            "States": {"M": _map({"Fail": _fail_task("States.Timeout", "c")}, "Fail", End=True)},
        },
        input=[1],
        status="FAILED",
        error="States.Timeout",
        cause="c",
    ),
    Case(
        id="parallel-retry-on-states-error-then-catch",
        definition=_caught_by(
            _parallel(
                {"Fail": _fail_task("States.TaskFailed", "c")},
                "Fail",
                Retry=[{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 1, "IntervalSeconds": 1}],
            ),
            "States.TaskFailed",
        ),
        output={"caught": {"Error": "States.TaskFailed", "Cause": "c"}},
    ),
]

# -- Assign and Output ------------------------------------------------------------------------

_TRICKY = 'say "hi"\\n\nnext \\ line'

_VARIABLE_CASES = [
    Case(
        id="jsonata-assign-string-literal-holds-its-value",
        definition={
            "QueryLanguage": "JSONata",
            "StartAt": "A",
            "States": {
                "A": {"Type": "Pass", "Assign": {"text": _TRICKY}, "Next": "B"},
                "B": {"Type": "Pass", "Output": {"text": "{% $text %}"}, "End": True},
            },
        },
        output={"text": _TRICKY},
    ),
    Case(
        id="jsonpath-assign-string-literal-holds-its-value",
        definition={
            "StartAt": "A",
            "States": {
                "A": {"Type": "Pass", "Assign": {"text": _TRICKY, "nested": {"t": _TRICKY}}, "Next": "B"},
                "B": {"Type": "Pass", "Parameters": {"text.$": "$text", "nested.$": "$nested"}, "End": True},
            },
        },
        output={"text": _TRICKY, "nested": {"t": _TRICKY}},
    ),
    Case(
        id="jsonata-output-reads-variables-before-the-states-assign",
        definition={
            "QueryLanguage": "JSONata",
            "StartAt": "A",
            "States": {
                "A": {"Type": "Pass", "Assign": {"x": 1}, "Next": "B"},
                "B": {"Type": "Pass", "Assign": {"x": 2}, "Output": {"x": "{% $x %}"}, "Next": "C"},
                "C": {"Type": "Pass", "Output": {"before": "{% $states.input.x %}", "after": "{% $x %}"}, "End": True},
            },
        },
        output={"before": 1, "after": 2},
    ),
    Case(
        id="jsonpath-outputpath-reads-variables-before-the-states-assign",
        definition={
            "StartAt": "A",
            "States": {
                "A": {"Type": "Pass", "Assign": {"x": {"v": 1}}, "Next": "B"},
                "B": {"Type": "Pass", "Assign": {"x": {"v": 2}}, "OutputPath": "$x.v", "End": True},
            },
        },
        output=1,
    ),
    Case(
        id="assign-reads-variables-before-the-states-assign",
        definition={
            "QueryLanguage": "JSONata",
            "StartAt": "A",
            "States": {
                "A": {"Type": "Pass", "Assign": {"x": 1, "y": 10}, "Next": "B"},
                "B": {"Type": "Pass", "Assign": {"x": "{% $y %}", "y": "{% $x %}"}, "Next": "C"},
                "C": {"Type": "Pass", "Output": {"x": "{% $x %}", "y": "{% $y %}"}, "End": True},
            },
        },
        output={"x": 10, "y": 1},
    ),
]

# -- output as JSON text, errors worded as AWS words them ----------------------------------------

_OUTPUT_AND_ERROR_CASES = [
    Case(
        id="string-output-is-json-text",
        definition={"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "text", "End": True}}},
        output="text",
    ),
    Case(
        id="jsonata-wait-invalid-timestamp",
        definition={
            "QueryLanguage": "JSONata",
            "StartAt": "W",
            "States": {"W": {"Type": "Wait", "Timestamp": "{% 'not a timestamp' %}", "End": True}},
        },
        status="FAILED",
        error="States.QueryEvaluationError",
        cause="does not reference a valid ISO-8601 extended offset date-time format string",
        cause_contains=True,
    ),
    Case(
        id="jsonata-output-field-returned-nothing",
        definition={
            "QueryLanguage": "JSONata",
            "StartAt": "P",
            "States": {"P": {"Type": "Pass", "Output": {"result": "{% $states.input.missing %}"}, "End": True}},
        },
        status="FAILED",
        error="States.QueryEvaluationError",
        cause=(
            "The JSONata expression '$states.input.missing' specified for the field 'Output/result' "
            "returned nothing (undefined)."
        ),
        cause_contains=True,
    ),
    Case(
        id="jsonata-whole-output-returned-nothing",
        definition={
            "QueryLanguage": "JSONata",
            "StartAt": "P",
            "States": {"P": {"Type": "Pass", "Output": "{% $states.input.missing %}", "End": True}},
        },
        status="FAILED",
        error="States.QueryEvaluationError",
        cause="The JSONata expression '$states.input.missing' specified for the field 'Output' returned nothing",
        cause_contains=True,
    ),
    Case(
        id="jsonata-map-input-not-an-array",
        definition={
            "QueryLanguage": "JSONata",
            "StartAt": "M",
            "States": {
                "M": {
                    "Type": "Map",
                    "Items": "{% $states.input.n %}",
                    "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
                    "End": True,
                }
            },
        },
        input={"n": 1},
        status="FAILED",
        error="States.QueryEvaluationError",
        cause=(
            "specified for the field 'Items' returned an unexpected result type. "
            "Expected 'array', but was 'number' for value: 1"
        ),
        cause_contains=True,
    ),
    Case(
        id="jsonpath-map-input-not-an-array",
        definition={
            "StartAt": "M",
            "States": {"M": _map({"P": {"Type": "Pass", "End": True}}, "P", ItemsPath="$.n", End=True)},
        },
        input={"n": 1},
        status="FAILED",
        error="States.QueryEvaluationError",
        cause="Map state input must be an array but was: 1",
        cause_contains=True,
    ),
]

# -- the context object ------------------------------------------------------------------------

_CONTEXT_CASES = [
    Case(
        id="context-object-has-every-documented-execution-field",
        definition={
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Pass",
                    "Parameters": {
                        "redrive_count.$": "$$.Execution.RedriveCount",
                        "role.$": "$$.Execution.RoleArn",
                        "start.$": "$$.Execution.StartTime",
                        "entered.$": "$$.State.EnteredTime",
                        "input.$": "$$.Execution.Input",
                        "state.$": "$$.State.Name",
                        "retry_count.$": "$$.State.RetryCount",
                        "machine_name_is_text.$": "States.Format('{}', $$.StateMachine.Name)",
                    },
                    "OutputPath": "$",
                    "End": True,
                }
            },
        },
        input={"k": "v"},
        output={
            "redrive_count": 0,
            "role": ROLE_ARN,
            "start": _ISO_8601,
            "entered": _ISO_8601,
            "input": {"k": "v"},
            "state": "P",
            "retry_count": 0,
            "machine_name_is_text": _UNSET,
        },
    ),
    Case(
        id="jsonata-context-object-has-every-documented-field",
        definition={
            "QueryLanguage": "JSONata",
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Pass",
                    "Output": "{% $sort($keys($states.context.Execution)) %}",
                    "End": True,
                }
            },
        },
        output=["Id", "Input", "Name", "RedriveCount", "RoleArn", "StartTime"],
    ),
]

CASES: list[Case] = [
    *_STATES_ERROR_CASES,
    *_TASK_CATCH_IN_BRANCH_CASES,
    *_VARIABLE_CASES,
    *_OUTPUT_AND_ERROR_CASES,
    *_CONTEXT_CASES,
]


def _matches(expected: Any, actual: Any) -> bool:
    if expected is _UNSET:
        return True
    if isinstance(expected, re.Pattern):
        return isinstance(actual, str) and expected.match(actual) is not None
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(_matches(value, actual[key]) for key, value in expected.items())
        )
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(map(_matches, expected, actual))
    return expected == actual


def _check(case: Case) -> None:
    boto3.client("sqs", region_name=REGION).create_queue(QueueName=_QUEUE_URL.rsplit("/", 1)[1])
    execution = run(case.definition, case.input)

    describe = execution.describe
    assert (execution.status, describe.get("error")) == (case.status, case.error), describe.get("cause")
    if case.cause is not None:
        cause = describe.get("cause", "")
        assert case.cause in cause if case.cause_contains else case.cause == cause, cause
    if case.output is not _UNSET:
        assert _matches(case.output, execution.output), execution.output


def _check_cases(*ids: str) -> None:
    by_id = {case.id: case for case in CASES}
    for case_id in ids:
        _check(by_id[case_id])


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_an_execution_ends_as_aws_documents(sfn_moto: None, case: Case, request: pytest.FixtureRequest) -> None:
    if case.gap:
        request.applymarker(pytest.mark.xfail(reason=case.gap, strict=True))
    _check(case)


# -- one test per interpreter patch (the patch registry names these) ------------------------------


def test_a_states_error_leaves_a_branch_or_an_iteration_with_its_name(sfn_moto: None) -> None:
    _check_cases("parallel-catches-States.TaskFailed", "map-catches-States.Timeout")


def test_assign_string_literals_hold_their_value(sfn_moto: None) -> None:
    _check_cases("jsonata-assign-string-literal-holds-its-value", "jsonpath-assign-string-literal-holds-its-value")


def test_output_reads_variables_as_they_were_before_the_states_assign(sfn_moto: None) -> None:
    _check_cases(
        "jsonata-output-reads-variables-before-the-states-assign",
        "jsonpath-outputpath-reads-variables-before-the-states-assign",
    )


def test_invalid_wait_timestamps_and_map_inputs_fail_as_aws_words_them(sfn_moto: None) -> None:
    _check_cases("jsonata-wait-invalid-timestamp", "jsonpath-map-input-not-an-array")


def test_a_jsonata_expression_that_returns_nothing_names_its_field(sfn_moto: None) -> None:
    _check_cases("jsonata-output-field-returned-nothing", "jsonata-whole-output-returned-nothing")


def test_the_context_object_has_every_documented_field(sfn_moto: None) -> None:
    _check_cases(
        "context-object-has-every-documented-execution-field", "jsonata-context-object-has-every-documented-field"
    )


def test_the_output_of_a_string_is_json_text(sfn_moto: None) -> None:
    execution = run({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "text", "End": True}}})

    assert execution.describe["output"] == '"text"'


def test_an_execution_started_without_a_name_is_named_with_a_uuid(sfn_moto: None) -> None:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    definition = {
        "StartAt": "P",
        "States": {
            "P": {"Type": "Pass", "Parameters": {"name.$": "$$.Execution.Name", "id.$": "$$.Execution.Id"}, "End": True}
        },
    }
    arn = sfn.create_state_machine(name="unnamed", definition=json.dumps(definition), roleArn=ROLE_ARN)[
        "stateMachineArn"
    ]

    first = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    second = sfn.start_execution(stateMachineArn=arn)["executionArn"]

    assert first != second
    name = first.rsplit(":", 1)[1]
    assert _UUID.match(name), first
    execution = wait_for(sfn, first)
    assert execution.describe["name"] == name
    assert execution.output == {"name": name, "id": first}
    assert wait_for(sfn, second).status == "SUCCEEDED"


def test_a_distributed_map_over_an_s3_listing_can_be_described(sfn_moto: None) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="listing")
    s3.put_object(Bucket="listing", Key="in/a.csv", Body=b"1")
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:listObjectsV2",
                    "Parameters": {"Bucket": "listing", "Prefix": "in/"},
                },
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Keep",
                    "States": {"Keep": {"Type": "Pass", "End": True}},
                },
                "End": True,
            }
        },
    }
    execution = run(definition)

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    [item] = execution.output
    assert item["Key"] == "in/a.csv"
    assert isinstance(item["LastModified"], int)


def test_an_execution_name_aws_refuses_is_refused(sfn_moto: None) -> None:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    arn = sfn.create_state_machine(name="named", definition=json.dumps(definition), roleArn=ROLE_ARN)["stateMachineArn"]

    with pytest.raises(ClientError) as refused:
        sfn.start_execution(stateMachineArn=arn, name="run one")

    assert refused.value.response["Error"]["Code"] == "InvalidName"


def test_describe_state_machine_for_execution_answers_the_definition_the_execution_ran(sfn_moto: None) -> None:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    first = {"StartAt": "One", "States": {"One": {"Type": "Pass", "Result": 1, "End": True}}}
    second = {"StartAt": "Two", "States": {"Two": {"Type": "Pass", "Result": 2, "End": True}}}
    arn = sfn.create_state_machine(name="snapshots", definition=json.dumps(first), roleArn=ROLE_ARN)["stateMachineArn"]
    before = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    wait_for(sfn, before)
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(second))
    after = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    wait_for(sfn, after)

    assert json.loads(sfn.describe_state_machine_for_execution(executionArn=before)["definition"]) == first
    described = sfn.describe_state_machine_for_execution(executionArn=after)
    assert json.loads(described["definition"]) == second and described["stateMachineArn"] == arn
    with pytest.raises(ClientError) as raised:
        sfn.describe_state_machine_for_execution(executionArn=arn.replace(":stateMachine:", ":execution:") + ":nope")
    assert raised.value.response["Error"]["Code"] == "ResourceNotFound"
