"""Run identity, claiming, resume and step records against the template's lineage table."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stepml import config
from stepml.config import DatasetConfigError
from stepml.lineage import (
    STEP_TITLES,
    DatasetConfigDeniedError,
    DatasetNotOnboardedError,
    LineageError,
    LineageStore,
    UnknownRunError,
    UploadEventError,
    from_dynamo,
    make_run_id,
    readable_cause,
    record_failure,
    record_notification_failure,
    record_step,
    resolve_run,
)
from tests.helpers import CHURN_CONFIG, FakeLambdaContext, load_handler, put_encoding, set_function_environment

EXECUTION_1 = "arn:aws:states:us-east-1:123456789012:execution:stepml-local-pipeline:one"
EXECUTION_2 = "arn:aws:states:us-east-1:123456789012:execution:stepml-local-pipeline:two"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class FakeStepFunctions:
    """DescribeExecution answers from a dict of execution ARN to status."""

    def __init__(self, statuses: dict[str, str] | None = None):
        self.statuses = statuses or {}

    def describe_execution(self, executionArn: str) -> dict[str, str]:
        if executionArn not in self.statuses:
            raise ClientError({"Error": {"Code": "ExecutionDoesNotExist", "Message": "no"}}, "DescribeExecution")
        return {"status": self.statuses[executionArn]}


class FakeSageMaker:
    def describe_training_job(self, TrainingJobName: str) -> dict[str, Any]:
        return {
            "TrainingJobName": TrainingJobName,
            "FinalMetricDataList": [{"MetricName": "validation:auc", "Value": 0.91}],
            "AlgorithmSpecification": {
                "TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
            },
            "ResourceConfig": {"InstanceType": "ml.m5.xlarge"},
        }

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:
        return {"EndpointName": EndpointName, "EndpointStatus": "Failed", "FailureReason": "model failed to load"}


@pytest.fixture
def env(resolve_run_env):
    return resolve_run_env


def _upload(env, key="incoming/churn/data.csv", body=b"a,b\n1,2\n") -> dict[str, Any]:
    return env.upload(key, body)


def _store(env, sfn=None) -> LineageStore:
    """The handlers' lineage service over the test's table, with fake SageMaker and Step Functions."""
    return LineageStore(
        settings=env["settings"],
        table=env["table"],
        s3_client=env["s3"],
        sagemaker_client=FakeSageMaker(),
        sfn_client=sfn or FakeStepFunctions(),
        now=lambda: NOW,
    )


def _resolve(env, event, execution=EXECUTION_1, sfn=None):
    return _store(env, sfn).resolve_run(event, execution)


def test_run_id_is_stable_per_object_version_and_names_the_dataset():
    first = make_run_id("bucket", "incoming/churn/data.csv", "v1")
    assert first == make_run_id("bucket", "incoming/churn/data.csv", "v1")
    assert first.startswith("churn-") and len(first) == len("churn-") + 12
    assert first != make_run_id("bucket", "incoming/churn/data.csv", "v2")
    assert first != make_run_id("other", "incoming/churn/data.csv", "v1")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("incoming/data.csv", "uploads must be under incoming/<dataset>/<file>"),
        ("other/churn/data.csv", "uploads must be under incoming/<dataset>/<file>"),
        ("incoming/Churn_Data/data.csv", "dataset folder 'Churn_Data' must be lowercase"),
    ],
)
def test_keys_outside_a_dataset_folder_are_refused(key, message):
    with pytest.raises(UploadEventError, match=message.replace("<", ".").replace(">", ".")):
        make_run_id("bucket", key, "v1")


def test_new_upload_starts_a_run_with_names_paths_and_defaults(env):
    result = _resolve(env, _upload(env))
    run = result["run"]
    assert result["action"] == "start" and result["steps"] == {}
    assert run["attempt"] == 1 and run["dataset"] == "churn"
    assert run["names"]["training_job"] == f"stepml-{run['run_id']}-a1"
    assert run["names"]["test_endpoint"] == f"stepml-{run['run_id']}-test-a1"
    assert run["names"]["production_endpoint"] == "stepml-production"
    assert run["paths"]["train"] == f"s3://{env['settings'].artifact_bucket}/processed/churn/{run['run_id']}/train/"
    assert run["config"]["training"]["instance_type"] == "ml.m5.xlarge"
    assert run["config"]["hosting"]["instance_type"] == "ml.m5.large"
    assert run["hyperparameters"]["objective"] == "binary:logistic"
    assert all(isinstance(v, str) for v in run["hyperparameters"].values())
    item = from_dynamo(env["table"].get_item(Key={"pk": f"RUN#{run['run_id']}", "sk": "RUN"})["Item"])
    assert item["status"] == "RUNNING" and item["execution_arn"] == EXECUTION_1
    assert item["gsi1pk"] == f"INPUT#{run['input']['uri']}"
    assert item["expires_at"] == int(NOW.timestamp()) + 1095 * 86400


def test_the_approval_timeout_is_the_stacks_unless_the_dataset_sets_its_own(env):
    run = _resolve(env, _upload(env))["run"]
    assert run["approval_timeout_seconds"] == env["settings"].approval_timeout_seconds
    assert run["config"]["approval_timeout_seconds"] is None
    env["s3"].put_object(
        Bucket=env["settings"].artifact_bucket,
        Key=config.dataset_config_key("churn"),
        Body=json.dumps({**CHURN_CONFIG, "approval_timeout_seconds": 45}).encode(),
    )
    run = _resolve(env, _upload(env, key="incoming/churn/other.csv"), execution=EXECUTION_1 + "-b")["run"]
    assert run["approval_timeout_seconds"] == 45


def test_duplicate_event_while_the_owner_runs_is_a_duplicate(env):
    event = _upload(env)
    _resolve(env, event, EXECUTION_1)
    second = _resolve(env, event, EXECUTION_2, sfn=FakeStepFunctions({EXECUTION_1: "RUNNING"}))
    assert second["action"] == "duplicate"
    again = _resolve(env, event, EXECUTION_1)
    assert again["action"] == "start", "a retried ResolveRun of the owning execution gets the same answer"


def test_finished_run_is_never_run_again(env):
    event = _upload(env)
    run = _resolve(env, event)["run"]
    record_step(
        run,
        "run",
        "SUCCEEDED",
        {},
        table=env["table"],
        s3_client=env["s3"],
        sagemaker_client=FakeSageMaker(),
        settings=env["settings"],
        now=lambda: NOW,
    )
    assert _resolve(env, event, EXECUTION_2)["action"] == "duplicate"


def test_failed_run_resumes_with_the_next_attempt_and_skips_succeeded_steps(env):
    event = _upload(env)
    run = _resolve(env, event)["run"]
    manifest_bucket, _, manifest_key = run["paths"]["manifest"].removeprefix("s3://").partition("/")
    env["s3"].put_object(
        Bucket=manifest_bucket,
        Key=manifest_key,
        Body=json.dumps({"fingerprint": "sha256:abc", "row_counts": {"train": 7, "test": 3}}).encode(),
    )
    put_encoding(env["s3"], run)
    preprocess = {
        "job_name": "stepml-local-preprocess",
        "job_run_id": "jr_1",
        "state": "SUCCEEDED",
        "started_on": 1763812800000,
        "completed_on": 1763812860000,
    }
    record_step(
        run,
        "preprocess",
        "SUCCEEDED",
        preprocess,
        table=env["table"],
        s3_client=env["s3"],
        sagemaker_client=FakeSageMaker(),
        settings=env["settings"],
        now=lambda: NOW,
    )
    failure = record_failure(
        {
            "run": run,
            "steps": {"preprocess": preprocess},
            "error": {"Error": "States.TaskFailed", "Cause": '{"FailureReason": "capacity"}'},
            "failed_step": "train",
        },
        EXECUTION_1,
        table=env["table"],
        sagemaker_client=FakeSageMaker(),
        settings=env["settings"],
        now=lambda: NOW,
    )
    assert failure["step"] == "train"

    resumed = _resolve(env, {"resume_run_id": run["run_id"]}, EXECUTION_2)
    assert resumed["action"] == "resume"
    assert resumed["run"]["attempt"] == 2
    assert resumed["run"]["names"]["training_job"].endswith("-a2")
    # The resumed run takes the branch the preprocessing's record decided (3 test rows: the endpoint).
    scoring = {"mode": "endpoint", "test_rows": 3, "threshold": 250_000}
    assert resumed["steps"] == {"preprocess": {**preprocess, "test_scoring": scoring}}
    step = from_dynamo(env["table"].get_item(Key={"pk": f"RUN#{run['run_id']}", "sk": "STEP#preprocess"})["Item"])
    assert step["outputs"]["fingerprint"] == "sha256:abc" and step["outputs"]["test_scoring"] == scoring
    assert step["started_at"] == "2025-11-22T12:00:00.000Z"
    # Recording the step packaged the endpoint's preprocessor beside the Glue job's encoding.
    assert step["outputs"]["preprocessor"] == run["paths"]["preprocessor"]
    bucket, _, key = run["paths"]["preprocessor"].removeprefix("s3://").partition("/")
    archive = env["s3"].get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as members:
        assert sorted(members.getnames()) == ["code/inference.py", "encoding.json"]


def _run_item(env, run_id: str) -> dict[str, Any]:
    return from_dynamo(env["table"].get_item(Key={"pk": f"RUN#{run_id}", "sk": "RUN"})["Item"])


def test_duplicate_events_are_listed_on_the_run(env):
    event = _upload(env)
    run_id = _resolve(env, event, EXECUTION_1)["run"]["run_id"]
    sfn = FakeStepFunctions({EXECUTION_1: "RUNNING"})
    assert _resolve(env, event, EXECUTION_2, sfn=sfn)["action"] == "duplicate"
    assert _resolve(env, event, EXECUTION_2, sfn=sfn)["action"] == "duplicate"
    assert _run_item(env, run_id)["duplicate_executions"] == [EXECUTION_2]


def test_an_unchanged_reupload_is_a_duplicate_that_points_at_the_original(env):
    first = _upload(env, body=b"x,y\n1,2\n")
    original = _resolve(env, first, EXECUTION_1)["run"]["run_id"]
    again = _upload(env, body=b"x,y\n1,2\n")
    assert again["detail"]["object"]["version-id"] != first["detail"]["object"]["version-id"]
    result = _resolve(env, again, EXECUTION_2, sfn=FakeStepFunctions({EXECUTION_1: "RUNNING"}))
    assert result["action"] == "duplicate" and result["run"]["run_id"] == original
    copy_id = make_run_id(env["upload_bucket"], "incoming/churn/data.csv", again["detail"]["object"]["version-id"])
    duplicate = _run_item(env, copy_id)
    assert duplicate["status"] == "DUPLICATE" and duplicate["duplicate_of"] == original
    assert duplicate["input"]["version_id"] == again["detail"]["object"]["version-id"]
    assert f"as run {original}" in duplicate["outcome_reason"]
    assert _run_item(env, original)["duplicates"] == [copy_id]
    changed = _upload(env, body=b"x,y\n1,3\n")
    assert _resolve(env, changed, EXECUTION_2)["action"] == "start", "new bytes are a new run"


def test_an_unchanged_reupload_of_a_failed_run_resumes_it(env):
    first = _upload(env)
    run = _resolve(env, first, EXECUTION_1)["run"]
    record_failure(
        {
            "run": run,
            "steps": {},
            "error": {"Error": "States.TaskFailed", "Cause": "boom"},
            "failed_step": "preprocess",
        },
        EXECUTION_1,
        table=env["table"],
        sagemaker_client=FakeSageMaker(),
        settings=env["settings"],
        now=lambda: NOW,
    )
    result = _resolve(env, _upload(env), EXECUTION_2)
    assert result["action"] == "resume" and result["run"]["run_id"] == run["run_id"]
    assert result["run"]["attempt"] == 2 and result["run"]["input"] == run["input"]


def test_step_records_carry_the_retries_step_functions_made(env):
    run = _resolve(env, _upload(env))["run"]
    result = {"job_name": run["names"]["training_job"], "job_arn": "arn:x", "model_data": "s3://b/m", "retries": 2}
    for step, outcome in (("train", result), ("evaluate", {"metric": "auc", "retries": 1, "endpoint_retries": 3})):
        _store(env).record_step(run, step, "SUCCEEDED", outcome)
    key = {"pk": f"RUN#{run['run_id']}"}
    train = from_dynamo(env["table"].get_item(Key={**key, "sk": "STEP#train"})["Item"])
    assert train["retries"] == 2 and train["attempts"][0]["retries"] == 2
    evaluate = from_dynamo(env["table"].get_item(Key={**key, "sk": "STEP#evaluate"})["Item"])
    assert (evaluate["retries"], evaluate["endpoint_retries"]) == (1, 3)
    assert evaluate["inputs"]["endpoint"] == run["names"]["test_endpoint"]
    assert evaluate["inputs"].get("champion_model") is None, "no champion: nothing else was scored"


def test_the_evaluation_record_names_the_champion_scored_beside_the_challenger(env):
    run = _resolve(env, _upload(env))["run"]
    production = {"endpoint": "stepml-production", "model": "stepml-churn-00aa11bb22cc-a1", "variant": "Champion"}
    record_step(
        run,
        "evaluate",
        "SUCCEEDED",
        {"metric": "auc", "production": {**production, "value": 0.8, "metrics": {"auc": 0.8}}},
        table=env["table"],
        s3_client=env["s3"],
        sagemaker_client=FakeSageMaker(),
        settings=env["settings"],
        now=lambda: NOW,
    )
    item = env["table"].get_item(Key={"pk": f"RUN#{run['run_id']}", "sk": "STEP#evaluate"})["Item"]
    evaluate = from_dynamo(item)
    assert evaluate["inputs"]["endpoint"] == run["names"]["test_endpoint"]
    assert evaluate["inputs"]["champion_model"] == "stepml-churn-00aa11bb22cc-a1"
    assert evaluate["outputs"]["production"]["variant"] == "Champion"


def test_a_value_dynamodb_cannot_store_is_recorded_as_null_not_a_failed_record(env):
    # The metrics module refuses NaN upstream; lineage's writes still must not die on one.
    run = _resolve(env, _upload(env))["run"]
    record_step(
        run,
        "evaluate",
        "SUCCEEDED",
        {"metric": "auc", "metrics": {"auc": float("nan"), "accuracy": 0.75}},
        table=env["table"],
        s3_client=env["s3"],
        sagemaker_client=FakeSageMaker(),
        settings=env["settings"],
        now=lambda: NOW,
    )
    item = env["table"].get_item(Key={"pk": f"RUN#{run['run_id']}", "sk": "STEP#evaluate"})["Item"]
    assert from_dynamo(item)["outputs"]["metrics"] == {"auc": None, "accuracy": 0.75}


def test_resume_of_an_unknown_run_names_it(env):
    with pytest.raises(UnknownRunError, match="run 'churn-000000000000' is not in lineage table"):
        _resolve(env, {"resume_run_id": "churn-000000000000"})


def test_dataset_without_config_says_how_to_onboard_it(env):
    event = _upload(env, key="incoming/fraud/data.csv")
    bucket = env["settings"].artifact_bucket
    with pytest.raises(DatasetNotOnboardedError) as raised:
        _resolve(env, event)
    assert isinstance(raised.value, DatasetConfigError)
    assert str(raised.value) == (
        f"dataset 'fraud' is not onboarded: its config s3://{bucket}/datasets/fraud/config.json does not exist; "
        "onboard it with `stepml datasets put fraud CONFIG.json`, then upload the file again"
    )


class DeniedConfigs:
    """An S3 client that answers GetObject of a dataset config as S3 does for a caller without access."""

    def __init__(self, s3: Any):
        self.s3 = s3

    def __getattr__(self, name: str) -> Any:
        return getattr(self.s3, name)

    def get_object(self, **kwargs: Any) -> Any:
        if kwargs["Key"].startswith(config.DATASET_CONFIG_PREFIX):
            error = {"Code": "AccessDenied", "Message": "Access Denied"}
            raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject")
        return self.s3.get_object(**kwargs)


def test_a_denied_dataset_config_is_a_permission_error_naming_the_key(env):
    """S3 answers 403 for a config it will not show (or, without s3:ListBucket, one that is missing)."""
    event = _upload(env)
    bucket = env["settings"].artifact_bucket
    with pytest.raises(DatasetConfigDeniedError) as raised:
        resolve_run(
            event,
            EXECUTION_1,
            table=env["table"],
            s3_client=DeniedConfigs(env["s3"]),
            sfn_client=FakeStepFunctions(),
            settings=env["settings"],
            now=lambda: NOW,
        )
    assert str(raised.value) == (
        f"dataset 'churn': permission denied reading its config s3://{bucket}/datasets/churn/config.json "
        "(S3 AccessDenied): ResolveRun needs s3:GetObject on it, and s3:ListBucket on the bucket to tell a "
        "missing config from a denied one"
    )
    assert isinstance(raised.value.__cause__, ClientError)


@pytest.mark.parametrize("step_error", ["DatasetNotOnboardedError", "DatasetConfigDeniedError"])
def test_a_config_resolve_failure_is_recorded_on_the_claimed_run_and_alerted(env, step_error):
    """As Step Functions hands it to Record failure: the Lambda's errorType and errorMessage."""
    missing = step_error == "DatasetNotOnboardedError"
    event = _upload(env, key="incoming/fraud/data.csv" if missing else "incoming/churn/data.csv")
    client = env["s3"] if missing else DeniedConfigs(env["s3"])
    with pytest.raises((DatasetNotOnboardedError, DatasetConfigDeniedError)) as raised:
        resolve_run(
            event,
            EXECUTION_1,
            table=env["table"],
            s3_client=client,
            sfn_client=FakeStepFunctions(),
            settings=env["settings"],
            now=lambda: NOW,
        )
    cause = json.dumps({"errorMessage": str(raised.value), "errorType": type(raised.value).__name__})
    failure = record_failure(
        {**event, "error": {"Error": type(raised.value).__name__, "Cause": cause}, "failed_step": "resolve"},
        EXECUTION_1,
        table=env["table"],
        sagemaker_client=FakeSageMaker(),
        settings=env["settings"],
        now=lambda: NOW,
    )
    assert failure["step"] == "resolve" and failure["error"] == step_error
    assert "datasets/" in failure["message"] and f"Step:      {STEP_TITLES['resolve']}" in failure["message"]
    item = from_dynamo(env["table"].get_item(Key={"pk": f"RUN#{failure['run_id']}", "sk": "RUN"})["Item"])
    assert item["status"] == "FAILED" and item["failed_step"] == "resolve"
    assert item["error"] == {"error": step_error, "cause": f"{step_error}: {raised.value}"}


def test_bad_dataset_config_names_the_file_and_field(env):
    bad = dict(CHURN_CONFIG, metric="rmse")
    env["s3"].put_object(
        Bucket=env["settings"].artifact_bucket, Key=config.dataset_config_key("churn"), Body=json.dumps(bad).encode()
    )
    with pytest.raises(DatasetConfigError, match=r"config.json: .*metric 'rmse' does not fit problem_type 'binary'"):
        _resolve(env, _upload(env))


def test_not_an_upload_event_is_refused(env):
    with pytest.raises(UploadEventError, match="not an S3 Object Created event"):
        _resolve(env, {"hello": "world"})


def test_training_record_carries_hyperparameters_metrics_and_job(env):
    run = _resolve(env, _upload(env))["run"]
    result = {
        "job_name": run["names"]["training_job"],
        "job_arn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/x",
        "model_data": "s3://b/model.tar.gz",
        "started_on": 1,
        "completed_on": 2,
    }
    record_step(
        run,
        "train",
        "SUCCEEDED",
        result,
        table=env["table"],
        s3_client=env["s3"],
        sagemaker_client=FakeSageMaker(),
        settings=env["settings"],
        now=lambda: NOW,
    )
    item = from_dynamo(env["table"].get_item(Key={"pk": f"RUN#{run['run_id']}", "sk": "STEP#train"})["Item"])
    assert item["parameters"]["hyperparameters"]["objective"] == "binary:logistic"
    baseline = {"statistics": run["paths"]["statistics"], "constraints": run["paths"]["constraints"]}
    assert run["paths"]["constraints"] == run["paths"]["processed"] + "constraints.json"
    assert item["outputs"] == {
        "model_data": "s3://b/model.tar.gz",
        "final_metrics": {"validation:auc": 0.91},
        "baseline": baseline,
    }
    assert item["job"]["arn"].endswith("training-job/x")
    assert item["gsi1pk"] == f"MODEL#{run['names']['model']}"
    assert item["attempts"][0]["status"] == "SUCCEEDED"


def test_failure_before_a_run_exists_still_alerts(env):
    state = {
        "detail": {"bucket": {"name": "b"}, "object": {"key": "incoming/churn/x.csv"}},
        "error": {"Error": "stepml.Boom", "Cause": "bad"},
        "failed_step": "resolve",
    }
    failure = record_failure(
        state, EXECUTION_1, table=env["table"], sagemaker_client=FakeSageMaker(), settings=env["settings"]
    )
    assert failure["step"] == "resolve" and "s3://b/incoming/churn/x.csv" in failure["message"]


@pytest.mark.parametrize(
    ("steps", "failed", "expected"),
    [
        # The step is the one the Catch named, whatever results the state already holds.
        ({}, "preprocess", "preprocess"),
        ({"preprocess": {}}, "preprocess", "preprocess"),
        ({"preprocess": {}, "train": {}}, "train", "train"),
        ({"preprocess": {}, "train": {}, "model": {}, "test_endpoint": {}}, "test_endpoint", "test_endpoint"),
        ({"preprocess": {}, "train": {}, "model": {}, "test_endpoint": {}, "evaluate": {}}, "evaluate", "evaluate"),
        ({"preprocess": {}, "train": {}, "model": {}, "test_endpoint": {}, "evaluate": {}}, "approval", "approval"),
    ],
)
def test_the_failed_step_is_the_one_the_catch_named(env, steps, failed, expected):
    run = _resolve(env, _upload(env))["run"]
    state = {"run": run, "steps": steps, "error": {"Error": "States.TaskFailed", "Cause": "x"}, "failed_step": failed}
    failure = record_failure(
        state, EXECUTION_1, table=env["table"], sagemaker_client=FakeSageMaker(), settings=env["settings"]
    )
    assert failure["step"] == expected and _run_item(env, run["run_id"])["failed_step"] == expected


@pytest.mark.parametrize("failed", [None, "", "guess", 3])
def test_a_failure_without_a_named_step_is_refused(env, failed):
    run = _resolve(env, _upload(env))["run"]
    state = {"run": run, "steps": {}, "error": {"Error": "E", "Cause": "c"}}
    if failed is not None:
        state["failed_step"] = failed
    with pytest.raises(LineageError, match=r"^Record failure: field '\$\.failed_step': "):
        record_failure(
            state, EXECUTION_1, table=env["table"], sagemaker_client=FakeSageMaker(), settings=env["settings"]
        )
    assert _run_item(env, run["run_id"])["status"] == "RUNNING"


def test_glue_and_lambda_causes_become_readable():
    assert (
        readable_cause('{"JobName": "j", "ErrorMessage": "label column churn missing"}') == "label column churn missing"
    )
    assert readable_cause('{"errorMessage": "boom", "errorType": "EvaluationError"}') == "EvaluationError: boom"
    assert readable_cause("plain text") == "plain text"


def test_failure_is_recorded_and_the_alert_names_run_step_and_error(env):
    run = _resolve(env, _upload(env))["run"]
    steps = {"preprocess": {}, "train": {}, "model": {}, "test_endpoint": {}}
    state = {
        "run": run,
        "steps": steps,
        "error": {"Error": "stepml.EndpointFailed", "Cause": "The test endpoint failed"},
        "failed_step": "test_endpoint",
    }
    failure = record_failure(
        state,
        EXECUTION_1,
        table=env["table"],
        sagemaker_client=FakeSageMaker(),
        settings=env["settings"],
        now=lambda: NOW,
    )
    assert failure["step"] == "test_endpoint"
    assert failure["test_endpoint"] == run["names"]["test_endpoint"]
    assert failure["test_endpoint_config"] == run["names"]["test_endpoint_config"]
    assert run["run_id"] in failure["subject"] and "Test endpoint" in failure["subject"]
    assert len(failure["subject"]) <= 100
    assert "model failed to load" in failure["message"]
    assert f"stepml runs resume {run['run_id']}" in failure["message"]
    item = from_dynamo(env["table"].get_item(Key={"pk": f"RUN#{run['run_id']}", "sk": "RUN"})["Item"])
    assert item["status"] == "FAILED" and item["failed_step"] == "test_endpoint"
    assert item["error"]["error"] == "stepml.EndpointFailed"


@pytest.mark.parametrize("failed", ["approval", "deploy"])
def test_failure_after_evaluation_leaves_nothing_to_clean(env, failed):
    """The definition deletes the test endpoint right after recording the evaluation."""
    run = _resolve(env, _upload(env))["run"]
    steps = {"preprocess": {}, "train": {}, "model": {}, "test_endpoint": {}, "evaluate": {}}
    failure = record_failure(
        {"run": run, "steps": steps, "error": {"Error": "States.TaskFailed", "Cause": "x"}, "failed_step": failed},
        EXECUTION_1,
        table=env["table"],
        sagemaker_client=FakeSageMaker(),
        settings=env["settings"],
    )
    assert (failure["test_endpoint"], failure["test_endpoint_config"], failure["step"]) == (None, None, failed)


@pytest.mark.parametrize("failed", ["test_endpoint", "test_scoring", "evaluate"])
def test_a_run_scoring_in_batch_has_no_test_endpoint_to_clean(env, failed):
    """Batch Transform scored the split: a failure while finding the champion, in a transform job or
    in Evaluate leaves no test endpoint; the alert names the step."""
    run = _resolve(env, _upload(env))["run"]
    scoring = {"mode": "batch", "test_rows": 900_000, "threshold": 250_000}
    steps = {"preprocess": {"test_scoring": scoring}, "train": {}, "model": {}}
    error = {"Error": "States.TaskFailed", "Cause": '{"FailureReason": "ClientError: the model answered 400"}'}
    failure = record_failure(
        {"run": run, "steps": steps, "error": error, "failed_step": failed},
        EXECUTION_1,
        table=env["table"],
        sagemaker_client=FakeSageMaker(),
        settings=env["settings"],
    )
    assert (failure["test_endpoint"], failure["test_endpoint_config"], failure["step"]) == (None, None, failed)
    if failed == "test_scoring":
        assert "Score test split in batch" in failure["subject"]
        assert "the model answered 400" in failure["message"]


def test_failure_before_any_endpoint_leaves_nothing_to_clean(env):
    run = _resolve(env, _upload(env))["run"]
    failure = record_failure(
        {"run": run, "steps": {}, "error": {"Error": "States.TaskFailed", "Cause": "x"}, "failed_step": "preprocess"},
        EXECUTION_1,
        table=env["table"],
        sagemaker_client=FakeSageMaker(),
        settings=env["settings"],
    )
    assert failure["test_endpoint"] is None and failure["step"] == "preprocess"


def test_not_promoted_outcome_notice(env):
    run = _resolve(env, _upload(env))["run"]
    notice = record_step(
        run,
        "run",
        "REJECTED_BY_GATE",
        {"status": "REJECTED_BY_GATE", "reason": "auc 0.61 < 0.8"},
        table=env["table"],
        s3_client=env["s3"],
        sagemaker_client=FakeSageMaker(),
        settings=env["settings"],
    )
    assert "not promoted" in notice["subject"] and "auc 0.61 < 0.8" in notice["message"]
    item = from_dynamo(env["table"].get_item(Key={"pk": f"RUN#{run['run_id']}", "sk": "RUN"})["Item"])
    assert item["status"] == "REJECTED_BY_GATE" and item["outcome_reason"] == "auc 0.61 < 0.8"


def test_handlers_wire_settings_from_the_template(env, stack, monkeypatch):
    resolve = load_handler("lambdas/resolve_run/app.py")
    event = _upload(env)
    result = resolve.handler({"event": event, "execution_arn": EXECUTION_1}, FakeLambdaContext())
    assert result["action"] == "start"
    set_function_environment(monkeypatch, stack, "RecordStepFunction")
    record = load_handler("lambdas/record_step/app.py")
    failure = record.handler(
        {
            "state": {
                "run": result["run"],
                "steps": {},
                "error": {"Error": "E", "Cause": "c"},
                "failed_step": "preprocess",
            },
            "step": "failure",
            "status": "FAILED",
            "execution_arn": EXECUTION_1,
        },
        FakeLambdaContext(),
    )
    assert failure["step"] == "preprocess" and failure["run_id"] == result["run"]["run_id"]


def test_handler_names_a_missing_setting(stack, monkeypatch):
    monkeypatch.delenv(config.LINEAGE_TABLE, raising=False)
    resolve = load_handler("lambdas/resolve_run/app.py")
    with pytest.raises(config.ConfigError, match="STEPML_LINEAGE_TABLE is missing or empty"):
        resolve.handler({"event": {}, "execution_arn": EXECUTION_1}, FakeLambdaContext())


# --- cleanup and notification failures are warnings: the run keeps its outcome -----------------


def _run_item(env, run_id: str) -> dict[str, Any]:
    return from_dynamo(env["table"].get_item(Key={"pk": f"RUN#{run_id}", "sk": "RUN"})["Item"])


def _record(env, run, step, status, result):
    return record_step(
        run,
        step,
        status,
        result,
        table=env["table"],
        s3_client=env["s3"],
        sagemaker_client=FakeSageMaker(),
        settings=env["settings"],
        now=lambda: NOW,
    )


def test_a_cleanup_alert_of_a_serverless_test_endpoint_names_its_own_model_too(env):
    run = _resolve(env, _upload(env))["run"]
    hosting = {**run["config"]["hosting"], "test_endpoint_serverless": {"memory_mb": 2048, "max_concurrency": 5}}
    run = {**run, "config": {**run["config"], "hosting": hosting}}
    error = {"Error": "SageMaker.SageMakerException", "Cause": "Rate exceeded (Service: SageMaker, Status Code: 400)"}

    message = _record(env, run, "cleanup", "FAILED", error)["message"]

    assert f"aws sagemaker delete-model --model-name {run['names']['test_model']}  (a serverless test model)" in message


def test_a_cleanup_that_fails_after_evaluation_is_a_warning_naming_the_leftover_endpoint(env):
    run = _resolve(env, _upload(env))["run"]
    names = run["names"]
    error = {"Error": "SageMaker.SageMakerException", "Cause": "Rate exceeded (Service: SageMaker, Status Code: 400)"}

    alert = _record(env, run, "cleanup", "FAILED", error)

    assert set(alert) == {"subject", "message"} and len(alert["subject"]) <= 100
    assert alert["subject"] == f"[stepml] Run {run['run_id']}: test endpoint not deleted after evaluation"
    message = alert["message"]
    assert f"Endpoint:  {names['test_endpoint']} (config {names['test_endpoint_config']})" in message
    assert f"aws sagemaker delete-endpoint --endpoint-name {names['test_endpoint']}" in message
    assert f"aws sagemaker delete-endpoint-config --endpoint-config-name {names['test_endpoint_config']}" in message
    assert "the run goes on to the gate and approval" in message
    assert "SageMaker.SageMakerException: Rate exceeded" in message
    step = from_dynamo(env["table"].get_item(Key={"pk": f"RUN#{run['run_id']}", "sk": "STEP#cleanup"})["Item"])
    assert step["status"] == "FAILED"
    assert step["error"] == {"error": "SageMaker.SageMakerException", "cause": error["Cause"]}
    assert step["outputs"] == {"endpoint": names["test_endpoint"], "endpoint_config": names["test_endpoint_config"]}
    assert "delete-model" not in message  # only a serverless test endpoint has a model of its own

    _record(env, run, "run", "SUCCEEDED", {})
    item = _run_item(env, run["run_id"])
    assert item["status"] == "SUCCEEDED", "the run keeps the outcome it reached after the cleanup"
    [warning] = item["warnings"]
    assert warning["step"] == "cleanup" and warning["error"] == "SageMaker.SageMakerException"
    assert warning["endpoint"] == names["test_endpoint"] and warning["at"] == "2026-11-22T12:00:00.000Z"


def _notify_failure(env, state):
    return record_notification_failure(
        state, EXECUTION_1, table=env["table"], settings=env["settings"], now=lambda: NOW
    )


THROTTLED = {"Error": "SNS.ThrottledException", "Cause": "Rate exceeded (Service: Sns, Status Code: 400)"}


def test_an_undelivered_deployment_notice_is_noted_on_the_succeeded_run(env):
    run = _resolve(env, _upload(env))["run"]
    notice = _record(env, run, "run", "SUCCEEDED", {})
    state = {"run": run, "steps": {}, "notice": notice, "notify_error": THROTTLED}

    assert _notify_failure(env, state) == {"recorded": True, "run_id": run["run_id"], "notification": "deployment"}

    item = _run_item(env, run["run_id"])
    assert item["status"] == "SUCCEEDED"
    [warning] = item["warnings"]
    assert warning == {
        "step": "notify",
        "notification": "deployment",
        "subject": notice["subject"],
        "error": "SNS.ThrottledException",
        "cause": THROTTLED["Cause"],
        "at": "2026-11-22T12:00:00.000Z",
    }
    step = from_dynamo(env["table"].get_item(Key={"pk": f"RUN#{run['run_id']}", "sk": "STEP#notify"})["Item"])
    assert step["status"] == "FAILED" and step["error"]["error"] == "SNS.ThrottledException"


def test_an_undelivered_cleanup_alert_is_named_by_the_definition_not_by_the_state(env):
    """A run whose cleanup alert was lost still holds it when its deployment notice is lost later."""
    run = _resolve(env, _upload(env))["run"]
    notice = _record(env, run, "run", "SUCCEEDED", {})
    cleanup = {"subject": "test endpoint not deleted", "message": "m"}
    state = {"run": run, "steps": {}, "notice": notice, "cleanup": cleanup, "notify_error": THROTTLED}

    noted = record_notification_failure(
        state, EXECUTION_1, table=env["table"], settings=env["settings"], notification="cleanup alert", now=lambda: NOW
    )

    assert noted == {"recorded": True, "run_id": run["run_id"], "notification": "cleanup alert"}
    [warning] = _run_item(env, run["run_id"])["warnings"]
    assert (warning["notification"], warning["subject"]) == ("cleanup alert", "test endpoint not deleted")
    assert _notify_failure(env, state)["notification"] == "deployment"


def test_an_undelivered_alert_is_noted_on_the_failed_run_and_an_unknown_run_is_left_alone(env):
    event = _upload(env, key="incoming/fraud/data.csv")
    with pytest.raises(DatasetNotOnboardedError) as raised:
        _resolve(env, event)
    failure = record_failure(
        {**event, "error": {"Error": "DatasetNotOnboardedError", "Cause": str(raised.value)}, "failed_step": "resolve"},
        EXECUTION_1,
        table=env["table"],
        sagemaker_client=FakeSageMaker(),
        settings=env["settings"],
        now=lambda: NOW,
    )
    state = {**event, "error": {"Error": "DatasetNotOnboardedError"}, "failure": failure, "notify_error": THROTTLED}

    assert _notify_failure(env, state)["notification"] == "failure alert"

    item = _run_item(env, failure["run_id"])
    assert item["status"] == "FAILED" and item["failed_step"] == "resolve"
    assert [(w["notification"], w["subject"]) for w in item["warnings"]] == [("failure alert", failure["subject"])]

    unknown = {"hello": "world", "failure": {**failure, "run_id": "unknown"}, "notify_error": THROTTLED}
    assert _notify_failure(env, unknown) == {"recorded": False, "run_id": "unknown", "notification": "failure alert"}


def test_the_lineage_store_connects_to_the_settings_table_with_the_sessions_clients(env):
    calls: list[tuple[str, str]] = []

    class Session:
        def resource(self, name: str) -> Any:
            calls.append(("resource", name))
            return type("Resource", (), {"Table": lambda _self, table: f"table:{table}"})()

        def client(self, name: str) -> str:
            calls.append(("client", name))
            return f"client:{name}"

    store = LineageStore.connect(env["settings"], Session())
    assert store.table == f"table:{env['settings'].lineage_table}"
    assert (store.s3_client, store.sagemaker_client, store.sfn_client) == (
        "client:s3",
        "client:sagemaker",
        "client:stepfunctions",
    )
    assert ("resource", "dynamodb") in calls
