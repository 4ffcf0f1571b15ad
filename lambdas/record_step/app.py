"""RecordStep: write a step's lineage record, a run's outcome, or a failure and its alert."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import config
from stepml.lineage import record_failure, record_notification_failure, record_step

logger = Logger()
tracer = Tracer()

_REQUIRED = (config.LINEAGE_TABLE, config.LINEAGE_RETENTION_DAYS)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Payload ``{"run", "step", "status", "result"}``, or ``{"state", "step": "failure"|"notify", ...}``.

    A failure's step is the one its Catch named in ``state["failed_step"]``; a lost notification
    is named by ``notification`` when the definition says which.
    """
    settings = config.load_settings(_REQUIRED)
    session = boto3.Session()
    table = session.resource("dynamodb").Table(settings.lineage_table)
    if event["step"] == "failure":
        failure = record_failure(
            event["state"],
            event["execution_arn"],
            table=table,
            sagemaker_client=session.client("sagemaker"),
            settings=settings,
        )
        logger.warning(
            "run failed", extra={"run_id": failure["run_id"], "step": failure["step"], "error": failure["error"]}
        )
        return failure
    if event["step"] == "notify":
        # An SNS notice or alert was not delivered; the run keeps its outcome.
        noted = record_notification_failure(
            event["state"],
            event["execution_arn"],
            table=table,
            settings=settings,
            notification=event.get("notification"),
        )
        logger.warning("notification not delivered", extra=noted)
        return noted
    outcome = record_step(
        event["run"],
        event["step"],
        event["status"],
        event.get("result"),
        table=table,
        s3_client=session.client("s3"),
        sagemaker_client=session.client("sagemaker"),
        settings=settings,
    )
    logger.info(
        "step recorded", extra={"run_id": event["run"]["run_id"], "step": event["step"], "status": event["status"]}
    )
    return outcome
