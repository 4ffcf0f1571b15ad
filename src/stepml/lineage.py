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

from stepml.lineage_config import DatasetConfigDeniedError, DatasetNotOnboardedError, load_dataset_config
from stepml.lineage_failures import readable_cause, record_failure, record_notification_failure
from stepml.lineage_runs import (
    artifact_paths,
    completed_steps,
    dataset_of_key,
    make_run_id,
    parse_upload,
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
from stepml.utils import from_dynamo

__all__ = [
    "FINISHED_STATUSES",
    "NOTIFICATIONS",
    "RESUMABLE_STEPS",
    "STEP_ORDER",
    "STEP_TITLES",
    "DatasetConfigDeniedError",
    "DatasetNotOnboardedError",
    "LineageError",
    "UnknownRunError",
    "UploadEventError",
    "artifact_paths",
    "completed_steps",
    "dataset_of_key",
    "from_dynamo",
    "load_dataset_config",
    "make_run_id",
    "parse_upload",
    "readable_cause",
    "record_failure",
    "record_notification_failure",
    "record_step",
    "resolve_run",
    "resource_names",
]
