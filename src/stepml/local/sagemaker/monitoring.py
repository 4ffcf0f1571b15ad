"""Monitoring schedules: SageMaker Model Monitor's data-quality executions, run on this machine.

A schedule (CreateMonitoringSchedule with a ``MonitoringJobDefinitionName`` of a data-quality
job definition) runs an execution every period: it reads the job definition's baseline
(statistics.json and constraints.json) and the endpoint's captured data since the previous
execution, runs ``stepml.monitoring.analysis.analyze`` (the built-in analyzer's checks) and
writes ``statistics.json`` and ``constraint_violations.json`` where AWS's analyzer writes them,
``<S3Output.S3Uri>/<endpoint>/<schedule>/yyyy/mm/dd/hh/``. With ``publish_cloudwatch_metrics``
``Enabled`` in the job definition's environment (and the constraints' ``emit_metrics`` not
``Disabled``) it publishes the analyzer's metrics to ``aws/sagemaker/Endpoints/data-metrics``
with the ``Endpoint`` and ``MonitoringSchedule`` dimensions: ``feature_baseline_drift_<f>``,
``feature_non_null_<f>`` and, for numbers, ``feature_data_<f>``. Every read and write is made
under the job definition's role, and the role must be allowed to pull the analyzer's image,
as a processing job's are.

What is local: every schedule expression AWS accepts runs once per ``period_seconds`` (the
local cloud's monitoring period, 60 s by default) rather than hourly or daily, ``run_now``
starts one execution at once, and an execution reads the capture files written since the
previous one (the first: since one period before the schedule was created) rather than the
previous hour's folder. The captured requests are the raw rows the endpoint's inference
pipeline takes, read as AWS's analyzer reads them. The engine knows nothing about moto.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stepml.local import telemetry
from stepml.local.sagemaker.context import EngineContext
from stepml.local.sagemaker.errors import (
    LocalSageMakerError,
    ResourceInUseError,
    ResourceNotFoundError,
    SageMakerValidationError,
)
from stepml.local.sagemaker.validation import arn, authorize_image_pull, validate_request
from stepml.monitoring.analysis import Analysis, MonitoringError, analyze
from stepml.utils import S3UriError, split_s3_uri, utc_now

LOGGER = logging.getLogger(__name__)
#: Where the built-in analyzer publishes a real-time endpoint's data-quality metrics.
METRICS_NAMESPACE = "aws/sagemaker/Endpoints/data-metrics"
ANALYZER_REPOSITORY = "sagemaker-model-monitor-analyzer"
#: A monitoring execution is a processing job: its log goes where processing jobs' logs go.
PROCESSING_LOG_GROUP = "/aws/sagemaker/ProcessingJobs"
#: The expressions ScheduleConfig accepts: hourly, daily at an hour, every N hours from an hour, NOW.
_SCHEDULE_EXPRESSION = re.compile(r"^cron\(0 (\*|(0?[0-9]|1[0-9]|2[0-3])(/(0?[1-9]|1[0-9]|2[0-4]))?) \? \* \* \*\)$")
_ANALYZER_IMAGE = re.compile(
    r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/" + ANALYZER_REPOSITORY + r"(:[A-Za-z0-9._-]+)?$"
)

Request = Mapping[str, Any]


class _ExecutionFailed(Exception):
    """Ends an execution as Failed; the message is its FailureReason."""


@dataclass
class Schedule:
    """One monitoring schedule and its executions (newest last)."""

    name: str
    arn: str
    account_id: str
    region: str
    config: dict[str, Any]
    definition: dict[str, Any]
    created: datetime
    modified: datetime
    status: str = "Scheduled"
    executions: list[dict[str, Any]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    window_start: datetime | None = None

    @property
    def endpoint(self) -> str:
        return str(self.definition["DataQualityJobInput"]["EndpointInput"]["EndpointName"])

    def describe(self) -> dict[str, Any]:
        """DescribeMonitoringSchedule's answer."""
        answer = {
            "MonitoringScheduleArn": self.arn,
            "MonitoringScheduleName": self.name,
            "MonitoringScheduleStatus": self.status,
            "MonitoringType": self.config.get("MonitoringType", "DataQuality"),
            "CreationTime": self.created,
            "LastModifiedTime": self.modified,
            "MonitoringScheduleConfig": json.loads(json.dumps(self.config)),
            "EndpointName": self.endpoint,
        }
        if self.executions:
            answer["LastMonitoringExecutionSummary"] = dict(self.executions[-1])
        return answer

    def summary(self) -> dict[str, Any]:
        """ListMonitoringSchedules' entry."""
        return {
            "MonitoringScheduleName": self.name,
            "MonitoringScheduleArn": self.arn,
            "CreationTime": self.created,
            "LastModifiedTime": self.modified,
            "MonitoringScheduleStatus": self.status,
            "EndpointName": self.endpoint,
            "MonitoringJobDefinitionName": self.config["MonitoringJobDefinitionName"],
            "MonitoringType": self.config.get("MonitoringType", "DataQuality"),
        }


def check_schedule_config(config: Mapping[str, Any], definition: Mapping[str, Any] | None) -> None:
    """What CreateMonitoringSchedule and UpdateMonitoringSchedule check beyond the request's shape."""
    expression = str((config.get("ScheduleConfig") or {}).get("ScheduleExpression", ""))
    if expression == "NOW" or config.get("MonitoringJobDefinition"):
        raise SageMakerValidationError(
            "the local cloud runs recurring schedules of a data-quality job definition "
            "(MonitoringJobDefinitionName and MonitoringType DataQuality)"
        )
    if not _SCHEDULE_EXPRESSION.match(expression):
        raise SageMakerValidationError(
            f"Invalid ScheduleExpression {expression!r}: supported are cron(0 * ? * * *), cron(0 [00-23] ? * * *) "
            "and cron(0 [00-23]/[01-24] ? * * *)"
        )
    if config.get("MonitoringType", "DataQuality") != "DataQuality":
        raise SageMakerValidationError(
            f"MonitoringType {config.get('MonitoringType')} does not match the job definition's type DataQuality"
        )
    if definition is None:
        raise ResourceNotFoundError(f"Job definition {config.get('MonitoringJobDefinitionName')} not found")


class MonitoringSchedules:
    """The engine's monitoring schedules; ``start`` runs them every ``period_seconds``.

    ``capture_destination(endpoint, account_id, region)`` is the endpoint's data capture
    ``DestinationS3Uri`` (None when it captures nothing or does not exist).
    """

    def __init__(
        self,
        context: EngineContext,
        capture_destination: Callable[[str, str, str], str | None],
        period_seconds: float = 60.0,
    ):
        self._context = context
        self._capture_destination = capture_destination
        self.period_seconds = period_seconds
        self._schedules: dict[tuple[str, str, str], Schedule] = {}
        self._run_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the API

    def create(self, request: Request, definition: Request | None, *, account_id: str, region: str) -> Schedule:
        """CreateMonitoringSchedule: ``definition`` is the named job definition's Describe answer."""
        validate_request("CreateMonitoringSchedule", request)
        name = str(request["MonitoringScheduleName"])
        config = dict(request["MonitoringScheduleConfig"])
        schedule_arn = arn("monitoring-schedule", name, account_id, region)
        with self._context.lock:
            if (account_id, region, name) in self._schedules:
                raise ResourceInUseError(f"Monitoring schedule {schedule_arn} already exists")
            check_schedule_config(config, definition)
            now = utc_now()
            schedule = Schedule(name, schedule_arn, account_id, region, config, dict(definition or {}), now, now)
            schedule.window_start = now - timedelta(seconds=self.period_seconds)
            self._schedules[(account_id, region, name)] = schedule
        return schedule

    def update(self, request: Request, definition: Request | None, *, account_id: str, region: str) -> Schedule:
        """UpdateMonitoringSchedule: the schedule runs the new configuration from its next execution."""
        validate_request("UpdateMonitoringSchedule", request)
        schedule = self.get(str(request["MonitoringScheduleName"]), account_id=account_id, region=region)
        config = dict(request["MonitoringScheduleConfig"])
        with self._context.lock:
            check_schedule_config(config, definition)
            schedule.config, schedule.definition = config, dict(definition or {})
            schedule.modified = utc_now()
        return schedule

    def describe(self, name: str, *, account_id: str, region: str) -> Schedule | None:
        """The schedule, or None."""
        with self._context.lock:
            return self._schedules.get((account_id, region, name))

    def delete(self, name: str, *, account_id: str, region: str) -> None:
        """DeleteMonitoringSchedule: no further executions."""
        self.get(name, account_id=account_id, region=region)
        with self._context.lock:
            del self._schedules[(account_id, region, name)]

    def set_running(self, name: str, running: bool, *, account_id: str, region: str) -> None:
        """StartMonitoringSchedule (``running``) or StopMonitoringSchedule: a Stopped schedule runs no execution.

        Both are idempotent here; AWS's documentation names no error for stopping a stopped schedule.
        """
        schedule = self.get(name, account_id=account_id, region=region)
        with self._context.lock:
            schedule.status = "Scheduled" if running else "Stopped"
            schedule.modified = utc_now()

    def all(self, *, account_id: str, region: str) -> list[Schedule]:
        """Every schedule of the account and region, oldest first."""
        with self._context.lock:
            found = [s for (a, r, _), s in self._schedules.items() if (a, r) == (account_id, region)]
        return sorted(found, key=lambda s: s.created)

    def get(self, name: str, *, account_id: str, region: str) -> Schedule:
        """The schedule; ``ResourceNotFoundError`` when there is none."""
        schedule = self.describe(name, account_id=account_id, region=region)
        if schedule is None:
            raise ResourceNotFoundError(
                f"Monitoring Schedule {arn('monitoring-schedule', name, account_id, region)} not found"
            )
        return schedule

    # ------------------------------------------------------------------ executions

    def start(self) -> None:
        """Run every schedule once per period in the background until the engine closes."""
        self._thread = self._context.spawn(self._loop, "stepml-sm-monitoring")

    def _loop(self) -> None:
        while not self._context.closing.wait(self.period_seconds):
            self.run_due()

    def run_due(self) -> list[dict[str, Any]]:
        """One period: an execution of every Scheduled schedule (a Stopped one is skipped); their summaries."""
        with self._context.lock:
            due = [s for s in self._schedules.values() if s.status == "Scheduled"]
        ran = []
        for schedule in due:
            try:
                ran.append(
                    self.run_now(schedule.name, account_id=schedule.account_id, region=schedule.region, scheduled=True)
                )
            except LocalSageMakerError as exc:  # deleted or stopped since
                LOGGER.debug("monitoring schedule %s skipped: %s", schedule.name, exc)
        return ran

    def run_now(self, name: str, *, account_id: str, region: str, scheduled: bool = False) -> dict[str, Any]:
        """Run one execution of the schedule now; returns its MonitoringExecutionSummary.

        ``scheduled``: the period's own execution, which a schedule stopped meanwhile does not run.
        """
        schedule = self.get(name, account_id=account_id, region=region)
        with self._run_lock:
            if scheduled and schedule.status != "Scheduled":
                raise LocalSageMakerError(f"Monitoring schedule {schedule.arn} is {schedule.status}")
            scheduled = utc_now().replace(microsecond=0)
            summary = self._summary(schedule, scheduled)
            try:
                analysis = self._execute(schedule, scheduled)
            except _ExecutionFailed as exc:
                summary |= {"MonitoringExecutionStatus": "Failed", "FailureReason": str(exc)[:1024]}
            else:
                violated = bool(analysis.violations.get("violations"))
                summary["MonitoringExecutionStatus"] = "CompletedWithViolations" if violated else "Completed"
            summary["LastModifiedTime"] = utc_now()
            self._log(schedule, summary)
            with self._context.lock:
                schedule.executions.append(summary)
                schedule.window_start = scheduled
        return dict(summary)

    def _log(self, schedule: Schedule, summary: Mapping[str, Any]) -> None:
        """The execution's processing job log, ``<job>/algo-1-<epoch>``, written with the job's role."""
        job = str(summary["ProcessingJobArn"]).rsplit("/", 1)[1]
        started = int(summary["CreationTime"].timestamp())
        role = schedule.definition.get("RoleArn")
        log = telemetry.LogStream(
            self._context.client_as("logs", role), PROCESSING_LOG_GROUP, f"{job}/algo-1-{started}", describe_first=True
        )
        log.add(f"Monitoring schedule {schedule.name}: data-quality analysis of endpoint {schedule.endpoint}")
        log.add(f"Baseline: job definition {summary['MonitoringJobDefinitionName']}")
        log.add(f"Execution {summary['MonitoringExecutionStatus']}: {summary.get('FailureReason', 'reports written')}")
        log.flush()

    def executions(self, *, account_id: str, region: str) -> list[dict[str, Any]]:
        """Every execution of every schedule of the account and region (ListMonitoringExecutions)."""
        with self._context.lock:
            return [dict(e) for s in self.all(account_id=account_id, region=region) for e in s.executions]

    @staticmethod
    def _summary(schedule: Schedule, scheduled: datetime) -> dict[str, Any]:
        job = f"model-monitoring-{scheduled:%Y%m%d%H%M}-{uuid.uuid4().hex[:8]}"
        return {
            "MonitoringScheduleName": schedule.name,
            "ScheduledTime": scheduled,
            "CreationTime": utc_now(),
            "MonitoringExecutionStatus": "InProgress",
            "ProcessingJobArn": arn("processing-job", job, schedule.account_id, schedule.region),
            "EndpointName": schedule.endpoint,
            "MonitoringJobDefinitionName": schedule.config["MonitoringJobDefinitionName"],
            "MonitoringType": schedule.config.get("MonitoringType", "DataQuality"),
        }

    def _execute(self, schedule: Schedule, scheduled: datetime) -> Analysis:
        definition = schedule.definition
        role = definition.get("RoleArn")
        image = str((definition.get("DataQualityAppSpecification") or {}).get("ImageUri", ""))
        if not _ANALYZER_IMAGE.match(image):
            raise _ExecutionFailed(
                f"the local cloud runs SageMaker's built-in analyzer ({ANALYZER_REPOSITORY}), not {image}"
            )
        try:
            authorize_image_pull(role, image)
            baseline = _baseline(self._context.client_as("s3", role), definition)
            lines, keys = self._captured(schedule, role)
            analysis = analyze(baseline["statistics"], baseline["constraints"], lines)
            self._write_reports(schedule, scheduled, analysis, role)
        except MonitoringError as exc:
            raise _ExecutionFailed(f"Job inputs had no data or could not be analyzed: {exc}") from exc
        except (ClientError, BotoCoreError, S3UriError, LocalSageMakerError, ValueError, KeyError) as exc:
            raise _ExecutionFailed(f"{type(exc).__name__}: {exc}") from exc
        schedule.seen.update(keys)
        if _publishes_metrics(definition, baseline["constraints"]):
            data = metric_data(analysis, endpoint=schedule.endpoint, schedule=schedule.name, when=scheduled)
            telemetry.put_metrics(self._context.client_as("cloudwatch", role), METRICS_NAMESPACE, data)
        return analysis

    def _captured(self, schedule: Schedule, role: str | None) -> tuple[list[bytes], list[str]]:
        destination = self._capture_destination(schedule.endpoint, schedule.account_id, schedule.region)
        if not destination:
            raise MonitoringError(f"endpoint {schedule.endpoint} captures no data")
        bucket, prefix = split_s3_uri(f"{destination.rstrip('/')}/{schedule.endpoint}/")
        s3 = self._context.client_as("s3", role)
        since = schedule.window_start or schedule.created
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                modified = item["LastModified"]
                # S3 keeps whole seconds: a file of the window's first second is new unless already read.
                if (
                    item["Key"].endswith(".jsonl")
                    and item["Key"] not in schedule.seen
                    and modified >= since.replace(microsecond=0)
                ):
                    keys.append(item["Key"])
        lines = [
            line for key in sorted(keys) for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()
        ]
        return lines, keys

    def _write_reports(self, schedule: Schedule, scheduled: datetime, analysis: Analysis, role: str | None) -> None:
        outputs = (schedule.definition.get("DataQualityJobOutputConfig") or {}).get("MonitoringOutputs") or []
        s3 = self._context.client_as("s3", role)
        for output in outputs:
            root = str(output["S3Output"]["S3Uri"]).rstrip("/")
            bucket, prefix = split_s3_uri(f"{root}/{schedule.endpoint}/{schedule.name}/{scheduled:%Y/%m/%d/%H}/")
            for name, document in (
                ("statistics.json", analysis.statistics),
                ("constraint_violations.json", analysis.violations),
            ):
                body = json.dumps(document, indent=2).encode("utf-8")
                s3.put_object(Bucket=bucket, Key=prefix + name, Body=body, ContentType="application/json")


def _baseline(s3: Any, definition: Mapping[str, Any]) -> dict[str, Any]:
    """The baseline documents, read as the job's role."""
    config = definition.get("DataQualityBaselineConfig") or {}

    def read(uri: str) -> Any:
        bucket, key = split_s3_uri(uri)
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    constraints_uri = str((config.get("ConstraintsResource") or {}).get("S3Uri", ""))
    statistics_uri = str((config.get("StatisticsResource") or {}).get("S3Uri", ""))
    if not constraints_uri or not statistics_uri:
        raise MonitoringError("the job definition has no baseline (DataQualityBaselineConfig)")
    return {"statistics": read(statistics_uri), "constraints": read(constraints_uri)}


def _publishes_metrics(definition: Mapping[str, Any], constraints: Mapping[str, Any]) -> bool:
    environment = (definition.get("DataQualityAppSpecification") or {}).get("Environment") or {}
    emit = (constraints.get("monitoring_config") or {}).get("emit_metrics", "Enabled")
    return environment.get("publish_cloudwatch_metrics") == "Enabled" and emit != "Disabled"


def metric_data(analysis: Analysis, *, endpoint: str, schedule: str, when: datetime) -> list[dict[str, Any]]:
    """The analyzer's CloudWatch metrics of one execution (PutMetricData's MetricData)."""
    dimensions = [{"Name": "Endpoint", "Value": endpoint}, {"Name": "MonitoringSchedule", "Value": schedule}]
    data: list[dict[str, Any]] = []

    def add(name: str, **value: Any) -> None:
        data.append({"MetricName": name, "Dimensions": dimensions, "Timestamp": when, **value})

    for feature in analysis.statistics.get("features", []):
        name = str(feature["name"])
        numeric = feature.get("numerical_statistics") or {}
        common = numeric.get("common") or (feature.get("string_statistics") or {}).get("common") or {}
        present, missing = int(common.get("num_present", 0)), int(common.get("num_missing", 0))
        if present + missing:
            add(f"feature_non_null_{name}", Value=present / (present + missing))
        if numeric and present:
            statistics = {
                "SampleCount": present,
                "Sum": numeric["sum"],
                "Minimum": numeric["min"],
                "Maximum": numeric["max"],
            }
            add(f"feature_data_{name}", StatisticValues={k: float(v) for k, v in statistics.items()})
        if name in analysis.distances:
            add(f"feature_baseline_drift_{name}", Value=float(analysis.distances[name]))
    return data
