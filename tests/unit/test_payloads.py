"""The Lambda contracts: what the state machine sends fits, what does not is named field by field."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from stepml.approval_records import ApprovalRequestError
from stepml.evaluation import EvaluationError
from stepml.lineage import UploadEventError
from stepml.payloads import (
    EvaluatePayload,
    PayloadError,
    RequestApprovalPayload,
    ResolveRunPayload,
    ResumeRequest,
    Run,
    parse_payload,
)
from tests.helpers import s3_object_created_event
from tests.unit.test_approvals import EXECUTION_ARN, TASK_TOKEN, make_evaluation, make_run


def upload_event() -> dict[str, Any]:
    return s3_object_created_event("uploads", "incoming/churn/data.csv", "v-7Hq2", '"abc"', 1234)


# --- what fits ------------------------------------------------------------------------------


def test_the_run_document_parses_and_round_trips_unchanged() -> None:
    document = {**make_run(), "added_by_a_later_definition": {"x": 1}}
    run = Run.model_validate(document)
    assert (run.run_id, run.input.uri, run.names.test_endpoint) == (
        "churn-3f2a9c1b7d4e",
        "s3://uploads/incoming/churn/data.csv",
        "stepml-churn-3f2a9c1b7d4e-test-a1",
    )
    assert run.document() == document


def test_resolve_run_takes_an_upload_event_or_a_resume_request() -> None:
    upload = parse_payload(
        {"event": upload_event(), "execution_arn": EXECUTION_ARN}, ResolveRunPayload, lambda_name="R"
    )
    assert upload.event.detail.object.key == "incoming/churn/data.csv"  # Powertools' S3 EventBridge model
    resume = parse_payload(
        {"event": {"resume_run_id": "churn-3f2a9c1b7d4e"}, "execution_arn": EXECUTION_ARN},
        ResolveRunPayload,
        lambda_name="R",
    )
    assert resume.event == ResumeRequest(resume_run_id="churn-3f2a9c1b7d4e")


def test_evaluate_takes_the_champion_in_service_or_not() -> None:
    champion = {"in_service": True, "endpoint": "prod", "endpoint_config": "prod-c", "model": "m"}
    payload = {"run": make_run(), "endpoint_name": "test-endpoint", "champion": champion}
    assert EvaluatePayload.model_validate(payload).champion.document() == champion
    alone = EvaluatePayload.model_validate({**payload, "champion": {"in_service": False}})
    assert alone.champion is not None and not alone.champion.in_service
    assert EvaluatePayload.model_validate({"run": make_run(), "endpoint_name": "e"}).champion is None


def test_request_approval_reads_when_the_task_started_waiting() -> None:
    payload = {
        "task_token": TASK_TOKEN,
        "run": make_run(),
        "evaluation": {**make_evaluation(), "started_at": "x", "retries": 0},
        "execution_arn": EXECUTION_ARN,
        "waiting_since": "2026-11-22T11:59:58.600Z",
    }
    parsed = RequestApprovalPayload.model_validate(payload)
    assert parsed.waiting_since == datetime(2026, 11, 22, 11, 59, 58, 600000, tzinfo=UTC)
    assert parsed.evaluation.value == 0.9123 and parsed.evaluation.production is not None


# --- what does not fit ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"event": {}, "execution_arn": EXECUTION_ARN}, "field 'event.detail': Field required"),
        ({"event": {"resume_run_id": ""}, "execution_arn": EXECUTION_ARN}, "field 'event.resume_run_id': String"),
        ({"event": upload_event()}, "field 'execution_arn': Field required"),
        ({"event": 3, "execution_arn": EXECUTION_ARN}, "field 'event': Input should be a valid dictionary"),
    ],
    ids=["empty-event", "empty-resume-id", "no-execution", "not-an-object"],
)
def test_a_resolve_run_payload_that_does_not_fit_names_the_field(event: dict[str, Any], message: str) -> None:
    with pytest.raises(UploadEventError, match=r"^ResolveRun payload: (.*; )?" + re.escape(message)) as raised:
        parse_payload(event, ResolveRunPayload, lambda_name="ResolveRun", error=UploadEventError)
    assert "upload event" not in str(raised.value)  # the union's tags are not fields


def test_an_evaluate_payload_that_does_not_fit_names_the_field() -> None:
    run = make_run(paths={**make_run()["paths"], "test": ""}, attempt=0)
    with pytest.raises(EvaluationError) as raised:
        parse_payload({"run": run, "endpoint_name": 7}, EvaluatePayload, lambda_name="Evaluate", error=EvaluationError)
    assert str(raised.value) == (
        "Evaluate payload: field 'run.attempt': Input should be greater than or equal to 1; "
        "field 'run.paths.test': String should have at least 1 character; "
        "field 'endpoint_name': Input should be a valid string"
    )
    champion = {"in_service": True, "endpoint": "prod"}
    with pytest.raises(PayloadError, match=r"^Evaluate payload: field 'champion': a champion in service needs "):
        parse_payload(
            {"run": make_run(), "endpoint_name": "e", "champion": champion}, EvaluatePayload, lambda_name="Evaluate"
        )


def test_a_request_approval_error_never_echoes_the_payload() -> None:
    payload = {"task_token": TASK_TOKEN, "run": make_run(run_id=TASK_TOKEN, attempt="many"), "evaluation": {}}
    with pytest.raises(ApprovalRequestError) as raised:
        parse_payload(payload, RequestApprovalPayload, lambda_name="RequestApproval", error=ApprovalRequestError)
    message = str(raised.value)
    assert message == (
        "RequestApproval payload: field 'run.attempt': Input should be a valid integer, unable to parse string as "
        "an integer; field 'evaluation.metric': Field required; field 'execution_arn': Field required"
    )
    assert TASK_TOKEN[:40] not in message and TASK_TOKEN[:40] not in str(raised.value.__cause__)


def test_a_payload_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(PayloadError, match=r"^Evaluate payload: Input should be a valid dictionary"):
        parse_payload(["run"], EvaluatePayload, lambda_name="Evaluate")


def test_record_step_reads_a_step_record_a_failure_or_a_lost_notification() -> None:
    from stepml.payloads import FailurePayload, NotificationFailurePayload, StepRecordPayload, parse_record_step

    record = parse_record_step({"run": make_run(), "step": "train", "status": "SUCCEEDED", "result": {"a": 1}})
    assert isinstance(record, StepRecordPayload) and record.run.run_id == make_run()["run_id"]
    failure = parse_record_step(
        {"state": {"failed_step": "train", "error": {"Error": "X"}}, "step": "failure", "execution_arn": EXECUTION_ARN}
    )
    assert isinstance(failure, FailurePayload) and failure.state.failed_step == "train"
    lost = parse_record_step({"state": {}, "step": "notify", "execution_arn": EXECUTION_ARN, "notification": "x"})
    assert isinstance(lost, NotificationFailurePayload) and lost.notification == "x"


def test_a_record_step_payload_that_does_not_fit_names_the_field() -> None:
    from stepml.lineage import LineageError
    from stepml.payloads import parse_record_step

    with pytest.raises(LineageError) as raised:
        parse_record_step(
            {"state": {"error": {}}, "step": "failure", "execution_arn": EXECUTION_ARN}, error=LineageError
        )
    assert str(raised.value) == "RecordStep payload: field 'state.failed_step': Field required"
    run = make_run()
    del run["paths"]
    with pytest.raises(LineageError) as raised:
        parse_record_step({"run": run, "step": "train", "status": "SUCCEEDED"}, error=LineageError)
    assert str(raised.value) == "RecordStep payload: field 'run.paths': Field required"


def test_a_failure_naming_no_step_of_the_pipeline_is_refused_by_the_contract() -> None:
    from stepml.payloads import PayloadError, parse_record_step

    with pytest.raises(PayloadError) as raised:
        parse_record_step({"state": {"failed_step": "guess"}, "step": "failure", "execution_arn": EXECUTION_ARN})
    assert str(raised.value) == (
        "RecordStep payload: field 'state.failed_step': the Catch that led here must name one of resolve, "
        "preprocess, train, model, test_endpoint, test_scoring, evaluate, approval, deploy, cleanup, notify "
        "(statemachine/pipeline.asl.json, the 'Failed at ...' Pass states)"
    )
