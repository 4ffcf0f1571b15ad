"""The local cloud's fault switch: settings, counting, and each engine failing as AWS would."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from stepml.local import faults
from stepml.local.faults import FaultSpecError, FaultSwitch
from stepml.local.glue import JOB_RUNS, GlueEngine
from stepml.local.lambdas import FunctionSpec, LambdaEngine
from stepml.local.provision import package_artifact
from stepml.local.stepfunctions.sagemaker_integration import error_name
from tests.helpers import REPO_ROOT


def test_settings_parse_operation_match_and_count():
    switch = FaultSwitch()
    added = switch.load("glue:StartJobRun=2, sagemaker:TrainingJob@churn-x=1,lambda:Evaluate.timeout=3")
    assert [(f.operation, f.match, f.remaining) for f in added] == [
        ("glue:StartJobRun", None, 2),
        ("sagemaker:TrainingJob", "churn-x", 1),
        ("lambda:Evaluate.timeout", None, 3),
    ]
    assert switch.load(["sns:Publish=1"])[0].operation == "sns:Publish"
    assert faults.from_environment({"STEPML_LOCAL_FAULTS": "glue:JobRun=1"}).faults[0].operation == "glue:JobRun"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("glue:Start=1", "unknown fault operation 'glue:Start'; expected one of glue:JobRun, glue:StartJobRun"),
        ("glue:StartJobRun", "fault 'glue:StartJobRun': expected OPERATION[@MATCH]=N"),
        ("glue:StartJobRun=x", "fault 'glue:StartJobRun=x': expected OPERATION[@MATCH]=N"),
        ("lambda:Evaluate.crash=1", "unknown fault operation 'lambda:Evaluate.crash'"),
    ],
)
def test_a_bad_setting_names_itself_and_the_expected_form(setting, message):
    with pytest.raises(FaultSpecError) as raised:
        FaultSwitch().load(setting)
    assert str(raised.value).startswith(message)


def test_a_fault_fails_only_matching_calls_and_only_n_times(fault_switch):
    fault_switch.load("sagemaker:TrainingJob@run-b=2")
    assert faults.trigger("sagemaker:TrainingJob", "stepml-run-a-a1") is None
    assert faults.trigger("sagemaker:CreateTrainingJob", "stepml-run-b-a1") is None
    first = faults.trigger("sagemaker:TrainingJob", "stepml-run-b-a1")
    assert first is not None and first.endswith("(local fault sagemaker:TrainingJob)")
    assert faults.trigger("sagemaker:TrainingJob", "stepml-run-b-a1") is not None
    assert faults.trigger("sagemaker:TrainingJob", "stepml-run-b-a1") is None
    assert fault_switch.hit_count("sagemaker:TrainingJob") == 2
    assert fault_switch.hit_count("sagemaker:TrainingJob", "run-a") == 0


def test_clear_ends_faults_but_keeps_the_hits(fault_switch):
    fault_switch.load("glue:JobRun=5,sns:Publish=5")
    assert faults.trigger("glue:JobRun", "job") is not None
    fault_switch.clear("glue:JobRun")
    assert faults.trigger("glue:JobRun", "job") is None
    assert faults.trigger("sns:Publish", "topic") is not None
    fault_switch.clear()
    assert faults.trigger("sns:Publish", "topic") is None
    assert fault_switch.hit_count("glue:JobRun") == 1 and fault_switch.hit_count("sns:Publish") == 1


def test_lambda_faults_throttle_fail_or_time_out_functions_by_name(fault_switch):
    fault_switch.load("lambda:Evaluate=1,lambda:Evaluate.error=1,lambda:RecordStep.timeout@run-b=1")
    assert faults.trigger_lambda("stepml-local-ResolveRun", "{}") is None
    assert faults.trigger_lambda("stepml-local-Evaluate", "{}")[0] == "throttle"
    kind, message = faults.trigger_lambda("stepml-local-Evaluate", "{}")
    assert kind == "error" and "lambda:Evaluate.error" in message
    assert faults.trigger_lambda("stepml-local-Evaluate", "{}") is None
    assert faults.trigger_lambda("stepml-local-RecordStep", '{"run_id": "run-a"}') is None
    assert faults.trigger_lambda("stepml-local-RecordStep", '{"run_id": "run-b"}')[0] == "timeout"


def test_a_lambda_fault_answers_as_lambda_does_for_an_error_and_a_timeout(tmp_path):
    engine = LambdaEngine({})
    engine.register(FunctionSpec(name="stepml-Evaluate", handler="app.handler", code_dir=tmp_path, timeout_seconds=900))
    timeout = engine.fault_answer("stepml-Evaluate", "timeout", "Task timed out (local fault lambda:Evaluate.timeout)")
    assert timeout.function_error == "Unhandled"
    assert timeout.json()["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 900.00 seconds" in timeout.json()["errorMessage"]
    error = engine.fault_answer("stepml-Evaluate", "error", "the function failed")
    assert error.json() == {"errorType": "stepml.FaultInjected", "errorMessage": "the function failed"}
    assert engine.workers_started("stepml-Evaluate") == 0, "a fault answers without running the handler"


@pytest.fixture
def glue(stack, tmp_path, apply_patch):
    script = tmp_path / "job.py"
    script.write_text("print('ran')\n")
    engine = GlueEngine(lambda: boto3.client("s3"), tmp_path / "runs")
    engine.register_job("prep", script)
    apply_patch(JOB_RUNS, engine)
    client = boto3.client("glue")
    location = package_artifact(boto3.client("s3"), script, "stepml-test")
    client.create_job(
        Name="prep", Role="arn:aws:iam::123456789012:role/glue", Command={"Name": "glueetl", "ScriptLocation": location}
    )
    return engine, client


def test_glue_start_job_run_throttles_then_a_run_fails_as_glue_reports_it(glue, fault_switch):
    engine, client = glue
    fault_switch.load("glue:StartJobRun@--run_id=r1=1,glue:JobRun@--run_id=r1=1")
    with pytest.raises(ClientError) as throttled:
        client.start_job_run(JobName="prep", Arguments={"--run_id": "r1"})
    assert throttled.value.response["Error"]["Code"] == "ConcurrentRunsExceededException"
    assert client.get_job_runs(JobName="prep")["JobRuns"] == [], "a throttled StartJobRun starts nothing"
    run_id = client.start_job_run(JobName="prep", Arguments={"--run_id": "r1"})["JobRunId"]
    run = client.get_job_run(JobName="prep", RunId=run_id)["JobRun"]
    assert run["JobRunState"] == "FAILED"
    assert run["ErrorMessage"] == "RuntimeError: the job run failed (local fault glue:JobRun)"
    again = client.start_job_run(JobName="prep", Arguments={"--run_id": "r1"})["JobRunId"]
    assert engine.wait(again).state == "SUCCEEDED", "the faults are used up"


def test_sns_publish_throttles_and_delivers_nothing(stack, fault_switch, mail_outbox):
    sns = boto3.client("sns", config=Config(retries={"total_max_attempts": 1}))
    topic = stack.physical_id("AlertTopic")
    fault_switch.load("sns:Publish@run-b=1")
    with pytest.raises(ClientError) as throttled:
        sns.publish(TopicArn=topic, Subject="[stepml] Run run-b failed", Message="m")
    assert throttled.value.response["Error"]["Code"] == "Throttled"
    sns.publish(TopicArn=topic, Subject="[stepml] Run run-a failed", Message="m")
    sns.publish(TopicArn=topic, Subject="[stepml] Run run-b failed", Message="m")
    assert [m.subject for m in mail_outbox.messages()] == ["[stepml] Run run-a failed", "[stepml] Run run-b failed"]


def test_every_transient_fault_is_retried_by_the_task_it_hits():
    """The error each transient fault raises, as Step Functions names it, is in that task's Retry."""
    states = json.loads((REPO_ROOT / "statemachine/pipeline.asl.json").read_text())["States"]

    def retried(state: str) -> set[str]:
        return {error for retry in states[state].get("Retry", []) for error in retry["ErrorEquals"]}

    assert "Glue.ConcurrentRunsExceededException" in retried("Preprocess data")
    sagemaker_throttling = error_name("ThrottlingException")
    assert sagemaker_throttling in retried("Train model") and sagemaker_throttling in retried("Create test endpoint")
    # sagemaker:CreateTransformJob: the two transform tasks inside the batch scoring's Parallel state.
    scoring = {
        name: state
        for branch in states["Score test split in batch"]["Branches"]
        for name, state in branch["States"].items()
        if state.get("Resource", "").startswith("arn:aws:states:::sagemaker:createTransformJob")
    }
    assert sorted(scoring) == ["Score challenger in batch", "Score champion in batch"]
    for name, state in scoring.items():
        assert sagemaker_throttling in {e for retry in state.get("Retry", []) for e in retry["ErrorEquals"]}, name
    for name, state in states.items():
        if state.get("Resource", "").startswith("arn:aws:states:::lambda:invoke"):
            assert "Lambda.TooManyRequestsException" in retried(name), name
        if state.get("Resource") == "arn:aws:states:::sns:publish":
            assert "SNS.ThrottledException" in retried(name), name
    for name in ("Preprocess data", "Train model", "Evaluate model"):
        assert states[name]["ResultSelector"]["retries.$"] == "$$.State.RetryCount", name


def test_the_cli_takes_repeatable_faults_and_refuses_a_bad_one_before_starting_anything(monkeypatch):
    from stepml.cli.context import CliError
    from stepml.cli.local import start_cloud
    from stepml.cli.main import build_parser

    monkeypatch.chdir(REPO_ROOT)
    args = build_parser().parse_args(["local", "up", "--fault", "glue:StartJobRun=2", "--fault", "sns:Publish@x=1"])
    assert args.fault == ["glue:StartJobRun=2", "sns:Publish@x=1"]
    assert build_parser().parse_args(["demo", "--fault", "lambda:Evaluate.timeout=1"]).fault == [
        "lambda:Evaluate.timeout=1"
    ]
    bad = build_parser().parse_args(["local", "up", "--fault", "glue:Start=1"])
    with pytest.raises(CliError, match="unknown fault operation 'glue:Start'"):
        start_cloud(bad)
