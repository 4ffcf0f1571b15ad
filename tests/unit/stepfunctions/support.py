"""Running state machines in moto's interpreter for the Step Functions patch tests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

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


def glue_job(name: str = "preprocess") -> str:
    boto3.client("glue", region_name=REGION).create_job(
        Name=name, Role=ROLE_ARN, Command={"Name": "glueetl", "ScriptLocation": "s3://scripts/preprocess.py"}
    )
    return name


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


def validate_definition(definition: Any, **kwargs: Any) -> dict[str, Any]:
    """ValidateStateMachineDefinition's answer for ``definition`` (a dict, or text as it is)."""
    text = definition if isinstance(definition, str) else json.dumps(definition)
    return boto3.client("stepfunctions", region_name=REGION).validate_state_machine_definition(
        definition=text, **kwargs
    )
