"""Retrain on drift: a production drift alarm starts the pipeline on the dataset's newest data.

The deploy path puts one CloudWatch alarm per feature on production's drift metrics
(``<stack>-data-drift-<feature>``). CloudWatch sends every state change to EventBridge's default
bus as a ``CloudWatch Alarm State Change`` event; the stack's ``DriftRetrainRule`` sends those of
its drift alarms entering ALARM to the DriftRetrain function, whose handler calls
``DriftRetrainer.decide``. It starts a run only when all of these hold:

- the alarm watches the stack's production endpoint, and lineage knows the run whose model that
  endpoint serves: that run's dataset is the one that drifted;
- the dataset's config opts in (``retrain_on_drift: true``; off by default);
- no run of the dataset is in flight: no RUNNING execution of the pipeline stands for it, and no
  drift retrain it started before is still running. One monitoring execution usually raises
  several feature alarms at once, so the claim is a conditional write on the dataset's
  ``RETRAIN#<dataset>`` item in the lineage table: of concurrent decisions exactly one wins;
- the dataset has data: the newest object version under ``incoming/<dataset>/``.

The run it starts is the pipeline's ordinary run with an identity of its own (``drift_run_id``
of the dataset and the alarm event, never the upload's id, whose run already exists) and a
``trigger`` in lineage naming the alarm, its endpoint, the reason and the event. An alarm that
finds a run in flight is noted on the dataset's ``RETRAIN#<dataset>`` item (``alarms_ignored``,
with the run it found) rather than dropped silently: the run's own item may not exist yet when
several alarms arrive at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from stepml.config import INCOMING_PREFIX, DatasetConfigError, Settings
from stepml.lineage import LineageStore
from stepml.lineage_config import load_dataset_config
from stepml.lineage_queries import NotInLineageError, model_lineage
from stepml.lineage_runs import dataset_of_key, drift_run_id, make_run_id, parse_upload
from stepml.lineage_table import LineageError, UploadEventError, get_item, run_key, update_fields
from stepml.uploads import SUPPORTED_EXTENSIONS
from stepml.utils import iso_utc

ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"
ALARM_SOURCE = "aws.cloudwatch"

#: How long a claim whose execution does not exist yet still stands: the claim is written before
#: StartExecution, and a decision must not take it over in between.
CLAIM_START_SECONDS = 300

#: The decisions ``decide`` returns, as ``{"decision": ...}``.
STARTED, IN_FLIGHT, OPTED_OUT, NO_DATA, NOT_OURS = "started", "in_flight", "opted_out", "no_data", "not_ours"


class DriftRetrainError(LineageError):
    """A decision could not be made (a service refused a call); the message names the call."""


class AlarmEventError(ValueError):
    """The event is not a CloudWatch alarm entering ALARM."""


def alarm_trigger(event: Mapping[str, Any]) -> dict[str, str]:
    """What a ``CloudWatch Alarm State Change`` event says of the alarm: name, ARN, the endpoint
    its metric's ``Endpoint`` dimension names, the new state's reason and time, the event id.
    Raises ``AlarmEventError`` for another event or an alarm not entering ALARM."""
    if event.get("source") != ALARM_SOURCE or event.get("detail-type") != ALARM_STATE_CHANGE:
        raise AlarmEventError(
            f"not a {ALARM_STATE_CHANGE} event: source {event.get('source')!r}, "
            f"detail-type {event.get('detail-type')!r}"
        )
    detail = event.get("detail") or {}
    state = detail.get("state") or {}
    if state.get("value") != "ALARM":
        raise AlarmEventError(f"alarm {detail.get('alarmName')!r} entered {state.get('value')!r}, not ALARM")
    endpoint = ""
    for metric in (detail.get("configuration") or {}).get("metrics") or []:
        dimensions = ((metric.get("metricStat") or {}).get("metric") or {}).get("dimensions") or {}
        endpoint = endpoint or str(dimensions.get("Endpoint") or "")
    resources = event.get("resources") or [""]
    return {
        "alarm_name": str(detail.get("alarmName") or ""),
        "alarm_arn": str(resources[0]),
        "endpoint": endpoint,
        "reason": str(state.get("reason") or ""),
        "changed_at": str(state.get("timestamp") or event.get("time") or ""),
        "event_id": str(event.get("id") or ""),
    }


def _order(version: Mapping[str, Any]) -> tuple[Any, str]:
    return version["LastModified"], version["Key"]


def newest_upload(s3_client: Any, bucket: str, dataset: str) -> dict[str, Any] | None:
    """The newest current object version (by LastModified, then key) directly under
    ``incoming/<dataset>/`` that the pipeline can read (CSV or Parquet, not empty), in
    the shape ``lineage_runs.parse_upload`` gives; None when the dataset has none."""
    prefix = f"{INCOMING_PREFIX}{dataset}/"
    newest: dict[str, Any] | None = None
    try:
        for page in s3_client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            for version in page.get("Versions", []):
                readable = version["Key"].lower().endswith(SUPPORTED_EXTENSIONS) and version.get("Size", 0) > 0
                current = version.get("IsLatest") and readable and "/" not in version["Key"][len(prefix) :]
                # S3 keeps LastModified to the second: a tie goes to the later key, so the choice is stable.
                if current and (newest is None or _order(version) > _order(newest)):
                    newest = version
    except ClientError as exc:
        raise DriftRetrainError(f"cannot list s3://{bucket}/{prefix}: {exc}") from exc
    if newest is None:
        return None
    return {
        "bucket": bucket,
        "key": newest["Key"],
        "version_id": newest.get("VersionId") or "null",
        "etag": str(newest.get("ETag") or "").strip('"'),
        "size": int(newest.get("Size") or 0),
        "uri": f"s3://{bucket}/{newest['Key']}",
    }


def execution_arn_of(state_machine_arn: str, name: str) -> str:
    """The ARN an execution named ``name`` of a standard state machine has."""
    head, _, machine = state_machine_arn.partition(":stateMachine:")
    return f"{head}:execution:{machine}:{name}"


def _retrain_key(dataset: str) -> dict[str, str]:
    return {"pk": f"RETRAIN#{dataset}", "sk": "RETRAIN"}


@dataclass(frozen=True)
class DriftRetrainer:
    """The DriftRetrain function's service: decides on one alarm event and starts the run. It reads
    and writes through ``store``, the lineage table and clients the pipeline's records use."""

    store: LineageStore

    @classmethod
    def connect(cls, settings: Settings, session: Any) -> DriftRetrainer:
        """The service on ``settings``' table, bucket and state machine, with clients of ``session``."""
        return cls(LineageStore.connect(settings, session))

    def decide(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Start a drift retrain for the alarm ``event`` if its dataset opted in, has data and has
        no run in flight. Returns ``{"decision", "reason", ...}``: ``started`` (with ``run_id``
        and ``execution_arn``), ``in_flight`` (with the run's ``execution_arn``), ``opted_out``,
        ``no_data`` or ``not_ours`` (an alarm on another endpoint, or a model lineage never ran)."""
        trigger = alarm_trigger(event)
        endpoint = self.store.settings.production_endpoint_name
        if trigger["endpoint"] != endpoint:
            return self._answer(
                NOT_OURS, f"alarm {trigger['alarm_name']} watches {trigger['endpoint']!r}, not {endpoint}"
            )
        try:
            dataset = model_lineage(self.store.table, endpoint, sagemaker_client=self.store.sagemaker_client)["dataset"]
        except NotInLineageError as exc:
            return self._answer(NOT_OURS, f"no run in lineage deployed what {endpoint} serves: {exc}")
        try:
            config = load_dataset_config(self.store.s3_client, self.store.settings.artifact_bucket, dataset)
        except DatasetConfigError as exc:
            return self._answer(OPTED_OUT, f"dataset {dataset} has no valid config to opt in with: {exc}", dataset)
        if not config.get("retrain_on_drift"):
            return self._answer(OPTED_OUT, f"dataset {dataset} does not set retrain_on_drift", dataset)
        run_id = drift_run_id(dataset, trigger["event_id"])
        execution_arn = execution_arn_of(self.store.settings.state_machine_arn, f"drift-{run_id}")
        claim = get_item(self.store.table, _retrain_key(dataset))
        if claim.get("execution_arn") != execution_arn:  # else this event, delivered again
            running = self._running_execution(dataset, claim)
            if running is not None:
                return self._ignored(dataset, running, trigger)
        upload = newest_upload(self.store.s3_client, self.store.settings.upload_bucket, dataset)
        if upload is None:
            where = f"s3://{self.store.settings.upload_bucket}/{INCOMING_PREFIX}{dataset}/"
            return self._answer(NO_DATA, f"dataset {dataset} has no readable upload under {where}", dataset)
        holder = self._claim(dataset, run_id, execution_arn, claim.get("execution_arn"))
        if holder is not None:
            return self._ignored(dataset, holder, trigger)
        self._start(execution_arn, {"drift_retrain": {"dataset": dataset, "upload": upload, "trigger": trigger}})
        reason = (
            f"alarm {trigger['alarm_name']}: retraining {dataset} on {upload['uri']} (version {upload['version_id']})"
        )
        return self._answer(STARTED, reason, dataset, run_id=run_id, execution_arn=execution_arn, upload=upload)

    @staticmethod
    def _answer(decision: str, reason: str, dataset: str | None = None, **more: Any) -> dict[str, Any]:
        return {"decision": decision, "reason": reason, "dataset": dataset, **more}

    def _status(self, execution_arn: str) -> str | None:
        """The execution's status; None when it does not exist."""
        try:
            return str(self.store.sfn_client.describe_execution(executionArn=execution_arn)["status"])
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("ExecutionDoesNotExist", "InvalidArn"):
                return None
            raise DriftRetrainError(f"cannot describe execution {execution_arn}: {exc}") from exc

    def _running(self, execution_arn: str) -> bool:
        return self._status(execution_arn) == "RUNNING"

    def _exists(self, execution_arn: str) -> bool:
        return self._status(execution_arn) is not None

    def _dataset_of_input(self, execution_input: Mapping[str, Any]) -> str | None:
        """The dataset a pipeline execution's input stands for (None when it names none)."""
        if isinstance(execution_input.get("drift_retrain"), Mapping):
            return str(execution_input["drift_retrain"].get("dataset"))
        for field in ("resume_run_id", "reproduce_run_id"):
            if field in execution_input:
                return get_item(self.store.table, run_key(str(execution_input[field]))).get("dataset")
        try:
            return dataset_of_key(str(((execution_input.get("detail") or {}).get("object") or {}).get("key")))
        except UploadEventError:
            return None

    def _holds(self, claim: Mapping[str, Any]) -> bool:
        """Whether the dataset's retrain claim still stands: its execution runs, or it was taken
        so recently that its execution may not have started yet."""
        held = claim.get("execution_arn")
        if not held:
            return False
        if self._running(str(held)):
            return True
        claimed_at = str(claim.get("claimed_at") or "")
        if not claimed_at:
            return False
        age = (self.store.now() - datetime.fromisoformat(claimed_at.replace("Z", "+00:00"))).total_seconds()
        return age < CLAIM_START_SECONDS and not self._exists(str(held))

    def _running_execution(self, dataset: str, claim: Mapping[str, Any]) -> str | None:
        """A pipeline execution of ``dataset`` in flight: the drift retrain holding the claim, else
        any RUNNING one whose input stands for the dataset (an upload's, a resume's, a reproduction's)."""
        if self._holds(claim):
            return str(claim["execution_arn"])
        try:
            pages = self.store.sfn_client.get_paginator("list_executions").paginate(
                stateMachineArn=self.store.settings.state_machine_arn, statusFilter="RUNNING"
            )
            for page in pages:
                for execution in page.get("executions", []):
                    described = self.store.sfn_client.describe_execution(executionArn=execution["executionArn"])
                    if self._dataset_of_input(json.loads(described.get("input") or "{}")) == dataset:
                        return str(execution["executionArn"])
        except ClientError as exc:
            raise DriftRetrainError(f"cannot list the running executions of the pipeline: {exc}") from exc
        return None

    def _claim(self, dataset: str, run_id: str, execution_arn: str, held: str | None) -> str | None:
        """Take the dataset's retrain claim for ``execution_arn`` from ``held`` (the holder read
        before deciding); None when taken, else the execution of the retrain that holds it (a
        concurrent decision won)."""
        if held == execution_arn:
            return None  # the same alarm event delivered again: start (idempotently) again
        condition = "attribute_not_exists(execution_arn)" + (" OR execution_arn = :held" if held else "")
        values = {":arn": execution_arn, ":run": run_id, ":at": iso_utc(self.store.now())} | (
            {":held": held} if held else {}
        )
        try:
            self.store.table.update_item(
                Key=_retrain_key(dataset),
                UpdateExpression="SET execution_arn = :arn, run_id = :run, claimed_at = :at",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return str(get_item(self.store.table, _retrain_key(dataset)).get("execution_arn") or held)
            raise DriftRetrainError(f"cannot claim the drift retrain of {dataset}: {exc}") from exc
        return None

    def _start(self, execution_arn: str, execution_input: Mapping[str, Any]) -> None:
        state_machine, name = self.store.settings.state_machine_arn, execution_arn.rsplit(":", 1)[1]
        try:
            # A name per alarm event: a redelivered event finds its execution rather than a second one.
            self.store.sfn_client.start_execution(
                stateMachineArn=state_machine, name=name, input=json.dumps(execution_input)
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":
                raise DriftRetrainError(f"cannot start {name} of {state_machine}: {exc}") from exc

    def _ignored(self, dataset: str, execution_arn: str, trigger: Mapping[str, str]) -> dict[str, Any]:
        """Note on the dataset's retrain item that this alarm found a run in flight; the
        ``in_flight`` answer."""
        run_id = self._run_of_execution(execution_arn)
        noted = {
            "alarm_name": trigger["alarm_name"],
            "event_id": trigger["event_id"],
            "changed_at": trigger["changed_at"],
            "at": iso_utc(self.store.now()),
            "in_flight": run_id or execution_arn,
        }
        update_fields(self.store.table, _retrain_key(dataset), {}, append={"alarms_ignored": [noted]})
        reason = f"dataset {dataset} has a run in flight ({run_id or execution_arn}); no second run starts"
        return self._answer(IN_FLIGHT, reason, dataset, execution_arn=execution_arn, run_id=run_id)

    def _run_of_execution(self, execution_arn: str) -> str | None:
        """The lineage run an execution claimed (its name for a drift retrain, else its input's)."""
        name = execution_arn.rsplit(":", 1)[1]
        if name.startswith("drift-"):
            return name.removeprefix("drift-")
        try:
            described = self.store.sfn_client.describe_execution(executionArn=execution_arn)
        except ClientError:
            return None
        execution_input = json.loads(described.get("input") or "{}")
        if "resume_run_id" in execution_input:
            return str(execution_input["resume_run_id"])
        try:
            upload = parse_upload(execution_input)
        except UploadEventError:
            return None
        return make_run_id(upload["bucket"], upload["key"], upload["version_id"])
