"""TestState, as Workflow Studio's *Test state* calls it: one state run once, with mocks and inspection data."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from stepml.local.stepfunctions.test_state_mocks import NO_MAP_OR_PARALLEL
from tests.unit.stepfunctions.support import REGION, ROLE_ARN

LAMBDA_TASK: dict[str, Any] = {
    "Type": "Task",
    "Resource": "arn:aws:states:::lambda:invoke",
    "Parameters": {"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:score", "Payload.$": "$"},
    "ResultSelector": {"score.$": "$.Payload.score"},
    "ResultPath": "$.scored",
    "Retry": [{"ErrorEquals": ["Lambda.TooManyRequestsException"], "IntervalSeconds": 2, "MaxAttempts": 2}],
    "Catch": [
        {"ErrorEquals": ["Lambda.TooManyRequestsException"], "Next": "Throttled"},
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Report"},
    ],
    "Next": "Publish",
}


#: TestState's endpoint is sync-states.<region>: botocore prepends "sync-" to the host, which a local
#: cloud's address (127.0.0.1, localhost) cannot take, so its clients leave the prefix out.
LOCAL_CLOUD_CLIENT = Config(inject_host_prefix=False)


def test_state(definition: dict[str, Any], state_input: Any, **params: Any) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions", region_name=REGION, config=LOCAL_CLOUD_CLIENT)
    response = sfn.test_state(definition=json.dumps(definition), input=json.dumps(state_input), **params)
    response.pop("ResponseMetadata", None)
    return response


test_state.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def test_a_pass_state_shows_each_step_of_its_input_and_output_processing_at_debug(sfn_moto: None) -> None:
    definition = {
        "Type": "Pass",
        "InputPath": "$.order",
        "Parameters": {"id.$": "$.id", "source": "studio"},
        "ResultPath": "$.copy",
        "Next": "Ship",
    }
    response = test_state(definition, {"order": {"id": 7, "items": 2}}, roleArn=ROLE_ARN, inspectionLevel="DEBUG")
    assert response["status"] == "SUCCEEDED"
    assert response["nextState"] == "Ship"
    # ResultPath places the result in the state's own input, not in what InputPath selected.
    assert json.loads(response["output"]) == {"order": {"id": 7, "items": 2}, "copy": {"id": 7, "source": "studio"}}
    inspection = {key: json.loads(value) for key, value in response["inspectionData"].items()}
    assert inspection == {
        "input": {"order": {"id": 7, "items": 2}},
        "afterInputPath": {"id": 7, "items": 2},
        "afterParameters": {"id": 7, "source": "studio"},
        "afterResultPath": {"order": {"id": 7, "items": 2}, "copy": {"id": 7, "source": "studio"}},
    }


def test_info_answers_without_inspection_data(sfn_moto: None) -> None:
    response = test_state({"Type": "Pass", "End": True}, {"a": 1}, roleArn=ROLE_ARN)
    assert response == {"status": "SUCCEEDED", "output": '{"a":1}'}


def test_a_task_with_a_mocked_result_calls_no_service(sfn_moto: None) -> None:
    mocked = {"StatusCode": 200, "Payload": {"score": 0.93}}
    response = test_state(
        LAMBDA_TASK, {"id": 7}, inspectionLevel="DEBUG", mock={"result": json.dumps(mocked)}
    )  # no roleArn: optional with a mock, as in AWS
    assert response["status"] == "SUCCEEDED"
    assert response["nextState"] == "Publish"
    assert json.loads(response["output"]) == {"id": 7, "scored": {"score": 0.93}}
    inspection = response["inspectionData"]
    assert json.loads(inspection["afterParameters"]) == {
        "FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:score",
        "Payload": {"id": 7},
    }
    assert json.loads(inspection["result"]) == mocked
    assert json.loads(inspection["afterResultSelector"]) == {"score": 0.93}


def test_a_task_with_a_mocked_error_is_caught_by_its_catch(sfn_moto: None) -> None:
    response = test_state(
        LAMBDA_TASK,
        {"id": 7},
        inspectionLevel="DEBUG",
        mock={"errorOutput": {"error": "Lambda.ServiceException", "cause": "the function crashed"}},
    )
    assert response["status"] == "CAUGHT_ERROR"
    assert response["nextState"] == "Report"
    assert (response["error"], response["cause"]) == ("Lambda.ServiceException", "the function crashed")
    assert json.loads(response["output"]) == {
        "id": 7,
        "failure": {"Error": "Lambda.ServiceException", "Cause": "the function crashed"},
    }
    assert response["inspectionData"]["errorDetails"] == {"catchIndex": 1}


def test_a_mocked_error_a_retry_matches_is_retriable_until_its_attempts_are_spent(sfn_moto: None) -> None:
    throttled = {"errorOutput": {"error": "Lambda.TooManyRequestsException", "cause": "Rate exceeded"}}
    first = test_state(LAMBDA_TASK, {"id": 7}, inspectionLevel="DEBUG", mock=throttled)
    assert first["status"] == "RETRIABLE"
    assert (first["error"], first["cause"]) == ("Lambda.TooManyRequestsException", "Rate exceeded")
    assert first["inspectionData"]["errorDetails"] == {"retryIndex": 0, "retryBackoffIntervalSeconds": 2}
    second = test_state(
        LAMBDA_TASK, {"id": 7}, inspectionLevel="DEBUG", mock=throttled, stateConfiguration={"retrierRetryCount": 1}
    )
    assert second["inspectionData"]["errorDetails"] == {"retryIndex": 0, "retryBackoffIntervalSeconds": 4}
    spent = test_state(LAMBDA_TASK, {"id": 7}, mock=throttled, stateConfiguration={"retrierRetryCount": 2})
    assert (spent["status"], spent["nextState"]) == ("CAUGHT_ERROR", "Throttled")


def test_an_uncaught_mocked_error_fails_the_state(sfn_moto: None) -> None:
    task = {key: value for key, value in LAMBDA_TASK.items() if key not in ("Retry", "Catch")}
    response = test_state(task, {}, mock={"errorOutput": {"error": "Lambda.ServiceException", "cause": "boom"}})
    assert (response["status"], response["error"], response["cause"]) == ("FAILED", "Lambda.ServiceException", "boom")
    assert "nextState" not in response


def test_a_choice_answers_the_state_it_chooses(sfn_moto: None) -> None:
    definition = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.accuracy", "NumericGreaterThanEquals": 0.9, "Next": "Deploy"}],
        "Default": "Retrain",
    }
    assert test_state(definition, {"accuracy": 0.95}, roleArn=ROLE_ARN)["nextState"] == "Deploy"
    assert test_state(definition, {"accuracy": 0.5}, roleArn=ROLE_ARN)["nextState"] == "Retrain"


def test_state_name_picks_one_state_of_a_whole_machine(sfn_moto: None) -> None:
    machine = {
        "StartAt": "First",
        "States": {
            "First": {"Type": "Pass", "Next": "Second"},
            "Second": {"Type": "Pass", "Result": {"second": True}, "End": True},
        },
    }
    response = test_state(machine, {}, roleArn=ROLE_ARN, stateName="Second")
    assert response == {"status": "SUCCEEDED", "output": '{"second":true}'}


def test_a_jsonata_state_assigns_its_variables(sfn_moto: None) -> None:
    definition = {
        "Type": "Pass",
        "QueryLanguage": "JSONata",
        "Assign": {"total": "{% $states.input.a + $base %}"},
        "Output": {"sum": "{% $states.input.a + $base %}"},
        "End": True,
    }
    response = test_state(definition, {"a": 2}, roleArn=ROLE_ARN, inspectionLevel="DEBUG", variables='{"base": 40}')
    assert json.loads(response["output"]) == {"sum": 42}
    assert json.loads(response["inspectionData"]["variables"]) == {"base": 40, "total": 42}


@pytest.mark.parametrize(
    ("definition", "params", "code", "words"),
    [
        ({"Type": "Pass", "Catch": [], "End": True}, {}, "InvalidDefinition", "Field 'Catch' is not supported"),
        ({"Type": "Pass", "End": True}, {"inspectionLevel": "VERBOSE"}, "ValidationException", "inspectionLevel"),
        (
            {"Type": "Pass", "End": True},
            {"mock": {"result": "{}"}},
            "ValidationException",
            "State type 'Pass' is not supported when a mock is specified",
        ),
        ({"Type": "Pass", "End": True}, {"roleArn": None}, "ValidationException", "roleArn"),
        (
            {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}},
            {"stateName": "B"},
            "ValidationException",
            "'B'",
        ),
    ],
    ids=["catch-on-pass", "bad-inspection-level", "mock-on-pass", "no-role-without-mock", "unknown-state-name"],
)
def test_what_aws_refuses_is_refused(
    sfn_moto: None, definition: dict[str, Any], params: dict[str, Any], code: str, words: str
) -> None:
    params = {"roleArn": ROLE_ARN, **params}
    with pytest.raises(ClientError) as refused:
        test_state(definition, {}, **{name: value for name, value in params.items() if value is not None})
    assert refused.value.response["Error"]["Code"] == code
    assert words in refused.value.response["Error"]["Message"]


def test_a_mocked_sdk_result_is_checked_against_the_api_response(sfn_moto: None) -> None:
    task = {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:getObject", "End": True}
    params = {"Bucket": "b", "Key": "k"}
    with pytest.raises(ClientError) as refused:
        test_state({**task, "Parameters": params}, {}, mock={"result": '{"Body": "x", "Colour": "red"}'})
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "'Colour'" in refused.value.response["Error"]["Message"]
    unchecked = {"result": '{"Colour": "red"}', "fieldValidationMode": "NONE"}
    assert test_state({**task, "Parameters": params}, {}, mock=unchecked)["output"] == '{"Colour":"red"}'


def test_a_wait_is_evaluated_without_waiting(sfn_moto: None) -> None:
    response = test_state({"Type": "Wait", "Seconds": 3600, "Next": "Go"}, {"a": 1}, roleArn=ROLE_ARN)
    assert (response["status"], response["nextState"]) == ("SUCCEEDED", "Go")


def test_a_sync_integration_runs_only_with_a_mock(sfn_moto: None) -> None:
    task = {"Type": "Task", "Resource": "arn:aws:states:::glue:startJobRun.sync", "Parameters": {"JobName": "j"}}
    with pytest.raises(ClientError) as refused:
        test_state({**task, "End": True}, {}, roleArn=ROLE_ARN)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    mocked = test_state({**task, "End": True}, {}, mock={"result": '{"JobRunState": "SUCCEEDED"}'})
    assert json.loads(mocked["output"]) == {"JobRunState": "SUCCEEDED"}


# -- Map and Parallel: only with a mock, whose result is the whole state's result --------------------

MAP_STATE: dict[str, Any] = {
    "Type": "Map",
    "ItemsPath": "$.orders",
    "ItemProcessor": {"StartAt": "Score", "States": {}},
    "ResultSelector": {"scores.$": "$[*].score"},
    "ResultPath": "$.scored",
    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Report"}],
    "Next": "Publish",
}
MAP_STATE["ItemProcessor"]["States"]["Score"] = {
    key: value for key, value in LAMBDA_TASK.items() if key not in ("Catch", "Next")
} | {"End": True}

PARALLEL_STATE: dict[str, Any] = {
    "Type": "Parallel",
    "Branches": [
        {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}},
        {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": True}}},
    ],
    "OutputPath": "$[1]",
    "Retry": [{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 3, "MaxAttempts": 1}],
    "End": True,
}


def test_a_mocked_map_processes_the_mocked_result_as_the_states_result(sfn_moto: None) -> None:
    mocked = [{"score": 0.9}, {"score": 0.4}]
    response = test_state(
        MAP_STATE, {"orders": [1, 2]}, inspectionLevel="DEBUG", mock={"result": json.dumps(mocked)}
    )  # no roleArn: optional with a mock

    assert response == {
        "status": "SUCCEEDED",
        "nextState": "Publish",
        "output": '{"orders":[1,2],"scored":{"scores":[0.9,0.4]}}',
        "inspectionData": {
            "input": '{"orders":[1,2]}',
            "afterInputPath": '{"orders":[1,2]}',
            "afterParameters": '{"orders":[1,2]}',
            "result": '[{"score":0.9},{"score":0.4}]',
            "afterResultSelector": '{"scores":[0.9,0.4]}',
            "afterResultPath": '{"orders":[1,2],"scored":{"scores":[0.9,0.4]}}',
        },
    }


def test_a_mocked_map_error_is_caught_by_the_maps_catch(sfn_moto: None) -> None:
    failure = {"errorOutput": {"error": "States.ExceedToleratedFailureThreshold", "cause": "2 items failed"}}
    response = test_state(MAP_STATE, {"orders": [1, 2]}, inspectionLevel="DEBUG", mock=failure)

    assert response == {
        "status": "CAUGHT_ERROR",
        "nextState": "Report",
        "error": "States.ExceedToleratedFailureThreshold",
        "cause": "2 items failed",
        "output": (
            '{"orders":[1,2],"failure":{"Error":"States.ExceedToleratedFailureThreshold","Cause":"2 items failed"}}'
        ),
        "inspectionData": {
            "input": '{"orders":[1,2]}',
            "afterResultPath": (
                '{"orders":[1,2],"failure":{"Error":"States.ExceedToleratedFailureThreshold","Cause":"2 items failed"}}'
            ),
            "errorDetails": {"catchIndex": 0},
        },
    }


def test_a_mocked_parallel_answers_its_output_and_its_retries(sfn_moto: None) -> None:
    succeeded = test_state(PARALLEL_STATE, {"a": 1}, mock={"result": '[{"left": 1}, {"right": 2}]'})
    assert succeeded == {"status": "SUCCEEDED", "output": '{"right":2}'}

    failure = {"errorOutput": {"error": "States.TaskFailed", "cause": "branch B failed"}}
    retriable = test_state(PARALLEL_STATE, {"a": 1}, inspectionLevel="DEBUG", mock=failure)
    assert retriable == {
        "status": "RETRIABLE",
        "nextState": "TestState",
        "error": "States.TaskFailed",
        "cause": "branch B failed",
        "inspectionData": {
            "input": '{"a":1}',
            "errorDetails": {"retryIndex": 0, "retryBackoffIntervalSeconds": 3},
        },
    }
    spent = test_state(PARALLEL_STATE, {"a": 1}, mock=failure, stateConfiguration={"retrierRetryCount": 1})
    assert spent == {"status": "FAILED", "error": "States.TaskFailed", "cause": "branch B failed"}


@pytest.mark.parametrize(
    ("definition", "mock", "code", "message"),
    [
        (MAP_STATE, None, "InvalidDefinition", NO_MAP_OR_PARALLEL),
        (PARALLEL_STATE, None, "InvalidDefinition", NO_MAP_OR_PARALLEL),
        (MAP_STATE, {"result": '{"not": "a list"}'}, "ValidationException", "Mocked result must be an array."),
        (
            {**MAP_STATE, "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {}}},
            {"result": "[]"},
            "ValidationException",
            "Mocked result must be a JSON object.",
        ),
        (MAP_STATE, {"result": "[1,"}, "ValidationException", "Mocked result must be valid JSON"),
        (
            PARALLEL_STATE,
            {"result": "[]", "errorOutput": {"error": "E"}},
            "ValidationException",
            "A test mock should have only one of the following fields: [result, errorOutput].",
        ),
        (
            PARALLEL_STATE,
            {"result": "[]", "fieldValidationMode": "LOOSE"},
            "ValidationException",
            "1 validation error detected: Value 'LOOSE' at 'mock.fieldValidationMode' failed to satisfy "
            "constraint: Member must satisfy enum value set: [STRICT, PRESENT, NONE]",
        ),
        (
            {"Type": "Succeed"},
            {"result": "{}"},
            "ValidationException",
            "State type 'Succeed' is not supported when a mock is specified",
        ),
    ],
    ids=[
        "map-without-mock",
        "parallel-without-mock",
        "map-result-not-an-array",
        "result-writer-map-result-not-an-object",
        "result-not-json",
        "result-and-error",
        "unknown-field-validation-mode",
        "mock-on-succeed",
    ],
)
def test_what_aws_refuses_of_a_map_or_parallel_mock_is_refused(
    sfn_moto: None, definition: dict[str, Any], mock: dict[str, Any] | None, code: str, message: str
) -> None:
    params: dict[str, Any] = {"roleArn": ROLE_ARN} if mock is None else {"mock": mock}
    with pytest.raises(ClientError) as refused:
        test_state(definition, {"orders": []}, **params)
    assert (refused.value.response["Error"]["Code"], refused.value.response["Error"]["Message"]) == (code, message)
