"""Runs and their lineage in DynamoDB: run ids, claiming a run, step records, failures.

One upload (bucket, key, version) is one run. ``resolve_run`` claims it for an execution
(so duplicate events end quietly and a failed run resumes), and reports the steps that
already succeeded so the state machine skips them. The same bytes uploaded again to the same
key (a new version with the same ETag) are the same content: the re-upload is recorded as a
``DUPLICATE`` run pointing at the original run, which answers for it. ``record_step`` and ``record_failure``
write what each step read, produced and was configured with.

Item layout (single table, see docs/architecture.md):
``pk=RUN#<run_id>, sk=RUN`` for the run and ``sk=STEP#<step>`` for each step;
``pk=CONTENT#s3://bucket/key#<etag>, sk=CONTENT`` names the first run of that content; ``gsi1pk``
indexes the input object (``INPUT#s3://bucket/key``) on run items and the model name
(``MODEL#<name>``) on training records.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from stepml.config import (
    DATASET_NAME_PATTERN,
    INCOMING_PREFIX,
    DatasetConfigError,
    Settings,
    dataset_config_key,
    parse_dataset_config,
)
from stepml.uploads import check_upload
from stepml.version import code_version

#: Steps in pipeline order; the first one without a result in ``$.steps`` is where a run failed.
STEP_ORDER = ("preprocess", "train", "model", "test_endpoint", "evaluate", "approval", "deploy")
#: Steps whose results a resumed run reuses instead of redoing them.
RESUMABLE_STEPS = ("preprocess", "train")
#: Run outcomes after which the same upload is not run again.
FINISHED_STATUSES = frozenset({"SUCCEEDED", "REJECTED", "REJECTED_BY_GATE", "APPROVAL_TIMED_OUT"})
STEP_TITLES = {
    "resolve": "Resolve run",
    "preprocess": "Preprocess data (Glue)",
    "train": "Train model (SageMaker)",
    "model": "Create model",
    "test_endpoint": "Test endpoint",
    "evaluate": "Evaluate model",
    "approval": "Approval",
    "deploy": "Deploy to production",
    "cleanup": "Delete test endpoint",
    "notify": "Notify",
}
#: What each notification of a run is, by the part of the state that composed it.
NOTIFICATIONS = (
    ("failure", "failure alert"),
    ("outcome", "not-promoted notice"),
    ("notice", "deployment"),
    ("cleanup", "cleanup alert"),
)

_RUN_ID_HASH_CHARS = 12
_MAX_SUBJECT = 100


class LineageError(RuntimeError):
    """Lineage could not be read or written."""


class UploadEventError(LineageError):
    """The execution input is not an upload this pipeline can run on."""


class UnknownRunError(LineageError):
    """A run id that lineage does not know."""


class DatasetNotOnboardedError(DatasetConfigError):
    """The upload's dataset has no config in the artifact bucket."""


class DatasetConfigDeniedError(LineageError):
    """S3 refused to show the dataset config (403): missing permissions, or a key policy."""


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _to_dynamo(value: Any) -> Any:
    """JSON-compatible data as DynamoDB wants it (floats as Decimal, no empty sets)."""
    return json.loads(json.dumps(value, default=str), parse_float=Decimal)


def from_dynamo(value: Any) -> Any:
    """DynamoDB data back to plain JSON types (Decimal to int or float)."""
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


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
        "production_endpoint_config": f"{base}-prod-a{attempt}",
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
        "manifest": f"{processed}manifest.json",
        "model_output": f"{root}/models/{dataset}/{run_id}/",
        "evaluation": f"{root}/evaluation/{dataset}/{run_id}/",
        "data_capture": f"{root}/data-capture/{dataset}/",
    }


def _run_key(run_id: str) -> dict[str, str]:
    return {"pk": f"RUN#{run_id}", "sk": "RUN"}


def _step_key(run_id: str, step: str) -> dict[str, str]:
    return {"pk": f"RUN#{run_id}", "sk": f"STEP#{step}"}


def _expiry(settings: Settings, now: datetime) -> dict[str, int]:
    days = settings.lineage_retention_days
    return {"expires_at": int(now.timestamp()) + days * 86400} if days > 0 else {}


# --- resolving a run --------------------------------------------------------------------


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


def _claim(
    table: Any,
    run_id: str,
    upload: dict[str, Any],
    dataset: str,
    execution_arn: str,
    sfn_client: Any,
    settings: Settings,
    now: datetime,
) -> tuple[str, int]:
    """Claim the run for this execution; returns (action, attempt)."""
    key = _run_key(run_id)
    item = {
        **key,
        "run_id": run_id,
        "dataset": dataset,
        "status": "RUNNING",
        "attempt": 1,
        "execution_arn": execution_arn,
        "executions": [execution_arn],
        "input": upload,
        "started_at": _iso(now),
        "updated_at": _iso(now),
        "code_version": code_version(),
        "gsi1pk": f"INPUT#{upload['uri']}",
        "gsi1sk": f"RUN#{_iso(now)}#{run_id}",
        **_expiry(settings, now),
    }
    try:
        table.put_item(Item=_to_dynamo(item), ConditionExpression="attribute_not_exists(pk)")
        return "start", 1
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise LineageError(f"cannot claim run {run_id}: {exc}") from exc
    existing = from_dynamo(table.get_item(Key=key, ConsistentRead=True).get("Item") or {})
    attempt = int(existing.get("attempt", 1))
    if existing.get("execution_arn") == execution_arn:
        # The same execution asking again (a retried Lambda): same answer.
        return ("start" if attempt == 1 else "resume"), attempt
    if existing.get("status") in FINISHED_STATUSES or (
        existing.get("status") == "RUNNING" and _owner_still_running(sfn_client, existing.get("execution_arn"))
    ):
        if execution_arn not in existing.get("duplicate_executions", []):
            _update_fields(table, key, {}, append={"duplicate_executions": [execution_arn]})
        return "duplicate", attempt
    try:
        table.update_item(
            Key=key,
            UpdateExpression=(
                "SET #status = :running, attempt = :next, execution_arn = :execution, updated_at = :now, "
                "executions = list_append(if_not_exists(executions, :empty), :executions) "
                "REMOVE failed_step, #error, ended_at"
            ),
            ConditionExpression="attempt = :attempt",
            ExpressionAttributeNames={"#status": "status", "#error": "error"},
            ExpressionAttributeValues={
                ":running": "RUNNING",
                ":next": attempt + 1,
                ":attempt": attempt,
                ":execution": execution_arn,
                ":executions": [execution_arn],
                ":empty": [],
                ":now": _iso(now),
            },
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return "duplicate", attempt  # another execution resumed it first
        raise LineageError(f"cannot resume run {run_id}: {exc}") from exc
    return "resume", attempt + 1


def _content_key(upload: Mapping[str, Any]) -> dict[str, str] | None:
    etag = str(upload.get("etag") or "").strip('"')
    return {"pk": f"CONTENT#{upload['uri']}#{etag}", "sk": "CONTENT"} if etag else None


def _content_owner(table: Any, upload: Mapping[str, Any], run_id: str, settings: Settings, now: datetime) -> str:
    """The run of the first upload of these bytes to this key (``run_id`` when this is the first)."""
    key = _content_key(upload)
    if key is None:
        return run_id
    item = {**key, "run_id": run_id, "version_id": upload["version_id"], "created_at": _iso(now)}
    try:
        table.put_item(
            Item=_to_dynamo({**item, **_expiry(settings, now)}), ConditionExpression="attribute_not_exists(pk)"
        )
        return run_id
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise LineageError(f"cannot record the content of {upload['uri']}: {exc}") from exc
    owner = table.get_item(Key=key, ConsistentRead=True).get("Item") or {}
    return str(owner.get("run_id") or run_id)


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
        **_run_key(run_id),
        "run_id": run_id,
        "dataset": dataset_of_key(upload["key"]),
        "status": "DUPLICATE",
        "duplicate_of": original,
        "execution_arn": execution_arn,
        "input": upload,
        "started_at": _iso(now),
        "ended_at": _iso(now),
        "updated_at": _iso(now),
        "outcome_reason": f"the same content (ETag {upload['etag']}) as run {original}; that run answers for it",
        "gsi1pk": f"INPUT#{upload['uri']}",
        "gsi1sk": f"RUN#{_iso(now)}#{run_id}",
        **_expiry(settings, now),
    }
    try:
        table.put_item(Item=_to_dynamo(item), ConditionExpression="attribute_not_exists(pk)")
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return  # this duplicate was already recorded (the same event delivered again)
        raise LineageError(f"cannot record duplicate run {run_id}: {exc}") from exc
    _update_fields(table, _run_key(original), {}, append={"duplicates": [run_id]}, must_exist=True)


def load_dataset_config(s3_client: Any, bucket: str, dataset: str) -> dict[str, Any]:
    """Read and validate a dataset's config from the artifact bucket."""
    key = dataset_config_key(dataset)
    source = f"s3://{bucket}/{key}"
    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in ("NoSuchKey", "404"):
            raise DatasetNotOnboardedError(
                f"dataset {dataset!r} is not onboarded: its config {source} does not exist; "
                f"onboard it with `stepml datasets put {dataset} CONFIG.json`, then upload the file again"
            ) from exc
        if code in ("AccessDenied", "403", "Forbidden"):
            # S3 answers 403 both for a key the caller may not read and, without s3:ListBucket,
            # for a key that does not exist; the template grants the listing, so this is access.
            raise DatasetConfigDeniedError(
                f"dataset {dataset!r}: permission denied reading its config {source} (S3 {code}): ResolveRun "
                "needs s3:GetObject on it, and s3:ListBucket on the bucket to tell a missing config from a "
                "denied one"
            ) from exc
        raise LineageError(f"{source}: cannot read the dataset config: {code}: {exc}") from exc
    return parse_dataset_config(body, source).model_dump(mode="json")


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


def resolve_run(
    event: Mapping[str, Any],
    execution_arn: str,
    *,
    table: Any,
    s3_client: Any,
    sfn_client: Any,
    settings: Settings,
    now: Callable[[], datetime] = _now,
) -> dict[str, Any]:
    """Claim the run an execution input stands for and build its context.

    Returns ``{"action": "start"|"resume"|"duplicate", "run": {...}, "steps": {...}}``
    (see docs/architecture.md). Raises ``UploadEventError``, ``UnknownRunError``,
    ``BadUploadError`` or ``DatasetConfigError`` with a message naming the object or file;
    a run claimed before the error is marked FAILED by ``record_failure``.
    """
    moment = now()
    if "resume_run_id" in event:
        run_id = str(event["resume_run_id"])
        existing = from_dynamo(table.get_item(Key=_run_key(run_id), ConsistentRead=True).get("Item"))
        if not existing:
            raise UnknownRunError(f"run {run_id!r} is not in lineage table {settings.lineage_table}")
        upload = existing["input"]
    else:
        upload = parse_upload(event)
        run_id = make_run_id(upload["bucket"], upload["key"], upload["version_id"])
        original = _content_owner(table, upload, run_id, settings, moment)
        if original != run_id:
            # Unchanged content: the original run answers (a duplicate when it ran, a resume when it failed).
            _record_duplicate(table, run_id, original, upload, execution_arn, settings, moment)
            owner = from_dynamo(table.get_item(Key=_run_key(original), ConsistentRead=True).get("Item") or {})
            run_id, upload = original, owner.get("input") or upload
    dataset = dataset_of_key(upload["key"])
    action, attempt = _claim(table, run_id, upload, dataset, execution_arn, sfn_client, settings, moment)
    if action != "duplicate":
        check_upload(upload)  # a file type Glue cannot read, or an empty object, fails here

    config = load_dataset_config(s3_client, settings.artifact_bucket, dataset)
    config["training"]["instance_type"] = config["training"]["instance_type"] or settings.default_training_instance_type
    config["hosting"]["instance_type"] = config["hosting"]["instance_type"] or settings.default_hosting_instance_type
    hyperparameters = parse_dataset_config(config, f"dataset {dataset}").training_hyperparameters()
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
    steps = {} if action == "duplicate" else completed_steps(table, run_id)
    if action != "duplicate":
        _update_fields(
            table,
            _run_key(run_id),
            {"config": config, "hyperparameters": hyperparameters, "names": run["names"], "paths": run["paths"]},
        )
    return {"action": action, "run": run, "steps": steps}


# --- recording steps ------------------------------------------------------------------


def _epoch_or_iso(value: Any) -> str | None:
    """Step Functions hands job timestamps over as epoch milliseconds; store ISO-8601."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float | Decimal):
        return _iso(datetime.fromtimestamp(float(value) / 1000, UTC))
    return str(value)


def _read_json_s3(s3_client: Any, uri: str) -> dict[str, Any]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        return json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except (ClientError, json.JSONDecodeError) as exc:
        raise LineageError(f"{uri}: cannot read: {exc}") from exc


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


def _step_record(
    run: Mapping[str, Any],
    step: str,
    result: Mapping[str, Any],
    *,
    s3_client: Any,
    sagemaker_client: Any,
) -> dict[str, Any]:
    """What a step read, produced and was configured with, for the lineage record."""
    paths, names = run["paths"], run["names"]
    if step == "preprocess":
        manifest = _read_json_s3(s3_client, paths["manifest"])
        return {
            "inputs": {"upload": run["input"]},
            "parameters": {"dataset_config": run["config"]},
            "outputs": {
                "train": paths["train"],
                "validation": paths["validation"],
                "test": paths["test"],
                "statistics": paths["statistics"],
                "manifest": paths["manifest"],
                "fingerprint": manifest.get("fingerprint") or manifest.get("input_fingerprint"),
                "row_counts": manifest.get("row_counts") or manifest.get("rows"),
            },
            "job": {"type": "glue", "name": result.get("job_name"), "run_id": result.get("job_run_id")},
            "retries": result.get("retries", 0),
            "started_at": _epoch_or_iso(result.get("started_on")),
            "ended_at": _epoch_or_iso(result.get("completed_on")),
        }
    if step == "train":
        details = _describe_training(sagemaker_client, result["job_name"])
        return {
            "inputs": {"train": paths["train"], "validation": paths["validation"]},
            "parameters": {
                "hyperparameters": run["hyperparameters"],
                "training": run["config"]["training"],
                "training_image": details["training_image"],
            },
            "outputs": {"model_data": result.get("model_data"), "final_metrics": details["final_metrics"]},
            "job": {
                "type": "sagemaker-training",
                "name": result.get("job_name"),
                "arn": result.get("job_arn"),
            },
            "retries": result.get("retries", 0),
            "started_at": _epoch_or_iso(result.get("started_on")),
            "ended_at": _epoch_or_iso(result.get("completed_on")),
            "gsi1pk": f"MODEL#{names['model']}",
            "gsi1sk": f"RUN#{run['run_id']}",
        }
    if step == "evaluate":
        champion = result.get("production") if isinstance(result.get("production"), Mapping) else {}
        return {
            "inputs": {
                "test": paths["test"],
                "endpoint": names["test_endpoint"],
                "model": names["model"],
                # Scored on the same rows, as a variant of the test endpoint (never through production).
                "champion_model": champion.get("model"),
            },
            "parameters": {"metric": result.get("metric"), "threshold": result.get("threshold")},
            "outputs": {
                "metrics": result.get("metrics"),
                "passed": result.get("passed"),
                "reason": result.get("reason"),
                "production": result.get("production"),
                "report": result.get("report_uri"),
            },
            "retries": result.get("retries", 0),
            "endpoint_retries": result.get("endpoint_retries", 0),
            "started_at": result.get("started_at"),
            "ended_at": result.get("ended_at"),
        }
    if step == "approval":
        return {
            "outputs": {
                key: result.get(key) for key in ("decision", "approver", "comment", "decided_at", "approval_id")
            },
            "ended_at": result.get("decided_at"),
        }
    if step == "deploy":
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
    raise LineageError(f"unknown step {step!r}; expected one of {', '.join(STEP_ORDER)} or 'run'")


def _update_fields(
    table: Any,
    key: Mapping[str, str],
    fields: Mapping[str, Any],
    *,
    append: Mapping[str, list[Any]] | None = None,
    must_exist: bool = False,
) -> None:
    """SET each non-None field of an item (and append to list fields) in one update.

    With ``must_exist`` an item that is not there is left alone instead of being created.
    """
    sets, names, values = [], {}, {}
    for index, (name, value) in enumerate(fields.items()):
        if value is None:
            continue
        sets.append(f"#f{index} = :f{index}")
        names[f"#f{index}"] = name
        values[f":f{index}"] = value
    for index, (name, items) in enumerate((append or {}).items()):
        sets.append(f"#a{index} = list_append(if_not_exists(#a{index}, :empty), :a{index})")
        names[f"#a{index}"] = name
        values[f":a{index}"] = items
        values[":empty"] = []
    condition = {"ConditionExpression": "attribute_exists(pk)"} if must_exist else {}
    try:
        table.update_item(
            Key=dict(key),
            UpdateExpression="SET " + ", ".join(sets),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=_to_dynamo(values),
            **condition,
        )
    except ClientError as exc:
        if not (must_exist and exc.response["Error"]["Code"] == "ConditionalCheckFailedException"):
            raise


def _write_step(
    table: Any,
    run: Mapping[str, Any],
    step: str,
    status: str,
    record: Mapping[str, Any],
    settings: Settings,
    now: datetime,
    *,
    result: Any = None,
    error: Mapping[str, Any] | None = None,
) -> None:
    attempt = {
        "attempt": run.get("attempt", 1),
        "status": status,
        "at": _iso(now),
        "execution_arn": run.get("execution_arn"),
    }
    if error:
        attempt["error"] = dict(error)
    if "retries" in record:
        attempt["retries"] = record["retries"]
    fields = {
        "run_id": run["run_id"],
        "step": step,
        "status": status,
        "attempt": run.get("attempt", 1),
        "recorded_at": _iso(now),
        "code_version": run.get("code_version") or code_version(),
        **record,
        "result": result,
        "error": dict(error) if error else None,
        **_expiry(settings, now),
    }
    _update_fields(table, _step_key(run["run_id"], step), fields, append={"attempts": [attempt]})


def _finish_run(table: Any, run_id: str, status: str, now: datetime, extra: Mapping[str, Any]) -> None:
    fields = {"status": status, "ended_at": _iso(now), "updated_at": _iso(now), **extra}
    _update_fields(table, _run_key(run_id), fields)


def _subject(text: str) -> str:
    """An SNS email subject: ASCII, one line, at most 100 characters."""
    clean = re.sub(r"\s+", " ", text.encode("ascii", "replace").decode()).strip()
    return clean if len(clean) <= _MAX_SUBJECT else clean[: _MAX_SUBJECT - 3] + "..."


def _outcome_notice(run: Mapping[str, Any], status: str, result: Mapping[str, Any]) -> dict[str, str]:
    upload = run["input"]
    lines = [
        f"Run:      {run['run_id']} (attempt {run.get('attempt', 1)})",
        f"Dataset:  {run['dataset']}",
        f"Data:     {upload['uri']} (version {upload.get('version_id')})",
        f"Model:    {run['names']['model']}",
    ]
    if status == "SUCCEEDED":
        evaluation = result.get("evaluate", {}) if isinstance(result, Mapping) else {}
        approval = result.get("approval", {}) if isinstance(result, Mapping) else {}
        names = run["names"]
        subject = f"[stepml] {run['dataset']} model {run['run_id']} deployed to {names['production_endpoint']}"
        metric, value, threshold = (evaluation.get(k) for k in ("metric", "value", "threshold"))
        lines += [
            f"Endpoint: {names['production_endpoint']} (config {names['production_endpoint_config']})",
            f"Metric:   {metric} = {value} (threshold {threshold})",
            f"Approved: by {approval.get('approver')} at {approval.get('decided_at')}"
            + (f": {approval.get('comment')}" if approval.get("comment") else ""),
        ]
    else:
        label = {
            "REJECTED": "rejected by the approver",
            "REJECTED_BY_GATE": "rejected by the evaluation gate",
            "APPROVAL_TIMED_OUT": "not approved in time",
        }.get(status, status.lower())
        subject = f"[stepml] {run['dataset']} model {run['run_id']} not promoted: {label}"
        lines += [
            f"Outcome:  {label}",
            f"Reason:   {result.get('reason')}",
            "Production was not changed; the test endpoint was deleted.",
        ]
    lines.append(f"Execution: {run.get('execution_arn')}")
    return {"subject": _subject(subject), "message": "\n".join(lines) + "\n"}


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
    now: Callable[[], datetime] = _now,
) -> dict[str, Any]:
    """Write a step's lineage record; ``step="run"`` finishes the run and returns the notice."""
    moment = now()
    if step == "run":
        extra: dict[str, Any] = {}
        if isinstance(result, Mapping) and status != "SUCCEEDED":
            extra["outcome_reason"] = result.get("reason")
        if isinstance(result, Mapping) and isinstance(result.get("approval"), Mapping):
            extra["approval"] = result["approval"]
        _finish_run(table, run["run_id"], status, moment, extra)
        return _outcome_notice(run, status, result if isinstance(result, Mapping) else {})
    if step == "cleanup":
        return _record_cleanup_failure(table, run, result if isinstance(result, Mapping) else {}, settings, moment)
    record = _step_record(run, step, result or {}, s3_client=s3_client, sagemaker_client=sagemaker_client)
    resumable_result = result if step in RESUMABLE_STEPS else None
    _write_step(table, run, step, status, record, settings, moment, result=resumable_result)
    if step == "approval":
        _update_fields(table, _run_key(run["run_id"]), {"approval": record["outputs"]})
    return {"recorded": step, "status": status}


def _record_cleanup_failure(
    table: Any, run: Mapping[str, Any], error: Mapping[str, Any], settings: Settings, now: datetime
) -> dict[str, str]:
    """The test endpoint could not be deleted after production was deployed: the run still
    succeeds (production changed), with a warning in lineage and an alert naming what is left."""
    names = run["names"]
    endpoint, endpoint_config = names["test_endpoint"], names["test_endpoint_config"]
    error_record = {"error": error.get("Error") or "stepml.Unknown", "cause": readable_cause(error.get("Cause"))}
    outputs = {"endpoint": endpoint, "endpoint_config": endpoint_config}
    _write_step(
        table, run, "cleanup", "FAILED", {"outputs": outputs, "ended_at": _iso(now)}, settings, now, error=error_record
    )
    warning = {"step": "cleanup", **error_record, **outputs, "at": _iso(now)}
    _update_fields(table, _run_key(run["run_id"]), {"updated_at": _iso(now)}, append={"warnings": [warning]})
    lines = [
        f"Run:       {run['run_id']} (attempt {run.get('attempt', 1)})",
        f"Dataset:   {run['dataset']}",
        f"Endpoint:  {endpoint} (config {endpoint_config})",
        f"Error:     {error_record['error']}: {error_record['cause']}",
        f"Execution: {run.get('execution_arn')}",
        "",
        f"Production: {names['production_endpoint']} serves the new model (config "
        f"{names['production_endpoint_config']}); the run succeeded.",
        "The test endpoint and its config may still exist and cost money until deleted:",
        f"  aws sagemaker delete-endpoint --endpoint-name {endpoint}",
        f"  aws sagemaker delete-endpoint-config --endpoint-config-name {endpoint_config}",
    ]
    subject = _subject(f"[stepml] Run {run['run_id']}: test endpoint not deleted after the deploy")
    return {"subject": subject, "message": "\n".join(lines) + "\n"}


def record_notification_failure(
    state: Mapping[str, Any],
    execution_arn: str,
    *,
    table: Any,
    settings: Settings,
    notification: str | None = None,
    now: Callable[[], datetime] = _now,
) -> dict[str, Any]:
    """An SNS notice or alert was not delivered after Step Functions' retries (``$.notify_error``).

    The run keeps the outcome it had (a deployed run still SUCCEEDED, a failed one FAILED);
    lineage notes which notification was lost, so ``stepml runs show`` tells what nobody was told.
    ``notification`` names it when the definition says which (the cleanup alert, sent after the
    deployment notice was composed); otherwise it is the first part of the state that composes one.
    """
    moment = now()
    named = [(label, state.get(key)) for key, label in NOTIFICATIONS if label == notification]
    kind, part = next(
        iter(named or ((label, state[key]) for key, label in NOTIFICATIONS if isinstance(state.get(key), Mapping))),
        ("notification", {}),
    )
    part = part if isinstance(part, Mapping) else {}
    run = state.get("run") if isinstance(state.get("run"), Mapping) else None
    run_id = str(run["run_id"]) if run else str((state.get("failure") or {}).get("run_id") or "unknown")
    error = dict(state.get("notify_error") or {})
    error_record = {"error": error.get("Error") or "stepml.Unknown", "cause": readable_cause(error.get("Cause"))}
    result = {"recorded": False, "run_id": run_id, "notification": kind}
    existing = from_dynamo(table.get_item(Key=_run_key(run_id), ConsistentRead=True).get("Item") or {})
    if run_id == "unknown" or not existing:
        return result  # no run to note it on: the execution history keeps the error
    owner = run or {key: existing.get(key) for key in ("run_id", "attempt", "execution_arn", "code_version")}
    record = {"outputs": {"notification": kind, "subject": part.get("subject")}, "ended_at": _iso(moment)}
    _write_step(table, owner, "notify", "FAILED", record, settings, moment, error=error_record)
    warning = {
        "step": "notify",
        "notification": kind,
        "subject": part.get("subject"),
        **error_record,
        "at": _iso(moment),
    }
    _update_fields(table, _run_key(run_id), {"updated_at": _iso(moment)}, append={"warnings": [warning]})
    return {**result, "recorded": True}


# --- failures -------------------------------------------------------------------------


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


def _named_step(state: Mapping[str, Any]) -> str:
    """The step the Catch named: each Catch of the definition routes through a Pass that sets
    ``$.failed_step`` before "Record failure", so no step is inferred from missing records."""
    step = state.get("failed_step")
    if step not in STEP_TITLES:
        raise LineageError(
            f"Record failure: $.failed_step is {step!r}; the Catch that led here must name one of "
            f"{', '.join(STEP_TITLES)} (statemachine/pipeline.asl.json, the 'Failed at ...' Pass states)"
        )
    return str(step)


def record_failure(
    state: Mapping[str, Any],
    execution_arn: str,
    *,
    table: Any,
    sagemaker_client: Any,
    settings: Settings,
    now: Callable[[], datetime] = _now,
) -> dict[str, Any]:
    """Record a caught error as the failure of the step its Catch named (``$.failed_step``)
    and compose the alert."""
    moment = now()
    error = dict(state.get("error") or {"Error": "stepml.Unknown", "Cause": "no error details"})
    step = _named_step(state)
    run = state.get("run")
    cause = readable_cause(error.get("Cause"))
    if error.get("Error") == "stepml.EndpointFailed" and isinstance(run, Mapping):
        endpoint = run["names"]["test_endpoint" if step == "test_endpoint" else "production_endpoint"]
        try:
            reason = sagemaker_client.describe_endpoint(EndpointName=endpoint).get("FailureReason")
        except ClientError:
            reason = None
        if reason:
            cause = f"{cause} FailureReason: {reason}"
    error_record = {"error": error.get("Error"), "cause": cause}
    if isinstance(run, Mapping):
        run_id = run["run_id"]
        _write_step(table, run, step, "FAILED", {"ended_at": _iso(moment)}, settings, moment, error=error_record)
        _finish_run(table, run_id, "FAILED", moment, {"failed_step": step, "error": error_record})
        upload = run["input"]
        has_test_resources = "model" in (state.get("steps") or {})
        test_endpoint = run["names"]["test_endpoint"] if has_test_resources else None
        test_endpoint_config = run["names"]["test_endpoint_config"] if has_test_resources else None
        where = f"{upload['uri']} (version {upload.get('version_id')})"
    else:
        run_id = _run_id_from_input(state)
        test_endpoint = test_endpoint_config = None
        where = _input_uri(state) or "(unknown input)"
        claimed = _fail_claimed_run(table, run_id, execution_arn, step, error_record, settings, moment)
        if claimed:
            where = f"{claimed.get('uri')} (version {claimed.get('version_id')})"
    title = STEP_TITLES.get(step, step)
    subject = _subject(f"[stepml] Run {run_id} failed at {title}: {error.get('Error')}")
    message = "\n".join(
        [
            f"Run:       {run_id}",
            f"Step:      {title}",
            f"Error:     {error.get('Error')}",
            f"Cause:     {cause}",
            f"Input:     {where}",
            f"Execution: {execution_arn}",
            "",
            "The test endpoint (if any) is being deleted; production was not changed.",
            f"After fixing the cause, resume with: stepml runs resume {run_id}",
        ]
    )
    return {
        "run_id": run_id,
        "step": step,
        "error": error.get("Error"),
        "cause": cause,
        "subject": subject,
        "message": message + "\n",
        "test_endpoint": test_endpoint,
        "test_endpoint_config": test_endpoint_config,
    }


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
    existing = from_dynamo(table.get_item(Key=_run_key(run_id), ConsistentRead=True).get("Item") or {})
    if existing.get("execution_arn") != execution_arn or existing.get("status") != "RUNNING":
        return None  # not this execution's run: a duplicate must not fail its owner
    run = {key: existing.get(key) for key in ("run_id", "attempt", "execution_arn", "code_version")}
    _write_step(table, run, step, "FAILED", {"ended_at": _iso(now)}, settings, now, error=error_record)
    _finish_run(table, run_id, "FAILED", now, {"failed_step": step, "error": dict(error_record)})
    return existing.get("input") or {}


def _input_uri(state: Mapping[str, Any]) -> str | None:
    detail = state.get("detail") if isinstance(state.get("detail"), Mapping) else None
    if detail and isinstance(detail.get("bucket"), Mapping) and isinstance(detail.get("object"), Mapping):
        return f"s3://{detail['bucket'].get('name')}/{detail['object'].get('key')}"
    return None


def _run_id_from_input(state: Mapping[str, Any]) -> str:
    if "resume_run_id" in state:
        return str(state["resume_run_id"])
    try:
        upload = parse_upload(state)
        return make_run_id(upload["bucket"], upload["key"], upload["version_id"])
    except UploadEventError:
        return "unknown"
