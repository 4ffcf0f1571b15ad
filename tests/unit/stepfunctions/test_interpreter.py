"""The interpreter patches (tasks, expressions, executions): each test fails on unpatched moto 5.2.5.

State machines run in moto in-process (``mock_aws`` with state machine execution on); one test
runs them through moto's server in this process, as the local cloud does.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core.config import default_user_config
from moto.stepfunctions.parser.asl.antlr.runtime.ASLParser import ASLParser
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

from stepml.local.stepfunctions.serialisation import datetimes_to_epoch_millis
from stepml.local.stepfunctions.tasks import (
    DEFAULT_SYNC_POLL_SECONDS,
    SYNC_POLL_SECONDS_ENV,
    SyncPollSecondsError,
    sync_poll_seconds,
)
from tests.helpers import free_port
from tests.unit.stepfunctions.support import (
    DEADLINE_SECONDS,
    EXECUTE_STATE_MACHINES,
    REGION,
    ROLE_ARN,
    SAGEMAKER_ROLE_ARN,
    XGBOOST_IMAGE,
    caught,
    glue_job,
    one_task,
    run,
    start,
    training_task,
    wait_for,
)

# -- settings and serialisation -------------------------------------------------------------------


def test_sync_poll_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SYNC_POLL_SECONDS_ENV, raising=False)
    assert sync_poll_seconds() == DEFAULT_SYNC_POLL_SECONDS
    monkeypatch.setenv(SYNC_POLL_SECONDS_ENV, "0.2")
    assert sync_poll_seconds() == 0.2
    monkeypatch.setenv(SYNC_POLL_SECONDS_ENV, "soon")
    with pytest.raises(SyncPollSecondsError, match=f"{SYNC_POLL_SECONDS_ENV} must be a positive number.*'soon'"):
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
    assert raised.value.response["Error"]["Message"] == (
        "Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: The field 'Type' should have one of these "
        "values: [Task, Wait, Pass, Succeed, Fail, Choice, Parallel, Map] at /States/A/Type'"
    )


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


def test_a_definition_is_parsed_once_and_each_execution_gets_its_own_components(
    sfn_moto: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    parses = []
    state_machine = ASLParser.state_machine

    def counted(self: ASLParser) -> Any:
        # Only this test's definition: another test's execution may still be starting in its thread.
        parses.append("Flaky-parsed-once" in self.getTokenStream().tokenSource.inputStream.strdata)
        return state_machine(self)

    monkeypatch.setattr(ASLParser, "state_machine", counted)
    # A Parallel whose branch fails once per execution, retried once: retrier state shared between
    # executions would leave the second execution's failure unretried.
    flaky = {
        "StartAt": "Try",
        "States": {
            "Try": {
                "Type": "Parallel",
                "Branches": [{"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "Flaky-parsed-once"}}}],
                "Retry": [{"ErrorEquals": ["Flaky-parsed-once"], "IntervalSeconds": 1, "MaxAttempts": 1}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Gave up"}],
                "End": True,
            },
            "Gave up": {"Type": "Pass", "End": True},
        },
    }
    sfn, first = start(flaky)
    arn = sfn.describe_execution(executionArn=first)["stateMachineArn"]
    second = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    executions = [wait_for(sfn, first), wait_for(sfn, second)]

    assert parses.count(True) == 1  # CreateStateMachine's; both executions reused its tree
    for execution in executions:
        assert execution.status == "SUCCEEDED"
        assert execution.entered_states == ["Try", "Boom", "Boom", "Gave up"]
    program = AmazonStateLanguageParser.parse(json.dumps(flaky))[0]
    assert program is not AmazonStateLanguageParser.parse(json.dumps(flaky))[0]


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


def test_aws_sdk_get_object_body_is_the_objects_text(sfn_moto: None) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="bodies")
    s3.put_object(Bucket="bodies", Key="config.json", Body=json.dumps({"threshold": 0.8, "name": "caf\u00e9"}))
    execution = run(
        one_task(
            {
                "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
                "Parameters": {"Bucket": "bodies", "Key": "config.json"},
                "ResultSelector": {"config.$": "States.StringToJson($.Body)", "length.$": "$.ContentLength"},
            }
        )
    )

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert execution.output["config"] == {"threshold": 0.8, "name": "caf\u00e9"}


def test_aws_sdk_get_object_body_that_is_not_text_fails_the_task(sfn_moto: None) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="bodies")
    s3.put_object(Bucket="bodies", Key="model.bin", Body=bytes([0xFF, 0xFE, 0x00, 0x81]))
    execution = run(
        one_task(
            {
                "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
                "Parameters": {"Bucket": "bodies", "Key": "model.bin"},
            }
        )
    )

    assert execution.status == "FAILED"
    assert execution.describe.get("error") == "States.Runtime", execution.describe
    assert "not UTF-8 text" in execution.describe.get("cause", "")


# -- error names ---------------------------------------------------------------------------


def test_aws_sdk_errors_are_named_as_step_functions_names_them(sfn_moto: None) -> None:
    # DescribeEndpoint of a missing endpoint answers ValidationException, which SageMaker's model does not declare.
    task = {"Resource": "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint", "Parameters": {"EndpointName": "none"}}
    execution = run(caught({"Type": "Task", **task}, ["SageMaker.SageMakerException"]))

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert execution.output["error"]["Error"] == "SageMaker.SageMakerException"
    [failure] = execution.task_failures()
    assert failure["error"] == "SageMaker.SageMakerException"
    assert "(Service: SageMaker, Status Code: 400, Request ID: " in failure["cause"]


def test_lambda_service_errors_are_named_as_step_functions_names_them(sfn_moto: None) -> None:
    # Invoke declares ResourceNotFoundException; moto named it plain "Exception" for a function-ARN Task.
    missing = f"arn:aws:lambda:{REGION}:123456789012:function:nowhere"
    execution = run(caught({"Type": "Task", "Resource": missing}, ["Lambda.ResourceNotFoundException"]))

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    assert execution.output["error"]["Error"] == "Lambda.ResourceNotFoundException"
    [failure] = [e["lambdaFunctionFailedEventDetails"] for e in execution.events if e["type"] == "LambdaFunctionFailed"]
    assert failure["error"] == "Lambda.ResourceNotFoundException"
    assert "(Service: AWSLambda; Status Code: 404; Error Code: ResourceNotFoundException;" in failure["cause"]


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


# -- server mode -------------------------------------------------------------------------


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


def test_sync_tasks_are_found_in_branches_and_iterations():
    """CreateStateMachine checks the managed rule of every `.sync` Task, nested ones included."""
    from stepml.local.iam.hooks import MANAGED_RULES
    from stepml.local.stepfunctions.definitions import sync_tasks

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


def test_a_transform_job_sync_task_needs_what_aws_documents_for_it():
    """createTransformJob.sync: describe, stop and list the job's tags, and manage the transform jobs' rule;
    no iam:PassRole (the job runs as its model's role)."""
    from stepml.local.iam.hooks import _sync_requirements

    needed = _sync_requirements("sagemaker", "createTransformJob", {"TransformJobName": "Stepml-R-bt-a1"}, "1", "r")
    job = "arn:aws:sagemaker:r:1:transform-job/stepml-r-bt-a1"
    rule = "arn:aws:events:r:1:rule/StepFunctionsGetEventsForSageMakerTransformJobsRule"
    assert [(request.action, request.resource) for request in needed] == [
        ("sagemaker:DescribeTransformJob", job),
        ("sagemaker:StopTransformJob", job),
        ("sagemaker:ListTags", job),
        ("events:PutTargets", rule),
        ("events:PutRule", rule),
        ("events:DescribeRule", rule),
    ]
