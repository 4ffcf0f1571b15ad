"""ResolveRun: claim the run an upload stands for and return its context to the state machine.

Payload ``payloads.ResolveRunPayload`` (``{"event": <execution input>, "execution_arn"}``); the
execution input is S3's EventBridge ``Object Created`` event or ``stepml runs resume``'s
request. Returns ``{"action", "run", "steps"}`` (see docs/architecture.md).
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import config
from stepml.lineage import LineageStore, UploadEventError
from stepml.payloads import ResolveRunPayload, parse_payload

logger = Logger(service="stepml-resolve-run")
tracer = Tracer(service="stepml-resolve-run")

REQUIRED_SETTINGS = (
    config.LINEAGE_TABLE,
    config.ARTIFACT_BUCKET,
    config.PRODUCTION_ENDPOINT_NAME,
    config.DEFAULT_TRAINING_INSTANCE_TYPE,
    config.DEFAULT_HOSTING_INSTANCE_TYPE,
    config.ENDPOINT_POLL_SECONDS,
    config.APPROVAL_TIMEOUT_SECONDS,
    config.LINEAGE_RETENTION_DAYS,
)


@functools.cache
def dependencies() -> LineageStore:
    """The lineage store, built once per execution environment on the first request."""
    return LineageStore.connect(config.load_settings(REQUIRED_SETTINGS), boto3.Session())


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """A payload that does not fit raises ``UploadEventError`` naming the fields."""
    store = dependencies()
    payload = parse_payload(event, ResolveRunPayload, lambda_name="ResolveRun", error=UploadEventError)
    # The execution input as sent: resolve_run reads the upload from it itself.
    result = store.resolve_run(event["event"], payload.execution_arn)
    logger.info(
        "run resolved",
        extra={
            "run_id": result["run"]["run_id"],
            "action": result["action"],
            "attempt": result["run"]["attempt"],
            "skipping": sorted(result["steps"]),
        },
    )
    return result
