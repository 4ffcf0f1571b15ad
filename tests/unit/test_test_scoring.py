"""How a run scores its test split: the decision, the dataset config setting, and the state
machine's branch on it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stepml import test_scoring
from stepml.config import DEFAULT_BATCH_TRANSFORM_ABOVE_ROWS, DatasetConfigError, parse_dataset_config
from stepml.payloads import EvaluatePayload, PayloadError, parse_payload
from tests.helpers import CHURN_CONFIG, REPO_ROOT


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
