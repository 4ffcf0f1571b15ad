"""Runs: the id of an upload, claiming it for an execution, and the context a run carries.

One upload (bucket, key, version) is one run. ``resolve_run`` claims it for an execution
(so duplicate events end quietly and a failed run resumes), and reports the steps that
already succeeded so the state machine skips them. The same bytes uploaded again to the same
key (a new version with the same ETag) are the same content: the re-upload is recorded as a
``DUPLICATE`` run pointing at the original run, which answers for it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from stepml.config import DATASET_NAME_PATTERN, INCOMING_PREFIX, Settings
from stepml.lineage_config import run_config
from stepml.lineage_table import (
    FINISHED_STATUSES,
    RESUMABLE_STEPS,
    LineageError,
    UnknownRunError,
    UploadEventError,
    expiry,
    get_item,
    put_new,
    run_key,
    update_fields,
)
from stepml.uploads import check_upload
from stepml.utils import from_dynamo, iso_utc, utc_now
from stepml.version import code_version

_RUN_ID_HASH_CHARS = 12


# --- run identity ---------------------------------------------------------------------


def dataset_of_key(key: str) -> str:
    """The dataset an upload belongs to: ``incoming/<dataset>/<file>``."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] + "/" != INCOMING_PREFIX or not parts[-1]:
        raise UploadEventError(f"s3 key {key!r}: uploads must be under {INCOMING_PREFIX}<dataset>/<file>")
    dataset = parts[1]
    if not re.match(DATASET_NAME_PATTERN, dataset):
        raise UploadEventError(
            f"s3 key {key!r}: dataset folder {dataset!r} must be lowercase letters, digits and dashes "
            "(at most 32 characters)"
        )
    return dataset


def make_run_id(bucket: str, key: str, version_id: str | None) -> str:
    """The run id of an upload: the same object version always gives the same run."""
    dataset = dataset_of_key(key)
    digest = hashlib.sha256(f"{bucket}/{key}?versionId={version_id or 'null'}".encode()).hexdigest()
    return f"{dataset}-{digest[:_RUN_ID_HASH_CHARS]}"


def resource_names(run_id: str, attempt: int, production_endpoint: str) -> dict[str, str]:
    """SageMaker names of a run's attempt; unique per attempt because AWS requires it."""
    base = f"stepml-{run_id}"
    return {
        "training_job": f"{base}-a{attempt}",
        "model": f"{base}-a{attempt}",
        "test_endpoint_config": f"{base}-test-a{attempt}",
        "test_endpoint": f"{base}-test-a{attempt}",
        # A serverless test endpoint's own model, the XGBoost container alone (AWS serves no inference
        # pipeline serverless); named as its endpoint, which keeps it within SageMaker's 63 characters.
        "test_model": f"{base}-test-a{attempt}",
        "production_endpoint_config": f"{base}-prod-a{attempt}",
        # Batch Transform jobs scoring a large test split (stepml.test_scoring): the challenger's
        # and the champion's, both within SageMaker's 63 characters as the test endpoint is.
        "challenger_transform_job": f"{base}-bt-a{attempt}",
        "champion_transform_job": f"{base}-btc-a{attempt}",
        # The production monitoring schedule's job definition for this model's baseline.
        "monitoring_job_definition": f"{base}-dq-a{attempt}",
        "production_endpoint": production_endpoint,
    }


def artifact_paths(artifact_bucket: str, dataset: str, run_id: str) -> dict[str, str]:
    """Where a run's outputs live in the artifact bucket."""
    root = f"s3://{artifact_bucket}"
    processed = f"{root}/processed/{dataset}/{run_id}/"
    return {
        "processed": processed,
        "train": f"{processed}train/",
        "validation": f"{processed}validation/",
        "test": f"{processed}test/",
        "statistics": f"{processed}statistics.json",
        "constraints": f"{processed}constraints.json",
        "manifest": f"{processed}manifest.json",
        # The Glue job's fitted encoding, and the preprocessor's model data packaged from it (stepml.preprocessor).
        "encoding": f"{processed}encoding.json",
        "preprocessor": f"{processed}preprocessor/model.tar.gz",
        "model_output": f"{root}/models/{dataset}/{run_id}/",
        "evaluation": f"{root}/evaluation/{dataset}/{run_id}/",
        # Batch Transform outputs, one prefix per job (the job's name is unique per attempt).
        "transform": f"{root}/transform/{dataset}/{run_id}/",
        "data_capture": f"{root}/data-capture/{dataset}/",
    }


def parse_upload(event: Mapping[str, Any]) -> dict[str, Any]:
    """The uploaded object of an EventBridge ``Object Created`` event."""
    from aws_lambda_powertools.utilities.parser import parse
    from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

    try:
        parsed = parse(event=dict(event), model=S3EventNotificationEventBridgeModel)
    except (ValidationError, ValueError) as exc:
        raise UploadEventError(f"the execution input is not an S3 Object Created event: {exc}") from exc
    bucket = parsed.detail.bucket.name
    obj = parsed.detail.object
    return {
        "bucket": bucket,
        "key": obj.key,
        "version_id": obj.version_id or "null",
        "etag": obj.etag or "",
        "size": int(obj.size or 0),
        "uri": f"s3://{bucket}/{obj.key}",
    }


# --- claiming a run ---------------------------------------------------------------------


def _owner_still_running(sfn_client: Any, execution_arn: str | None) -> bool:
    if not execution_arn:
        return False
    try:
        status = sfn_client.describe_execution(executionArn=execution_arn)["status"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("ExecutionDoesNotExist", "InvalidArn"):
            return False
        raise LineageError(f"cannot check execution {execution_arn}: {exc}") from exc
    return status == "RUNNING"


def _new_run_item(
    run_id: str, upload: dict[str, Any], dataset: str, execution_arn: str, settings: Settings, now: datetime
) -> dict[str, Any]:
    return {
        **run_key(run_id),
        "run_id": run_id,
        "dataset": dataset,
        "status": "RUNNING",
        "attempt": 1,
        "execution_arn": execution_arn,
        "executions": [execution_arn],
        "input": upload,
        "started_at": iso_utc(now),
        "updated_at": iso_utc(now),
        "code_version": code_version(),
        "gsi1pk": f"INPUT#{upload['uri']}",
        "gsi1sk": f"RUN#{iso_utc(now)}#{run_id}",
        **expiry(settings, now),
    }


def _take_over(table: Any, run_id: str, attempt: int, execution_arn: str, now: datetime) -> bool:
    """Start the next attempt of a run that ended without an outcome that stands (it failed, or
    its execution is gone); False when another execution took it over first."""
    try:
        table.update_item(
            Key=run_key(run_id),
            UpdateExpression=(
                "SET #status = :running, attempt = :next, execution_arn = :execution, updated_at = :now, "
                "executions = list_append(if_not_exists(executions, :empty), :executions) "
                "REMOVE failed_step, #error, ended_at"
            ),
            # The attempt number is the lock: only one execution moves it on.
            ConditionExpression="attempt = :attempt",
            ExpressionAttributeNames={"#status": "status", "#error": "error"},
            ExpressionAttributeValues={
                ":running": "RUNNING",
                ":next": attempt + 1,
                ":attempt": attempt,
                ":execution": execution_arn,
                ":executions": [execution_arn],
                ":empty": [],
                ":now": iso_utc(now),
            },
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise LineageError(f"cannot resume run {run_id}: {exc}") from exc
    return True


def _claim(
    table: Any,
    run_id: str,
    upload: dict[str, Any],
    execution_arn: str,
    sfn_client: Any,
    settings: Settings,
    now: datetime,
) -> tuple[str, int]:
    """Claim the run for this execution; returns (action, attempt)."""
    item = _new_run_item(run_id, upload, dataset_of_key(upload["key"]), execution_arn, settings, now)
    try:
        if put_new(table, item):
            return "start", 1
    except ClientError as exc:
        raise LineageError(f"cannot claim run {run_id}: {exc}") from exc
    existing = get_item(table, run_key(run_id))
    attempt = int(existing.get("attempt", 1))
    if existing.get("execution_arn") == execution_arn:
        # The same execution asking again (a retried Lambda): same answer.
        return ("start" if attempt == 1 else "resume"), attempt
    if existing.get("status") in FINISHED_STATUSES or (
        existing.get("status") == "RUNNING" and _owner_still_running(sfn_client, existing.get("execution_arn"))
    ):
        if execution_arn not in existing.get("duplicate_executions", []):
            update_fields(table, run_key(run_id), {}, append={"duplicate_executions": [execution_arn]})
        return "duplicate", attempt
    if not _take_over(table, run_id, attempt, execution_arn, now):
        return "duplicate", attempt  # another execution resumed it first
    return "resume", attempt + 1


# --- the same content uploaded again ------------------------------------------------------


def _content_key(upload: Mapping[str, Any]) -> dict[str, str] | None:
    etag = str(upload.get("etag") or "").strip('"')
    return {"pk": f"CONTENT#{upload['uri']}#{etag}", "sk": "CONTENT"} if etag else None


def _content_owner(table: Any, upload: Mapping[str, Any], run_id: str, settings: Settings, now: datetime) -> str:
    """The run of the first upload of these bytes to this key (``run_id`` when this is the first)."""
    key = _content_key(upload)
    if key is None:
        return run_id
    item = {**key, "run_id": run_id, "version_id": upload["version_id"], "created_at": iso_utc(now)}
    try:
        if put_new(table, {**item, **expiry(settings, now)}):
            return run_id
    except ClientError as exc:
        raise LineageError(f"cannot record the content of {upload['uri']}: {exc}") from exc
    return str(get_item(table, key).get("run_id") or run_id)


def _record_duplicate(
    table: Any,
    run_id: str,
    original: str,
    upload: dict[str, Any],
    execution_arn: str,
    settings: Settings,
    now: datetime,
) -> None:
    """A re-upload of unchanged content: a ``DUPLICATE`` run that points at the original run."""
    item = {
        **run_key(run_id),
        "run_id": run_id,
        "dataset": dataset_of_key(upload["key"]),
        "status": "DUPLICATE",
        "duplicate_of": original,
        "execution_arn": execution_arn,
        "input": upload,
        "started_at": iso_utc(now),
        "ended_at": iso_utc(now),
        "updated_at": iso_utc(now),
        "outcome_reason": f"the same content (ETag {upload['etag']}) as run {original}; that run answers for it",
        "gsi1pk": f"INPUT#{upload['uri']}",
        "gsi1sk": f"RUN#{iso_utc(now)}#{run_id}",
        **expiry(settings, now),
    }
    try:
        if not put_new(table, item):
            return  # this duplicate was already recorded (the same event delivered again)
    except ClientError as exc:
        raise LineageError(f"cannot record duplicate run {run_id}: {exc}") from exc
    update_fields(table, run_key(original), {}, append={"duplicates": [run_id]}, must_exist=True)


# --- resolving a run --------------------------------------------------------------------


def completed_steps(table: Any, run_id: str) -> dict[str, Any]:
    """Results of the resumable steps that already succeeded for a run."""
    response = table.query(
        KeyConditionExpression="pk = :pk AND begins_with(sk, :step)",
        ExpressionAttributeValues={":pk": f"RUN#{run_id}", ":step": "STEP#"},
        ConsistentRead=True,
    )
    steps = {}
    for item in from_dynamo(response.get("Items", [])):
        step = item["sk"].removeprefix("STEP#")
        if step in RESUMABLE_STEPS and item.get("status") == "SUCCEEDED" and "result" in item:
            steps[step] = item["result"]
    return steps


def drift_run_id(dataset: str, event_id: str) -> str:
    """The id of a drift retrain: new for each alarm event, the same for an event delivered twice.
    Not the upload's id: the newest upload may have trained a run already, and this is another."""
    digest = hashlib.sha256(f"drift:{dataset}:{event_id}".encode()).hexdigest()
    return f"{dataset}-{digest[:_RUN_ID_HASH_CHARS]}"


def _drift_retrain(event: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(run id, upload) of a drift retrain request (None for any other execution input)."""
    if "drift_retrain" not in event:
        return None
    request = event["drift_retrain"]
    upload = dict(request["upload"])
    if dataset_of_key(upload["key"]) != request["dataset"]:
        raise UploadEventError(f"drift retrain of dataset {request['dataset']!r}: {upload['uri']} is another dataset's")
    return drift_run_id(request["dataset"], request["trigger"]["event_id"]), upload


def _run_of_input(
    event: Mapping[str, Any], execution_arn: str, table: Any, settings: Settings, now: datetime
) -> tuple[str, dict[str, Any]]:
    """The run an execution input stands for and its upload: the run asked to resume, a drift
    retrain's own run, else the upload's own run, or the original run when the upload repeats
    content already seen."""
    if drift := _drift_retrain(event):
        return drift
    if "resume_run_id" in event:
        run_id = str(event["resume_run_id"])
        existing = get_item(table, run_key(run_id))
        if not existing:
            raise UnknownRunError(f"run {run_id!r} is not in lineage table {settings.lineage_table}")
        return run_id, existing["input"]
    upload = parse_upload(event)
    run_id = make_run_id(upload["bucket"], upload["key"], upload["version_id"])
    original = _content_owner(table, upload, run_id, settings, now)
    if original == run_id:
        return run_id, upload
    # Unchanged content: the original run answers (a duplicate when it ran, a resume when it failed).
    _record_duplicate(table, run_id, original, upload, execution_arn, settings, now)
    owner = get_item(table, run_key(original))
    return original, owner.get("input") or upload


def reproduction_run_id(original_run_id: str, dataset: str, request_id: str) -> str:
    """The id of a reproduction: new for each request, the same for a request delivered twice."""
    digest = hashlib.sha256(f"reproduce:{original_run_id}:{request_id}".encode()).hexdigest()
    return f"{dataset}-{digest[:_RUN_ID_HASH_CHARS]}"


def _reproduced(event: Mapping[str, Any], table: Any, settings: Settings) -> dict[str, Any] | None:
    """The run a reproduce request names (None for any other execution input)."""
    if "reproduce_run_id" not in event:
        return None
    run_id = str(event["reproduce_run_id"])
    original = get_item(table, run_key(run_id))
    if not original:
        raise UnknownRunError(f"run {run_id!r} is not in lineage table {settings.lineage_table}")
    if original.get("status") == "DUPLICATE":
        raise LineageError(f"run {run_id} is a duplicate of run {original.get('duplicate_of')}; reproduce that run")
    if not original.get("config") or "input" not in original:
        raise LineageError(f"run {run_id} has no recorded config or input to reproduce")
    return original


def _pinned(
    event: Mapping[str, Any], table: Any, run_id: str, original: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any], str] | None:
    """(config, hyperparameters, reproduced run) of a reproduction: the original's, never the
    dataset's current config; a resumed reproduction keeps what it was started with."""
    if original is not None:
        return original["config"], original.get("hyperparameters") or {}, str(original["run_id"])
    if "resume_run_id" in event:
        existing = get_item(table, run_key(run_id))
        if existing.get("reproduction_of") and existing.get("config"):
            return existing["config"], existing.get("hyperparameters") or {}, str(existing["reproduction_of"])
    return None


def resolve_run(
    event: Mapping[str, Any],
    execution_arn: str,
    *,
    table: Any,
    s3_client: Any,
    sfn_client: Any,
    settings: Settings,
    now: Callable[[], datetime] = utc_now,
) -> dict[str, Any]:
    """Claim the run an execution input stands for and build its context.

    A reproduce request (``stepml runs reproduce``) is a new run of the named run's upload
    version with its recorded config and hyperparameters, marked ``reproduction_of``. A drift
    retrain (``stepml.drift_retrain``) is a new run of the newest upload, with lineage's
    ``trigger`` naming the alarm that started it.
    Returns ``{"action": "start"|"resume"|"duplicate", "run": {...}, "steps": {...}}``
    (see docs/architecture.md). Raises ``UploadEventError``, ``UnknownRunError``,
    ``BadUploadError`` or ``DatasetConfigError`` with a message naming the object or file;
    a run claimed before the error is marked FAILED by ``record_failure``.
    """
    moment = now()
    original = _reproduced(event, table, settings)
    if original is None:
        run_id, upload = _run_of_input(event, execution_arn, table, settings, moment)
    else:
        upload = original["input"]
        run_id = reproduction_run_id(original["run_id"], original["dataset"], str(event["reproduce_request_id"]))
    dataset = dataset_of_key(upload["key"])
    action, attempt = _claim(table, run_id, upload, execution_arn, sfn_client, settings, moment)
    if action != "duplicate":
        check_upload(upload)  # a file type Glue cannot read, or an empty object, fails here
    pinned = _pinned(event, table, run_id, original)
    config, hyperparameters = pinned[:2] if pinned else run_config(s3_client, settings, dataset)
    run = {
        "run_id": run_id,
        "dataset": dataset,
        "attempt": attempt,
        "execution_arn": execution_arn,
        "input": upload,
        "config": config,
        "hyperparameters": hyperparameters,
        "names": resource_names(run_id, attempt, settings.production_endpoint_name),
        "paths": artifact_paths(settings.artifact_bucket, dataset, run_id),
        "endpoint_poll_seconds": settings.endpoint_poll_seconds,
        "approval_timeout_seconds": config.get("approval_timeout_seconds") or settings.approval_timeout_seconds,
        "code_version": code_version(),
    }
    if pinned:
        run["reproduction_of"] = pinned[2]
    if action == "duplicate":
        return {"action": action, "run": run, "steps": {}}
    steps = completed_steps(table, run_id)
    fields = ("config", "hyperparameters", "names", "paths", "reproduction_of")
    trigger = {"kind": "drift", **event["drift_retrain"]["trigger"]} if "drift_retrain" in event else None
    update_fields(table, run_key(run_id), {key: run.get(key) for key in fields} | {"trigger": trigger})
    return {"action": action, "run": run, "steps": steps}
