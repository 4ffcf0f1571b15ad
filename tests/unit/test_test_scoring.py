"""How a run scores its test split: the decision, the dataset config setting, and the state
machine's branch on it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stepml import config as stepml_config
from stepml import test_scoring
from stepml.config import DEFAULT_BATCH_TRANSFORM_ABOVE_ROWS, DatasetConfigError, parse_dataset_config
from stepml.lineage import from_dynamo
from stepml.local.botocore_models import require_service_model
from stepml.payloads import EvaluatePayload, PayloadError, parse_payload
from tests.helpers import (
    CHURN_CONFIG,
    REPO_ROOT,
    FakeLambdaContext,
    load_handler,
    put_encoding,
    set_function_environment,
)


def config(**evaluation: Any) -> dict[str, Any]:
    raw = {**CHURN_CONFIG, **({"evaluation": evaluation} if evaluation else {})}
    return parse_dataset_config(raw, "churn.json").model_dump(mode="json")


@pytest.mark.parametrize(("rows", "mode"), [(99, "endpoint"), (100, "endpoint"), (101, "batch"), (0, "endpoint")])
def test_the_split_goes_to_batch_only_above_the_threshold(rows: int, mode: str) -> None:
    decided = test_scoring.decide({"test": rows, "train": 5}, config(batch_transform_above_rows=100))
    assert decided == {"mode": mode, "test_rows": rows, "threshold": 100}


def test_threshold_zero_sends_every_split_to_batch_and_the_default_splits_5m_from_500k_uploads() -> None:
    assert test_scoring.decide({"test": 1}, config(batch_transform_above_rows=0))["mode"] == "batch"
    default = config()
    assert default["evaluation"] == {"batch_transform_above_rows": DEFAULT_BATCH_TRANSFORM_ABOVE_ROWS}
    # The default split keeps 15% for test: 750,000 rows of a 5M-row upload, 75,000 of a 500k one.
    assert test_scoring.decide({"test": 750_000}, default)["mode"] == "batch"
    assert test_scoring.decide({"test": 75_000}, default)["mode"] == "endpoint"
    # A run config from before the setting takes the default.
    assert test_scoring.decide({"test": 750_000}, {"problem_type": "binary"})["threshold"] == 250_000


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "field 'evaluation.batch_transform_above_rows': Input should be greater than or equal to 0"),
        ("1000", "field 'evaluation.batch_transform_above_rows': Input should be a valid integer"),
        (1000.0, "field 'evaluation.batch_transform_above_rows': Input should be a valid integer"),
        (True, "field 'evaluation.batch_transform_above_rows': Input should be a valid integer"),
    ],
)
def test_the_setting_is_a_strict_non_negative_integer(value: Any, message: str) -> None:
    with pytest.raises(DatasetConfigError) as raised:
        config(batch_transform_above_rows=value)
    assert str(raised.value) == f"churn.json: {message}"


def test_an_unknown_evaluation_field_is_refused() -> None:
    with pytest.raises(DatasetConfigError, match=r"field 'evaluation.batch_rows': Extra inputs are not permitted"):
        config(batch_rows=5)


@pytest.mark.parametrize("row_counts", [None, {}, {"test": -1}, {"test": "12"}, {"test": True}])
def test_a_manifest_without_a_test_row_count_is_an_error_naming_the_field(row_counts: Any) -> None:
    with pytest.raises(test_scoring.TestScoringError, match=r"field 'row_counts.test' must be a row count"):
        test_scoring.decide(row_counts, config())


# --- the transform jobs' instance type ----------------------------------------------------------


def test_the_transform_instance_types_are_botocores_enum() -> None:
    enum = require_service_model("sagemaker").shape_for("TransformInstanceType").enum
    assert set(enum) == test_scoring.TRANSFORM_INSTANCE_TYPES and len(enum) == len(set(enum))
    assert test_scoring.transform_accepts(test_scoring.SUGGESTED_TRANSFORM_TYPE)
    # Endpoint types Batch Transform does not take: the local cloud refuses them at CreateTransformJob.
    assert not test_scoring.transform_accepts("ml.t2.medium") and not test_scoring.transform_accepts("ml.c5.large")


def hosted_on(instance_type: str, **evaluation: Any) -> dict[str, Any]:
    raw = {**config(**evaluation), "hosting": {**CHURN_CONFIG["hosting"], "instance_type": instance_type}}
    return parse_dataset_config(raw, "churn.json").model_dump(mode="json")


def test_a_batch_decision_on_a_type_batch_transform_refuses_fails_naming_type_field_rows_and_fixes() -> None:
    with pytest.raises(test_scoring.TransformInstanceTypeError) as raised:
        test_scoring.decide({"test": 300_000}, hosted_on("ml.t2.medium"))
    assert str(raised.value) == (
        "the test split has 300,000 rows, more than evaluation.batch_transform_above_rows (250,000), so Batch "
        "Transform jobs must score it on hosting.instance_type, but ml.t2.medium is not a type SageMaker Batch "
        "Transform accepts; set hosting.instance_type in the dataset config (or the stack's HostingInstanceType "
        "parameter, which a config with hosting.instance_type null takes) to one it accepts, such as ml.m5.large, "
        "or raise evaluation.batch_transform_above_rows to at least 300000 to score the split through a test endpoint"
    )
    assert isinstance(raised.value, test_scoring.TestScoringError)


def test_the_type_is_checked_only_when_the_split_goes_to_batch() -> None:
    endpoint = test_scoring.decide({"test": 250_000}, hosted_on("ml.t2.medium"))
    assert endpoint == {"mode": "endpoint", "test_rows": 250_000, "threshold": 250_000}
    batch = test_scoring.decide({"test": 5}, hosted_on("ml.c5.xlarge", batch_transform_above_rows=0))
    assert batch["mode"] == "batch"


def test_a_refused_batch_decision_fails_the_preprocessing_record_and_is_recorded_and_alerted(
    resolve_run_env, stack, monkeypatch
) -> None:
    """The RecordStep function fails (so training never starts); the state machine's Catch sends the
    Lambda error to the failure record, which keeps the message in lineage and in the alert."""
    env = resolve_run_env
    raw = {
        **CHURN_CONFIG,
        "hosting": {"instance_type": "ml.t2.medium"},
        "evaluation": {"batch_transform_above_rows": 2},
    }
    env["s3"].put_object(
        Bucket=env["settings"].artifact_bucket, Key=stepml_config.dataset_config_key("churn"), Body=json.dumps(raw)
    )
    resolve = load_handler("lambdas/resolve_run/app.py")
    execution = "arn:aws:states:us-east-1:123456789012:execution:stepml-local-pipeline:one"
    event = env.upload("incoming/churn/data.csv", b"a,b\n1,2\n")
    run = resolve.handler({"event": event, "execution_arn": execution}, FakeLambdaContext())["run"]
    bucket, _, key = run["paths"]["manifest"].removeprefix("s3://").partition("/")
    env["s3"].put_object(Bucket=bucket, Key=key, Body=json.dumps({"row_counts": {"train": 14, "test": 3}}).encode())
    put_encoding(env["s3"], run)
    set_function_environment(monkeypatch, stack, "RecordStepFunction")
    record = load_handler("lambdas/record_step/app.py")
    payload = {
        "run": run,
        "step": "preprocess",
        "status": "SUCCEEDED",
        "result": {"job_name": "j", "state": "SUCCEEDED"},
    }

    with pytest.raises(Exception) as raised:
        record.handler(payload, FakeLambdaContext())

    expected = f"run {run['run_id']}: the test split has 3 rows, more than evaluation.batch_transform_above_rows (2)"
    assert type(raised.value).__name__ == "LineageError" and str(raised.value).startswith(expected)
    # Step Functions hands the Lambda's error to the Catch as its Cause.
    cause = json.dumps({"errorMessage": str(raised.value), "errorType": "LineageError"})
    state = {"run": run, "steps": {}, "error": {"Error": "LineageError", "Cause": cause}, "failed_step": "preprocess"}
    failure = record.handler(
        {"state": state, "step": "failure", "status": "FAILED", "execution_arn": execution}, FakeLambdaContext()
    )
    assert failure["step"] == "preprocess" and failure["cause"] == f"LineageError: {raised.value}"
    assert "but ml.t2.medium is not a type SageMaker Batch Transform accepts" in failure["message"]
    item = env["table"].get_item(Key={"pk": f"RUN#{run['run_id']}", "sk": "STEP#preprocess"})["Item"]
    step = from_dynamo(item)
    assert step["status"] == "FAILED" and step["error"]["cause"] == failure["cause"]


def test_mode_of_a_state_defaults_to_the_endpoint() -> None:
    assert test_scoring.mode_of({}) == "endpoint"
    assert test_scoring.mode_of({"steps": {"preprocess": {"job_name": "x"}}}) == "endpoint"
    assert test_scoring.mode_of({"steps": {"preprocess": {"test_scoring": {"mode": "batch"}}}}) == "batch"


# --- the Evaluate payload in batch mode ----------------------------------------------------------


def _run() -> dict[str, Any]:
    from tests.unit.test_evaluate_batch import make_run

    return make_run(config())


def _parse(**payload: Any) -> EvaluatePayload:
    return parse_payload({"run": _run(), **payload}, EvaluatePayload, lambda_name="Evaluate", error=PayloadError)


def test_the_evaluate_payload_takes_an_endpoint_or_batch_scoring_never_both() -> None:
    job = {"job_name": "stepml-churn-1-bt-a1", "output": "s3://art/transform/churn/r/stepml-churn-1-bt-a1/"}
    batch = {"mode": "batch", "challenger": job, "champion": None}
    parsed = _parse(scoring=batch, champion={"in_service": False})
    assert parsed.scoring is not None and parsed.endpoint_name is None
    with pytest.raises(PayloadError, match="give either endpoint_name"):
        _parse(scoring=batch, endpoint_name="stepml-x-test-a1")
    with pytest.raises(PayloadError, match="give either endpoint_name"):
        _parse()
    with pytest.raises(PayloadError, match=r"scoring\.champion must be given exactly when champion\.in_service"):
        _parse(scoring=batch, champion={"in_service": True, "endpoint": "p", "endpoint_config": "c", "model": "m"})


# --- the state machine's branch ------------------------------------------------------------------


def definition() -> dict[str, Any]:
    return json.loads((REPO_ROOT / "statemachine/pipeline.asl.json").read_text())


def test_batch_runs_skip_the_test_endpoint_and_transform_with_the_label_column_filtered_out() -> None:
    states = definition()["States"]
    rule = states["Champion in service?"]["Choices"][1]
    assert rule["Next"] == "Score test split in batch"
    assert rule["And"][1] == {"Variable": "$.steps.preprocess.test_scoring.mode", "StringEquals": "batch"}
    assert states["Describe champion endpoint config"]["Next"] == "Test endpoint or batch?"
    parallel = states["Score test split in batch"]
    assert parallel["Next"] == "Evaluate model in batch"
    assert parallel["Catch"][0]["Next"] == "Failed at test scoring"
    assert states["Failed at test scoring"]["Result"] == "test_scoring"
    challenger = parallel["Branches"][0]["States"]["Score challenger in batch"]
    assert challenger["Resource"] == "arn:aws:states:::sagemaker:createTransformJob.sync"
    parameters = challenger["Parameters"]
    assert parameters["DataProcessing"] == {"InputFilter": "$[1:]", "JoinSource": "None"}
    assert parameters["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri.$"] == "$.run.paths.test"
    assert parameters["TransformJobName.$"] == "$.run.names.challenger_transform_job"
    champion = parallel["Branches"][1]["States"]["Score champion in batch"]["Parameters"]
    assert champion["ModelName.$"] == "$.champion.model"
    evaluate = states["Evaluate model in batch"]
    assert evaluate["Parameters"]["Payload"]["scoring.$"] == "$.steps.test_scoring"
    assert "endpoint_name.$" not in evaluate["Parameters"]["Payload"]
    assert states["Record batch evaluation"]["Next"] == "Good enough to ask for approval?"
    # No state of the batch branch names the test endpoint.
    batch_states = json.dumps([parallel, evaluate, states["Record batch evaluation"]])
    assert "test_endpoint" not in batch_states


def test_record_preprocessing_keeps_the_decision_with_the_preprocessing_result() -> None:
    state = definition()["States"]["Record preprocessing"]
    assert state["ResultPath"] == "$.steps.preprocess.test_scoring"
    assert state["ResultSelector"]["mode.$"] == "$.Payload.test_scoring.mode"
