"""Rollback: which earlier approved model a production endpoint goes back to, and its lineage.

``plan_rollback`` answers, from lineage and SageMaker, what ``stepml rollback`` would do: the
model the endpoint serves now, the model it goes back to (the one a named run deployed, or the
newest approved deployment that is neither the model serving now nor one a rollback already
moved away from) and the endpoint config that serves it, or the CreateEndpointConfig request
that rebuilds that config from the run's lineage when it was deleted. It refuses, with a
``RollbackError`` naming what is missing, an unknown endpoint, an update in progress, a run
that was never approved or never deployed to the endpoint, a model that no longer exists, and
an endpoint with nothing earlier to go back to.

``record_rollback`` writes the rollback to lineage beside the pipeline's deploy records: one
item per rollback (``pk=ENDPOINT#<endpoint>``, ``sk=ROLLBACK#<time>#<id>``) indexed under the
endpoint (``gsi1pk=ENDPOINT#<endpoint>``) as the deploy step's records are, so
``lineage_queries.model_lineage`` lists it among the endpoint's deployments. It names who asked
(the caller's IAM ARN), why, the previous and the new model, and how the update ended.
Nothing here calls UpdateEndpoint: the CLI (``stepml.cli.rollback``) does, and waits.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from stepml.lineage_queries import NotInLineageError, endpoint_history, run_records
from stepml.lineage_table import LineageError, put_new, update_fields
from stepml.utils import iso_utc, utc_now

#: The state of statemachine/pipeline.asl.json whose DeploymentConfig a rollback reuses.
UPDATE_STATE = "Update production endpoint"
#: What the pipeline's data capture records (the ASL's "Create production endpoint config").
_CAPTURE_OPTIONS = [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]


class RollbackError(LineageError):
    """A rollback that cannot be done; the message names what is missing or in the way."""


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback of ``endpoint`` does: from the serving model to the target run's model."""

    endpoint: str
    current_config: str
    current_model: str | None
    current_run: str | None
    target_run: str
    target_model: str
    target_config: str
    #: The CreateEndpointConfig request that rebuilds ``target_config`` (it was deleted); else None.
    recreate_config: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def _is_rollback(item: Mapping[str, Any]) -> bool:
    return item.get("kind") == "rollback"


def _model_of(item: Mapping[str, Any]) -> str | None:
    return (item.get("inputs") or {}).get("model")


def _approved(run: Mapping[str, Any], steps: Mapping[str, Any]) -> bool:
    approval = run.get("approval") or ((steps.get("approval") or {}).get("outputs")) or {}
    return str(approval.get("decision") or "").lower() in ("approve", "approved")


def _serving(sagemaker: Any, endpoint: str) -> tuple[str, str | None]:
    """(endpoint config, model) the endpoint serves; refuses a missing or busy endpoint."""
    try:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ValidationException":
            raise RollbackError(f"endpoint {endpoint} does not exist ({exc.response['Error'].get('Message')})") from exc
        raise
    status = described["EndpointStatus"]
    if status != "InService":
        raise RollbackError(
            f"endpoint {endpoint} is {status}: an update is already in progress or it is not serving; "
            "wait until it is InService (stepml rollback never interrupts an update)"
        )
    config_name = described["EndpointConfigName"]
    try:
        variants = sagemaker.describe_endpoint_config(EndpointConfigName=config_name).get("ProductionVariants") or []
    except ClientError:
        variants = []
    return config_name, (variants[0].get("ModelName") if variants else None)


def _deploy_of(history: list[dict[str, Any]], run_id: str) -> dict[str, Any] | None:
    """The run's last successful pipeline deployment to the endpoint."""
    found = [
        item
        for item in history
        if not _is_rollback(item) and item.get("run_id") == run_id and item.get("status") == "SUCCEEDED"
    ]
    return found[-1] if found else None


def _named_target(table: Any, endpoint: str, history: list[dict[str, Any]], run_id: str) -> dict[str, Any]:
    """The deployment of ``--to RUN``, refusing a run never approved or never deployed here."""
    try:
        run, steps = run_records(table, run_id)
    except NotInLineageError as exc:
        raise RollbackError(str(exc)) from exc
    if not _approved(run, steps):
        decision = (run.get("approval") or {}).get("decision")
        raise RollbackError(
            f"run {run_id} was never approved (status {run.get('status')}"
            + (f", decision {decision}" if decision else ", no approval decision")
            + "): only an approved model may serve production"
        )
    deploy = _deploy_of(history, run_id)
    if deploy is None:
        raise RollbackError(
            f"run {run_id} was approved but never deployed to {endpoint} (no successful deploy record in "
            "lineage): a rollback only returns to a model that served this endpoint"
        )
    return deploy


def _previous_target(
    table: Any, endpoint: str, history: list[dict[str, Any]], current_model: str | None
) -> dict[str, Any]:
    """The newest approved deployment that neither serves now nor was rolled back from."""
    rolled_away = {
        (item.get("inputs") or {}).get("previous_model")
        for item in history
        if _is_rollback(item) and item.get("status") == "SUCCEEDED"
    }
    for item in reversed(history):
        if _is_rollback(item) or item.get("status") != "SUCCEEDED":
            continue
        model = _model_of(item)
        if model in (current_model, None) or model in rolled_away:
            continue
        run, steps = run_records(table, item["run_id"])
        if _approved(run, steps):
            return item
    deployed = sorted({m for m in (_model_of(i) for i in history if not _is_rollback(i)) if m})
    raise RollbackError(
        f"no previous approved model to roll back to on {endpoint}: lineage records deployments of "
        f"{', '.join(deployed) or 'no model'}, serving now {current_model or 'an unknown model'}"
        + (f", rolled back from {', '.join(sorted(m for m in rolled_away if m))}" if rolled_away - {None} else "")
        + " (name one with --to RUN)"
    )


def _run_of(history: list[dict[str, Any]], model: str | None) -> str | None:
    for item in reversed(history):
        if model is not None and _model_of(item) == model:
            return str(item["run_id"])
    return None


def plan_rollback(table: Any, sagemaker: Any, endpoint: str, to_run: str | None = None) -> RollbackPlan:
    """What rolling ``endpoint`` back does (see the module docstring); ``RollbackError`` when it cannot."""
    current_config, current_model = _serving(sagemaker, endpoint)
    history = endpoint_history(table, endpoint)
    if to_run:
        target = _named_target(table, endpoint, history, to_run)
    else:
        target = _previous_target(table, endpoint, history, current_model)
    target_model = _model_of(target) or ""
    if target_model == current_model:
        raise RollbackError(f"endpoint {endpoint} already serves model {target_model} of run {target['run_id']}")
    _require_model(sagemaker, target_model, str(target["run_id"]))
    config_name = str((target.get("outputs") or {}).get("endpoint_config") or "")
    recreate, notes = None, []
    if not config_name or not _config_exists(sagemaker, config_name):
        run, _ = run_records(table, str(target["run_id"]))
        recreate = endpoint_config_request(run, target_model, config_name)
        notes.append(
            f"endpoint config {config_name or '(none recorded)'} no longer exists: it is recreated as "
            f"{recreate['EndpointConfigName']} from run {target['run_id']}'s lineage"
        )
        config_name = recreate["EndpointConfigName"]
    return RollbackPlan(
        endpoint=endpoint,
        current_config=current_config,
        current_model=current_model,
        current_run=_run_of(history, current_model),
        target_run=str(target["run_id"]),
        target_model=target_model,
        target_config=config_name,
        recreate_config=recreate,
        notes=notes,
    )


def _require_model(sagemaker: Any, model: str, run_id: str) -> None:
    """The target model must still exist: a rollback reuses the CreateModel output, never retrains."""
    try:
        sagemaker.describe_model(ModelName=model)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ValidationException":
            raise
        raise RollbackError(
            f"model {model} of run {run_id} no longer exists in SageMaker (CreateModel's output was deleted): "
            f"recreate it from the run's training output (stepml lineage model {model}) or pick another run with --to"
        ) from exc


def _config_exists(sagemaker: Any, name: str) -> bool:
    try:
        sagemaker.describe_endpoint_config(EndpointConfigName=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ValidationException":
            return False
        raise
    return True


def endpoint_config_request(run: Mapping[str, Any], model: str, original: str) -> dict[str, Any]:
    """CreateEndpointConfig for ``model`` as the pipeline's "Create production endpoint config"
    makes it, from the run's lineage record (hosting settings, data capture path)."""
    hosting = (run.get("config") or {}).get("hosting") or {}
    paths = run.get("paths") or {}
    if not hosting.get("instance_type") or not paths.get("data_capture"):
        raise RollbackError(
            f"run {run.get('run_id')}'s lineage lacks what its endpoint config needs "
            f"(config.hosting.instance_type {hosting.get('instance_type')!r}, paths.data_capture "
            f"{paths.get('data_capture')!r}): the config cannot be recreated"
        )
    base = original or f"stepml-{run.get('run_id')}-prod"
    return {
        "EndpointConfigName": f"{base[:44]}-rollback-{uuid.uuid4().hex[:8]}",
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InstanceType": hosting["instance_type"],
                "InitialInstanceCount": int(hosting.get("instance_count") or 1),
            }
        ],
        "DataCaptureConfig": {
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": paths["data_capture"],
            "CaptureOptions": _CAPTURE_OPTIONS,
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
        },
        "Tags": [{"Key": "stepml:run-id", "Value": str(run.get("run_id"))}],
    }


def deployment_config(definition: str) -> dict[str, Any]:
    """The blue/green DeploymentConfig of the pipeline's own update (its definition as deployed,
    substitutions filled), so a rollback rolls out and rolls back exactly as a deploy does.

    A number the template fills in (the baking period) stands in the definition as
    ``"Key.$": "States.StringToJson('600')"``, since a substitution can only fill a string; it is
    evaluated here as Step Functions would. Any other path or intrinsic depends on a run's input
    and is refused."""
    try:
        states = json.loads(definition)["States"]
        config = states[UPDATE_STATE]["Parameters"]["DeploymentConfig"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RollbackError(f"the state machine has no {UPDATE_STATE!r} state with a DeploymentConfig") from exc
    if "${" in json.dumps(config):
        raise RollbackError(f"the {UPDATE_STATE!r} DeploymentConfig has unfilled substitutions: {config}")
    return resolve_literal_parameters(config)


_STRING_TO_JSON = re.compile(r"^States\.StringToJson\('([^']*)'\)$")


def resolve_literal_parameters(parameters: Any) -> Any:
    """``parameters`` with each ``"Key.$": "States.StringToJson('<literal>')"`` replaced by
    ``"Key": <the literal as JSON>``; ``RollbackError`` for any other ``.$`` field."""
    if isinstance(parameters, list):
        return [resolve_literal_parameters(item) for item in parameters]
    if not isinstance(parameters, Mapping):
        return parameters
    resolved: dict[str, Any] = {}
    for key, value in parameters.items():
        if not key.endswith(".$"):
            resolved[key] = resolve_literal_parameters(value)
            continue
        match = _STRING_TO_JSON.match(value) if isinstance(value, str) else None
        try:
            resolved[key[:-2]] = json.loads(match.group(1)) if match else None
        except ValueError:
            match = None
        if match is None:
            raise RollbackError(f"the {UPDATE_STATE!r} DeploymentConfig takes {key} from a run's input: {value!r}")
    return resolved


def record_rollback(
    table: Any, plan: RollbackPlan, *, who: str, reason: str, now: datetime | None = None
) -> dict[str, str]:
    """Write the rollback's lineage item (status ``IN_PROGRESS``); returns its key."""
    moment = now or utc_now()
    stamp = iso_utc(moment)
    key = {"pk": f"ENDPOINT#{plan.endpoint}", "sk": f"ROLLBACK#{stamp}#{uuid.uuid4().hex[:8]}"}
    item = {
        **key,
        "kind": "rollback",
        "step": "rollback",
        "status": "IN_PROGRESS",
        "run_id": plan.target_run,
        "who": who,
        "reason": reason,
        "inputs": {
            "model": plan.target_model,
            "previous_model": plan.current_model,
            "previous_run": plan.current_run,
            "previous_endpoint_config": plan.current_config,
        },
        "outputs": {
            "endpoint": plan.endpoint,
            "endpoint_config": plan.target_config,
            "recreated_config": plan.recreate_config is not None,
        },
        "notes": plan.notes,
        "started_at": stamp,
        "recorded_at": stamp,
        "gsi1pk": f"ENDPOINT#{plan.endpoint}",
        "gsi1sk": f"ROLLBACK#{stamp}",
    }
    if not put_new(table, item):
        raise RollbackError(f"a rollback record {key['sk']} already exists for {plan.endpoint}")
    # The model registry, once it exists, follows here: the target's model package Approved
    # again and the rolled-back one marked, in step with this record.
    return key


def finish_rollback(
    table: Any, key: Mapping[str, str], status: str, detail: str | None = None, now: datetime | None = None
) -> None:
    """The rollback ended: ``SUCCEEDED``, ``ROLLED_BACK`` (an alarm sent it back), ``FAILED`` or ``TIMED_OUT``."""
    update_fields(table, key, {"status": status, "detail": detail, "ended_at": iso_utc(now or utc_now())})
