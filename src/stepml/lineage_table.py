"""The lineage table's vocabulary and its writes: step names, run outcomes, item keys and the
one update every record goes through.

The other ``lineage_*`` modules build on this one (``stepml.lineage`` re-exports the public
names); the item layout is described in ``stepml.lineage``'s docstring.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from stepml.config import Settings
from stepml.utils import from_dynamo, iso_utc, to_dynamo
from stepml.version import code_version

#: Steps in pipeline order; the first one without a result in ``$.steps`` is where a run failed.
STEP_ORDER = ("preprocess", "train", "model", "test_endpoint", "test_scoring", "evaluate", "approval", "deploy")
#: Steps whose results a resumed run reuses instead of redoing them.
RESUMABLE_STEPS = ("preprocess", "train")
#: Run outcomes after which the same upload is not run again.
FINISHED_STATUSES = frozenset({"SUCCEEDED", "REJECTED", "REJECTED_BY_GATE", "APPROVAL_TIMED_OUT", "REPRODUCED"})
STEP_TITLES = {
    "resolve": "Resolve run",
    "preprocess": "Preprocess data (Glue)",
    "train": "Train model (SageMaker)",
    "model": "Create model",
    "test_endpoint": "Test endpoint",
    "test_scoring": "Score test split in batch (SageMaker Batch Transform)",
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

_MAX_SUBJECT = 100


class LineageError(RuntimeError):
    """Lineage could not be read or written."""


class UploadEventError(LineageError):
    """The execution input is not an upload this pipeline can run on."""


class UnknownRunError(LineageError):
    """A run id that lineage does not know."""


def run_key(run_id: str) -> dict[str, str]:
    """The key of a run's own item."""
    return {"pk": f"RUN#{run_id}", "sk": "RUN"}


def step_key(run_id: str, step: str) -> dict[str, str]:
    """The key of one step's record of a run."""
    return {"pk": f"RUN#{run_id}", "sk": f"STEP#{step}"}


def expiry(settings: Settings, now: datetime) -> dict[str, int]:
    """The TTL attribute of a new item (none when lineage is kept forever)."""
    days = settings.lineage_retention_days
    return {"expires_at": int(now.timestamp()) + days * 86400} if days > 0 else {}


def put_new(table: Any, item: Mapping[str, Any]) -> bool:
    """Write ``item`` unless its key exists; False when it did (the condition failed).

    Other errors propagate as ``ClientError`` so each caller names what it could not write.
    """
    try:
        table.put_item(Item=to_dynamo(item), ConditionExpression="attribute_not_exists(pk)")
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


def get_item(table: Any, key: Mapping[str, str]) -> dict[str, Any]:
    """An item by key, read consistently, in plain JSON types (empty when there is none)."""
    return from_dynamo(table.get_item(Key=dict(key), ConsistentRead=True).get("Item") or {})


def update_fields(
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
            ExpressionAttributeValues=to_dynamo(values),
            **condition,
        )
    except ClientError as exc:
        if not (must_exist and exc.response["Error"]["Code"] == "ConditionalCheckFailedException"):
            raise


def write_step(
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
    """Write (or overwrite) a step's record of ``run`` and append this attempt to its history."""
    attempt = {
        "attempt": run.get("attempt", 1),
        "status": status,
        "at": iso_utc(now),
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
        "recorded_at": iso_utc(now),
        "code_version": run.get("code_version") or code_version(),
        **record,
        "result": result,
        "error": dict(error) if error else None,
        **expiry(settings, now),
    }
    update_fields(table, step_key(run["run_id"], step), fields, append={"attempts": [attempt]})


def finish_run(table: Any, run_id: str, status: str, now: datetime, extra: Mapping[str, Any]) -> None:
    """Give a run its outcome and end time (with ``extra`` fields such as the error)."""
    fields = {"status": status, "ended_at": iso_utc(now), "updated_at": iso_utc(now), **extra}
    update_fields(table, run_key(run_id), fields)


def add_warning(table: Any, run_id: str, warning: Mapping[str, Any], now: datetime) -> None:
    """Note on a run something that went wrong without changing its outcome."""
    update_fields(table, run_key(run_id), {"updated_at": iso_utc(now)}, append={"warnings": [dict(warning)]})


def email_subject(text: str) -> str:
    """An SNS email subject: ASCII, one line, at most 100 characters."""
    clean = re.sub(r"\s+", " ", text.encode("ascii", "replace").decode()).strip()
    return clean if len(clean) <= _MAX_SUBJECT else clean[: _MAX_SUBJECT - 3] + "..."
