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

This module is the front door the handlers, the CLI and the tests import from; the work is
done in its parts:

- ``lineage_table``: step names, run outcomes, errors, item keys and the writes every record uses;
- ``lineage_config``: the dataset config a run reads from the artifact bucket;
- ``lineage_runs``: run ids, resource names and paths, claiming a run, ``resolve_run``;
- ``lineage_steps``: step records and the run's outcome, ``record_step``;
- ``lineage_failures``: ``record_failure`` and the warnings on a run that keeps its outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stepml.config import Settings
from stepml.lineage_config import DatasetConfigDeniedError, DatasetNotOnboardedError, load_dataset_config
from stepml.lineage_failures import readable_cause, record_failure, record_notification_failure
from stepml.lineage_runs import (
    artifact_paths,
    completed_steps,
    dataset_of_key,
    drift_run_id,
    make_run_id,
    parse_upload,
    reproduction_run_id,
    resolve_run,
    resource_names,
)
from stepml.lineage_steps import record_step
from stepml.lineage_table import (
    FINISHED_STATUSES,
    NOTIFICATIONS,
    RESUMABLE_STEPS,
    STEP_ORDER,
    STEP_TITLES,
    LineageError,
    UnknownRunError,
    UploadEventError,
)
from stepml.utils import from_dynamo, utc_now

__all__ = [
    "FINISHED_STATUSES",
    "NOTIFICATIONS",
    "RESUMABLE_STEPS",
    "STEP_ORDER",
    "STEP_TITLES",
    "DatasetConfigDeniedError",
    "DatasetNotOnboardedError",
    "LineageError",
    "LineageStore",
    "UnknownRunError",
    "UploadEventError",
    "artifact_paths",
    "completed_steps",
    "dataset_of_key",
    "drift_run_id",
    "from_dynamo",
    "load_dataset_config",
    "make_run_id",
    "parse_upload",
    "readable_cause",
    "record_failure",
    "record_notification_failure",
    "record_step",
    "reproduction_run_id",
    "resolve_run",
    "resource_names",
]


@dataclass(frozen=True)
class LineageStore:
    """The lineage table and the clients its records read: the service the ResolveRun and
    RecordStep handlers build once per container (``connect``) and call per request."""

    settings: Settings
    table: Any
    s3_client: Any
    sagemaker_client: Any
    sfn_client: Any
    now: Callable[[], datetime] = utc_now

    @classmethod
    def connect(cls, settings: Settings, session: Any) -> LineageStore:
        """The store on ``settings.lineage_table`` with clients of the boto3 ``session``."""
        return cls(
            settings=settings,
            table=session.resource("dynamodb").Table(settings.lineage_table),
            s3_client=session.client("s3"),
            sagemaker_client=session.client("sagemaker"),
            sfn_client=session.client("stepfunctions"),
        )

    def resolve_run(self, execution_input: Mapping[str, Any], execution_arn: str) -> dict[str, Any]:
        """Claim the run ``execution_input`` stands for (``lineage_runs.resolve_run``)."""
        return resolve_run(
            execution_input,
            execution_arn,
            table=self.table,
            s3_client=self.s3_client,
            sfn_client=self.sfn_client,
            settings=self.settings,
            now=self.now,
        )

    def record_step(self, run: Mapping[str, Any], step: str, status: str, result: Any) -> dict[str, Any]:
        """Write a step's record or the run's outcome (``lineage_steps.record_step``)."""
        return record_step(
            run,
            step,
            status,
            result,
            table=self.table,
            s3_client=self.s3_client,
            sagemaker_client=self.sagemaker_client,
            settings=self.settings,
            now=self.now,
        )

    def record_failure(self, state: Mapping[str, Any], execution_arn: str) -> dict[str, Any]:
        """Record the failure the cleanup path carries (``lineage_failures.record_failure``)."""
        return record_failure(
            state,
            execution_arn,
            table=self.table,
            sagemaker_client=self.sagemaker_client,
            settings=self.settings,
            now=self.now,
        )

    def record_notification_failure(
        self, state: Mapping[str, Any], execution_arn: str, notification: str | None = None
    ) -> dict[str, Any]:
        """Note a notice or alert that was not delivered (``lineage_failures``)."""
        return record_notification_failure(
            state, execution_arn, table=self.table, settings=self.settings, notification=notification, now=self.now
        )
