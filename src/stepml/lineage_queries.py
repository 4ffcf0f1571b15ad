"""Questions lineage answers long after a run: what a run did, where a model came from, and
what was made from a dataset object.

Reads the lineage table that ``stepml.lineage`` writes (``pk=RUN#<id>``, ``sk=RUN`` or
``STEP#<step>``) and its ``by_subject`` index, whose ``gsi1pk`` names what a record is about:
``INPUT#s3://bucket/key`` on run records, ``MODEL#<model>`` on training records and
``ENDPOINT#<endpoint>`` on deployment records. Nothing here writes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from botocore.exceptions import ClientError

from stepml.lineage_table import STEP_ORDER, STEP_TITLES, LineageError
from stepml.utils import from_dynamo

SUBJECT_INDEX = "by_subject"
#: SageMaker names a run gives its resources (``stepml.lineage.resource_names``):
#: ``stepml-<run_id>-a<n>`` (training job, model), ``-test-a<n>`` and ``-prod-a<n>`` (endpoints).
_RESOURCE_NAME = re.compile(r"^stepml-(?P<run_id>[a-z0-9-]+-[0-9a-f]{12})-(?:test-|prod-)?a(?P<attempt>[0-9]+)$")
#: Order of a run's steps; ``resolve`` (a failure before preprocessing) comes first.
_ORDER = {step: index for index, step in enumerate(("resolve", *STEP_ORDER))}


class LineageQueryError(LineageError):
    """A lineage question that cannot be answered: bad arguments or nothing recorded."""


class NotInLineageError(LineageQueryError):
    """The run, model, endpoint or object is not in lineage."""


# --- reading --------------------------------------------------------------------------------


def _query_all(table: Any, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        try:
            page = table.query(**kwargs)
        except ClientError as exc:
            raise LineageQueryError(f"cannot read lineage table {table.name}: {exc}") from exc
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return [from_dynamo(item) for item in items]
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _by_subject(table: Any, subject: str) -> list[dict[str, Any]]:
    return _query_all(
        table,
        IndexName=SUBJECT_INDEX,
        KeyConditionExpression="gsi1pk = :subject",
        ExpressionAttributeValues={":subject": subject},
    )


def endpoint_history(table: Any, endpoint: str) -> list[dict[str, Any]]:
    """Every deployment (the pipeline's deploy steps) and rollback lineage holds for
    ``endpoint``, oldest first."""
    return sorted(_by_subject(table, f"ENDPOINT#{endpoint}"), key=lambda item: item.get("recorded_at", ""))


def run_records(table: Any, run_id: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A run's record and its step records by step name; ``NotInLineageError`` if unknown."""
    items = _query_all(table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": f"RUN#{run_id}"})
    run = next((item for item in items if item["sk"] == "RUN"), None)
    if run is None:
        raise NotInLineageError(f"run {run_id} is not in lineage table {table.name} (see `stepml runs`)")
    steps = {item["sk"].removeprefix("STEP#"): item for item in items if item["sk"].startswith("STEP#")}
    return run, steps


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        first = datetime.fromisoformat(start.replace("Z", "+00:00"))
        last = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return round((last - first).total_seconds(), 3)


def _arn_parts(execution_arn: str | None) -> tuple[str, str, str] | None:
    """(partition, region, account) of a Step Functions execution ARN."""
    parts = (execution_arn or "").split(":")
    if len(parts) < 5 or parts[0] != "arn":
        return None
    return parts[1], parts[3], parts[4]


def _job(step: Mapping[str, Any], execution_arn: str | None) -> dict[str, Any] | None:
    """The step's job with its ARN; a Glue job run has no ARN of its own, so the job's is given."""
    job = dict(step.get("job") or {})
    if not job:
        return None
    where = _arn_parts(execution_arn)
    if job.get("type") == "glue" and job.get("name") and where and not job.get("arn"):
        partition, region, account = where
        job["arn"] = f"arn:{partition}:glue:{region}:{account}:job/{job['name']}"
    return job


def _step_view(step: Mapping[str, Any], run_attempt: int, execution_arn: str | None) -> dict[str, Any]:
    name = step.get("step") or step["sk"].removeprefix("STEP#")
    started = step.get("started_at")
    ended = step.get("ended_at") or step.get("recorded_at")
    attempt = int(step.get("attempt", 1))
    return {
        "step": name,
        "title": STEP_TITLES.get(name, name),
        "status": step.get("status"),
        "attempt": attempt,
        # A resumed run reuses what an earlier attempt produced instead of redoing it.
        "reused": step.get("status") == "SUCCEEDED" and attempt < run_attempt,
        "started_at": started,
        "ended_at": ended,
        "seconds": _seconds_between(started, ended),
        "job": _job(step, execution_arn),
        "inputs": step.get("inputs") or {},
        "parameters": step.get("parameters") or {},
        "outputs": step.get("outputs") or {},
        "error": step.get("error"),
        "code_version": step.get("code_version"),
        "attempts": step.get("attempts") or [],
    }


def _approval(run: Mapping[str, Any], steps: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    recorded = (steps.get("approval") or {}).get("outputs") or run.get("approval")
    if not recorded:
        return None
    approval = {key: recorded.get(key) for key in ("decision", "approver", "decided_at", "comment", "approval_id")}
    # Every approver's own decision, recorded since sign-off by N of M approvers.
    approval.update({key: recorded[key] for key in ("required_approvals", "approvers") if recorded.get(key)})
    return approval


def run_tree(table: Any, run_id: str) -> dict[str, Any]:
    """A run and its steps in pipeline order: inputs, outputs, parameters, jobs, timings,
    status and errors of each, and the approval (approver, time, comment)."""
    run, steps = run_records(table, run_id)
    attempt = int(run.get("attempt", 1))
    ordered = sorted(steps.values(), key=lambda s: _ORDER.get(s.get("step") or "", len(_ORDER)))
    return {
        "run_id": run["run_id"],
        "dataset": run.get("dataset"),
        "status": run.get("status"),
        "attempt": attempt,
        "started_at": run.get("started_at"),
        "ended_at": run.get("ended_at"),
        "seconds": _seconds_between(run.get("started_at"), run.get("ended_at")),
        "input": run.get("input"),
        "code_version": run.get("code_version"),
        "execution_arn": run.get("execution_arn"),
        "executions": run.get("executions") or [],
        "resources": run.get("names") or {},
        "failed_step": run.get("failed_step"),
        "error": run.get("error"),
        "outcome_reason": run.get("outcome_reason"),
        "approval": _approval(run, steps),
        "steps": [_step_view(step, attempt, run.get("execution_arn")) for step in ordered],
    }


# --- a model's origin -----------------------------------------------------------------------


def _run_of_model(table: Any, name: str) -> str | None:
    """The run that trained the model ``name``: its training record, else the name itself
    (a resumed run creates its model under the new attempt's name from an earlier training)."""
    trained = sorted(_by_subject(table, f"MODEL#{name}"), key=lambda item: item.get("recorded_at", ""))
    if trained:
        return str(trained[-1]["run_id"])
    found = _RESOURCE_NAME.match(name)
    if found:
        try:
            run_records(table, found["run_id"])
        except NotInLineageError:
            return None
        return found["run_id"]
    return None


def _serving_model(sagemaker_client: Any, endpoint: str) -> str | None:
    """The model an existing endpoint serves now (its first variant's), or None."""
    if sagemaker_client is None:
        return None
    try:
        config_name = sagemaker_client.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
        config = sagemaker_client.describe_endpoint_config(EndpointConfigName=config_name)
    except ClientError:
        return None  # deleted, or no access: lineage's own deployment records answer instead
    variants = config.get("ProductionVariants") or []
    return variants[0].get("ModelName") if variants else None


def _deployment_view(item: Mapping[str, Any]) -> dict[str, Any]:
    """A deploy step's record, or a rollback's (``stepml.rollback``: who, why, from which model)."""
    view = {
        "run_id": item["run_id"],
        "kind": item.get("kind") or "deploy",
        "status": item.get("status"),
        "model": (item.get("inputs") or {}).get("model"),
        "endpoint_config": (item.get("outputs") or {}).get("endpoint_config"),
        "deployed_at": item.get("recorded_at"),
    }
    if item.get("kind") == "rollback":
        inputs = item.get("inputs") or {}
        view |= {
            "who": item.get("who"),
            "reason": item.get("reason"),
            "previous_model": inputs.get("previous_model"),
            "previous_run": inputs.get("previous_run"),
            "ended_at": item.get("ended_at"),
            "detail": item.get("detail"),
        }
    return view


def _served(item: Mapping[str, Any]) -> bool:
    """Whether a deployment record put its model in service (a rollback an alarm undid did not)."""
    return item.get("kind") != "rollback" or item.get("status") == "SUCCEEDED"


def _endpoint_origin(table: Any, name: str, sagemaker_client: Any) -> tuple[str, str | None, dict[str, Any]]:
    """For an endpoint ``name``: the run of the model it serves, that model, and the endpoint
    with every deployment to it. SageMaker answers which model it serves now when the endpoint
    exists; else the last deployment lineage recorded to it does."""
    deployments = endpoint_history(table, name)
    model = serving = _serving_model(sagemaker_client, name)
    run_id = _run_of_model(table, serving) if serving is not None else None
    source = "sagemaker"
    served = [item for item in deployments if _served(item)]
    if run_id is None and served:
        run_id, source = str(served[-1]["run_id"]), "lineage"
        model = (served[-1].get("inputs") or {}).get("model")
    if run_id is None:
        raise NotInLineageError(
            f"no model or endpoint named {name!r} in lineage table {table.name}"
            + (f" (endpoint {name} serves model {serving}, which no run recorded)" if serving else "")
        )
    endpoint = {"name": name, "source": source, "deployments": [_deployment_view(item) for item in deployments]}
    return run_id, model, endpoint


def _data_view(run: Mapping[str, Any], preprocess: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset object a run read and what preprocessing made of it."""
    upload = run.get("input") or {}
    outputs = preprocess.get("outputs") or {}
    return {
        "uri": upload.get("uri"),
        "version_id": upload.get("version_id"),
        "etag": upload.get("etag"),
        "bytes": upload.get("size"),
        "fingerprint": outputs.get("fingerprint"),
        "row_counts": outputs.get("row_counts"),
        "preprocess_job": _job(preprocess, run.get("execution_arn")),
    }


def _training_view(train: Mapping[str, Any], execution_arn: str | None) -> dict[str, Any]:
    parameters = train.get("parameters") or {}
    outputs = train.get("outputs") or {}
    return {
        "job": _job(train, execution_arn),
        "status": train.get("status"),
        "image": parameters.get("training_image"),
        "instance": parameters.get("training"),
        "model_data": outputs.get("model_data"),
        "final_metrics": outputs.get("final_metrics"),
        "started_at": train.get("started_at"),
        "ended_at": train.get("ended_at"),
    }


def _baseline_view(train: Mapping[str, Any], preprocess: Mapping[str, Any]) -> dict[str, Any] | None:
    """The model's Model Monitor baseline (statistics.json, constraints.json): recorded with the
    model by training, else by preprocessing (runs recorded before the baseline existed: None)."""
    return (train.get("outputs") or {}).get("baseline") or (preprocess.get("outputs") or {}).get("baseline")


def _evaluation_view(evaluate: Mapping[str, Any]) -> dict[str, Any]:
    parameters = evaluate.get("parameters") or {}
    outputs = evaluate.get("outputs") or {}
    return {
        "status": evaluate.get("status"),
        "metric": parameters.get("metric"),
        "threshold": parameters.get("threshold"),
        "metrics": outputs.get("metrics"),
        "passed": outputs.get("passed"),
        "report": outputs.get("report"),
    }


def _deployed_to(deploy: Mapping[str, Any]) -> str | None:
    """The endpoint a run's deployment step put its model on, if that step succeeded."""
    return (deploy.get("outputs") or {}).get("endpoint") if deploy.get("status") == "SUCCEEDED" else None


def model_lineage(table: Any, name: str, *, sagemaker_client: Any = None) -> dict[str, Any]:
    """Where a model (by model name, or the endpoint serving it) came from: the dataset object
    and version, its fingerprint, the code version, hyperparameters, training job, metrics and
    approver. For an endpoint, the model it serves now (asked of SageMaker when the endpoint
    exists) else the last one lineage deployed to it, and every deployment to it."""
    endpoint = None
    model: str | None = name
    run_id = _run_of_model(table, name)
    if run_id is None:
        run_id, model, endpoint = _endpoint_origin(table, name, sagemaker_client)
    run, steps = run_records(table, run_id)
    train = steps.get("train") or {}
    model = model or (run.get("names") or {}).get("model")
    if endpoint is not None:
        endpoint["model"] = model
    return {
        "model": model,
        "asked_for": name,
        "endpoint": endpoint,
        "run_id": run["run_id"],
        "dataset": run.get("dataset"),
        "status": run.get("status"),
        "data": _data_view(run, steps.get("preprocess") or {}),
        "code_version": train.get("code_version") or run.get("code_version"),
        "hyperparameters": (train.get("parameters") or {}).get("hyperparameters") or run.get("hyperparameters"),
        "training": _training_view(train, run.get("execution_arn")),
        "baseline": _baseline_view(train, steps.get("preprocess") or {}),
        "evaluation": _evaluation_view(steps.get("evaluate") or {}),
        "approval": _approval(run, steps),
        "deployed_to": _deployed_to(steps.get("deploy") or {}),
    }


# --- what a dataset object produced ------------------------------------------------------------


def parse_object_uri(uri: str) -> tuple[str, str | None]:
    """``s3://bucket/key`` (with an optional ``?versionId=``) as (``s3://bucket/key``, version)."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
        raise LineageQueryError(f"{uri!r} is not an S3 object URI (s3://BUCKET/KEY[?versionId=VERSION])")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"versionId"})
    if unknown or len(query.get("versionId", [])) > 1:
        raise LineageQueryError(f"{uri!r}: the only query parameter an object URI takes is one versionId")
    version = query["versionId"][0] if "versionId" in query else None
    return f"s3://{parts.netloc}{parts.path}", version


def dataset_lineage(table: Any, uri: str) -> dict[str, Any]:
    """Every run of an uploaded object (of one version with ``?versionId=``), oldest first,
    with the model each produced, its metrics, approval and deployment."""
    object_uri, version = parse_object_uri(uri)
    runs = _by_subject(table, f"INPUT#{object_uri}")
    if version is not None:
        runs = [run for run in runs if (run.get("input") or {}).get("version_id") == version]
    if not runs:
        shown = f"{object_uri} (version {version})" if version is not None else object_uri
        raise NotInLineageError(f"no run in lineage table {table.name} read {shown}")
    ordered = sorted(runs, key=lambda item: item.get("started_at", ""))
    return {"uri": object_uri, "version_id": version, "runs": [_dataset_run_entry(table, run) for run in ordered]}


def _dataset_run_entry(table: Any, run: Mapping[str, Any]) -> dict[str, Any]:
    """One run of a dataset object: the model it trained, its metrics, approval and deployment."""
    _, steps = run_records(table, run["run_id"])
    train = steps.get("train") or {}
    trained = train.get("status") == "SUCCEEDED"
    evaluate = (steps.get("evaluate") or {}).get("outputs") or {}
    approval = _approval(run, steps) or {}
    return {
        "run_id": run["run_id"],
        "version_id": (run.get("input") or {}).get("version_id"),
        "etag": (run.get("input") or {}).get("etag"),
        "status": run.get("status"),
        "started_at": run.get("started_at"),
        "ended_at": run.get("ended_at"),
        "fingerprint": ((steps.get("preprocess") or {}).get("outputs") or {}).get("fingerprint"),
        "model": (run.get("names") or {}).get("model") if trained else None,
        "training_job": (train.get("job") or {}).get("name") if trained else None,
        "model_data": (train.get("outputs") or {}).get("model_data") if trained else None,
        "metrics": evaluate.get("metrics"),
        "approver": approval.get("approver"),
        "decision": approval.get("decision"),
        "deployed_to": _deployed_to(steps.get("deploy") or {}),
        "failed_step": run.get("failed_step"),
        "error": (run.get("error") or {}).get("cause"),
    }
