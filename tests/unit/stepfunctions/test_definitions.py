"""What CreateStateMachine, UpdateStateMachine and ValidateStateMachineDefinition refuse (validation patches)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from stepml.local.stepfunctions.definitions import definition_problems
from stepml.local.stepfunctions.schema import reachable_states
from tests.unit.stepfunctions.support import (
    REGION,
    ROLE_ARN,
    one_task,
    training_job_parameters,
    training_task,
    validate_definition,
)

UPDATE_WITH_DEPLOYMENT_CONFIG = {
    "EndpointName": "prod",
    "EndpointConfigName": "c",
    "DeploymentConfig": {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "latency"}]}},
}


# -- CreateStateMachine and UpdateStateMachine ----------------------------------------------


def test_create_state_machine_refuses_a_field_the_optimized_integration_does_not_support(sfn_moto: None) -> None:
    definition = one_task(
        {"Resource": "arn:aws:states:::sagemaker:updateEndpoint", "Parameters": UPDATE_WITH_DEPLOYMENT_CONFIG}
    )
    with pytest.raises(ClientError) as raised:
        boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name="update", definition=json.dumps(definition), roleArn=ROLE_ARN
        )
    assert raised.value.response["Error"]["Code"] == "InvalidDefinition"
    assert raised.value.response["Error"]["Message"] == (
        'Invalid State Machine Definition: \'SCHEMA_VALIDATION_FAILED: The field "DeploymentConfig" is not '
        "supported by Step Functions at /States/Task/Parameters'"
    )


def test_the_aws_sdk_integration_takes_the_full_api(sfn_moto: None) -> None:
    definition = one_task(
        {"Resource": "arn:aws:states:::aws-sdk:sagemaker:updateEndpoint", "Parameters": UPDATE_WITH_DEPLOYMENT_CONFIG}
    )
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.create_state_machine(name="update", definition=json.dumps(definition), roleArn=ROLE_ARN)
    assert arn["stateMachineArn"].endswith(":stateMachine:update")


def test_update_state_machine_refuses_a_pattern_the_integration_does_not_offer(sfn_moto: None) -> None:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    publish = {"Resource": "arn:aws:states:::sns:publish", "Parameters": {"TopicArn": "arn:t", "Message": "m"}}
    arn = sfn.create_state_machine(name="notify", definition=json.dumps(one_task(publish)), roleArn=ROLE_ARN)
    with pytest.raises(ClientError) as raised:
        sfn.update_state_machine(
            stateMachineArn=arn["stateMachineArn"],
            definition=json.dumps(one_task({**publish, "Resource": "arn:aws:states:::sns:publish.sync"})),
        )
    assert raised.value.response["Error"]["Code"] == "InvalidDefinition"
    assert raised.value.response["Error"]["Message"] == (
        "Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: The resource provided "
        "arn:aws:states:::sns:publish.sync is not recognized. The value is not a valid resource ARN, or the resource "
        "is not available in this region. at /States/Task/Resource'"
    )


def test_create_state_machine_refuses_an_error_name_the_task_never_raises_inside_a_map(sfn_moto: None) -> None:
    publish = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sns:publish",
        "Parameters": {"TopicArn": "arn:t", "Message": "m"},
        "Retry": [{"ErrorEquals": ["SNS.KmsThrottlingException"]}],
        "End": True,
    }
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemProcessor": {"StartAt": "Publish", "States": {"Publish": publish}},
                "End": True,
            }
        },
    }
    with pytest.raises(ClientError) as raised:
        boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name="lint", definition=json.dumps(definition), roleArn=ROLE_ARN
        )
    assert raised.value.response["Error"]["Code"] == "InvalidDefinition"
    message = raised.value.response["Error"]["Message"]
    assert message.startswith(
        'Invalid State Machine Definition: \'ERROR_NAME_NEVER_RAISED: State "Publish" Retry[0] names the error '
        '"SNS.KmsThrottlingException", which arn:aws:states:::sns:publish never raises (did you mean '
        '"SNS.KMSThrottlingException"?). AWS accepts any error name'
    )
    assert message.endswith("at /States/Each/ItemProcessor/States/Publish/Retry/0/ErrorEquals/0'")


def test_validate_state_machine_definition_answers_with_diagnostics(sfn_moto: None) -> None:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    bad = one_task(
        {"Resource": "arn:aws:states:::sagemaker:updateEndpoint", "Parameters": UPDATE_WITH_DEPLOYMENT_CONFIG}
    )
    answer = sfn.validate_state_machine_definition(definition=json.dumps(bad))
    assert answer["result"] == "FAIL"
    assert answer["diagnostics"] == [
        {
            "severity": "ERROR",
            "code": "SCHEMA_VALIDATION_FAILED",
            "message": 'The field "DeploymentConfig" is not supported by Step Functions',
            "location": "/States/Task/Parameters",
        }
    ]
    good = one_task(
        {"Resource": "arn:aws:states:::aws-sdk:sagemaker:updateEndpoint", "Parameters": UPDATE_WITH_DEPLOYMENT_CONFIG}
    )
    answer = sfn.validate_state_machine_definition(definition=json.dumps(good))
    assert (answer["result"], answer["diagnostics"]) == ("OK", [])
    answer = sfn.validate_state_machine_definition(definition='{"StartAt": "Missing", "States": {}}')
    assert answer["result"] == "FAIL"
    assert answer["diagnostics"][0] == {
        "severity": "ERROR",
        "code": "MISSING_TRANSITION_TARGET",
        "message": "Missing 'Next' target: Missing",
        "location": "/StartAt",
    }


# -- ValidateStateMachineDefinition ---------------------------------------------------------


def test_validate_state_machine_definition_reports_what_create_refuses_as_diagnostics(sfn_moto: None) -> None:
    parameters = training_job_parameters()
    parameters["Tag"] = []
    typo = {"StartAt": "Train model", "States": {"Train model": training_task(parameters, End=True)}}
    unknown_field = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True, "Bogus": 1}}}

    for definition in (typo, unknown_field):
        with pytest.raises(ClientError) as refused:
            boto3.client("stepfunctions", region_name=REGION).create_state_machine(
                name="refused", definition=json.dumps(definition), roleArn=ROLE_ARN
            )
        assert refused.value.response["Error"]["Code"] == "InvalidDefinition"
        assert validate_definition(definition)["result"] == "FAIL"

    [diagnostic] = validate_definition(typo)["diagnostics"]
    assert diagnostic == {
        "severity": "ERROR",
        "code": "SCHEMA_VALIDATION_FAILED",
        "message": 'The field "Tag" is not supported by Step Functions',
        "location": "/States/Train model/Parameters",
    }
    assert validate_definition(unknown_field)["diagnostics"] == [
        {
            "severity": "ERROR",
            "code": "SCHEMA_VALIDATION_FAILED",
            "message": "Field 'Bogus' is not supported",
            "location": "/States/A",
        }
    ]


def test_validate_state_machine_definition_names_json_errors_and_truncates(sfn_moto: None) -> None:
    [diagnostic] = validate_definition("{not json")["diagnostics"]
    assert diagnostic["code"] == "INVALID_JSON_DESCRIPTION"

    parameters = training_job_parameters()
    parameters.update({"Tag": [], "Tags2": [], "Extra": 1})
    answer = validate_definition({"StartAt": "T", "States": {"T": training_task(parameters, End=True)}}, maxResults=2)
    assert answer["result"] == "FAIL"
    assert len(answer["diagnostics"]) == 2
    assert answer["truncated"] is True


# -- the definition's shape (no moto) -----------------------------------------------------------


def test_the_graph_is_checked_only_once_the_schema_holds() -> None:
    dangling = {"Type": "Pass", "Next": "Nowhere", "TimeoutSeconds": 3}
    assert [str(problem) for problem in definition_problems({"StartAt": "A", "States": {"A": dangling}})] == [
        "SCHEMA_VALIDATION_FAILED: Field 'TimeoutSeconds' is not supported at /States/A"
    ]
    del dangling["TimeoutSeconds"]
    assert [str(problem) for problem in definition_problems({"StartAt": "A", "States": {"A": dangling}})] == [
        "MISSING_TRANSITION_TARGET: Missing 'Next' target: Nowhere at /States/A/Next",
        "MISSING_END_STATE: Workflow has no terminal state at null",
    ]


def test_reachable_states_follow_next_default_choice_rules_and_catchers() -> None:
    states = {
        "Choose": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.x", "IsPresent": True, "Next": "Work"}],
            "Default": "Wait",
        },
        "Work": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed"}],
            "End": True,
        },
        "Wait": {"Type": "Wait", "Seconds": 1, "End": True},
        "Failed": {"Type": "Fail"},
        "Orphan": {"Type": "Succeed"},
    }
    assert reachable_states({"StartAt": "Choose", "States": states}) == {"Choose", "Work", "Wait", "Failed"}
