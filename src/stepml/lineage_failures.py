"""Failure records: a step that failed, a test endpoint left behind, a notice not delivered.

``record_failure`` is what RecordStep runs on the pipeline's "Record failure" path: it marks
the step the Catch named and the run FAILED and composes the alert. The other two note what
went wrong without changing the run's outcome (a test endpoint not deleted after evaluation, a
notice not delivered), as warnings on the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from stepml import test_scoring
from stepml.config import Settings
from stepml.lineage_runs import drift_run_id, make_run_id, parse_upload
from stepml.lineage_table import (
    NOTIFICATIONS,
    STEP_TITLES,
    LineageError,
    UploadEventError,
    add_warning,
    email_subject,
    finish_run,
    get_item,
    run_key,
    write_step,
)
from stepml.payloads import FailedState, describe
from stepml.utils import iso_utc, utc_now

#: The fields of a run's item that identify the run to ``write_step``.
_RUN_IDENTITY = ("run_id", "attempt", "execution_arn", "code_version")
#: The failed steps (``$.failed_step``) a test endpoint may outlive: later ones come after its deletion.
_STEPS_WITH_TEST_ENDPOINT = ("test_endpoint", "evaluate")


def readable_cause(cause: Any) -> str:
    """The human part of a Step Functions error cause (Glue, SageMaker or Lambda JSON)."""
    if not isinstance(cause, str):
        return json.dumps(cause) if cause is not None else ""
    try:
        data = json.loads(cause)
    except json.JSONDecodeError:
        return cause
    if isinstance(data, dict):
        for key in ("ErrorMessage", "errorMessage", "FailureReason", "Message", "message"):
            if data.get(key):
                prefix = f"{data['errorType']}: " if key == "errorMessage" and data.get("errorType") else ""
                return prefix + str(data[key])
    return cause


def _error_record(error: Mapping[str, Any]) -> dict[str, str]:
    """A Step Functions error (``Error``, ``Cause``) as lineage stores it."""
    return {"error": error.get("Error") or "stepml.Unknown", "cause": readable_cause(error.get("Cause"))}


# --- a failed step --------------------------------------------------------------------------


def _named_step(state: Mapping[str, Any]) -> str:
    """The step the Catch named: each Catch of the definition routes through a Pass that sets
    ``$.failed_step`` before "Record failure"; the payload contract (``FailedState``) says which
    names are steps, so a direct call is held to the same rule as RecordStep's payload."""
    try:
        return FailedState.model_validate(state).failed_step
    except ValidationError as exc:
        raise LineageError(f"Record failure: {describe(exc, root='$.')}") from exc


def _failure_cause(error: Mapping[str, Any], step: str, run: Any, sagemaker_client: Any) -> str:
    """The error's cause, with SageMaker's FailureReason when an endpoint failed to come up."""
    cause = readable_cause(error.get("Cause"))
    if error.get("Error") != "stepml.EndpointFailed" or not isinstance(run, Mapping):
        return cause
    endpoint = run["names"]["test_endpoint" if step == "test_endpoint" else "production_endpoint"]
    try:
        reason = sagemaker_client.describe_endpoint(EndpointName=endpoint).get("FailureReason")
    except ClientError:
        reason = None
    return f"{cause} FailureReason: {reason}" if reason else cause


def _input_uri(state: Mapping[str, Any]) -> str | None:
    detail = state.get("detail") if isinstance(state.get("detail"), Mapping) else None
    if detail and isinstance(detail.get("bucket"), Mapping) and isinstance(detail.get("object"), Mapping):
        return f"s3://{detail['bucket'].get('name')}/{detail['object'].get('key')}"
    return None


def _run_id_from_input(state: Mapping[str, Any]) -> str:
    if "resume_run_id" in state:
        return str(state["resume_run_id"])
    drift = state.get("drift_retrain")
    if isinstance(drift, Mapping):
        return drift_run_id(str(drift.get("dataset")), str((drift.get("trigger") or {}).get("event_id")))
    try:
        upload = parse_upload(state)
        return make_run_id(upload["bucket"], upload["key"], upload["version_id"])
    except UploadEventError:
        return "unknown"


def _fail_claimed_run(
    table: Any,
    run_id: str,
    execution_arn: str,
    step: str,
    error_record: Mapping[str, Any],
    settings: Settings,
    now: datetime,
) -> dict[str, Any] | None:
    """Mark FAILED a run this execution claimed before ResolveRun failed (a bad upload, a
    dataset that is not onboarded); returns the run's input, or None when it has no claim."""
    if run_id == "unknown":
        return None
    existing = get_item(table, run_key(run_id))
    if existing.get("execution_arn") != execution_arn or existing.get("status") != "RUNNING":
        return None  # not this execution's run: a duplicate must not fail its owner
    run = {key: existing.get(key) for key in _RUN_IDENTITY}
    write_step(table, run, step, "FAILED", {"ended_at": iso_utc(now)}, settings, now, error=error_record)
    finish_run(table, run_id, "FAILED", now, {"failed_step": step, "error": dict(error_record)})
    return existing.get("input") or {}


def _fail_resolved_run(
    table: Any,
    state: Mapping[str, Any],
    step: str,
    error_record: Mapping[str, Any],
    settings: Settings,
    now: datetime,
) -> dict[str, Any]:
    """Mark FAILED the step and the run ResolveRun handed over; what the alert names of it."""
    run = state["run"]
    write_step(table, run, step, "FAILED", {"ended_at": iso_utc(now)}, settings, now, error=error_record)
    finish_run(table, run["run_id"], "FAILED", now, {"failed_step": step, "error": error_record})
    upload = run["input"]
    # Only a run that created its model can have a test endpoint for the cleanup to delete, and the
    # definition deletes it right after recording the evaluation: a later step's failure has none left.
    # A run scoring its test split with Batch Transform never creates one.
    has_test_resources = (
        "model" in (state.get("steps") or {})
        and step in _STEPS_WITH_TEST_ENDPOINT
        and test_scoring.mode_of(state) != test_scoring.BATCH
    )
    return {
        "run_id": run["run_id"],
        "where": f"{upload['uri']} (version {upload.get('version_id')})",
        "test_endpoint": run["names"]["test_endpoint"] if has_test_resources else None,
        "test_endpoint_config": run["names"]["test_endpoint_config"] if has_test_resources else None,
    }


def _fail_unresolved_run(
    table: Any,
    state: Mapping[str, Any],
    execution_arn: str,
    step: str,
    error_record: Mapping[str, Any],
    settings: Settings,
    now: datetime,
) -> dict[str, Any]:
    """ResolveRun failed, so the state has no run: fail the run the input stands for if this
    execution claimed it; what the alert names of it."""
    run_id = _run_id_from_input(state)
    where = _input_uri(state) or "(unknown input)"
    claimed = _fail_claimed_run(table, run_id, execution_arn, step, error_record, settings, now)
    if claimed:
        where = f"{claimed.get('uri')} (version {claimed.get('version_id')})"
    return {"run_id": run_id, "where": where, "test_endpoint": None, "test_endpoint_config": None}


def _failure_alert(
    failed: Mapping[str, Any], step: str, error_record: Mapping[str, Any], execution_arn: str
) -> dict[str, str]:
    """Subject and message of the alert that a run failed at ``step``."""
    run_id, title = failed["run_id"], STEP_TITLES.get(step, step)
    lines = [
        f"Run:       {run_id}",
        f"Step:      {title}",
        f"Error:     {error_record['error']}",
        f"Cause:     {error_record['cause']}",
        f"Input:     {failed['where']}",
        f"Execution: {execution_arn}",
        "",
        "The test endpoint (if any) is being deleted; production was not changed.",
        f"After fixing the cause, resume with: stepml runs resume {run_id}",
    ]
    subject = email_subject(f"[stepml] Run {run_id} failed at {title}: {error_record['error']}")
    return {"subject": subject, "message": "\n".join(lines) + "\n"}


def record_failure(
    state: Mapping[str, Any],
    execution_arn: str,
    *,
    table: Any,
    sagemaker_client: Any,
    settings: Settings,
    now: Callable[[], datetime] = utc_now,
) -> dict[str, Any]:
    """Record a caught error as the failure of the step its Catch named (``$.failed_step``)
    and compose the alert."""
    moment = now()
    error = dict(state.get("error") or {"Error": "stepml.Unknown", "Cause": "no error details"})
    step = _named_step(state)
    error_record = {
        "error": error.get("Error"),
        "cause": _failure_cause(error, step, state.get("run"), sagemaker_client),
    }
    if isinstance(state.get("run"), Mapping):
        failed = _fail_resolved_run(table, state, step, error_record, settings, moment)
    else:
        failed = _fail_unresolved_run(table, state, execution_arn, step, error_record, settings, moment)
    alert = _failure_alert(failed, step, error_record, execution_arn)
    return {
        "run_id": failed["run_id"],
        "step": step,
        "error": error_record["error"],
        "cause": error_record["cause"],
        "subject": alert["subject"],
        "message": alert["message"],
        "test_endpoint": failed["test_endpoint"],
        "test_endpoint_config": failed["test_endpoint_config"],
    }


# --- warnings on a run that keeps its outcome --------------------------------------------------


def record_cleanup_failure(
    table: Any, run: Mapping[str, Any], error: Mapping[str, Any], settings: Settings, now: datetime
) -> dict[str, str]:
    """The test endpoint could not be deleted after evaluation: the run goes on to the gate and
    keeps whatever outcome it reaches, with a warning in lineage and an alert naming what is left."""
    names = run["names"]
    endpoint, endpoint_config = names["test_endpoint"], names["test_endpoint_config"]
    error_record = _error_record(error)
    outputs = {"endpoint": endpoint, "endpoint_config": endpoint_config}
    record = {"outputs": outputs, "ended_at": iso_utc(now)}
    write_step(table, run, "cleanup", "FAILED", record, settings, now, error=error_record)
    add_warning(table, run["run_id"], {"step": "cleanup", **error_record, **outputs, "at": iso_utc(now)}, now)
    lines = [
        f"Run:       {run['run_id']} (attempt {run.get('attempt', 1)})",
        f"Dataset:   {run['dataset']}",
        f"Endpoint:  {endpoint} (config {endpoint_config})",
        f"Error:     {error_record['error']}: {error_record['cause']}",
        f"Execution: {run.get('execution_arn')}",
        "",
        "Evaluation is done with the test endpoint; the run goes on to the gate and approval.",
        "The test endpoint and its config may still exist and cost money until deleted:",
        f"  aws sagemaker delete-endpoint --endpoint-name {endpoint}",
        f"  aws sagemaker delete-endpoint-config --endpoint-config-name {endpoint_config}",
    ]
    hosting = (run.get("config") or {}).get("hosting") or {}
    if names.get("test_model") and hosting.get("test_endpoint_serverless"):
        # A serverless test endpoint served its own model (XGBoost alone); the cleanup deletes it last.
        lines.append(f"  aws sagemaker delete-model --model-name {names['test_model']}  (a serverless test model)")
    subject = email_subject(f"[stepml] Run {run['run_id']}: test endpoint not deleted after evaluation")
    return {"subject": subject, "message": "\n".join(lines) + "\n"}


def _lost_notification(state: Mapping[str, Any], notification: str | None) -> tuple[str, Mapping[str, Any]]:
    """Which notification was lost and the part of the state that composed it: the one named,
    else the first part of the state that composes one."""
    named = [(label, state.get(key)) for key, label in NOTIFICATIONS if label == notification]
    kind, part = next(
        iter(named or ((label, state[key]) for key, label in NOTIFICATIONS if isinstance(state.get(key), Mapping))),
        ("notification", {}),
    )
    return kind, part if isinstance(part, Mapping) else {}


def record_notification_failure(
    state: Mapping[str, Any],
    execution_arn: str,
    *,
    table: Any,
    settings: Settings,
    notification: str | None = None,
    now: Callable[[], datetime] = utc_now,
) -> dict[str, Any]:
    """An SNS notice or alert was not delivered after Step Functions' retries (``$.notify_error``).

    The run keeps the outcome it had (a deployed run still SUCCEEDED, a failed one FAILED);
    lineage notes which notification was lost, so ``stepml runs show`` tells what nobody was told.
    ``notification`` names it when the definition says which (the cleanup alert, sent after the
    deployment notice was composed); otherwise it is the first part of the state that composes one.
    """
    moment = now()
    kind, part = _lost_notification(state, notification)
    run = state.get("run") if isinstance(state.get("run"), Mapping) else None
    run_id = str(run["run_id"]) if run else str((state.get("failure") or {}).get("run_id") or "unknown")
    error_record = _error_record(dict(state.get("notify_error") or {}))
    result = {"recorded": False, "run_id": run_id, "notification": kind}
    existing = get_item(table, run_key(run_id))
    if run_id == "unknown" or not existing:
        return result  # no run to note it on: the execution history keeps the error
    owner = run or {key: existing.get(key) for key in _RUN_IDENTITY}
    record = {"outputs": {"notification": kind, "subject": part.get("subject")}, "ended_at": iso_utc(moment)}
    write_step(table, owner, "notify", "FAILED", record, settings, moment, error=error_record)
    warning = {"step": "notify", "notification": kind, "subject": part.get("subject"), **error_record}
    add_warning(table, run_id, {**warning, "at": iso_utc(moment)}, moment)
    return {**result, "recorded": True}
