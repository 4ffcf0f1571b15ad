"""The SageMaker Model Registry: one model package group per dataset, one version per run.

Every evaluated model becomes a version of the dataset's group ``<prefix>-<dataset>`` (the
prefix is the stack's name), so the decision a person takes on the review page also shows in
SageMaker Studio's model registry. Datasets are onboarded at runtime, so a group cannot be a
template resource: the Evaluate function creates it on first use.

The version's life follows the run:

- Evaluate registers it ``PendingManualApproval`` with the evaluation report as its
  ModelQuality statistics, the container the test endpoint served, and the run's lineage as
  customer metadata (run id, data object and version, code version, training job).
- The approval decision sets ``Approved`` or ``Rejected`` with an ApprovalDescription naming
  who decided (the approval API at once, RecordStep again as the decision is recorded).
- The evaluation gate and an approval that expires set ``Rejected`` (RecordStep, at the
  run's end). A run that *fails* keeps its status: it can be resumed, and the resumed attempt
  reuses the same version.

One run is one version however often it is evaluated: lineage is asked first (the run item's
``model_package``), then the group's versions created since the run started (each version's
description begins with the run's marker, which covers a Lambda that died between
CreateModelPackage and lineage's record of it); only then is a version created.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stepml.lineage_table import get_item, run_key, step_key

PENDING = "PendingManualApproval"
APPROVED = "Approved"
REJECTED = "Rejected"
#: The registry status of each approval decision (``approval_records.DECISION_STATUSES`` keys).
DECISION_STATUS = {"approve": APPROVED, "reject": REJECTED}
CSV = "text/csv"

# CreateModelPackageGroup's ModelPackageGroupName; ModelPackageDescription and
# ApprovalDescription lengths; a CustomerMetadataProperties value's length.
_GROUP_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_MAX_DESCRIPTION = 1024
_MAX_METADATA_VALUE = 256
#: What CreateModelPackageGroup answers for a group that exists (see ``ModelRegistry.ensure_group``).
_GROUP_EXISTS_CODES = frozenset({"ValidationException", "ResourceInUse", "ConflictException"})


class RegistryError(RuntimeError):
    """The model registry could not be read or written; the message names the group or package."""


def group_name(prefix: str, dataset: str) -> str:
    """The model package group of a dataset: ``<prefix>-<dataset>``, checked against SageMaker's rule."""
    name = f"{prefix}-{dataset}"
    if not _GROUP_NAME.match(name):
        raise RegistryError(
            f"model package group {name!r}: SageMaker allows 1-63 letters, digits and single dashes; "
            "use a shorter stack name or dataset name"
        )
    return name


def run_marker(run_id: str) -> str:
    """How a version's description begins, naming the run it was registered for."""
    return f"stepml run {run_id}:"


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decision_description(status: str, who: str | None, when: str | None, comment: str | None) -> str:
    """The ApprovalDescription of an approver's decision: who decided, when, and their comment."""
    verb = "Approved" if status == APPROVED else "Rejected"
    text = f"{verb} by {who or 'an unknown approver'}" + (f" at {when}" if when else "")
    return clip(text + (f": {comment}" if comment else ""), _MAX_DESCRIPTION)


def _error(exc: ClientError | BotoCoreError) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Unknown')}: {error.get('Message', str(exc))}"
    return str(exc)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def version_of(arn: str) -> int | None:
    """The version number at the end of a versioned model package's ARN."""
    tail = arn.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


# --- what a version holds ---------------------------------------------------------------


def _metadata(run: Mapping[str, Any], training: Mapping[str, Any]) -> dict[str, str]:
    upload = run.get("input") or {}
    values = {
        "stepml:run-id": run.get("run_id"),
        "stepml:dataset": run.get("dataset"),
        "stepml:attempt": run.get("attempt"),
        "stepml:data-uri": upload.get("uri"),
        "stepml:data-version-id": upload.get("version_id"),
        "stepml:code-version": run.get("code_version"),
        "stepml:training-job": training.get("job_name"),
        "stepml:execution-arn": run.get("execution_arn"),
    }
    # A value longer than SageMaker keeps (an S3 key can be 1,024 characters) is left out, not cut:
    # a cut URI would name another object.
    kept = {key: str(value) for key, value in values.items() if value not in (None, "")}
    return {key: value for key, value in kept.items() if len(value) <= _MAX_METADATA_VALUE}


def _description(run_id: str, evaluation: Mapping[str, Any]) -> str:
    value = evaluation.get("value")
    shown = f"{value:.6g}" if isinstance(value, int | float) else str(value)
    gate = "passed" if evaluation.get("passed") else "did not pass"
    text = (
        f"{run_marker(run_id)} {evaluation.get('metric')} {shown} on {evaluation.get('rows')} test rows; "
        f"the evaluation gate {gate}"
    )
    return clip(text, _MAX_DESCRIPTION)


def package_request(
    group: str,
    run: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    training: Mapping[str, Any],
    containers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The CreateModelPackage request of a run's evaluated model (a version of ``group``).

    ``training`` is what lineage recorded of the training step: ``job_name``, ``image`` (the
    built-in XGBoost image the template resolves per region) and ``model_data``. ``containers``
    are the SageMaker model's (``model_containers``: the inference pipeline the endpoints serve,
    preprocessor first); without them the package holds the trained model alone.
    """
    for field in ("image", "model_data"):
        if not training.get(field):
            raise RegistryError(f"run {run.get('run_id')}: lineage has no training {field} to register")
    hosting = (run.get("config") or {}).get("hosting") or {}
    inference: dict[str, Any] = {
        "Containers": containers or [{"Image": training["image"], "ModelDataUrl": training["model_data"]}],
        "SupportedContentTypes": [CSV],
        "SupportedResponseMIMETypes": [CSV],
    }
    if hosting.get("instance_type"):
        inference["SupportedRealtimeInferenceInstanceTypes"] = [hosting["instance_type"]]
    request: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": _description(str(run["run_id"]), evaluation),
        "InferenceSpecification": inference,
        "ModelApprovalStatus": PENDING,
        "ModelMetrics": {
            "ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": evaluation["report_uri"]}}
        },
        "CustomerMetadataProperties": _metadata(run, training),
    }
    provenance = {"CommitId": run.get("code_version"), "GeneratedBy": run.get("execution_arn")}
    if any(provenance.values()):
        request["MetadataProperties"] = {key: str(value) for key, value in provenance.items() if value}
    return request


# --- lineage: what was registered, and what training made -------------------------------


@dataclass(frozen=True)
class RegistrationContext:
    """What lineage knows before registering: the version already recorded for the run (if
    any), the training step's outputs, and when the run started."""

    recorded: Mapping[str, Any] | None
    training: Mapping[str, Any]
    started_at: datetime | None


def registration_context(table: Any, run_id: str) -> RegistrationContext:
    """Read the run item and its training record from the lineage table."""
    try:
        run_item = get_item(table, run_key(run_id))
        train = get_item(table, step_key(run_id, "train"))
    except (ClientError, BotoCoreError) as exc:
        raise RegistryError(f"run {run_id}: cannot read lineage: {_error(exc)}") from exc
    recorded = run_item.get("model_package")
    outputs, job = train.get("outputs") or {}, train.get("job") or {}
    training = {
        "job_name": job.get("name"),
        "image": (train.get("parameters") or {}).get("training_image"),
        "model_data": outputs.get("model_data") or (train.get("result") or {}).get("model_data"),
    }
    started = run_item.get("started_at")
    return RegistrationContext(
        recorded=recorded if isinstance(recorded, Mapping) and recorded.get("arn") else None,
        training=training,
        started_at=datetime.fromisoformat(started.replace("Z", "+00:00")) if started else None,
    )


# --- the registry ---------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRegistry:
    """The model package groups of one stack (``group_prefix``: the stack's name) in SageMaker."""

    sagemaker_client: Any
    group_prefix: str = ""

    def ensure_group(self, dataset: str) -> str:
        """Create the dataset's group unless it exists; returns its name.

        Creating is tried every time instead of asking first: it is one call either way, and a
        group created by a concurrent run between a describe and a create needs no second path.
        SageMaker refuses a group that exists with a ValidationException ("already exists"), which
        is the answer wanted here; the conflict codes are taken the same way. Any of them is checked
        at once by the CreateModelPackage that follows, which fails, naming the group, if the group
        truly could not be made.
        """
        name = group_name(self.group_prefix, dataset)
        try:
            self.sagemaker_client.create_model_package_group(
                ModelPackageGroupName=name,
                ModelPackageGroupDescription=clip(f"stepml models of dataset {dataset}", _MAX_DESCRIPTION),
                Tags=[{"Key": "stepml:dataset", "Value": dataset}],
            )
        except ClientError as exc:
            if _code(exc) not in _GROUP_EXISTS_CODES:
                failed = f"model package group {name}: CreateModelPackageGroup failed"
                raise RegistryError(f"{failed}: {_error(exc)}") from exc
        except BotoCoreError as exc:
            raise RegistryError(f"model package group {name}: CreateModelPackageGroup failed: {_error(exc)}") from exc
        return name

    def find_version(self, group: str, run_id: str, since: datetime | None) -> dict[str, Any] | None:
        """The version of ``group`` registered for ``run_id`` (created after ``since``), if any."""
        marker = run_marker(run_id)
        request: dict[str, Any] = {"ModelPackageGroupName": group, "SortBy": "CreationTime", "MaxResults": 100}
        if since is not None:
            request["CreationTimeAfter"] = since
        try:
            for page in self.sagemaker_client.get_paginator("list_model_packages").paginate(**request):
                for summary in page.get("ModelPackageSummaryList", []):
                    if str(summary.get("ModelPackageDescription", "")).startswith(marker):
                        return _summary(group, summary)
        except (ClientError, BotoCoreError) as exc:
            raise RegistryError(f"model package group {group}: ListModelPackages failed: {_error(exc)}") from exc
        return None

    def register(
        self, run: Mapping[str, Any], evaluation: Mapping[str, Any], context: RegistrationContext
    ) -> dict[str, Any]:
        """The run's version: the one lineage recorded or the group holds for it, else a new one
        (``PendingManualApproval``). Returns ``{"arn", "group", "version", "status", "created"}``."""
        if context.recorded is not None:
            return {**dict(context.recorded), "created": False}
        group = self.ensure_group(str(run["dataset"]))
        found = self.find_version(group, str(run["run_id"]), context.started_at)
        if found is not None:
            return {**found, "created": False}
        containers = self.model_containers(str((run.get("names") or {}).get("model") or ""))
        request = package_request(group, run, evaluation, context.training, containers)
        try:
            arn = self.sagemaker_client.create_model_package(**request)["ModelPackageArn"]
        except (ClientError, BotoCoreError) as exc:
            raise RegistryError(f"model package group {group}: CreateModelPackage failed: {_error(exc)}") from exc
        return {"arn": arn, "group": group, "version": version_of(arn), "status": PENDING, "created": True}

    def model_containers(self, model_name: str) -> list[dict[str, Any]] | None:
        """The containers of SageMaker model ``model_name`` (DescribeModel) as a model package's
        container definitions: what the test endpoint served is what the version registers."""
        if not model_name:
            return None
        try:
            model = self.sagemaker_client.describe_model(ModelName=model_name)
        except (ClientError, BotoCoreError) as exc:
            raise RegistryError(f"model {model_name}: DescribeModel failed: {_error(exc)}") from exc
        found = model.get("Containers") or ([model["PrimaryContainer"]] if model.get("PrimaryContainer") else [])
        kept = ("Image", "ModelDataUrl", "Environment")
        return [{key: container[key] for key in kept if container.get(key)} for container in found] or None

    def set_status(self, arn: str, status: str, description: str) -> None:
        """UpdateModelPackage: the version's approval status, and why (``description``)."""
        try:
            self.sagemaker_client.update_model_package(
                ModelPackageArn=arn, ModelApprovalStatus=status, ApprovalDescription=clip(description, _MAX_DESCRIPTION)
            )
        except (ClientError, BotoCoreError) as exc:
            raise RegistryError(f"model package {arn}: UpdateModelPackage to {status} failed: {_error(exc)}") from exc


def _summary(group: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    arn = str(summary["ModelPackageArn"])
    version = summary.get("ModelPackageVersion")
    return {
        "arn": arn,
        "group": group,
        "version": int(version) if version is not None else version_of(arn),
        "status": summary.get("ModelApprovalStatus"),
    }
