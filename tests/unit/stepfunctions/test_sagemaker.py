"""The SageMaker optimized integration (sagemaker-optimized-integration): fails on unpatched moto 5.2.5."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.sagemaker.exceptions import SagemakerClientError
from moto.sagemaker.models import SageMakerModelBackend

from stepml.local.stepfunctions.sagemaker_integration import error_name
from tests.unit.stepfunctions.support import (
    REGION,
    ROLE_ARN,
    SAGEMAKER_ROLE_ARN,
    XGBOOST_IMAGE,
    TrainingProgress,
    caught,
    one_task,
    run,
    training_job_parameters,
    training_task,
)


def test_training_sync_polls_until_completed_and_outputs_the_describe_response(
    sfn_moto: None, training_progress: TrainingProgress
) -> None:
    training_progress.statuses = ["InProgress", "InProgress", "Completed"]
    definition = {
        "StartAt": "Train",
        "States": {
            "Train": training_task(
                ResultSelector={
                    "job_name.$": "$.TrainingJobName",
                    "model_data.$": "$.ModelArtifacts.S3ModelArtifacts",
                    "started_on.$": "$.TrainingStartTime",
                    "completed_on.$": "$.TrainingEndTime",
                },
                End=True,
            )
        },
    }
    execution = run(definition)

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert training_progress.reported[:3] == ["InProgress", "InProgress", "Completed"]
    assert execution.output["job_name"] == "stepml-churn-a1"
    assert execution.output["model_data"].startswith("s3://artifacts/models/")
    assert isinstance(execution.output["started_on"], int) and isinstance(execution.output["completed_on"], int)
    succeeded = next(e for e in execution.events if e["type"] == "TaskSucceeded")
    assert succeeded["taskSucceededEventDetails"]["resourceType"] == "sagemaker"
    assert succeeded["taskSucceededEventDetails"]["resource"] == "createTrainingJob.sync"


def test_a_failed_training_job_fails_the_task_with_the_describe_response_as_cause(
    sfn_moto: None, training_progress: TrainingProgress
) -> None:
    training_progress.statuses = ["InProgress", "Failed"]
    execution = run(caught(training_task(), ["States.TaskFailed"]))

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert execution.entered_states == ["Task", "Handled"]
    error = execution.output["error"]
    assert error["Error"] == "States.TaskFailed"
    cause = json.loads(error["Cause"])
    assert cause["TrainingJobStatus"] == "Failed"
    assert cause["FailureReason"].startswith("AlgorithmError: label column has 3 classes")
    assert isinstance(cause["CreationTime"], int)


def test_a_training_job_that_outlives_the_task_timeout_fails_with_states_timeout(
    sfn_moto: None, training_progress: TrainingProgress
) -> None:
    training_progress.statuses = ["InProgress"]
    # 3 s, not 1: on a loaded machine creating the job alone can take a second.
    execution = run(caught(training_task(TimeoutSeconds=3), ["States.Timeout"]))

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert execution.output["error"]["Error"] == "States.Timeout"
    assert training_progress.reported  # the job was polled, still InProgress, until the timeout
    assert not [e for e in execution.events if e["type"] == "TaskSucceeded"]


def test_a_parameter_typo_in_a_resolved_value_fails_the_task_as_a_validation_error(sfn_moto: None) -> None:
    parameters = training_job_parameters()
    del parameters["ResourceConfig"]
    parameters["ResourceConfig.$"] = "$.resources"
    execution = run(
        caught(training_task(parameters), ["SageMaker.AmazonSageMakerException"]),
        {"resources": {"InstanceTyp": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10}},
    )

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    error = execution.output["error"]
    assert error["Error"] == "SageMaker.AmazonSageMakerException"
    assert 'Unknown parameter in ResourceConfig: "InstanceTyp"' in error["Cause"]
    assert "Error Code: ValidationException" in error["Cause"]
    assert boto3.client("sagemaker", region_name=REGION).list_training_jobs()["TrainingJobSummaries"] == []


def test_a_parameter_typo_in_the_definition_is_rejected_at_create_state_machine(sfn_moto: None) -> None:
    parameters = training_job_parameters()
    parameters["ResourceConfig"] = {"InstanceType": "ml.m5.large", "InstanceCount": "1", "VolumeSizeInGb": 10}
    parameters["Tag"] = []
    definition = {"StartAt": "Train", "States": {"Train": training_task(parameters, End=True)}}

    with pytest.raises(ClientError) as raised:
        boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name="typo", definition=json.dumps(definition), roleArn=ROLE_ARN
        )

    assert raised.value.response["Error"]["Code"] == "InvalidDefinition"
    message = raised.value.response["Error"]["Message"]
    assert 'The field "VolumeSizeInGb" is not supported by Step Functions at /States/Train/Parameters' in message
    assert 'The field "Tag" is not supported by Step Functions' in message
    assert 'The value for the field "InstanceCount" must be a INTEGER' in message


@pytest.mark.filterwarnings("ignore:Exception\\(SagemakerClientError\\) with code ThrottlingException")
def test_sagemaker_api_errors_are_retried_by_their_step_functions_name(
    sfn_moto: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = SageMakerModelBackend.create_training_job
    attempts: list[str] = []

    def create_training_job(self: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
        attempts.append(kwargs["training_job_name"])
        if len(attempts) == 1:
            raise SagemakerClientError("ThrottlingException", "Rate exceeded")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SageMakerModelBackend, "create_training_job", create_training_job)
    retry = [{"ErrorEquals": ["SageMaker.AmazonSageMakerException"], "IntervalSeconds": 1, "MaxAttempts": 2}]
    execution = run({"StartAt": "Train", "States": {"Train": training_task(Retry=retry, End=True)}})

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert len(attempts) == 2
    [failure] = execution.task_failures()
    assert failure["error"] == "SageMaker.AmazonSageMakerException"
    assert "Error Code: ThrottlingException" in failure["cause"]
    assert execution.output["TrainingJobStatus"] == "Completed"


def test_request_response_sagemaker_tasks_create_model_and_endpoint(sfn_moto: None) -> None:
    definition = {
        "StartAt": "Create model",
        "States": {
            "Create model": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sagemaker:createModel",
                "Parameters": {
                    "ModelName": "stepml-churn-a1",
                    "ExecutionRoleArn": SAGEMAKER_ROLE_ARN,
                    "PrimaryContainer": {"Image": XGBOOST_IMAGE, "ModelDataUrl": "s3://artifacts/model.tar.gz"},
                },
                "ResultSelector": {"model_arn.$": "$.ModelArn"},
                "ResultPath": "$.model",
                "Next": "Create endpoint config",
            },
            "Create endpoint config": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sagemaker:createEndpointConfig",
                "Parameters": {
                    "EndpointConfigName": "stepml-churn-test-a1",
                    "ProductionVariants": [
                        {
                            "VariantName": "AllTraffic",
                            "ModelName": "stepml-churn-a1",
                            "InstanceType": "ml.m5.large",
                            "InitialInstanceCount": 1,
                        }
                    ],
                },
                "ResultPath": None,
                "Next": "Create endpoint",
            },
            "Create endpoint": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sagemaker:createEndpoint",
                "Parameters": {"EndpointName": "stepml-churn-test-a1", "EndpointConfigName": "stepml-churn-test-a1"},
                "ResultSelector": {"endpoint_arn.$": "$.EndpointArn"},
                "ResultPath": "$.endpoint",
                "End": True,
            },
        },
    }
    execution = run(definition)

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert execution.output["model"]["model_arn"].endswith(":model/stepml-churn-a1")
    assert execution.output["endpoint"]["endpoint_arn"].endswith(":endpoint/stepml-churn-test-a1")
    endpoint = boto3.client("sagemaker", region_name=REGION).describe_endpoint(EndpointName="stepml-churn-test-a1")
    assert endpoint["EndpointConfigName"] == "stepml-churn-test-a1"


def test_sync_is_refused_for_sagemaker_apis_without_a_job(sfn_moto: None) -> None:
    definition = one_task({"Resource": "arn:aws:states:::sagemaker:createModel.sync", "Parameters": {"ModelName": "m"}})
    with pytest.raises(ClientError) as raised:
        boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name="sync-model", definition=json.dumps(definition), roleArn=ROLE_ARN
        )
    assert raised.value.response["Error"]["Code"] == "InvalidDefinition"
    assert raised.value.response["Error"]["Message"] == (
        "Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: The resource provided "
        "arn:aws:states:::sagemaker:createModel.sync is not recognized. The value is not a valid resource ARN, "
        "or the resource is not available in this region. at /States/Task/Resource'"
    )


def test_sagemaker_error_names_follow_the_api_model() -> None:
    assert error_name("ResourceInUse") == "SageMaker.ResourceInUseException"
    assert error_name("ResourceLimitExceeded") == "SageMaker.ResourceLimitExceededException"
    assert error_name("ConflictException") == "SageMaker.ConflictException"
    assert error_name("ValidationException") == "SageMaker.AmazonSageMakerException"
    assert error_name("ThrottlingException") == "SageMaker.AmazonSageMakerException"


def test_a_training_task_is_checked_as_sagemakers_api_checks_it_enums_and_patterns_included() -> None:
    """The one request check of the local cloud: beyond botocore's types, an instance type outside
    the API's enum and a job name outside its pattern are refused with SageMaker's wording."""
    from stepml.local.stepfunctions.sagemaker_integration import SageMakerRequestInvalidError, validate_request

    request = {
        "TrainingJobName": "bad name!",
        "AlgorithmSpecification": {"TrainingImage": "image", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/r",
        "OutputDataConfig": {"S3OutputPath": "s3://b/out/"},
        "ResourceConfig": {"InstanceType": "ml.m5.tiny", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }
    with pytest.raises(SageMakerRequestInvalidError) as raised:
        validate_request("createTrainingJob", request)
    report = raised.value.report
    assert report.startswith("2 validation errors detected in CreateTrainingJob: ")
    assert "Value 'bad name!' at 'trainingJobName' failed to satisfy constraint" in report
    assert "Value 'ml.m5.tiny' at 'resourceConfig.instanceType' failed to satisfy constraint" in report
