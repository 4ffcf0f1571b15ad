"""RecordStep: write a step's lineage record, a run's outcome, or a failure and its alert.

Payload ``payloads.StepRecordPayload``, ``FailurePayload`` or ``NotificationFailurePayload``
(chosen by ``step``). A failure's step is the one its Catch named in ``state.failed_step``; a
lost notification is named by ``notification`` when the definition says which.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import config
from stepml.lineage import LineageError, LineageStore
from stepml.payloads import FailurePayload, NotificationFailurePayload, parse_record_step

logger = Logger(service="stepml-record-step")
tracer = Tracer(service="stepml-record-step")

REQUIRED_SETTINGS = (config.LINEAGE_TABLE, config.LINEAGE_RETENTION_DAYS)


@functools.cache
def dependencies() -> LineageStore:
    """The lineage store, built once per execution environment on the first request."""
    return LineageStore.connect(config.load_settings(REQUIRED_SETTINGS), boto3.Session())


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Record what the payload says; a payload that does not fit raises ``LineageError``."""
    store = dependencies()
    payload = parse_record_step(event, error=LineageError)
    if isinstance(payload, FailurePayload):
        failure = store.record_failure(event["state"], payload.execution_arn)
        logger.warning(
            "run failed", extra={"run_id": failure["run_id"], "step": failure["step"], "error": failure["error"]}
        )
        return failure
    if isinstance(payload, NotificationFailurePayload):
        # An SNS notice or alert was not delivered; the run keeps its outcome.
        noted = store.record_notification_failure(event["state"], payload.execution_arn, payload.notification)
        logger.warning("notification not delivered", extra=noted)
        return noted
    outcome = store.record_step(event["run"], payload.step, payload.status, event.get("result"))
    logger.info("step recorded", extra={"run_id": payload.run.run_id, "step": payload.step, "status": payload.status})
    return outcome
