"""Step Functions' integrations table, error names and definition checks (stepml.local.stepfunctions; no moto)."""

from __future__ import annotations

from typing import Any

import pytest

from stepml.local.stepfunctions.definitions import (
    definition_problems,
    error_name_problems,
    integration_problems,
    problems_message,
)
from stepml.local.stepfunctions.errors import optimized_error_name, raisable_errors, sdk_error_name, sdk_error_prefix
from stepml.local.stepfunctions.integrations import OPTIMIZED, parse_resource

NOT_RECOGNIZED = (
    "SCHEMA_VALIDATION_FAILED: The resource provided {arn} is not recognized. The value is not a valid resource "
    "ARN, or the resource is not available in this region. at {location}"
)


def task(resource: str, parameters: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    state: dict[str, Any] = {"Type": "Task", "Resource": resource, "End": True, **fields}
    if parameters is not None:
        state["Parameters"] = parameters
    return state


def machine(**states: dict[str, Any]) -> dict[str, Any]:
    return {"StartAt": next(iter(states)), "States": states}


def problems(definition: dict[str, Any]) -> list[str]:
    return [str(problem) for problem in integration_problems(definition)]


def lint(definition: dict[str, Any]) -> list[str]:
    return [str(problem) for problem in error_name_problems(definition)]


DEPLOYMENT_CONFIG = {
    "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}},
    "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "latency"}]},
}


# -- fields --------------------------------------------------------------------------------


def test_a_field_outside_the_documented_subset_is_refused_with_aws_wording_and_location() -> None:
    definition = machine(
        Update=task(
            "arn:aws:states:::sagemaker:updateEndpoint",
            {"EndpointName": "prod", "EndpointConfigName.$": "$.config", "DeploymentConfig": DEPLOYMENT_CONFIG},
        )
    )
    assert problems(definition) == [
        'SCHEMA_VALIDATION_FAILED: The field "DeploymentConfig" is not supported by Step Functions '
        "at /States/Update/Parameters"
    ]


def test_a_path_field_is_checked_by_its_name_without_the_dollar_suffix() -> None:
    definition = machine(
        Publish=task("arn:aws:states:::sns:publish", {"TopicArn": "arn:t", "Message.$": "$.m", "Subjekt.$": "$.s"})
    )
    assert problems(definition) == [
        'SCHEMA_VALIDATION_FAILED: The field "Subjekt" is not supported by Step Functions at /States/Publish/Parameters'
    ]


def test_a_field_of_the_api_that_the_optimized_integration_does_not_document_is_refused() -> None:
    # CreateEndpoint's API takes DeploymentConfig; Step Functions' createEndpoint does not.
    definition = machine(
        Create=task(
            "arn:aws:states:::sagemaker:createEndpoint",
            {"EndpointName": "e", "EndpointConfigName": "c", "DeploymentConfig": DEPLOYMENT_CONFIG},
        )
    )
    assert problems(definition) == [
        'SCHEMA_VALIDATION_FAILED: The field "DeploymentConfig" is not supported by Step Functions '
        "at /States/Create/Parameters"
    ]


def test_jsonata_arguments_are_checked_like_parameters_and_expressions_are_left_alone() -> None:
    definition = {
        "QueryLanguage": "JSONata",
        **machine(
            Invoke=task(
                "arn:aws:states:::lambda:invoke",
                None,
                Arguments={"FunctionName": "f", "Payload": "{% $states.input %}", "TaskToken": "{% $token %}"},
            ),
        ),
    }
    assert problems(definition) == [
        'SCHEMA_VALIDATION_FAILED: The field "TaskToken" is not supported by Step Functions at /States/Invoke/Arguments'
    ]
    whole = machine(Invoke=task("arn:aws:states:::lambda:invoke", None, Arguments="{% $states.input.request %}"))
    assert problems(whole) == []


def test_sagemaker_fields_are_checked_at_every_depth_with_their_literal_types() -> None:
    definition = machine(
        Model=task(
            "arn:aws:states:::sagemaker:createModel",
            {"ModelName": "m", "ExecutionRoleArn": "r", "PrimaryContainer": {"Imag": "x"}, "EnableNetworkIsolation": 1},
        )
    )
    assert problems(definition) == [
        'SCHEMA_VALIDATION_FAILED: The field "Imag" is not supported by Step Functions at /States/Model/Parameters',
        'SCHEMA_VALIDATION_FAILED: The value for the field "EnableNetworkIsolation" must be a BOOLEAN '
        "at /States/Model/Parameters",
    ]


def test_other_optimized_integrations_take_json_where_the_api_takes_text() -> None:
    # The documented callback example: an SNS Message that is an object with the task token.
    definition = machine(
        Notify=task(
            "arn:aws:states:::sns:publish.waitForTaskToken",
            {"TopicArn": "arn:t", "Message": {"Input.$": "$", "TaskToken.$": "$$.Task.Token"}},
        )
    )
    assert problems(definition) == []


def test_aws_sdk_tasks_take_the_full_api_and_nothing_else() -> None:
    accepted = machine(
        Update=task(
            "arn:aws:states:::aws-sdk:sagemaker:updateEndpoint",
            {"EndpointName": "prod", "EndpointConfigName": "c", "DeploymentConfig": DEPLOYMENT_CONFIG},
        )
    )
    assert problems(accepted) == []
    refused = machine(
        Update=task(
            "arn:aws:states:::aws-sdk:sagemaker:updateEndpoint",
            {"EndpointName": "prod", "EndpointConfig": "c", "DeploymentConfig": {"AutoRollback": {}}},
        )
    )
    assert problems(refused) == [
        'SCHEMA_VALIDATION_FAILED: The field "EndpointConfig" is not supported by Step Functions '
        "at /States/Update/Parameters",
        'SCHEMA_VALIDATION_FAILED: The field "AutoRollback" is not supported by Step Functions '
        "at /States/Update/Parameters",
    ]


def test_pascal_case_fields_match_camel_case_apis() -> None:
    definition = machine(
        Run=task("arn:aws:states:::ecs:runTask.sync", {"Cluster": "c", "TaskDefinition": "t", "Count": 2})
    )
    # Count is RunTask's (camelCase `count`) but not the optimized integration's.
    assert problems(definition) == [
        'SCHEMA_VALIDATION_FAILED: The field "Count" is not supported by Step Functions at /States/Run/Parameters'
    ]


# -- resources and patterns ------------------------------------------------------------------


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:states:::sns:publish.sync",  # SNS: request-response and callback only
        "arn:aws:states:::glue:startJobRun.waitForTaskToken",  # Glue: request-response and .sync only
        "arn:aws:states:::sagemaker:createModel.sync",  # .sync only for SageMaker's jobs
        "arn:aws:states:::lambda:invoke.sync",
        "arn:aws:states:::dynamodb:getItem.waitForTaskToken",
        "arn:aws:states:::states:startExecution.sync:3",
        "arn:aws:states:::sns:publishBatch",  # an SNS API, but not an optimized one
        "arn:aws:states:::sagemaker:deleteEndpoint",
        "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint.sync",  # aws-sdk: never .sync
        "arn:aws:states:::aws-sdk:sagemaker:describeEndpointz",
        "arn:aws:states:::aws-sdk:nosuchservice:doThing",
    ],
)
def test_an_integration_or_pattern_aws_does_not_offer_is_not_recognized(arn: str) -> None:
    definition = machine(Task=task(arn, {}))
    assert problems(definition) == [NOT_RECOGNIZED.format(arn=arn, location="/States/Task/Resource")]


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:states:::states:startExecution.sync:2",
        "arn:aws:states:::states:startExecution.waitForTaskToken",
        "arn:aws:states:::sagemaker:createTrainingJob.sync",
        "arn:aws:states:::athena:startQueryExecution.sync",
        "arn:aws:states:::ecs:runTask.waitForTaskToken",
        "arn:aws:states:::aws-sdk:sfn:describeExecution",
        "arn:aws-us-gov:states:::sqs:sendMessage.waitForTaskToken",
    ],
)
def test_documented_integrations_and_patterns_are_accepted(arn: str) -> None:
    assert problems(machine(Task=task(arn, {}))) == []


def test_an_integration_the_local_cloud_does_not_model_is_refused_naming_the_reason() -> None:
    [problem] = problems(machine(Build=task("arn:aws:states:::codebuild:startBuild.sync", {"ProjectName": "p"})))
    assert "is an optimized integration the stepml local cloud does not model" in problem
    assert problem.endswith("at /States/Build/Resource")


def test_non_integration_resources_are_not_checked() -> None:
    function = machine(F=task("arn:aws:lambda:us-east-1:123456789012:function:f", {"anything": 1}))
    activity = machine(A=task("arn:aws:states:us-east-1:123456789012:activity:a", {"anything": 1}))
    assert problems(function) == [] and problems(activity) == []


def test_tasks_inside_parallel_branches_and_map_processors_are_checked() -> None:
    bad = task("arn:aws:states:::sagemaker:updateEndpoint", {"EndpointName": "e", "EndpointConfigName": "c", "X": 1})
    definition = machine(
        Fan={
            "Type": "Parallel",
            "End": True,
            "Branches": [
                machine(Ok={"Type": "Pass", "End": True}),
                machine(
                    Each={
                        "Type": "Map",
                        "End": True,
                        "ItemProcessor": machine(Inner=bad),
                    },
                    Old={"Type": "Map", "End": True, "Iterator": machine(Legacy=bad)},
                ),
            ],
        }
    )
    message = 'SCHEMA_VALIDATION_FAILED: The field "X" is not supported by Step Functions at '
    assert problems(definition) == [
        message + "/States/Fan/Branches[1]/States/Each/ItemProcessor/States/Inner/Parameters",
        message + "/States/Fan/Branches[1]/States/Old/Iterator/States/Legacy/Parameters",
    ]


def test_every_optimized_field_is_a_field_of_the_api() -> None:
    """The table names no field its API does not have (a typo in the table would accept nothing real)."""
    for service, integration in OPTIMIZED.items():
        for api_name, api in integration.apis.items():
            resource = parse_resource(f"arn:aws:states:::{service}:{api_name}")
            assert resource is not None
            definition = machine(T=task(resource.arn, dict.fromkeys(api.fields, "x")))
            unknown = [p for p in definition_problems(definition) if "is not supported" in p.message]
            assert unknown == [], (service, api_name)


def test_the_problems_message_is_the_invalid_definition_text() -> None:
    definition = machine(T=task("arn:aws:states:::sns:publish.sync", {}))
    assert problems_message(definition_problems(definition)) == (
        "Invalid State Machine Definition: '"
        + NOT_RECOGNIZED.format(arn="arn:aws:states:::sns:publish.sync", location="/States/T/Resource")
        + "'"
    )


# -- error names --------------------------------------------------------------------------------


def test_error_names_follow_the_sdk_exceptions() -> None:
    assert optimized_error_name("sns", "Throttled") == "SNS.ThrottledException"
    assert optimized_error_name("sns", "KMSThrottling") == "SNS.KMSThrottlingException"
    assert optimized_error_name("sns", "ThrottlingException") == "SNS.AmazonSNSException"
    assert optimized_error_name("glue", "ConcurrentRunsExceededException") == "Glue.ConcurrentRunsExceededException"
    assert optimized_error_name("lambda", "Unmodeled") == "Lambda.AWSLambdaException"
    assert optimized_error_name("sagemaker", "ResourceNotFound") == "SageMaker.ResourceNotFoundException"
    assert sdk_error_name("sagemaker", "ResourceNotFound") == "SageMaker.ResourceNotFoundException"
    assert sdk_error_name("sagemaker", "ThrottlingException") == "SageMaker.SageMakerException"
    assert sdk_error_name("dynamodb", "ConditionalCheckFailedException") == "DynamoDb.ConditionalCheckFailedException"
    assert sdk_error_name("s3", "NoSuchKey") == "S3.NoSuchKeyException"


@pytest.mark.parametrize(
    ("service", "prefix"),
    [("sagemaker", "SageMaker"), ("dynamodb", "DynamoDb"), ("sfn", "Sfn"), ("ec2", "Ec2"), ("acm-pca", "AcmPca")],
)
def test_aws_sdk_error_prefixes_are_the_service_id_in_pascal_case(service: str, prefix: str) -> None:
    assert sdk_error_prefix(service) == prefix


def test_a_misspelt_modeled_error_is_refused_naming_state_retrier_and_the_likely_name() -> None:
    definition = machine(
        Notify=task(
            "arn:aws:states:::sns:publish",
            {"TopicArn": "arn:t", "Message": "m"},
            Retry=[{"ErrorEquals": ["SNS.ThrottledException", "SNS.KmsThrottlingException"]}],
        )
    )
    assert lint(definition) == [
        'ERROR_NAME_NEVER_RAISED: State "Notify" Retry[0] names the error "SNS.KmsThrottlingException", which '
        'arn:aws:states:::sns:publish never raises (did you mean "SNS.KMSThrottlingException"?). AWS accepts any '
        "error name, but this one can never match; the stepml local cloud refuses it "
        "at /States/Notify/Retry/0/ErrorEquals/1"
    ]


def test_an_optimized_integrations_name_on_an_aws_sdk_task_is_refused() -> None:
    definition = machine(
        Check=task(
            "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint",
            {"EndpointName": "e"},
            Retry=[{"ErrorEquals": ["SageMaker.SageMakerException"]}],
            Catch=[{"ErrorEquals": ["SageMaker.ThrottlingException"], "Next": "Check"}],
        )
    )
    [problem] = lint(definition)
    assert problem.startswith('ERROR_NAME_NEVER_RAISED: State "Check" Catch[0] names the error ')
    assert 'throttling for one, arrives as "SageMaker.SageMakerException"' in problem
    assert problem.endswith("at /States/Check/Catch/0/ErrorEquals/0")


def test_unknown_states_errors_are_refused_and_documented_ones_accepted() -> None:
    states = ["States.ALL", "States.Timeout", "States.TaskFailed", "States.Http.StatusCode.503", "States.Timeuot"]
    definition = machine(
        Work={"Type": "Parallel", "End": True, "Branches": [], "Retry": [{"ErrorEquals": states}]},
    )
    [problem] = lint(definition)
    assert '"States.Timeuot", which is not an error Step Functions defines (did you mean "States.Timeout"?)' in problem


def test_tasks_that_can_raise_their_own_names_accept_custom_names() -> None:
    custom = [{"ErrorEquals": ["ApprovalRejected"], "Next": "T"}]
    for arn in (
        "arn:aws:states:::lambda:invoke",
        "arn:aws:states:::sqs:sendMessage.waitForTaskToken",  # SendTaskFailure names the error
        "arn:aws:lambda:us-east-1:123456789012:function:f",
        "arn:aws:states:us-east-1:123456789012:activity:a",
    ):
        assert lint(machine(T=task(arn, {}, Catch=custom))) == [], arn
    [problem] = lint(machine(T=task("arn:aws:states:::glue:startJobRun.sync", {"JobName": "j"}, Catch=custom)))
    assert '"ApprovalRejected", which arn:aws:states:::glue:startJobRun.sync never raises' in problem


def test_error_names_are_linted_inside_map_and_parallel_states() -> None:
    inner = task("arn:aws:states:::dynamodb:putItem", {"TableName": "t", "Item": {}})
    inner["Retry"] = [{"ErrorEquals": ["DynamoDB.ConditionalCheckFailed"]}]
    definition = machine(
        Each={
            "Type": "Map",
            "End": True,
            "ItemProcessor": machine(Put=inner),
            # A Map passes on its inner states' errors: any custom name can reach its own Catch.
            "Catch": [{"ErrorEquals": ["DynamoDB.ConditionalCheckFailed"], "Next": "Each"}],
        }
    )
    [problem] = lint(definition)
    assert '"DynamoDB.ConditionalCheckFailed", which arn:aws:states:::dynamodb:putItem never raises' in problem
    assert '(did you mean "DynamoDB.ConditionalCheckFailedException"?)' in problem
    assert problem.endswith("at /States/Each/ItemProcessor/States/Put/Retry/0/ErrorEquals/0")


def test_raisable_errors_are_the_integrations_names_and_any_name_for_lambda() -> None:
    resource = parse_resource("arn:aws:states:::sagemaker:createTrainingJob.sync")
    assert resource is not None
    names = raisable_errors(resource)
    assert names is not None
    assert {"SageMaker.AmazonSageMakerException", "SageMaker.ResourceLimitExceededException"} <= names
    lambda_tasks = parse_resource("arn:aws:states:::lambda:invoke")
    assert lambda_tasks is not None and raisable_errors(lambda_tasks) is None  # functions raise their own names
