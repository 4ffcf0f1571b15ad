"""moto's Step Functions interpreter with stepml's patches: each test fails on unpatched moto 5.2.5.

State machines run in moto in-process (``mock_aws`` with state machine execution on); one test
runs them through moto's server in this process, as the local cloud does.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.config import default_user_config
from moto.sagemaker.exceptions import SagemakerClientError
from moto.sagemaker.models import SageMakerModelBackend
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

from stepml.local import moto_patches
from stepml.local.moto_patches import (
    SYNC_POLL_SECONDS_ENV,
    MotoPatchError,
    datetimes_to_epoch_millis,
    sync_poll_seconds,
)
from stepml.local.sfn_sagemaker import error_name
from tests.helpers import logs_key_policy

REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/stepml-test-states"
SAGEMAKER_ROLE_ARN = "arn:aws:iam::123456789012:role/stepml-test-sagemaker"
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
EXECUTE_STATE_MACHINES = {"stepfunctions": {"execute_state_machine": True}}
DEADLINE_SECONDS = 30.0


# -- running state machines --------------------------------------------------------------


@dataclass
class Execution:
    """A finished execution: DescribeExecution and its history."""

    describe: dict[str, Any]
    events: list[dict[str, Any]]

    @property
    def status(self) -> str:
        return self.describe["status"]

    @property
    def output(self) -> Any:
        return json.loads(self.describe["output"])

    @property
    def entered_states(self) -> list[str]:
        return [
            event["stateEnteredEventDetails"]["name"] for event in self.events if "stateEnteredEventDetails" in event
        ]

    def task_failures(self) -> list[dict[str, Any]]:
        return [event["taskFailedEventDetails"] for event in self.events if event["type"] == "TaskFailed"]


def wait_for(sfn: Any, execution_arn: str, deadline: float = DEADLINE_SECONDS) -> Execution:
    """Poll DescribeExecution until the execution leaves RUNNING."""
    give_up = time.monotonic() + deadline
    while True:
        describe = sfn.describe_execution(executionArn=execution_arn)
        if describe["status"] != "RUNNING":
            break
        if time.monotonic() > give_up:
            sfn.stop_execution(executionArn=execution_arn)
            pytest.fail(f"execution still RUNNING after {deadline} s")
        time.sleep(0.02)
    events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return Execution(describe, events)


def start(definition: dict[str, Any], execution_input: Any = None, *, sfn: Any = None) -> tuple[Any, str]:
    sfn = sfn or boto3.client("stepfunctions", region_name=REGION)
    name = f"sm-{time.time_ns()}"
    arn = sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=ROLE_ARN)["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(execution_input or {}))
    return sfn, execution["executionArn"]


def run(definition: dict[str, Any], execution_input: Any = None, *, sfn: Any = None) -> Execution:
    """Create the state machine, run it once, and wait for it to finish."""
    sfn, execution_arn = start(definition, execution_input, sfn=sfn)
    return wait_for(sfn, execution_arn)


def one_task(task: dict[str, Any], **state_machine: Any) -> dict[str, Any]:
    return {"StartAt": "Task", "States": {"Task": {"Type": "Task", **task, "End": True}}, **state_machine}


@pytest.fixture
def fast_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SYNC_POLL_SECONDS_ENV, "0.02")


@pytest.fixture
def sfn_moto(aws_credentials: None, fast_sync: None) -> Iterator[None]:
    """moto in-process with state machine execution on."""
    with mock_aws(config=EXECUTE_STATE_MACHINES):
        yield


def glue_job(name: str = "preprocess") -> str:
    boto3.client("glue", region_name=REGION).create_job(
        Name=name, Role=ROLE_ARN, Command={"Name": "glueetl", "ScriptLocation": "s3://scripts/preprocess.py"}
    )
    return name


# -- the module itself -------------------------------------------------------------------


def test_apply_is_idempotent_and_refuses_another_moto_version(monkeypatch: pytest.MonkeyPatch) -> None:
    patched = StateTaskServiceCallback._eval_integration_pattern  # conftest applied the patches
    moto_patches.apply()
    assert StateTaskServiceCallback._eval_integration_pattern is patched  # not wrapped twice
    monkeypatch.setattr(moto_patches, "_applied", False)
    monkeypatch.setattr(moto_patches.moto, "__version__", "5.2.6")
    with pytest.raises(MotoPatchError, match=r"for moto 5\.2\.5, found 5\.2\.6"):
        moto_patches.apply()


def test_every_patch_is_named_and_explained() -> None:
    names = [patch.name for patch in moto_patches.PATCHES]
    assert len(names) == len(set(names))
    assert all(len(patch.why) > 80 for patch in moto_patches.PATCHES)


def test_sync_poll_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SYNC_POLL_SECONDS_ENV, raising=False)
    assert sync_poll_seconds() == moto_patches.DEFAULT_SYNC_POLL_SECONDS
    monkeypatch.setenv(SYNC_POLL_SECONDS_ENV, "0.2")
    assert sync_poll_seconds() == 0.2
    monkeypatch.setenv(SYNC_POLL_SECONDS_ENV, "soon")
    with pytest.raises(MotoPatchError, match=f"{SYNC_POLL_SECONDS_ENV} must be a positive number.*'soon'"):
        sync_poll_seconds()


def test_datetimes_become_epoch_milliseconds_at_any_depth() -> None:
    started = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    converted = datetimes_to_epoch_millis({"StartedOn": started, "Runs": [{"At": started}], "Name": "x"})
    assert converted == {"StartedOn": 1714564800123, "Runs": [{"At": 1714564800123}], "Name": "x"}


def test_an_invalid_definition_is_refused_with_the_invalid_definition_code(sfn_moto: None) -> None:
    with pytest.raises(ClientError) as raised:
        boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name="bad", definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Wiat"}}}), roleArn=ROLE_ARN
        )
    assert raised.value.response["Error"]["Code"] == "InvalidDefinition"
    assert '"Wiat"' in raised.value.response["Error"]["Message"]


def test_a_task_token_call_while_another_execution_is_starting_is_answered(
    sfn_moto: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsing = threading.Event()
    release = threading.Event()
    original = ExecutionWorker._get_evaluation_entrypoint

    def slow_parse(self: ExecutionWorker) -> Any:
        # Holds the new execution where the pipeline's large definition spends its parse time.
        parsing.set()
        release.wait(DEADLINE_SECONDS)
        return original(self)

    monkeypatch.setattr(ExecutionWorker, "_get_evaluation_entrypoint", slow_parse)
    sfn, execution_arn = start({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    assert parsing.wait(DEADLINE_SECONDS)
    try:
        with pytest.raises(ClientError) as raised:
            sfn.send_task_success(taskToken="token-of-a-finished-task", output="{}")
    finally:
        release.set()

    assert raised.value.response["Error"]["Code"] == "InvalidToken"
    assert wait_for(sfn, execution_arn).status == "SUCCEEDED"


def test_stopping_an_execution_that_waits_for_a_task_token_aborts_it_at_once(sfn_moto: None) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    queue = sqs.create_queue(QueueName="approvals")["QueueUrl"]
    definition = {
        "StartAt": "Wait for approval",
        "States": {
            "Wait for approval": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token"}},
                "TimeoutSeconds": 3600,
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    sfn, execution_arn = start(definition)
    messages: list[dict[str, Any]] = []
    give_up = time.monotonic() + DEADLINE_SECONDS
    while not messages and time.monotonic() < give_up:
        # A pause between polls: a tight loop of in-process moto calls can starve the execution's thread.
        time.sleep(0.05)
        messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages", [])
    [message] = messages
    token = json.loads(message["Body"])["token"]

    started = time.monotonic()
    sfn.stop_execution(executionArn=execution_arn, error="Operator", cause="no longer needed")
    execution = wait_for(sfn, execution_arn, deadline=10)

    assert execution.status == "ABORTED" and time.monotonic() - started < 10
    types = [event["type"] for event in execution.events]
    assert types[-1] == "ExecutionAborted" and types.count("ExecutionAborted") == 1
    assert not {"TaskTimedOut", "TaskFailed", "TaskSucceeded", "TaskStateExited"} & set(types), types
    assert "Caught" not in execution.entered_states
    with pytest.raises(ClientError) as raised:
        sfn.send_task_success(taskToken=token, output="{}")
    assert raised.value.response["Error"]["Code"] in ("InvalidToken", "TaskDoesNotExist")


# -- .sync without a callback endpoint (glue) --------------------------------------------


def test_glue_sync_task_waits_for_the_job_run_and_outputs_it(sfn_moto: None) -> None:
    job = glue_job()
    execution = run(one_task({"Resource": "arn:aws:states:::glue:startJobRun.sync", "Parameters": {"JobName": job}}))

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert execution.output["JobName"] == job
    assert execution.output["JobRunState"] == "SUCCEEDED"
    assert [e["type"] for e in execution.events if e["type"].startswith("Task")][-3:] == [
        "TaskSubmitted",
        "TaskSucceeded",
        "TaskStateExited",
    ]


def test_sync_task_timestamps_are_epoch_milliseconds_in_output_and_history(sfn_moto: None) -> None:
    job = glue_job()
    definition = one_task(
        {
            "Resource": "arn:aws:states:::glue:startJobRun.sync",
            "Parameters": {"JobName": job},
            "ResultSelector": {"run_id.$": "$.Id", "started_on.$": "$.StartedOn", "completed_on.$": "$.CompletedOn"},
        }
    )
    execution = run(definition)

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    job_run = boto3.client("glue", region_name=REGION).get_job_run(JobName=job, RunId=execution.output["run_id"])
    expected = int(job_run["JobRun"]["StartedOn"].timestamp() * 1000)
    assert isinstance(execution.output["started_on"], int)
    assert abs(execution.output["started_on"] - expected) <= 1
    assert isinstance(execution.output["completed_on"], int)
    succeeded = next(e for e in execution.events if e["type"] == "TaskSucceeded")
    assert json.loads(succeeded["taskSucceededEventDetails"]["output"])["StartedOn"] == execution.output["started_on"]


def test_aws_sdk_task_timestamps_are_iso8601_text(sfn_moto: None) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_model(
        ModelName="m", ExecutionRoleArn=SAGEMAKER_ROLE_ARN, PrimaryContainer={"Image": XGBOOST_IMAGE}
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="c",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
        ],
    )
    sagemaker.create_endpoint(EndpointName="e", EndpointConfigName="c")
    execution = run(
        one_task(
            {"Resource": "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint", "Parameters": {"EndpointName": "e"}}
        )
    )

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    created = sagemaker.describe_endpoint(EndpointName="e")["CreationTime"]
    assert datetime.fromisoformat(execution.output["CreationTime"]) == created.replace(
        microsecond=created.microsecond // 1000 * 1000
    )
    assert execution.output["CreationTime"].endswith("Z")


# -- SageMaker ---------------------------------------------------------------------------


def training_job_parameters(name: str = "stepml-churn-a1") -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "RoleArn": SAGEMAKER_ROLE_ARN,
        "AlgorithmSpecification": {"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {"num_round": "10", "objective": "binary:logistic"},
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "ContentType": "text/csv",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": "s3://artifacts/processed/train/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://artifacts/models/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


def training_task(parameters: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
        "Parameters": parameters or training_job_parameters(),
        **fields,
    }


def caught(task: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    """The task, with a Catch that sends ``errors`` to a Pass state keeping ``$.error``."""
    task = {**task, "Catch": [{"ErrorEquals": errors, "ResultPath": "$.error", "Next": "Handled"}], "End": True}
    return {"StartAt": "Task", "States": {"Task": task, "Handled": {"Type": "Pass", "End": True}}}


@dataclass
class TrainingProgress:
    """The statuses moto's DescribeTrainingJob reports, in order (the last repeats), and those it reported."""

    statuses: list[str]
    reported: list[str]


@pytest.fixture
def training_progress(monkeypatch: pytest.MonkeyPatch) -> TrainingProgress:
    progress = TrainingProgress(statuses=["Completed"], reported=[])
    original = SageMakerModelBackend.describe_training_job

    def describe_training_job(self: SageMakerModelBackend, training_job_name: str) -> dict[str, Any]:
        response = dict(original(self, training_job_name))
        status = progress.statuses[min(len(progress.reported), len(progress.statuses) - 1)]
        progress.reported.append(status)
        response["TrainingJobStatus"] = status
        if status == "Failed":
            response["FailureReason"] = "AlgorithmError: label column has 3 classes, objective is binary"
        return response

    monkeypatch.setattr(SageMakerModelBackend, "describe_training_job", describe_training_job)
    return progress


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
    execution = run(caught(training_task(TimeoutSeconds=1), ["States.Timeout"]))

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert execution.output["error"]["Error"] == "States.Timeout"
    assert len(training_progress.reported) > 3  # it kept polling until the timeout
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


UPDATE_WITH_DEPLOYMENT_CONFIG = {
    "EndpointName": "prod",
    "EndpointConfigName": "c",
    "DeploymentConfig": {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "latency"}]}},
}


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
    assert answer["result"] == "FAIL" and answer["diagnostics"][0]["code"] == "SCHEMA_VALIDATION_FAILED"


def test_aws_sdk_errors_are_named_as_step_functions_names_them(sfn_moto: None) -> None:
    # DescribeEndpoint of a missing endpoint answers ValidationException, which SageMaker's model does not declare.
    task = {"Resource": "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint", "Parameters": {"EndpointName": "none"}}
    execution = run(caught({"Type": "Task", **task}, ["SageMaker.SageMakerException"]))

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert execution.output["error"]["Error"] == "SageMaker.SageMakerException"
    [failure] = execution.task_failures()
    assert failure["error"] == "SageMaker.SageMakerException"
    assert "(Service: SageMaker, Status Code: 400, Request ID: " in failure["cause"]


def test_sagemaker_error_names_follow_the_api_model() -> None:
    assert error_name("ResourceInUse") == "SageMaker.ResourceInUseException"
    assert error_name("ResourceLimitExceeded") == "SageMaker.ResourceLimitExceededException"
    assert error_name("ConflictException") == "SageMaker.ConflictException"
    assert error_name("ValidationException") == "SageMaker.AmazonSageMakerException"
    assert error_name("ThrottlingException") == "SageMaker.AmazonSageMakerException"


# -- JSONata and variables ---------------------------------------------------------------


def test_a_jsonata_state_machine_runs(sfn_moto: None) -> None:
    topic_arn = boto3.client("sns", region_name=REGION).create_topic(Name="approvals")["TopicArn"]
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "Summarise",
        "States": {
            "Summarise": {
                "Type": "Pass",
                "Assign": {
                    "total": "{% $sum($states.input.rows.n) %}",
                    "big": "{% $states.input.rows[n > 1].name %}",
                    "topic": "{% $states.input.topic %}",
                },
                "Next": "Big enough?",
            },
            "Big enough?": {
                "Type": "Choice",
                "Choices": [{"Condition": "{% $total >= 5 %}", "Next": "Notify"}],
                "Default": "Too small",
            },
            "Too small": {"Type": "Fail", "Error": "stepml.TooSmall"},
            "Notify": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sns:publish",
                "Arguments": {
                    "TopicArn": "{% $topic %}",
                    "Message": "{% 'total ' & $string($total) & ': ' & $join($big, ', ') %}",
                },
                "Output": {
                    "message_id": "{% $states.result.MessageId %}",
                    "total": "{% $total %}",
                    "big": "{% $big %}",
                },
                "End": True,
            },
        },
    }
    rows = [{"name": "a", "n": 1}, {"name": "b", "n": 2}, {"name": "c", "n": 3}]
    execution = run(definition, {"rows": rows, "topic": topic_arn})

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert execution.entered_states == ["Summarise", "Big enough?", "Notify"]
    assert execution.output["total"] == 6
    assert execution.output["big"] == ["b", "c"]
    assert execution.output["message_id"]


def test_jsonpath_variables_are_assigned_and_referenced(sfn_moto: None) -> None:
    definition = {
        "StartAt": "Remember",
        "States": {
            "Remember": {
                "Type": "Pass",
                "Assign": {"threshold.$": "$.gate.threshold", "metric": "auc"},
                "Next": "Use",
            },
            "Use": {
                "Type": "Pass",
                "Parameters": {"threshold.$": "$threshold", "metric.$": "$metric", "passed.$": "$.passed"},
                "End": True,
            },
        },
    }
    execution = run(definition, {"gate": {"threshold": 0.8}, "passed": True})

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert execution.output == {"threshold": 0.8, "metric": "auc", "passed": True}


def test_string_variables_with_quotes_and_backslashes_survive_jsonata(sfn_moto: None) -> None:
    text = 'Cause: {"errorMessage": "bad \\"label\\" column"} at C:\\data'
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "Keep",
        "States": {
            "Keep": {"Type": "Pass", "Assign": {"text": "{% $states.input.text %}"}, "Next": "Use"},
            "Use": {"Type": "Pass", "Output": {"text": "{% $text %}", "length": "{% $length($text) %}"}, "End": True},
        },
    }
    execution = run(definition, {"text": text})

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert execution.output == {"text": text, "length": len(text)}


def test_a_jsonata_evaluation_error_fails_the_execution_with_the_expression(sfn_moto: None) -> None:
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "Bad",
        "States": {"Bad": {"Type": "Pass", "Output": "{% $undefinedFunction(1) %}", "End": True}},
    }
    execution = run(definition)

    assert execution.status == "FAILED"
    assert execution.describe["error"] == "States.QueryEvaluationError"
    assert (
        "evaluating the expression '$undefinedFunction(1)': Attempted to invoke a non-function"
        in (execution.describe["cause"])
    )


# -- JSONPath filters --------------------------------------------------------------------

FILTER_INPUT = {
    "items": [{"name": "a", "ok": True, "n": 1}, {"name": "b", "ok": True, "n": 2}, {"name": "c", "ok": False, "n": 3}],
    "Endpoints": [],
}


def pass_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    return {"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": parameters, "End": True}}}


def test_a_jsonpath_filter_that_matches_nothing_gives_an_empty_array(sfn_moto: None) -> None:
    execution = run(
        pass_parameters({"none.$": "$.items[?(@.n > 5)]", "names.$": "$.items[?(@.n > 5)].name"}), FILTER_INPUT
    )

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert execution.output == {"none": [], "names": []}


def test_jsonpath_filters_combine_conditions_with_and_and_or(sfn_moto: None) -> None:
    execution = run(
        pass_parameters(
            {
                "both.$": "$.items[?(@.ok == true && @.n > 1)].name",
                "either.$": "$.items[?(@.n == 1 || @.ok == false)].name",
                "one.$": "$.items[?(@.n == 2)].name",
            }
        ),
        FILTER_INPUT,
    )

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert execution.output == {"both": ["b"], "either": ["a", "c"], "one": ["b"]}


def test_array_contains_over_an_empty_list_is_false(sfn_moto: None) -> None:
    # The pipeline's "Find production endpoint" state, when no endpoint exists yet.
    execution = run(
        pass_parameters(
            {
                "exists.$": "States.ArrayContains($.Endpoints[*].EndpointName, 'stepml-churn')",
                "found.$": "States.ArrayContains($.items[*].name, 'b')",
                "filtered.$": "States.ArrayContains($.items[?(@.n > 5)].name, 'b')",
            }
        ),
        FILTER_INPUT,
    )

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert execution.output == {"exists": False, "found": True, "filtered": False}


# -- the pipeline's own definition -------------------------------------------------------

EVALUATION = {
    "passed": True,
    "reason": "auc 0.91 >= 0.8",
    "metric": "auc",
    "value": 0.91,
    "threshold": 0.8,
    "higher_is_better": True,
    "metrics": {"auc": 0.91},
    "rows": 100,
    "production": None,
    "report_uri": "s3://stepml-artifacts/evaluation/churn/r/report.json",
    "started_at": "2024-05-01T12:00:00Z",
    "ended_at": "2024-05-01T12:01:00Z",
}


# What each Lambda state returns after its ResultSelector. The Lambdas need the local cloud's
# Lambda engine; here Pass states stand in for them so the rest of the definition runs as written.
LAMBDA_STAND_INS: dict[str, dict[str, Any]] = {
    "Resolve run": {"Parameters": {"action": "start", "run.$": "$.run", "steps": {}}},
    "Evaluate model": {"Result": EVALUATION},
    "Record run succeeded": {
        "Parameters": {
            "subject": "stepml: model deployed",
            "message.$": "States.Format('Run {} deployed', $.run.run_id)",
        }
    },
    "Record not promoted": {
        "Parameters": {
            "subject": "stepml: model not promoted",
            "message.$": "States.Format('Run {}: {}', $.run.run_id, $.outcome.status)",
        }
    },
    "Record failure": {
        "Parameters": {
            "run_id.$": "$.run.run_id",
            "step.$": "$.failed_step",
            "subject": "stepml: pipeline failed",
            "message.$": "States.Format('Run {} failed: {}', $.run.run_id, $.error.Error)",
            "test_endpoint": None,
            "test_endpoint_config": None,
        }
    },
}


def with_lambda_stand_ins(definition: dict[str, Any], approval_queue_url: str) -> dict[str, Any]:
    """The definition with Lambda tasks as Pass states and the approval request sent to SQS."""
    definition = copy.deepcopy(definition)
    states = definition["States"]
    for name, state in states.items():
        if state.get("Resource") == "arn:aws:states:::lambda:invoke":
            stand_in = LAMBDA_STAND_INS.get(name, {"Parameters": {}})
            states[name] = {
                "Type": "Pass",
                **stand_in,
                "ResultPath": state["ResultPath"],
                **({"Next": state["Next"]} if "Next" in state else {"End": True}),
            }
        elif state.get("Resource") == "arn:aws:states:::lambda:invoke.waitForTaskToken":
            # Same task token, timeout, Retry and Catch; the approval request goes to a queue.
            state["Resource"] = "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
            state["Parameters"] = {"QueueUrl": approval_queue_url, "MessageBody": state["Parameters"]["Payload"]}
    return definition


def run_context(definition: dict[str, Any], *, run_id: str, approval_timeout_seconds: int) -> dict[str, Any]:
    production = definition["States"]["Create production endpoint"]["Parameters"]["EndpointName"]
    base = f"s3://stepml-artifacts/processed/churn/{run_id}/"
    return {
        "run_id": run_id,
        "dataset": "churn",
        "attempt": 1,
        "input": {"uri": f"s3://stepml-uploads/incoming/churn/{run_id}.csv", "version_id": "v1"},
        "config": {
            "training": {
                "instance_type": "ml.m5.large",
                "instance_count": 1,
                "volume_size_gb": 10,
                "max_runtime_seconds": 3600,
            },
            "hosting": {"instance_type": "ml.m5.large", "instance_count": 1},
        },
        "hyperparameters": {"num_round": "10", "objective": "binary:logistic"},
        "names": {
            "training_job": f"stepml-{run_id}-a1",
            "model": f"stepml-{run_id}-a1",
            "test_endpoint_config": f"stepml-{run_id}-test-a1",
            "test_endpoint": f"stepml-{run_id}-test-a1",
            "production_endpoint_config": f"stepml-{run_id}-prod-a1",
            "production_endpoint": production,
        },
        "paths": {
            "processed": base,
            "train": base + "train/",
            "validation": base + "validation/",
            "model_output": f"s3://stepml-artifacts/models/churn/{run_id}/",
            "data_capture": "s3://stepml-artifacts/data-capture/churn/",
        },
        "endpoint_poll_seconds": 0,
        "approval_timeout_seconds": approval_timeout_seconds,
        "code_version": "test",
    }


def answer_approval(sqs: Any, queue_url: str, sfn: Any, execution_arn: str, decision: str) -> dict[str, Any]:
    """Do what the approval API does: take the execution's task token and complete the waiting task."""
    give_up = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < give_up:
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            request = json.loads(message["Body"])
            if request["execution_arn"] != execution_arn:
                continue  # an earlier run's request
            sfn.send_task_success(
                taskToken=request["task_token"],
                output=json.dumps(
                    {
                        "decision": decision,
                        "approver": "reviewer@example.com",
                        "comment": "looks right" if decision == "approve" else "too few rows",
                        "decided_at": "2024-05-01T12:05:00Z",
                        "approval_id": "approval-1",
                    }
                ),
            )
            return request
        time.sleep(0.02)
    pytest.fail("the approval request never reached the queue")


@pytest.fixture
def pipeline(stack: Any, fast_sync: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The template's pipeline definition with Lambda stand-ins, and what its runs need in moto."""
    monkeypatch.setitem(default_user_config, "stepfunctions", EXECUTE_STATE_MACHINES["stepfunctions"])
    definition = stack.resolved.state_machine_definition("PipelineStateMachine", stack.root)
    queue_url = boto3.client("sqs", region_name=REGION).create_queue(QueueName="approval-requests")["QueueUrl"]
    glue_job(definition["States"]["Preprocess data"]["Parameters"]["JobName"])
    yield {"definition": definition, "runnable": with_lambda_stand_ins(definition, queue_url), "queue_url": queue_url}


def test_the_template_pipeline_definition_is_accepted_as_written(pipeline: dict[str, Any]) -> None:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.create_state_machine(name="pipeline", definition=json.dumps(pipeline["definition"]), roleArn=ROLE_ARN)[
        "stateMachineArn"
    ]
    assert json.loads(sfn.describe_state_machine(stateMachineArn=arn)["definition"]) == pipeline["definition"]


def test_the_pipeline_trains_evaluates_waits_for_approval_and_deploys(
    pipeline: dict[str, Any], training_progress: TrainingProgress
) -> None:
    training_progress.statuses = ["InProgress", "Completed"]
    runnable = pipeline["runnable"]
    run_input = {
        "run": run_context(runnable, run_id="churn-0123456789ab", approval_timeout_seconds=30),
    }
    sfn, execution_arn = start(runnable, run_input)
    request = answer_approval(
        boto3.client("sqs", region_name=REGION), pipeline["queue_url"], sfn, execution_arn, "approve"
    )
    execution = wait_for(sfn, execution_arn)

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert execution.entered_states == [
        "Resolve run",
        "New, resumed or duplicate?",
        "Preprocessing already done?",
        "Preprocess data",
        "Record preprocessing",
        "Training already done?",
        "Train model",
        "Record training",
        "Create model",
        "Find champion",
        "Champion in service?",
        "Create test endpoint config",
        "Create test endpoint",
        "Start waiting for test endpoint",
        "Wait for test endpoint",
        "Count test endpoint check",
        "Check test endpoint",
        "Is the test endpoint ready?",
        "Evaluate model",
        "Record evaluation",
        "Good enough to ask for approval?",
        "Request approval",
        "Record approval decision",
        "Approved?",
        "Find production endpoint",
        "Create production endpoint config",
        "Production endpoint exists?",
        "Create production endpoint",
        "Start waiting for production endpoint",
        "Wait for production endpoint",
        "Count production endpoint check",
        "Check production endpoint",
        "Is the production endpoint ready?",
        "Record deployment",
        "Record run succeeded",
        "Delete test endpoint",
        "Delete test endpoint config",
        "After cleanup",
        "Notify the outcome",
        "How did the run end?",
        "Model deployed",
    ]
    assert request["evaluation"] == EVALUATION and request["execution_arn"] == execution_arn
    output = execution.output
    assert output["steps"]["preprocess"]["state"] == "SUCCEEDED"
    assert isinstance(output["steps"]["preprocess"]["started_on"], int)
    assert output["steps"]["train"]["job_name"] == "stepml-churn-0123456789ab-a1"
    assert isinstance(output["steps"]["train"]["completed_on"], int)
    assert output["steps"]["approval"]["decision"] == "approve"
    assert output["production"] == {"exists": False}
    assert output["probe"] == {"status": "InService", "config": "stepml-churn-0123456789ab-prod-a1"}
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    assert [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]] == [
        output["run"]["names"]["production_endpoint"]
    ]


def test_the_pipeline_records_a_timed_out_approval_and_a_rejection_as_not_promoted(
    pipeline: dict[str, Any], training_progress: TrainingProgress
) -> None:
    runnable = pipeline["runnable"]
    timed_out = run(
        runnable,
        {"run": run_context(runnable, run_id="churn-00000000000a", approval_timeout_seconds=1)},
    )
    sfn, rejected_arn = start(
        runnable,
        {"run": run_context(runnable, run_id="churn-00000000000b", approval_timeout_seconds=30)},
    )
    answer_approval(boto3.client("sqs", region_name=REGION), pipeline["queue_url"], sfn, rejected_arn, "reject")
    rejected = wait_for(sfn, rejected_arn)

    not_promoted = [
        "Record not promoted",
        "Delete test endpoint",
        "Delete test endpoint config",
        "After cleanup",
        "Notify the outcome",
        "How did the run end?",
        "Model not promoted",
    ]
    assert timed_out.status == "SUCCEEDED", timed_out.describe.get("cause")
    assert timed_out.entered_states[-9:] == ["Request approval", "Approval timed out", *not_promoted]
    assert timed_out.output["error"]["Error"] == "States.Timeout"
    assert timed_out.output["outcome"]["status"] == "APPROVAL_TIMED_OUT"
    assert rejected.status == "SUCCEEDED", rejected.describe.get("cause")
    assert rejected.entered_states[-11:] == [
        "Request approval",
        "Record approval decision",
        "Approved?",
        "Approver rejected the model",
        *not_promoted,
    ]
    assert rejected.output["outcome"] == {
        "status": "REJECTED",
        "reason": "Rejected by reviewer@example.com: too few rows",
    }


def test_the_pipeline_fails_with_the_recorded_message_when_training_fails(
    pipeline: dict[str, Any], training_progress: TrainingProgress
) -> None:
    training_progress.statuses = ["InProgress", "Failed"]
    runnable = pipeline["runnable"]
    execution = run(
        runnable,
        {"run": run_context(runnable, run_id="churn-00000000000c", approval_timeout_seconds=30)},
    )

    assert execution.status == "FAILED"
    assert execution.entered_states[-6:] == [
        "Train model",
        "Failed at training",
        "Record failure",
        "Test endpoint to clean up?",
        "Alert on failure",
        "Pipeline failed",
    ]
    assert execution.describe["error"] == "stepml.PipelineFailed"
    assert execution.describe["cause"] == "Run churn-00000000000c failed: States.TaskFailed"


# -- server mode -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def moto_server(aws_credentials: None, fast_sync: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's server in this process, as the local cloud runs it, with state machine execution on."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    monkeypatch.setenv("MOTO_PORT", str(port))  # where moto's interpreter sends service calls
    monkeypatch.setitem(default_user_config, "stepfunctions", {})
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        request = urllib.request.Request(
            f"{endpoint}/moto-api/config",
            data=json.dumps(EXECUTE_STATE_MACHINES).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 201
        yield endpoint
    finally:
        server.stop()


def test_server_mode_runs_glue_and_sagemaker_sync_tasks_and_describe_execution_answers(moto_server: str) -> None:
    glue = boto3.client("glue", region_name=REGION, endpoint_url=moto_server)
    glue.create_job(Name="preprocess", Role=ROLE_ARN, Command={"Name": "glueetl", "ScriptLocation": "s3://s/p.py"})
    sfn = boto3.client("stepfunctions", region_name=REGION, endpoint_url=moto_server)
    definition = {
        "StartAt": "Preprocess",
        "States": {
            "Preprocess": {
                "Type": "Task",
                "Resource": "arn:aws:states:::glue:startJobRun.sync",
                "Parameters": {"JobName": "preprocess"},
                "ResultSelector": {"started_on.$": "$.StartedOn", "completed_on.$": "$.CompletedOn"},
                "ResultPath": "$.preprocess",
                "Next": "Train",
            },
            "Train": training_task(
                ResultSelector={"status.$": "$.TrainingJobStatus", "completed_on.$": "$.TrainingEndTime"},
                ResultPath="$.train",
                End=True,
            ),
        },
    }

    execution = run(definition, sfn=sfn)

    assert execution.describe["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert isinstance(execution.output["preprocess"]["started_on"], int)
    assert isinstance(execution.output["preprocess"]["completed_on"], int)
    assert execution.output["train"]["status"] == "Completed"
    assert isinstance(execution.output["train"]["completed_on"], int)


def test_concurrent_conditional_writes_have_exactly_one_winner(aws_credentials):
    """Without the lock moto lets two of twenty racing conditional updates both succeed."""
    import threading

    from moto import mock_aws

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for round_number in range(15):
            key = {"k": {"S": f"r{round_number}"}}
            client.put_item(TableName="t", Item={**key, "status": {"S": "PENDING"}})
            winners = []
            barrier = threading.Barrier(20)

            def decide(who: int, key=key, winners=winners, barrier=barrier) -> None:
                barrier.wait()
                try:
                    client.update_item(
                        TableName="t",
                        Key=key,
                        UpdateExpression="SET #s = :done, who = :who",
                        ConditionExpression="#s = :pending",
                        ExpressionAttributeNames={"#s": "status"},
                        ExpressionAttributeValues={
                            ":done": {"S": "DONE"},
                            ":pending": {"S": "PENDING"},
                            ":who": {"N": str(who)},
                        },
                    )
                    winners.append(who)
                except client.exceptions.ConditionalCheckFailedException:
                    pass

            threads = [threading.Thread(target=decide, args=(i,)) for i in range(20)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len(winners) == 1, f"round {round_number}: {len(winners)} winners"


# -- what stepml preflight asks (ValidateStateMachineDefinition, SES, quotas, layers, ECR) ----


def _validate(definition: Any, **kwargs: Any) -> dict[str, Any]:
    text = definition if isinstance(definition, str) else json.dumps(definition)
    return boto3.client("stepfunctions", region_name=REGION).validate_state_machine_definition(
        definition=text, **kwargs
    )


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
        assert _validate(definition)["result"] == "FAIL"

    [diagnostic] = _validate(typo)["diagnostics"]
    assert diagnostic == {
        "severity": "ERROR",
        "code": "SCHEMA_VALIDATION_FAILED",
        "message": 'The field "Tag" is not supported by Step Functions',
        "location": "/States/Train model/Parameters",
    }
    [parser_error] = _validate(unknown_field)["diagnostics"]
    assert parser_error["code"] == "SCHEMA_VALIDATION_FAILED"
    assert 'at "Bogus"' in parser_error["message"]


def test_validate_state_machine_definition_names_json_errors_and_truncates(sfn_moto: None) -> None:
    [diagnostic] = _validate("{not json")["diagnostics"]
    assert diagnostic["code"] == "INVALID_JSON_DESCRIPTION"

    parameters = training_job_parameters()
    parameters.update({"Tag": [], "Tags2": [], "Extra": 1})
    answer = _validate({"StartAt": "T", "States": {"T": training_task(parameters, End=True)}}, maxResults=2)
    assert answer["result"] == "FAIL"
    assert len(answer["diagnostics"]) == 2
    assert answer["truncated"] is True


def test_the_template_pipeline_definition_validates_ok(pipeline: dict[str, Any]) -> None:
    answer = _validate(pipeline["definition"], type="STANDARD", severity="WARNING")
    assert (answer["result"], answer["diagnostics"], answer["truncated"]) == ("OK", [], False)


def test_ses_get_account_answers_and_the_sandbox_refuses_unverified_recipients(aws_credentials: None) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sesv2.models import sesv2_backends

    from stepml.local.account_defaults import ses_account

    with mock_aws():
        sesv2 = boto3.client("sesv2", region_name=REGION)
        account = sesv2.get_account()
        assert account["ProductionAccessEnabled"] is True
        assert account["SendingEnabled"] is True
        sesv2.create_email_identity(EmailIdentity="sender@example.com")
        message = {
            "FromEmailAddress": "sender@example.com",
            "Destination": {"ToAddresses": ["approver@example.org"]},
            "Content": {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
        }
        sesv2.send_email(**message)  # production access: any recipient

        ses_account(sesv2_backends[DEFAULT_ACCOUNT_ID][REGION]).production_access_enabled = False
        assert sesv2.get_account()["ProductionAccessEnabled"] is False
        assert sesv2.get_account()["SendQuota"]["Max24HourSend"] == 200.0
        with pytest.raises(ClientError) as refused:
            sesv2.send_email(**message)
        assert refused.value.response["Error"]["Code"] == "MessageRejected"
        message_text = refused.value.response["Error"]["Message"]
        assert "failed the check in region US-EAST-1: approver@example.org" in message_text
        sesv2.create_email_identity(EmailIdentity="example.org")
        sesv2.send_email(**message)


def test_ses_get_account_answers_in_server_mode(moto_server: str) -> None:
    sesv2 = boto3.client("sesv2", region_name=REGION, endpoint_url=moto_server)
    assert sesv2.get_account()["EnforcementStatus"] == "HEALTHY"


def test_an_identity_moto_lets_send_is_verified_for_sending(aws_credentials: None) -> None:
    with mock_aws():
        sesv2 = boto3.client("sesv2", region_name=REGION)
        sesv2.create_email_identity(EmailIdentity="example.com")
        identity = sesv2.get_email_identity(EmailIdentity="example.com")
        assert identity["VerificationStatus"] == "SUCCESS"
        assert identity["VerifiedForSendingStatus"] is True


def test_sagemaker_service_quotas_are_listed_and_read_by_code(aws_credentials: None) -> None:
    from stepml.local.account_defaults import SAGEMAKER_QUOTAS

    with mock_aws():
        quotas = boto3.client("service-quotas", region_name=REGION)
        applied = [
            quota
            for page in quotas.get_paginator("list_service_quotas").paginate(
                ServiceCode="sagemaker", PaginationConfig={"PageSize": 4}
            )
            for quota in page["Quotas"]
        ]
        assert len(applied) == len(SAGEMAKER_QUOTAS)
        [training] = [q for q in applied if q["QuotaName"] == "ml.m5.xlarge for training job usage"]
        assert training["QuotaArn"] == f"arn:aws:servicequotas:{REGION}:123456789012:sagemaker/{training['QuotaCode']}"
        assert quotas.get_service_quota(ServiceCode="sagemaker", QuotaCode=training["QuotaCode"])["Quota"] == training
        default = quotas.get_aws_default_service_quota(ServiceCode="sagemaker", QuotaCode=training["QuotaCode"])
        assert default["Quota"]["Value"] == training["Value"]
        defaults = quotas.list_aws_default_service_quotas(ServiceCode="sagemaker")["Quotas"]
        assert {q["QuotaName"] for q in defaults} == {q.name for q in SAGEMAKER_QUOTAS}
        with pytest.raises(ClientError) as missing:
            quotas.get_service_quota(ServiceCode="sagemaker", QuotaCode="L-00000000")
        assert missing.value.response["Error"]["Code"] == "NoSuchResourceException"


def test_get_layer_version_by_arn_finds_a_layer_of_another_account(aws_credentials: None) -> None:
    from moto.awslambda.models import lambda_backends

    with mock_aws():
        publisher = lambda_backends["336392948345"][REGION]
        published = publisher.publish_layer_version(
            {"LayerName": "Shared", "Content": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}}
        )
        client = boto3.client("lambda", region_name=REGION)
        answer = client.get_layer_version_by_arn(Arn=published.arn)
        assert answer["LayerVersionArn"] == published.arn
        assert answer["Version"] == 1
        with pytest.raises(ClientError) as missing:
            client.get_layer_version_by_arn(Arn=published.arn.rsplit(":", 1)[0] + ":7")
        assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_ecr_describe_images_reads_the_registry_that_registry_id_names(aws_credentials: None) -> None:
    from stepml.local import account_defaults

    with mock_aws():
        account_defaults.seed(REGION, "123456789012")
        ecr = boto3.client("ecr", region_name=REGION)
        [image] = ecr.describe_images(
            registryId="683313688378", repositoryName="sagemaker-xgboost", imageIds=[{"imageTag": "1.7-1"}]
        )["imageDetails"]
        assert image["registryId"] == "683313688378"
        assert image["imageTags"] == ["1.7-1"]
        assert ecr.describe_repositories()["repositories"] == []  # not the caller's own registry
        with pytest.raises(ClientError) as missing:
            ecr.describe_images(registryId="683313688378", repositoryName="sagemaker-nope")
        assert missing.value.response["Error"]["Code"] == "RepositoryNotFoundException"


def test_bucket_logging_reads_a_target_policy_with_a_principal_star_statement(aws_credentials):
    """Unpatched moto fails PutBucketLogging with HTTP 500 when the target's policy has a Principal "*"."""
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="log-target")
        s3.create_bucket(Bucket="log-source")
        deny_plain_http = {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": ["arn:aws:s3:::log-target", "arn:aws:s3:::log-target/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
        logging_status = {"LoggingEnabled": {"TargetBucket": "log-target", "TargetPrefix": "log-source/"}}
        s3.put_bucket_policy(
            Bucket="log-target", Policy=json.dumps({"Version": "2012-10-17", "Statement": [deny_plain_http]})
        )
        with pytest.raises(ClientError) as refused:
            s3.put_bucket_logging(Bucket="log-source", BucketLoggingStatus=logging_status)
        assert refused.value.response["Error"]["Code"] == "InvalidTargetBucketForLogging"
        delivery = {
            "Effect": "Allow",
            "Principal": {"Service": ["logging.s3.amazonaws.com"]},
            "Action": ["s3:PutObject"],
            "Resource": "arn:aws:s3:::log-target/*",
        }
        policy = {"Version": "2012-10-17", "Statement": [deny_plain_http, delivery]}
        s3.put_bucket_policy(Bucket="log-target", Policy=json.dumps(policy))
        s3.put_bucket_logging(Bucket="log-source", BucketLoggingStatus=logging_status)
        assert s3.get_bucket_logging(Bucket="log-source")["LoggingEnabled"]["TargetBucket"] == "log-target"
        # The delivery statement's conditions are evaluated: another account's logs are refused.
        delivery["Condition"] = {"StringEquals": {"aws:SourceAccount": "210987654321"}}
        s3.put_bucket_policy(Bucket="log-target", Policy=json.dumps(policy))
        with pytest.raises(ClientError) as refused:
            s3.put_bucket_logging(Bucket="log-source", BucketLoggingStatus=logging_status)
        assert refused.value.response["Error"]["Code"] == "InvalidTargetBucketForLogging"
        delivery["Condition"] = {"ArnEquals": {"aws:SourceArn": "arn:aws:s3:::log-source"}}
        s3.put_bucket_policy(Bucket="log-target", Policy=json.dumps(policy))
        s3.put_bucket_logging(Bucket="log-source", BucketLoggingStatus=logging_status)


def test_associate_kms_key_checks_the_key_policy_as_cloudwatch_logs_does(aws_credentials):
    """moto 5.2.5 has no AssociateKmsKey."""
    with mock_aws():
        logs = boto3.client("logs", region_name="us-east-1")
        kms = boto3.client("kms", region_name="us-east-1")
        usable = kms.create_key(Policy=json.dumps(logs_key_policy()))["KeyMetadata"]["Arn"]
        account_only = {"Version": "2012-10-17", "Statement": [logs_key_policy()["Statement"][0]]}
        unusable = kms.create_key(Policy=json.dumps(account_only))["KeyMetadata"]["Arn"]
        logs.create_log_group(logGroupName="/aws-glue/jobs/sc-role/r/output")

        logs.associate_kms_key(logGroupName="/aws-glue/jobs/sc-role/r/output", kmsKeyId=usable)
        (group,) = logs.describe_log_groups(logGroupNamePrefix="/aws-glue/jobs/sc-role/r/output")["logGroups"]
        assert group["kmsKeyId"] == usable

        with pytest.raises(ClientError) as refused:
            logs.associate_kms_key(logGroupName="/aws-glue/jobs/sc-role/r/output", kmsKeyId=unusable)
        assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
        assert refused.value.response["Error"]["Message"] == (
            "The specified KMS key does not exist or is not allowed to be used with Arn "
            "'arn:aws:logs:us-east-1:123456789012:log-group:/aws-glue/jobs/sc-role/r/output'"
        )
        with pytest.raises(ClientError) as missing:
            logs.associate_kms_key(logGroupName="/nowhere", kmsKeyId=usable)
        assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_sync_tasks_are_found_in_branches_and_iterations():
    """CreateStateMachine checks the managed rule of every `.sync` Task, nested ones included."""
    from stepml.local.iam.hooks import MANAGED_RULES
    from stepml.local.sfn_integrations import sync_tasks

    task = {"Type": "Task", "End": True}
    definition = {
        "StartAt": "P",
        "States": {
            "P": {
                "Type": "Parallel",
                "Next": "M",
                "Branches": [
                    {"StartAt": "T", "States": {"T": {**task, "Resource": "arn:aws:states:::glue:startJobRun.sync"}}}
                ],
            },
            "M": {
                "Type": "Map",
                "Next": "I",
                "ItemProcessor": {
                    "StartAt": "S",
                    "States": {"S": {**task, "Resource": "arn:aws:states:::states:startExecution.sync:2"}},
                },
            },
            "I": {
                "Type": "Map",
                "Next": "L",
                "Iterator": {
                    "StartAt": "X",
                    "States": {"X": {**task, "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync"}},
                },
            },
            "L": {**task, "Resource": "arn:aws:states:::lambda:invoke"},
        },
    }
    found = [(task.service, task.api) for task in sync_tasks(definition)]
    assert found == [("glue", "startJobRun"), ("states", "startExecution"), ("sagemaker", "createTrainingJob")]
    assert [MANAGED_RULES.get(task) for task in found] == [
        None,  # Glue's .sync polls
        "StepFunctionsGetEventsForStepFunctionsExecutionRule",
        "StepFunctionsGetEventsForSageMakerTrainingJobsRule",
    ]
    assert sync_tasks(None) == [] and sync_tasks({"States": []}) == []


def test_a_key_policy_that_locks_the_caller_out_is_refused_as_kms_refuses_it(gated_moto):
    """KMS's policy lockout safety check, in a local cloud: the caller must be able to update the
    policy afterwards (the local user is an administrator, so the account's root delegation is enough)."""
    from stepml.local.moto_patches import KEY_POLICY_LOCKOUT_MESSAGE

    kms = gated_moto.client("kms")
    account = {
        "Sid": "AccountAdministers",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": "kms:*",
        "Resource": "*",
    }
    service_only = {
        "Sid": "LogsOnly",
        "Effect": "Allow",
        "Principal": {"Service": "logs.us-east-1.amazonaws.com"},
        "Action": "kms:Decrypt*",
        "Resource": "*",
    }

    def document(*statements):
        return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})

    before = len(kms.list_keys()["Keys"])
    with pytest.raises(ClientError) as refused:
        kms.create_key(Policy=document(service_only))
    assert refused.value.response["Error"]["Code"] == "MalformedPolicyDocumentException"
    assert refused.value.response["Error"]["Message"] == KEY_POLICY_LOCKOUT_MESSAGE
    assert len(kms.list_keys()["Keys"]) == before, "the refused key is not left behind"

    bypassed = kms.create_key(Policy=document(service_only), BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]
    key = kms.create_key(Policy=document(account, service_only))["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as refused:
        kms.put_key_policy(KeyId=key, PolicyName="default", Policy=document(service_only))
    assert refused.value.response["Error"]["Code"] == "MalformedPolicyDocumentException"
    assert json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])["Statement"][0] == account
    assert bypassed["KeyId"] in [k["KeyId"] for k in kms.list_keys()["Keys"]]

    # A role that may put the key policy under the account's delegation passes; one that may not is refused.
    keeper = gated_moto.role(
        "key-keeper", "lambda.amazonaws.com", [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]
    )
    credentials = gated_moto.authorizer.principals.credentials(keeper, "s").client_kwargs()
    as_keeper = gated_moto.client("kms", **credentials)
    assert as_keeper.create_key(Policy=document(account))["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as refused:
        as_keeper.create_key(Policy=document(service_only))
    assert refused.value.response["Error"]["Code"] == "MalformedPolicyDocumentException"
    checks = [r for r in gated_moto.authorizer.recorder.snapshot() if r.action == "kms:PutKeyPolicy"]
    assert {r.principal for r in checks} >= {"arn:aws:iam::123456789012:user/local"}
    assert [r.allowed for r in checks].count(False) == 3
