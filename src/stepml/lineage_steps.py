"""Step records: what each step of a run read, produced and was configured with, and the
run's outcome with the notice that announces it.

``record_step`` is what RecordStep runs after each step succeeds; ``step="run"`` finishes the
run and ``step="cleanup"`` notes a test endpoint left behind after evaluation. The run's model
package version (``stepml.registry``) follows: the evaluation records it on the run, the
approval decision and a rejecting outcome (the gate, an expired approval) set its status.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from stepml import preprocessor, test_scoring
from stepml.config import Settings
from stepml.lineage_failures import record_cleanup_failure
from stepml.lineage_table import (
    RESUMABLE_STEPS,
    STEP_ORDER,
    LineageError,
    email_subject,
    finish_run,
    get_item,
    run_key,
    update_fields,
    write_step,
)
from stepml.registry import DECISION_STATUS, REJECTED, ModelRegistry, RegistryError, decision_description
from stepml.utils import S3ReadError, iso_utc, read_s3_json, utc_now


def _epoch_or_iso(value: Any) -> str | None:
    """Step Functions hands job timestamps over as epoch milliseconds; store ISO-8601."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float | Decimal):
        return iso_utc(datetime.fromtimestamp(float(value) / 1000, UTC))
    return str(value)


def _read_json_s3(s3_client: Any, uri: str) -> dict[str, Any]:
    try:
        return read_s3_json(s3_client, uri)
    except S3ReadError as exc:
        raise LineageError(str(exc)) from exc


def _describe_training(sagemaker_client: Any, job_name: str) -> dict[str, Any]:
    try:
        job = sagemaker_client.describe_training_job(TrainingJobName=job_name)
    except ClientError as exc:
        raise LineageError(f"training job {job_name}: cannot describe: {exc}") from exc
    return {
        "final_metrics": {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])},
        "training_image": job.get("AlgorithmSpecification", {}).get("TrainingImage"),
        "instance_type": job.get("ResourceConfig", {}).get("InstanceType"),
        "billable_seconds": job.get("BillableTimeInSeconds"),
    }


def _job_timing(result: Mapping[str, Any]) -> dict[str, Any]:
    """Retries and start and end of a Glue or SageMaker job, as the task's result gives them."""
    return {
        "retries": result.get("retries", 0),
        "started_at": _epoch_or_iso(result.get("started_on")),
        "ended_at": _epoch_or_iso(result.get("completed_on")),
    }


def _baseline(run: Mapping[str, Any]) -> dict[str, Any]:
    """The model's data-quality baseline (Model Monitor's statistics.json and constraints.json),
    which the Glue job writes beside the splits; a monitoring schedule reads it from here."""
    paths = run["paths"]
    return {"statistics": paths["statistics"], "constraints": paths.get("constraints")}


def _preprocess_record(run: Mapping[str, Any], result: Mapping[str, Any], s3_client: Any, _: Any) -> dict[str, Any]:
    paths = run["paths"]
    manifest = _read_json_s3(s3_client, paths["manifest"])
    preprocessor = _package_preprocessor(s3_client, paths)
    row_counts = manifest.get("row_counts") or manifest.get("rows")
    try:
        # Endpoint or Batch Transform: the state machine branches on it, a resumed run reuses it.
        scoring = test_scoring.decide(row_counts, run["config"])
    except test_scoring.TestScoringError as exc:
        raise LineageError(f"run {run['run_id']}: {exc}") from exc
    return {
        "inputs": {"upload": run["input"]},
        "parameters": {"dataset_config": run["config"]},
        "outputs": {
            **{name: paths[name] for name in ("train", "validation", "test", "statistics", "manifest")},
            "constraints": paths.get("constraints"),
            "baseline": _baseline(run),
            "fingerprint": manifest.get("fingerprint") or manifest.get("input_fingerprint"),
            "row_counts": row_counts,
            "preprocessor": preprocessor,
            "test_scoring": scoring,
        },
        "job": {"type": "glue", "name": result.get("job_name"), "run_id": result.get("job_run_id")},
        **_job_timing(result),
    }


def _package_preprocessor(s3_client: Any, paths: Mapping[str, Any]) -> str | None:
    """The endpoint's preprocessor model data, built from the Glue job's encoding.json; None for a
    run whose paths predate it."""
    if not paths.get("encoding") or not paths.get("preprocessor"):
        return None
    try:
        return preprocessor.package(s3_client, str(paths["encoding"]), str(paths["preprocessor"]))
    except preprocessor.PreprocessorError as exc:
        raise LineageError(str(exc)) from exc


def _train_record(run: Mapping[str, Any], result: Mapping[str, Any], _: Any, sagemaker_client: Any) -> dict[str, Any]:
    paths, names = run["paths"], run["names"]
    details = _describe_training(sagemaker_client, result["job_name"])
    return {
        "inputs": {"train": paths["train"], "validation": paths["validation"]},
        "parameters": {
            "hyperparameters": run["hyperparameters"],
            "training": run["config"]["training"],
            "training_image": details["training_image"],
        },
        "outputs": {
            "model_data": result.get("model_data"),
            "final_metrics": details["final_metrics"],
            "baseline": _baseline(run),
        },
        "job": {"type": "sagemaker-training", "name": result.get("job_name"), "arn": result.get("job_arn")},
        **_job_timing(result),
        "gsi1pk": f"MODEL#{names['model']}",
        "gsi1sk": f"RUN#{run['run_id']}",
    }


def _evaluate_record(run: Mapping[str, Any], result: Mapping[str, Any], _: Any, __: Any) -> dict[str, Any]:
    names = run["names"]
    champion = result.get("production") if isinstance(result.get("production"), Mapping) else {}
    scoring = result.get("scoring") if isinstance(result.get("scoring"), Mapping) else {}
    batch = scoring.get("mode") == test_scoring.BATCH
    return {
        "inputs": {
            "test": run["paths"]["test"],
            # Batch Transform jobs scored a large test split: no test endpoint existed.
            "endpoint": None if batch else names["test_endpoint"],
            "model": names["model"],
            # Scored on the same rows, as a variant of the test endpoint or by a job of its own (never production).
            "champion_model": champion.get("model"),
            "scoring": dict(scoring) if batch else {"mode": test_scoring.ENDPOINT},
        },
        "parameters": {"metric": result.get("metric"), "threshold": result.get("threshold")},
        "outputs": {
            "metrics": result.get("metrics"),
            "passed": result.get("passed"),
            "reason": result.get("reason"),
            "production": result.get("production"),
            "report": result.get("report_uri"),
            "model_package": _package(result.get("model_package")),
        },
        "retries": result.get("retries", 0),
        "endpoint_retries": result.get("endpoint_retries", 0),
        "started_at": result.get("started_at"),
        "ended_at": result.get("ended_at"),
    }


def _package(package: Any) -> dict[str, Any] | None:
    """The model package version as lineage keeps it (without Evaluate's ``created`` flag)."""
    if not isinstance(package, Mapping) or not package.get("arn"):
        return None
    return {key: package.get(key) for key in ("arn", "group", "version", "status")}


#: What lineage keeps of the approval: the decision, who decided (the addresses the links were
#: issued to) and every approver's own decision with its time (``approvers``).
_DECISION = ("decision", "approver", "comment", "decided_at", "approval_id")
_APPROVAL_OUTPUTS = ("decision", "approver", "comment", "decided_at", "approval_id", "required_approvals", "approvers")


def _approval_record(run: Mapping[str, Any], result: Mapping[str, Any], _: Any, __: Any) -> dict[str, Any]:
    return {
        "outputs": {key: result.get(key) for key in _APPROVAL_OUTPUTS if key in _DECISION or key in result},
        "ended_at": result.get("decided_at"),
    }


def _deploy_record(run: Mapping[str, Any], result: Mapping[str, Any], _: Any, __: Any) -> dict[str, Any]:
    names = run["names"]
    return {
        "inputs": {"model": names["model"]},
        "outputs": {
            "endpoint": names["production_endpoint"],
            "endpoint_config": names["production_endpoint_config"],
            "status": result.get("status"),
        },
        "gsi1pk": f"ENDPOINT#{names['production_endpoint']}",
        "gsi1sk": f"RUN#{run['run_id']}",
    }


#: The steps RecordStep records, each with what builds its record from the run and the step's
#: result (and the S3 and SageMaker clients for what the result does not carry).
_RECORDS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any], Any, Any], dict[str, Any]]] = {
    "preprocess": _preprocess_record,
    "train": _train_record,
    "evaluate": _evaluate_record,
    "approval": _approval_record,
    "deploy": _deploy_record,
}


def _step_record(
    run: Mapping[str, Any],
    step: str,
    result: Mapping[str, Any],
    *,
    s3_client: Any,
    sagemaker_client: Any,
) -> dict[str, Any]:
    """What a step read, produced and was configured with, for the lineage record."""
    build = _RECORDS.get(step)
    if build is None:
        raise LineageError(f"unknown step {step!r}; expected one of {', '.join(STEP_ORDER)} or 'run'")
    return build(run, result, s3_client, sagemaker_client)


# --- the run's outcome ----------------------------------------------------------------


#: Run outcomes that reject the run's model package version, and how its ApprovalDescription begins.
_REGISTRY_REJECTIONS = {
    "REJECTED_BY_GATE": "Rejected by the evaluation gate",
    "APPROVAL_TIMED_OUT": "Rejected: not approved before the approval link expired",
}

_NOT_PROMOTED = {
    "REJECTED": "rejected by the approver",
    "REJECTED_BY_GATE": "rejected by the evaluation gate",
    "APPROVAL_TIMED_OUT": "not approved in time",
    "REPRODUCED": "a reproduction, evaluated only",
}


def _deployed(run: Mapping[str, Any], result: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Subject and lines of the notice that a run's model now serves production."""
    evaluation = result.get("evaluate", {}) if isinstance(result, Mapping) else {}
    approval = result.get("approval", {}) if isinstance(result, Mapping) else {}
    names = run["names"]
    subject = f"[stepml] {run['dataset']} model {run['run_id']} deployed to {names['production_endpoint']}"
    metric, value, threshold = (evaluation.get(k) for k in ("metric", "value", "threshold"))
    lines = [
        f"Endpoint: {names['production_endpoint']} (config {names['production_endpoint_config']})",
        f"Metric:   {metric} = {value} (threshold {threshold})",
        f"Approved: by {approval.get('approver')} at {approval.get('decided_at')}"
        + (f": {approval.get('comment')}" if approval.get("comment") else ""),
    ]
    return subject, lines


def _not_promoted(run: Mapping[str, Any], status: str, result: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Subject and lines of the notice that a run ended without changing production."""
    label = _NOT_PROMOTED.get(status, status.lower())
    subject = f"[stepml] {run['dataset']} model {run['run_id']} not promoted: {label}"
    lines = [
        f"Outcome:  {label}",
        f"Reason:   {result.get('reason')}",
        "Production was not changed; the test endpoint was deleted.",
    ]
    return subject, lines


def _outcome_notice(run: Mapping[str, Any], status: str, result: Mapping[str, Any]) -> dict[str, str]:
    upload = run["input"]
    lines = [
        f"Run:      {run['run_id']} (attempt {run.get('attempt', 1)})",
        f"Dataset:  {run['dataset']}",
        f"Data:     {upload['uri']} (version {upload.get('version_id')})",
        f"Model:    {run['names']['model']}",
    ]
    subject, outcome = _deployed(run, result) if status == "SUCCEEDED" else _not_promoted(run, status, result)
    lines += [*outcome, f"Execution: {run.get('execution_arn')}"]
    return {"subject": email_subject(subject), "message": "\n".join(lines) + "\n"}


def _finish(table: Any, run: Mapping[str, Any], status: str, result: Any, now: datetime) -> dict[str, str]:
    """End the run with its outcome (and the approval that decided it) and compose the notice."""
    extra: dict[str, Any] = {}
    if isinstance(result, Mapping) and status != "SUCCEEDED":
        extra["outcome_reason"] = result.get("reason")
    if isinstance(result, Mapping) and isinstance(result.get("approval"), Mapping):
        extra["approval"] = result["approval"]
    finish_run(table, run["run_id"], status, now, extra)
    return _outcome_notice(run, status, result if isinstance(result, Mapping) else {})


def record_step(
    run: Mapping[str, Any],
    step: str,
    status: str,
    result: Any,
    *,
    table: Any,
    s3_client: Any,
    sagemaker_client: Any,
    settings: Settings,
    now: Callable[[], datetime] = utc_now,
) -> dict[str, Any]:
    """Write a step's lineage record; ``step="run"`` finishes the run and returns the notice."""
    moment = now()
    if step == "run":
        if status in _REGISTRY_REJECTIONS:
            reason = result.get("reason") if isinstance(result, Mapping) else None
            description = _REGISTRY_REJECTIONS[status] + (f": {reason}" if reason else "")
            _set_registry_status(table, run, REJECTED, description, sagemaker_client, moment)
        return _finish(table, run, status, result, moment)
    if step == "cleanup":
        return record_cleanup_failure(table, run, result if isinstance(result, Mapping) else {}, settings, moment)
    record = _step_record(run, step, result or {}, s3_client=s3_client, sagemaker_client=sagemaker_client)
    resumable_result = result if step in RESUMABLE_STEPS else None
    scoring = record["outputs"].get("test_scoring") if step == "preprocess" else None
    if scoring is not None:
        # A resumed run skips preprocessing and branches on what its result says.
        resumable_result = {**(result or {}), "test_scoring": scoring}
    write_step(table, run, step, status, record, settings, moment, result=resumable_result)
    if step == "evaluate" and record["outputs"]["model_package"]:
        update_fields(table, run_key(run["run_id"]), {"model_package": record["outputs"]["model_package"]})
    if step == "approval":
        update_fields(table, run_key(run["run_id"]), {"approval": record["outputs"]})
        _registry_follows_decision(table, run, record["outputs"], sagemaker_client, moment)
    return {"recorded": step, "status": status, **({"test_scoring": scoring} if scoring else {})}


def _set_registry_status(
    table: Any, run: Mapping[str, Any], status: str, description: str, sagemaker_client: Any, now: datetime
) -> None:
    """Set the run's model package version (as lineage recorded it) to ``status``, and note it
    on the run; a run without a version (evaluated before the registry existed) is left alone."""
    package = get_item(table, run_key(run["run_id"])).get("model_package")
    if not isinstance(package, Mapping) or not package.get("arn"):
        return
    try:
        ModelRegistry(sagemaker_client).set_status(str(package["arn"]), status, description)
    except RegistryError as exc:
        raise LineageError(f"run {run['run_id']}: {exc}") from exc
    noted = {**package, "status": status, "status_description": description, "status_at": iso_utc(now)}
    update_fields(table, run_key(run["run_id"]), {"model_package": noted})


def _registry_follows_decision(
    table: Any, run: Mapping[str, Any], decision: Mapping[str, Any], sagemaker_client: Any, now: datetime
) -> None:
    """The approver's decision, again: the approval API set it already unless its update failed."""
    status = DECISION_STATUS.get(str(decision.get("decision")))
    if status is not None:
        description = decision_description(
            status, decision.get("approver"), decision.get("decided_at"), decision.get("comment")
        )
        _set_registry_status(table, run, status, description, sagemaker_client, now)
