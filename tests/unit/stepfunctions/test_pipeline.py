"""The template's own pipeline definition in moto's interpreter, with every patch applied."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.core.config import default_user_config

from stepml.local.stepfunctions.schema import reachable_states
from tests.unit.stepfunctions.support import (
    DEADLINE_SECONDS,
    EXECUTE_STATE_MACHINES,
    REGION,
    ROLE_ARN,
    TrainingProgress,
    glue_job,
    run,
    start,
    validate_definition,
    wait_for,
)

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
    "Evaluate model in batch": {"Result": EVALUATION},
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
    # A Pass stand-in has no Catch (AWS refuses one there), so the states only its Lambda's catcher reached
    # would be unreachable, which AWS refuses too: they go.
    reachable = reachable_states(definition)
    definition["States"] = {name: state for name, state in states.items() if name in reachable}
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
            "features": [{"name": "tenure_months", "type": "numeric"}, {"name": "contract", "type": "categorical"}],
        },
        "hyperparameters": {"num_round": "10", "objective": "binary:logistic"},
        "names": {
            "training_job": f"stepml-{run_id}-a1",
            "model": f"stepml-{run_id}-a1",
            "test_endpoint_config": f"stepml-{run_id}-test-a1",
            "test_endpoint": f"stepml-{run_id}-test-a1",
            "test_model": f"stepml-{run_id}-test-a1",
            "production_endpoint_config": f"stepml-{run_id}-prod-a1",
            "production_endpoint": production,
            "monitoring_job_definition": f"stepml-{run_id}-dq-a1",
            "challenger_transform_job": f"stepml-{run_id}-bt-a1",
            "champion_transform_job": f"stepml-{run_id}-btc-a1",
        },
        "paths": {
            "processed": base,
            "train": base + "train/",
            "validation": base + "validation/",
            "statistics": base + "statistics.json",
            "constraints": base + "constraints.json",
            "preprocessor": base + "preprocessor/model.tar.gz",
            "model_output": f"s3://stepml-artifacts/models/churn/{run_id}/",
            "test": base + "test/",
            "transform": f"s3://stepml-artifacts/transform/churn/{run_id}/",
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
def pipeline(
    stack: Any, fast_sync: None, monkeypatch: pytest.MonkeyPatch, apply_patch: Any, tmp_path: Any
) -> Iterator[dict[str, Any]]:
    """The template's pipeline definition with Lambda stand-ins, and what its runs need in moto
    (the monitoring schedules of a SageMaker engine, which moto lacks)."""
    from stepml.local.sagemaker import LocalSageMaker
    from stepml.local.sagemaker.adapter_monitoring import MONITORING

    engine = LocalSageMaker(
        boto3.Session(region_name=REGION), work_dir=tmp_path / "sagemaker", monitor_period_seconds=3600
    )
    apply_patch(MONITORING, engine)
    monkeypatch.setitem(default_user_config, "stepfunctions", EXECUTE_STATE_MACHINES["stepfunctions"])
    definition = stack.resolved.state_machine_definition("PipelineStateMachine", stack.root)
    queue_url = boto3.client("sqs", region_name=REGION).create_queue(QueueName="approval-requests")["QueueUrl"]
    glue_job(definition["States"]["Preprocess data"]["Parameters"]["JobName"])
    yield {"definition": definition, "runnable": with_lambda_stand_ins(definition, queue_url), "queue_url": queue_url}
    engine.shutdown()


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
        "Check test endpoint",  # checked at once: an endpoint already InService costs no wait
        "Is the test endpoint ready?",
        "Evaluate model",
        "Record evaluation",
        "Delete test endpoint",
        "Delete test endpoint config",
        "Test model to delete?",  # no: an instance-backed test endpoint serves the pipeline model
        "After cleanup",
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
        "Create monitoring job definition",
        "Find monitoring schedule",
        "Monitoring schedule exists?",
        "Create monitoring schedule",
        "Alarm on each feature's drift",
        "Put drift alarm",
        "Put drift alarm",
        "Record run succeeded",
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
    assert output["test_serving"] == {"preprocessing": "endpoint"}
    assert output["probe"] == {"status": "InService", "config": "stepml-churn-0123456789ab-prod-a1"}
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    assert [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]] == [
        output["run"]["names"]["production_endpoint"]
    ]
    [schedule] = sagemaker.list_monitoring_schedules()["MonitoringScheduleSummaries"]
    assert schedule["MonitoringJobDefinitionName"] == "stepml-churn-0123456789ab-dq-a1"
    alarms = boto3.client("cloudwatch", region_name=REGION).describe_alarms()["MetricAlarms"]
    assert sorted(a["MetricName"] for a in alarms if "data-drift" in a["AlarmName"]) == [
        "feature_baseline_drift_contract",
        "feature_baseline_drift_tenure_months",
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
        "Notify the outcome",
        "How did the run end?",
        "Model not promoted",
    ]
    assert timed_out.status == "SUCCEEDED", timed_out.describe.get("cause")
    assert timed_out.entered_states[-6:] == ["Request approval", "Approval timed out", *not_promoted]
    assert timed_out.output["error"]["Error"] == "States.Timeout"
    assert timed_out.output["outcome"]["status"] == "APPROVAL_TIMED_OUT"
    assert rejected.status == "SUCCEEDED", rejected.describe.get("cause")
    assert rejected.entered_states[-8:] == [
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


def test_the_template_pipeline_definition_validates_ok(pipeline: dict[str, Any]) -> None:
    answer = validate_definition(pipeline["definition"], type="STANDARD", severity="WARNING")
    assert (answer["result"], answer["diagnostics"], answer["truncated"]) == ("OK", [], False)


@pytest.fixture
def model_checks(pipeline: dict[str, Any], apply_patch: Any, tmp_path: Any) -> Iterator[None]:
    """The local cloud's CreateModel and CreateEndpointConfig checks: a serverless variant of an
    inference pipeline model is refused, as AWS refuses it."""
    from stepml.local.sagemaker import LocalSageMaker
    from stepml.local.sagemaker.adapter import MODEL_CHECKS

    engine = LocalSageMaker(boto3.Session(region_name=REGION), work_dir=tmp_path / "checks")
    apply_patch(MODEL_CHECKS, engine)
    yield
    engine.shutdown()


def test_a_first_run_asking_for_serverless_scores_the_xgboost_container_alone_on_a_serverless_test_endpoint(
    pipeline: dict[str, Any], training_progress: TrainingProgress, model_checks: None
) -> None:
    """AWS serves no inference pipeline serverless, and the local cloud's CreateEndpointConfig refuses
    one as it does: the serverless branch makes the test endpoint its own model of the pipeline's
    XGBoost container alone, tells Evaluate to preprocess, and deletes that model in the cleanup."""
    runnable = pipeline["runnable"]
    context = run_context(runnable, run_id="churn-00000000000d", approval_timeout_seconds=30)
    context["config"]["hosting"]["test_endpoint_serverless"] = {"memory_mb": 3072, "max_concurrency": 4}
    sfn, arn = start(runnable, {"run": context})
    answer_approval(boto3.client("sqs", region_name=REGION), pipeline["queue_url"], sfn, arn, "reject")
    execution = wait_for(sfn, arn)

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    states = execution.entered_states
    assert states[states.index("Champion in service?") + 1 : states.index("Evaluate model")][:3] == [
        "Create serverless test model",
        "Create serverless test endpoint config",
        "Create test endpoint",
    ]
    assert states[states.index("Record evaluation") + 1 : states.index("Good enough to ask for approval?")] == [
        "Delete test endpoint",
        "Delete test endpoint config",
        "Test model to delete?",
        "Delete test model",
        "After cleanup",
    ]
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    scheduled = [
        (e["taskScheduledEventDetails"]["resource"], json.loads(e["taskScheduledEventDetails"]["parameters"]))
        for e in events
        if e["type"] == "TaskScheduled"
    ]
    pipeline_model, test_model = [p for resource, p in scheduled if resource == "createModel"]
    model = "stepml-churn-00000000000d-test-a1"
    assert test_model["ModelName"] == model and "Containers" not in test_model
    assert test_model["PrimaryContainer"] == pipeline_model["Containers"][-1]
    assert test_model["PrimaryContainer"]["ModelDataUrl"] == execution.output["steps"]["train"]["model_data"]
    assert test_model["ExecutionRoleArn"] == pipeline_model["ExecutionRoleArn"]
    [config] = [p for resource, p in scheduled if resource == "createEndpointConfig"]
    assert config["ProductionVariants"] == [
        {
            "VariantName": "Challenger",
            "ModelName": model,
            "ServerlessConfig": {"MemorySizeInMB": 3072, "MaxConcurrency": 4},
        }
    ]
    assert execution.output["test_serving"] == {"preprocessing": "evaluate"}
    # The run's pipeline model stays (production would serve it); the test endpoint's own is gone.
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    assert [m["ModelName"] for m in sagemaker.list_models()["Models"]] == ["stepml-churn-00000000000d-a1"]


def test_a_run_that_fails_after_making_the_serverless_test_model_deletes_it_on_the_cleanup_path(
    pipeline: dict[str, Any], training_progress: TrainingProgress, model_checks: None
) -> None:
    runnable = copy.deepcopy(pipeline["runnable"])
    # The endpoint config is refused (1.5 GB is no memory size SageMaker offers): the failure path
    # deletes the test endpoint, which was never made (a cleanup error kept beside the failure), then
    # the test model. RecordFailure names the test endpoint after a failure at that step; the stand-in
    # does too. The two refusals are not retried here, only to spare the test the backoff.
    for name in ("Create serverless test endpoint config", "Delete test endpoint"):
        del runnable["States"][name]["Retry"]
    stand_in = runnable["States"]["Record failure"]["Parameters"]
    del stand_in["test_endpoint"]
    stand_in["test_endpoint.$"] = "$.run.names.test_endpoint"
    context = run_context(runnable, run_id="churn-00000000000e", approval_timeout_seconds=30)
    context["config"]["hosting"]["test_endpoint_serverless"] = {"memory_mb": 1536, "max_concurrency": 4}
    execution = run(runnable, {"run": context})

    assert execution.status == "FAILED"
    refused, cleanup = execution.task_failures()
    assert "Invalid MemorySizeInMB 1536 for production variant Challenger" in refused["cause"]
    assert "stepml-churn-00000000000e-test-a1" in cleanup["cause"]  # DeleteEndpoint: it was never made
    states = execution.entered_states
    assert states[states.index("Create serverless test model") :] == [
        "Create serverless test model",
        "Create serverless test endpoint config",
        "Failed at test endpoint",
        "Record failure",
        "Test endpoint to clean up?",
        "Delete test endpoint",
        "Test model to delete?",
        "Delete test model",
        "After cleanup",
        "Alert on failure",
        "Pipeline failed",
    ]
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    assert [m["ModelName"] for m in sagemaker.list_models()["Models"]] == ["stepml-churn-00000000000e-a1"]


# -- a test split too large to score in memory: Batch Transform -------------------------------------

BATCH = {"mode": "batch", "test_rows": 900_000, "threshold": 250_000}
#: The Parallel's states of a run with no champion: the challenger's job, and the champion branch's choice.
BRANCH_STATES = ["Score challenger in batch", "Champion to score in batch?", "No champion to score"]


def _scoring_in_batch(runnable: dict[str, Any]) -> dict[str, Any]:
    """The definition whose Record preprocessing stand-in decided what RecordStep decides for a large split."""
    runnable = copy.deepcopy(runnable)
    runnable["States"]["Record preprocessing"] = {**runnable["States"]["Record preprocessing"], "Result": BATCH}
    runnable["States"]["Record preprocessing"].pop("Parameters", None)
    return runnable


def test_a_large_test_split_is_scored_by_a_transform_job_and_no_test_endpoint_is_made(
    pipeline: dict[str, Any], training_progress: TrainingProgress
) -> None:
    runnable = _scoring_in_batch(pipeline["runnable"])
    context = run_context(runnable, run_id="churn-00000000000f", approval_timeout_seconds=30)
    sfn, arn = start(runnable, {"run": context})
    answer_approval(boto3.client("sqs", region_name=REGION), pipeline["queue_url"], sfn, arn, "reject")
    execution = wait_for(sfn, arn)

    assert execution.status == "SUCCEEDED", execution.describe.get("cause")
    states = execution.entered_states
    scored = states[states.index("Champion in service?") : states.index("Good enough to ask for approval?")]
    # The two branches run at once: their states interleave in any order.
    assert scored[:2] == ["Champion in service?", "Score test split in batch"]
    assert sorted(scored[2:5]) == sorted(BRANCH_STATES)
    assert scored[5:] == ["Evaluate model in batch", "Record batch evaluation"]
    assert not [name for name in states if "test endpoint" in name]
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    [job] = [
        json.loads(e["taskScheduledEventDetails"]["parameters"])
        for e in events
        if e["type"] == "TaskScheduled" and e["taskScheduledEventDetails"]["resource"] == "createTransformJob.sync"
    ]
    assert (
        job["TransformJobName"] == "stepml-churn-00000000000f-bt-a1" and job["ModelName"] == context["names"]["model"]
    )
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == context["paths"]["test"]
    assert job["TransformOutput"]["S3OutputPath"] == context["paths"]["transform"] + "stepml-churn-00000000000f-bt-a1/"
    assert job["DataProcessing"] == {"InputFilter": "$[1:]", "JoinSource": "None"}
    scoring = execution.output["steps"]["test_scoring"]
    assert scoring["mode"] == "batch" and scoring["champion"] is None
    assert scoring["challenger"]["job_name"] == job["TransformJobName"]
    assert scoring["challenger"]["output"] == job["TransformOutput"]["S3OutputPath"]
    assert boto3.client("sagemaker", region_name=REGION).list_endpoint_configs()["EndpointConfigs"] == []


def test_a_failed_transform_job_fails_the_run_at_test_scoring_without_a_test_endpoint_to_delete(
    pipeline: dict[str, Any], training_progress: TrainingProgress, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.sagemaker.models import SageMakerModelBackend

    original = SageMakerModelBackend.describe_transform_job

    def failed(self: SageMakerModelBackend, transform_job_name: str) -> dict[str, Any]:
        response = dict(original(self, transform_job_name))
        response.update(TransformJobStatus="Failed", FailureReason="ClientError: the model answered 400 for line 3")
        return response

    monkeypatch.setattr(SageMakerModelBackend, "describe_transform_job", failed)
    runnable = _scoring_in_batch(pipeline["runnable"])
    execution = run(runnable, {"run": run_context(runnable, run_id="churn-000000000010", approval_timeout_seconds=30)})

    assert execution.status == "FAILED"
    [failure] = execution.task_failures()
    assert "the model answered 400 for line 3" in failure["cause"]
    states = execution.entered_states
    failing = states[states.index("Score test split in batch") :]
    assert failing[0] == "Score test split in batch" and sorted(failing[1:4]) == sorted(BRANCH_STATES)
    assert failing[4:] == [
        "Failed at test scoring",
        "Record failure",
        "Test endpoint to clean up?",
        "Alert on failure",
        "Pipeline failed",
    ]
    [recorded] = [
        json.loads(e["stateEnteredEventDetails"]["input"])
        for e in execution.events
        if e.get("stateEnteredEventDetails", {}).get("name") == "Record failure"
    ]
    assert recorded["failed_step"] == "test_scoring" and recorded["steps"]["preprocess"]["test_scoring"] == BATCH
